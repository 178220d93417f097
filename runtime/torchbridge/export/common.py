"""What every export format shares: the validation plan, the comparison loop, the report.

An export is *proven*: the artifact is loaded back and run at several batch sizes (and at
the ends of every named dynamic dim), and each run is compared leaf by leaf with eager
PyTorch on the same inputs.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchbridge.core.compare import Tolerance, compare_outputs
from torchbridge.core.signal import SIGNAL_FLOOR, silent_outputs
from torchbridge.core.subject import InputKey, Subject, named_inputs
from torchbridge.core.trees import Flat, flatten
from torchbridge.core.variants import scaled_and_shuffled, uniform_noise
from torchbridge.errors import TorchBridgeError

#: Formats tb-export and ``@tb.export`` know.
FORMATS = ("onnx", "torchscript", "safetensors", "pt2")
#: Suffix of each format's artifact.
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts.pt", "safetensors": ".safetensors",
            "pt2": ".pt2"}


#: Default float32 tolerances for graph formats (onnx, pt2, torchscript): the exported graph
#: runs decomposed or fused kernels (eager transformers take a fused fast path), so results
#: differ from eager in the last bits; 1e-4 relative still catches any real divergence.
GRAPH_RTOL, GRAPH_ATOL = 1e-4, 1e-5


class ExportFailed(TorchBridgeError):
    """The model could not be exported to the format; the message says why and where."""


@dataclass(frozen=True)
class Tolerances:
    """``rtol``/``atol`` override the per-dtype defaults; ``per_output`` maps output paths."""

    rtol: float | None = None
    atol: float | None = None
    per_output: Mapping[str, Tolerance] = field(default_factory=dict)

    def or_defaults(self, rtol: float, atol: float) -> Tolerances:
        """These tolerances, with ``rtol``/``atol`` filled in when neither was given."""
        if self.rtol is None and self.atol is None:
            return dataclasses.replace(self, rtol=rtol, atol=atol)
        return self


@dataclass
class Point:
    """One validation run: a label, the sizes that define it, and its inputs."""

    label: str
    sizes: dict[str, int]
    inputs: Any


@dataclass
class Validation:
    """The artifact against eager PyTorch at one point."""

    label: str
    sizes: dict[str, int]
    ok: bool
    max_abs: float = 0.0
    max_rel: float = 0.0
    message: str = ""
    leaves: list[dict[str, Any]] = field(default_factory=list)
    #: eager outputs at this point with no signal (all ~0), so matching them proves little
    no_signal: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ExportReport:
    """One exported artifact and the proof that it matches eager PyTorch."""

    format: str
    path: Path | None
    files: list[Path] = field(default_factory=list)
    checksum_file: Path | None = None
    export_s: float = 0.0
    validations: list[Validation] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    #: why the export itself failed (empty when it produced an artifact)
    error: str = ""

    @property
    def ok(self) -> bool:
        """Exported, and every validation run matched (an unvalidated export is ok only
        when validation was switched off)."""
        if self.error:
            return False
        if not self.validations:
            return self.details.get("validated") is False
        return all(v.ok for v in self.validations)

    @property
    def file_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files if f.exists())

    @property
    def max_abs_error(self) -> float:
        return max((v.max_abs for v in self.validations), default=0.0)

    def summary(self) -> str:
        """One line: what was proven, or the first mismatch."""
        bad = [v for v in self.validations if not v.ok]
        if self.error:
            return f"{self.format}: export failed: {self.error}"
        if not self.validations:
            return f"{self.format}: exported, not validated (validation switched off)"
        if bad:
            first = bad[0]
            frozen = self.details.get("unsound_trace_lines") or []
            why = (f"; the tracer warned the trace may be incorrect at {'; '.join(frozen[:3])}"
                   if frozen else "")
            return (f"{self.format}: {len(bad)}/{len(self.validations)} validation runs "
                    f"failed; {first.label} {_sizes(first.sizes)}: {first.message}{why}")
        runs = ", ".join(f"{v.label} {_sizes(v.sizes)}" for v in self.validations)
        silent = list(dict.fromkeys(p for v in self.validations for p in v.no_signal))
        warning = (f"; warning: no signal in {', '.join(silent[:3])} (eager outputs all "
                   f"within {SIGNAL_FLOOR:g} of 0), so matching them proves little"
                   if silent else "")
        notes = "".join(f" ({note})" for note in self.details.get("notes", []))
        return (f"{self.format}: matches eager PyTorch at {runs}; max abs error "
                f"{self.max_abs_error:.3g}{warning}{notes}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "ok": self.ok, "path": str(self.path or ""),
                "files": [str(f) for f in self.files],
                "checksum_file": str(self.checksum_file or ""),
                "export_s": self.export_s, "file_bytes": self.file_bytes,
                "max_abs_error": self.max_abs_error, "message": self.summary(),
                "validations": [v.to_dict() for v in self.validations],
                "error": self.error, "details": self.details}


def _sizes(sizes: Mapping[str, int]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in sizes.items()) + ")"


# --------------------------------------------------------------------------- the plan


def export_batch(subject: Subject) -> int:
    """The batch to export with: at least 2, so the exporter does not specialise the batch
    dim to the sample's size of 0 or 1."""
    return max(2, subject.batch_size)


