"""Agreement of ``tb-scan`` with picklescan and modelscan over the hostile corpus.

Builds every case of ``tests/hostile`` (``hostile.all_cases()``: pickle kinds and
container kinds) in a temporary folder and scans each file with:

* torchbridge: ``scan_file`` with default settings → its verdict;
* picklescan: ``picklescan.scanner.scan_file_path`` → ``flagged`` (infected files > 0),
  ``error`` (scan errors), else ``clean``;
* modelscan: ``ModelScan().scan`` → ``flagged`` (issues > 0), ``error`` / ``skipped``
  (when it reports errors or skips the file), else ``clean``.

A refusal is what fails a CI gate: for torchbridge ``unsafe`` / ``invalid`` /
``secrets``; for the peers ``flagged`` or ``error`` (their CLIs exit non-zero;
modelscan's also exits 3 when it scanned nothing, counted apart as "not scanned"). Prints a
markdown table (one row per case) and a summary, and writes both to ``--out`` if given.
Each peer call runs under a 60 s alarm; a FIFO is not handed to the peers (they would
block on it forever).

    .venv/bin/python benchmarks/scanner_agreement.py \
        --out benchmarks/results/scanner_agreement.md --docs docs/security.md
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

REFUSED_TB = {"unsafe", "invalid", "secrets"}
REFUSED_PEER = {"flagged", "error"}


@contextlib.contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def stop(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer in {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def picklescan_verdict(path: Path) -> str:
    """``flagged``, ``error`` or ``clean`` by picklescan."""
    from picklescan.scanner import scan_file_path

    result = scan_file_path(str(path))
    if result.infected_files:
        return "flagged"
    return "error" if result.scan_err else "clean"


def modelscan_verdict(path: Path) -> str:
    """``flagged``, ``error``, ``skipped`` or ``clean`` by modelscan."""
    from modelscan.modelscan import ModelScan

    report = ModelScan().scan(str(path))
    if report["summary"]["total_issues"]:
        return "flagged"
    if report.get("errors"):
        return "error"
    skipped = report["summary"].get("skipped", {}).get("total_skipped", 0)
    scanned = report["summary"].get("scanned", {}).get("total_scanned", 0)
    return "skipped" if skipped and not scanned else "clean"


def _peer(check: Callable[[Path], str], path: Path) -> str:
    if not stat.S_ISREG(path.stat().st_mode):
        return "not run (FIFO)"
    try:
        with _alarm(60):
            return check(path)
    except TimeoutError:
        return "timeout (60 s)"
    except Exception as exc:  # a peer crashing is its verdict: it did not pass the file
        return f"error ({type(exc).__name__})"


def rows() -> list[dict[str, str]]:
    """One row per corpus case: name, kind, expected, and each tool's verdict."""
    from hostile import all_cases

    from torchbridge.security.scan import scan_file

    out = []
    with tempfile.TemporaryDirectory(prefix="tb-agreement-") as tmp:
        for case in all_cases():
            folder = Path(tmp) / case.name
            folder.mkdir()
            marker = folder / "MARKER"
            path = case.build(folder, marker)
            ours = scan_file(path).verdict.value
            out.append({"case": case.name, "kind": case.kind,
                        "expected": "refuse" if case.malicious else "accept",
                        "torchbridge": ours,
                        "picklescan": _peer(picklescan_verdict, path),
                        "modelscan": _peer(modelscan_verdict, path),
                        "payload_ran": "YES" if marker.exists() else ""})
    return out


def _refused(tool: str, verdict: str) -> bool:
    if tool == "torchbridge":
        return verdict in REFUSED_TB
    return verdict.split(" ")[0] in REFUSED_PEER or verdict.startswith("timeout")


def render(table: list[dict[str, str]]) -> str:
    """The markdown table and its summary."""
    tools = ("torchbridge", "picklescan", "modelscan")
    lines = ["| case | kind | expected | tb-scan | picklescan | modelscan |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in table:
        cells = [f"{row[t]}" + ("" if _refused(t, row[t]) == (row["expected"] == "refuse")
                                else " ✗") for t in tools]
        lines.append(f"| {row['case']} | {row['kind']} | {row['expected']} | "
                     + " | ".join(cells) + " |")
    bad = [r for r in table if r["expected"] == "refuse"]
    good = [r for r in table if r["expected"] == "accept"]
    lines += ["", "| | " + " | ".join(tools) + " |", "| --- | --- | --- | --- |"]
    lines.append(f"| hostile refused (of {len(bad)}) | " + " | ".join(
        str(sum(_refused(t, r[t]) for r in bad)) for t in tools) + " |")
    lines.append("| hostile not scanned (skipped, not run) | 0 | " + " | ".join(
        str(sum(r[t].startswith(("skipped", "not run")) for r in bad))
        for t in tools[1:]) + " |")
    lines.append("| hostile passed as clean | " + " | ".join(
        str(sum(r[t] in ("clean", "safe", "code", "not-a-model") for r in bad))
        for t in tools) + " |")
    lines.append(f"| benign accepted (of {len(good)}) | " + " | ".join(
        str(sum(not _refused(t, r[t]) for r in good)) for t in tools) + " |")
    lines += ["", f"picklescan {version('picklescan')}, modelscan {version('modelscan')}; "
              "✗ marks a verdict that disagrees with the expected one."]
    return "\n".join(lines) + "\n"


START, END = "<!-- agreement:start -->", "<!-- agreement:end -->"


def update_docs(path: Path, text: str) -> None:
    """Replace what lies between the agreement markers in ``path`` with the summary and
    the per-case table (folded in a ``<details>``)."""
    per_case, _, summary = text.partition("\n\n")
    block = (f"{START}\n{summary.strip()}\n\n<details><summary>Per-case verdicts</summary>"
             f"\n\n{per_case}\n\n</details>\n{END}")
    doc = path.read_text()
    head, found, rest = doc.partition(START)
    if not found or END not in rest:
        raise SystemExit(f"{path}: no {START} ... {END} block")
    path.write_text(head + block + rest.split(END, 1)[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="also write the markdown here")
    ap.add_argument("--docs", default=None,
                    help="rewrite the agreement block of this page (docs/security.md)")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)
    table = rows()
    text = render(table)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.docs:
        update_docs(Path(args.docs), text)
    return 1 if any(r["payload_ran"] for r in table) else 0


if __name__ == "__main__":
    sys.exit(main())
