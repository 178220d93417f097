"""Reading TorchBridge JSON reports and merging the reports of several CI jobs into one.

A merged report keeps every result. Each result is labelled with the ``job`` it came
from (the report's file name unless given) and the ``machine`` that produced it, and
carries a ``key`` that is unique in the merged report: the test id, plus the job when the
same test id arrives from more than one report (xdist workers, a CPU and a GPU job).

Problems that do not make a report unreadable are kept as ``warnings`` that every
rendering shows: an older or newer schema, reports from different machines, duplicate
test ids, a report with no results.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchbridge.core.result import CheckResult, ResultFormatError, Status
from torchbridge.errors import TorchBridgeError
from torchbridge.reporting.document import SCHEMA_VERSION, summarise


class ReportError(TorchBridgeError):
    """A report file cannot be read at all (missing, not JSON, not a report)."""


@dataclass
class Source:
    """One input report: where it came from and what was noticed while reading it."""

    path: str
    job: str
    machine: str
    schema_version: int
    results: list[dict[str, Any]]
    commit: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    machine_info: dict[str, Any] = field(default_factory=dict)
    #: the source is itself a merged report: its results keep their own job and machine
    merged: bool = False

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "job": self.job, "machine": self.machine,
                "schema_version": self.schema_version, "results": len(self.results),
                "commit": self.commit, "versions": self.versions}


@dataclass
class MergedReport:
    """Every result of several reports, labelled by job and machine, plus warnings."""

    sources: list[Source]
    results: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        return summarise(self.results)

    @property
    def machines(self) -> list[str]:
        return sorted({str(r["machine"]) for r in self.results}
                      | {s.machine for s in self.sources if not s.merged})

    def to_dict(self) -> dict[str, Any]:
        """The merged report document (a superset of the single-run report schema)."""
        commits = [s.commit for s in self.sources if s.commit]
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "torchbridge",
            "kind": "merged",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "machine": {"labels": self.machines},
            "versions": self.sources[0].versions if self.sources else {},
            "commit": commits[0] if commits else {},
            "sources": [s.describe() for s in self.sources],
            "warnings": list(self.warnings),
            "results": self.results,
            "summary": self.summary,
        }


def machine_label(machine: dict[str, Any]) -> str:
    """A short name for the machine a report was made on: backend, GPU model, CPU count."""
    if not machine:
        return "unknown machine"
    if machine.get("labels"):  # an already merged report
        return " + ".join(map(str, machine["labels"]))
    gpus = machine.get("gpus") or []
    backend = machine.get("backend") or ("cuda" if machine.get("cuda_available") else "cpu")
    parts = [str(backend)]
    if gpus:
        names = Counter(str(g.get("name", "gpu")) for g in gpus if isinstance(g, dict))
        parts.append(", ".join(f"{n} x {name}" if n > 1 else name for name, n in names.items()))
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPUs")
    if machine.get("platform"):
        parts.append(_short_platform(str(machine["platform"])))
    if machine.get("node"):
        parts.append(str(machine["node"]))
    return " · ".join(parts)


def _short_platform(text: str) -> str:
    """``Linux-6.1.0-x86_64-with-glibc2.36`` → ``Linux x86_64``."""
    words = text.split("-")
    arch = next((w for w in words if w in ("x86_64", "aarch64", "arm64", "AMD64", "ppc64le")),
                "")
    return f"{words[0]} {arch}".strip()


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the report ({exc.strerror or exc})") from None
    if not text.strip():
        raise ReportError(f"{path}: the file is empty; the job that should have written it "
                          "probably failed before pytest ran (look at its log)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg}); was the file truncated?") from None


def _normalise_result(raw: Any, where: str, warnings: list[str]) -> dict[str, Any] | None:
    """``raw`` loaded into a :class:`CheckResult` (which fills what older writers left out)
    and written back in the current form, keeping fields a newer writer added; what is not
    a result is dropped with a warning, an unknown status counts as an error."""
    try:
        typed = CheckResult.from_dict(raw)
    except ResultFormatError as exc:
        if not (isinstance(raw, dict) and "check" in raw and "status" in raw):
            warnings.append(f"{where}: {exc}; skipped")
            return None
        warnings.append(f"{where}: {exc}; counted as error")
        typed = CheckResult.from_dict({**raw, "status": Status.ERROR.value})
    return {**raw, **typed.to_dict()}


def load_report(path: str | Path, job: str | None = None) -> tuple[Source, list[str]]:
    """Read one report file into a :class:`Source`, with the warnings reading it raised.

    A bare JSON list of results (what pre-release versions wrote) is read as a report of
    schema version 0.
    """
    target = Path(path)
    document = _read(target)
    warnings: list[str] = []
    if isinstance(document, list):
        document = {"schema_version": 0, "results": document}
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        raise ReportError(f"{target}: not a TorchBridge report (expected an object with a "
                          "'results' list, as pytest --tb-json writes)")
    version = document.get("schema_version", 0)
    version = version if isinstance(version, int) else 0
    if version < SCHEMA_VERSION:
        warnings.append(f"{target}: written with report schema {version}, older than the "
                        f"current {SCHEMA_VERSION}; missing fields were filled with defaults")
    elif version > SCHEMA_VERSION:
        warnings.append(f"{target}: written with report schema {version}, newer than this "
                        f"torchbridge understands ({SCHEMA_VERSION}); unknown fields are kept "
                        "as they are — upgrade torchbridge to render them")
    results = [r for i, raw in enumerate(document["results"])
               if (r := _normalise_result(raw, f"{target}: result {i}", warnings)) is not None]
    if not results:
        warnings.append(f"{target}: the report holds no results — did the job deselect every "
                        "TorchBridge item (-m/-k) or fail during collection?")
    machine = document.get("machine") if isinstance(document.get("machine"), dict) else {}
    source = Source(path=str(target), job=job or target.stem,
                    machine=machine_label(machine or {}), schema_version=version,
                    results=results, commit=dict(document.get("commit") or {}),
                    versions=dict(document.get("versions") or {}),
                    machine_info=machine or {}, merged=document.get("kind") == "merged")
    return source, warnings


def _unique_jobs(sources: list[Source]) -> None:
    """Two files called ``report.json`` in different folders get distinct job names."""
    counts = Counter(s.job for s in sources)
    for source in sources:
        if counts[source.job] > 1:
            parent = Path(source.path).parent.name
            source.job = f"{parent}/{source.job}" if parent else source.job
    seen: Counter[str] = Counter()
    for source in sources:
        seen[source.job] += 1
        if seen[source.job] > 1:
            source.job = f"{source.job}#{seen[source.job]}"


def _identity(result: dict[str, Any]) -> tuple[str, str, str]:
    return str(result.get("test_id", "")), str(result.get("check", "")), \
        str(result.get("device", ""))


def _labelled(source: Source, result: dict[str, Any]) -> dict[str, Any]:
    if source.merged:
        job = str(result.get("job") or source.job)
        machine = str(result.get("machine") or source.machine)
    else:
        job, machine = source.job, source.machine
    return {**result, "job": job, "machine": machine}


def merge_sources(sources: Sequence[Source], warnings: Iterable[str] = ()) -> MergedReport:
    """Merge already-read reports; see the module docstring for the labelling rules."""
    sources = list(sources)
    _unique_jobs(sources)
    notes = list(warnings)
    labelled = [_labelled(source, result) for source in sources for result in source.results]
    owners: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for result in labelled:
        owners[_identity(result)].add(result["job"])
    duplicated = {key for key, jobs in owners.items() if len(jobs) > 1}
    for result in labelled:
        test_id = str(result.get("test_id", ""))
        result["key"] = f"{test_id} @{result['job']}" if _identity(result) in duplicated \
            else test_id
    if duplicated:
        example = sorted(duplicated)[0]
        notes.append(f"{len(duplicated)} check result(s) appear in more than one report "
                     f"(e.g. {example[0]} [{example[1]}, {example[2]}] from "
                     f"{', '.join(sorted(owners[example]))}); all were kept and are "
                     "labelled by job — did two jobs run the same tests?")
    machines = sorted({str(r["machine"]) for r in labelled} | {s.machine for s in sources
                                                              if not s.merged})
    if len(machines) > 1:
        notes.append(f"the reports come from {len(machines)} machines "
                     f"({'; '.join(machines)}); performance numbers are labelled by machine "
                     "and should not be compared across them")
    return MergedReport(sources=sources, results=labelled, warnings=notes)


def merge_reports(paths: Sequence[str | Path], jobs: Sequence[str | None] | None = None
                  ) -> MergedReport:
    """Read and merge report files (``pytest --tb-json`` output, or merged reports).

    Raises :class:`ReportError` for a file that cannot be read as a report at all, and
    when no paths are given.
    """
    if not paths:
        raise ReportError("no reports given; pass the JSON files pytest --tb-json wrote")
    names = list(jobs) if jobs is not None else [None] * len(paths)
    sources, warnings = [], []
    for path, job in zip(paths, names, strict=True):
        source, notes = load_report(path, job)
        sources.append(source)
        warnings.extend(notes)
    return merge_sources(sources, warnings)


def from_results(results: list[dict[str, Any]], job: str = "session",
                 machine: dict[str, Any] | None = None) -> MergedReport:
    """A one-source merged report of in-memory result dicts (the current pytest session)."""
    warnings: list[str] = []
    normalised = [r for i, raw in enumerate(results)
                  if (r := _normalise_result(raw, f"result {i}", warnings)) is not None]
    if not normalised:
        warnings.append("this session produced no TorchBridge results: no tb marker or "
                        "checklist item ran (deselected, skipped at collection, or absent)")
    source = Source(path="", job=job, machine=machine_label(machine or {}),
                    schema_version=SCHEMA_VERSION, results=normalised)
    return merge_sources([source], warnings)