def export_subject(subject: Subject) -> Subject:
    """The subject with inputs grown to :func:`export_batch` rows and every named dynamic
    dim of size 1 grown to 2 (the same 0/1 specialisation applies to them)."""
    grown = dataclasses.replace(subject, inputs=subject.with_batch(export_batch(subject)))
    for name in subject.spec.dims:
        if dim_size(grown, name) < 2:
            grown = dataclasses.replace(grown, inputs=grown.with_dim(name, 2))
    return grown


def dim_size(subject: Subject, name: str) -> int:
    """The sample's length of dim ``name`` (the same on every input it lives on)."""
    return subject.dim_size(name)


def largest_batch(subject: Subject, batch: int) -> tuple[int, bool]:
    """The largest batch to validate at, and whether the input spec declared it."""
    if subject.spec.max_batch is not None:
        return subject.spec.max_batch, True
    return max(8, 2 * batch), False


def validation_plan(subject: Subject, *, dynamic: bool,
                    batch_sizes: Sequence[int] | None = None) -> list[Point]:
    """Where an export is checked: the export batch, fresh inputs of its shapes (see
    :func:`fresh_points`), batch 1, an odd batch, the largest declared batch, and the ends
    of every named dynamic dim; only the export batch and the fresh inputs when the export
    is static. ``batch_sizes`` replaces the batch part of the plan."""
    base = export_subject(subject)
    batch = base.batch_size
    sizes = {"batch": batch} | {n: dim_size(base, n) for n in subject.spec.dims}
    points = [Point("export batch", dict(sizes), base.inputs),
              *fresh_points(base, sizes)]
    if not dynamic:
        return points
    if batch_sizes is not None:
        wanted = [("batch", int(b)) for b in batch_sizes]
    else:
        top, declared = largest_batch(subject, batch)
        odd = next(b for b in range(3, 2 * top + 4, 2) if b not in (batch, 1))
        wanted = [("batch 1", 1), ("odd batch", min(odd, top) if top >= 3 else odd),
                  ("max batch" if declared else "large batch (no max_batch declared)", top)]
    seen = {batch}
    for label, size in wanted:
        if size in seen and batch_sizes is None:
            continue
        seen.add(size)
        points.append(Point(label, sizes | {"batch": size}, base.with_batch(size)))
    for name, dim in subject.spec.dims.items():
        ends = [dim.min, dim.max if dim.max is not None else 2 * sizes[name]]
        for end in dict.fromkeys(ends):
            if end != sizes[name] and end > 0:
                points.append(Point(f"{name} {'min' if end == dim.min else 'max'}",
                                    sizes | {name: end}, base.with_dim(name, end)))
    return points


def fresh_points(subject: Subject, sizes: Mapping[str, int]) -> list[Point]:
    """Two points of the subject's shapes whose values are not the sample's: its rows
    scaled and shuffled, and uniform noise in [0, 1) (integers within the sample's range).

    An artifact validated only on copies of the traced sample cannot show that it baked
    in a value-dependent branch (``if x.max() > 1``); these inputs fall on the other side.
    """
    return [Point("fresh: rows scaled and shuffled", dict(sizes),
                  scaled_and_shuffled(subject.inputs, subject.spec)),
            Point("fresh: uniform noise in [0, 1)", dict(sizes),
                  uniform_noise(subject.inputs, subject.spec))]


# --------------------------------------------------------------------------- running


def restructure(actual: Any, expected: Any) -> Any:
    """``actual``'s tensors under ``expected``'s output paths, when only the containers
    differ (ONNX returns a flat tuple, TorchScript turns namedtuples into tuples, an
    exported graph returns a cache as its key/value tensors). Anything else is returned
    unchanged, so the comparison reports the structural difference."""
    got, want = flatten(actual), flatten(expected)
    if [p for p, _ in got] == [p for p, _ in want]:
        return actual
    tensors = [leaf for _, leaf in got if isinstance(leaf, torch.Tensor)]
    wanted = sum(isinstance(leaf, torch.Tensor) for _, leaf in want)
    only_none = all(leaf is None for _, leaf in want if not isinstance(leaf, torch.Tensor))
    if len(tensors) != len(got) or len(tensors) != wanted or not only_none:
        return actual
    supply = iter(tensors)
    return Flat((path, next(supply) if isinstance(leaf, torch.Tensor) else None)
                for path, leaf in want)


def validate_graph(run: Callable[[Any], Any], subject: Subject,
                   options: ExportOptions) -> list[Validation]:
    """Validate a graph artifact (onnx, pt2, torchscript) over the options' plan, with the
    graph formats' default tolerances where the options set none."""
    plan = validation_plan(subject, dynamic=options.dynamic, batch_sizes=options.batch_sizes)
    return validate(run, subject, plan, options.tolerances.or_defaults(GRAPH_RTOL, GRAPH_ATOL))


def validate(run: Callable[[Any], Any], subject: Subject, points: Sequence[Point],
             tolerances: Tolerances) -> list[Validation]:
    """Run the artifact (``run(inputs)``) and eager PyTorch at every point and compare.

    A point where eager PyTorch itself raises is a failed validation that says so: the
    reference could not be computed there, so the artifact was not compared."""
    results = []
    for point in points:
        try:
            expected = subject.run(point.inputs)
        except Exception as exc:
            results.append(Validation(point.label, point.sizes, False,
                                      message=f"the eager reference raised: "
                                              f"{type(exc).__name__}: {first_line(exc)}; "
                                              "the artifact was not compared there"))
            continue
        try:
            with torch.inference_mode():
                actual = run(point.inputs)
        except Exception as exc:
            results.append(Validation(point.label, point.sizes, False,
                                      message=f"the artifact failed to run: "
                                              f"{type(exc).__name__}: {first_line(exc)}"))
            continue
        comparison = compare_outputs(restructure(actual, expected), expected,
                                     rtol=tolerances.rtol, atol=tolerances.atol,
                                     per_output=tolerances.per_output or None)
        results.append(Validation(point.label, point.sizes, comparison.ok, comparison.max_abs,
                                  comparison.max_rel, comparison.describe(),
                                  comparison.to_dict(), silent_outputs(expected)))
    return results


# --------------------------------------------------------------------------- helpers


def first_line(exc: BaseException, limit: int = 400) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit]


def condensed(text: str, limit: int = 800) -> str:
    """Error text on one line, without ANSI colours, cut to ``limit`` characters."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    flat = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat[:limit] + (" ..." if len(flat) > limit else "")


#: What the tracer says when a Python value computed from a tensor was baked in.
UNSOUND_TRACE = "might cause the trace to be incorrect"


def unsound_trace_lines(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """``file:line `source` (warning)`` for each tracer warning that the trace may be
    incorrect, one per source line, in the order the tracer met them."""
    import linecache

    found: dict[tuple[str, int], str] = {}
    for record in caught:
        text = str(record.message)
        if UNSOUND_TRACE not in text or (record.filename, record.lineno) in found:
            continue
        source = linecache.getline(record.filename, record.lineno).strip()
        found[(record.filename, record.lineno)] = (
            f"{_shown(record.filename)}:{record.lineno}" + (f" `{source}`" if source else "")
            + f" ({condensed(text.split('.')[0], 120)})")
    return list(found.values())


def refuse_unsound_trace(caught: Sequence[warnings.WarningMessage], options: ExportOptions,
                         instead: str) -> list[str]:
    """The source lines where a tracing exporter froze a tensor-derived Python value;
    raises :class:`ExportFailed` naming them unless ``options.allow_tracer_warnings``
    (``instead``: what to use instead, for the message)."""
    unsound = unsound_trace_lines(caught)
    if unsound and not options.allow_tracer_warnings:
        more = " ..." if len(unsound) > 3 else ""
        raise ExportFailed(
            f"the trace may be incorrect: a value computed from a tensor was frozen into it "
            f"at {'; '.join(unsound[:3])}{more}; the traced graph takes the sample's path "
            f"for every input. {instead[0].upper()}{instead[1:]}, or pass "
            "allow_tracer_warnings=True if the value never changes")
    return unsound


def _shown(filename: str) -> str:
    """The file relative to the working directory when it lies below it."""
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


@contextmanager
def quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning raised inside instead of emitting it, so suites running with
    ``-W error`` survive the exporters' deprecation and tracer warnings; the caller keeps
    the records for the report."""
    import logging

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export",
                                                    "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield caught
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def warning_texts(caught: Sequence[warnings.WarningMessage], limit: int = 10) -> list[str]:
    """Distinct warnings as ``Category: message`` lines."""
    texts = dict.fromkeys(f"{w.category.__name__}: {condensed(str(w.message), 300)}"
                          for w in caught)
    return list(texts)[:limit]


def tensor_inputs(inputs: Any) -> list[tuple[InputKey, torch.Tensor]]:
    """The tensor inputs in call order; non-tensor inputs are constants to exporters."""
    return [(k, v) for k, v in named_inputs(inputs) if isinstance(v, torch.Tensor)]


def as_call(inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` for calling a model the way :func:`call_model` does."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    return tuple(inputs), {}


def model_bytes(model: Any) -> int:
    """Bytes held by parameters and buffers (shared tensors counted once)."""
    if not isinstance(model, torch.nn.Module):
        return 0
    seen: dict[int, int] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        seen[id(tensor)] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


@dataclass(frozen=True)
class ExportOptions:
    """How to export and validate; the same for the ``@tb.export`` check and tb-export.

    ``dynamic``: dynamic batch and named dims (onnx, pt2) and validation at several batch
    sizes; ``method``: ``trace`` or ``script`` (torchscript); ``exporter``: ``dynamo`` or
    ``legacy`` (onnx); ``opset``: ONNX opset (the exporter's default when ``None``);
    ``batch_sizes``: replaces the batch sizes of the validation plan; ``validate=False``
    exports without proof (tb-export without ``--validate``); ``allow_tracer_warnings``:
    accept a trace the tracer says may be incorrect (torchscript, method ``trace``).
    """

    dynamic: bool = True
    method: str = "trace"
    exporter: str = "dynamo"
    opset: int | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    batch_sizes: tuple[int, ...] | None = None
    validate: bool = True
    allow_tracer_warnings: bool = False
