"""Optimization levels with proof: parity against the original model and measured speed-up.

Every level is compared with the original model (eager PyTorch, ``torch.no_grad``) at the
sample batch and at batch 1, and timed against it on the same inputs. ``production`` runs
the candidate levels and keeps the fastest one that passes parity; when none beats eager
on this hardware it keeps the model as given (in eval mode), so it is never slower.

Example::

    report = optimize(Subject(model, x), "production")
    print(report.summary())
    if report.ok:
        save_artifact(report.chosen, Subject(model, x), Path("optimized.pt2"))
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchbridge.core.compare import compare_outputs
from torchbridge.core.subject import Subject, call_model
from torchbridge.core.trees import flatten
from torchbridge.errors import CheckSkipped, ConfigError
from torchbridge.export.checksums import write_checksum
from torchbridge.export.common import (
    GRAPH_ATOL,
    GRAPH_RTOL,
    ExportFailed,
    Point,
    Tolerances,
    Validation,
    export_subject,
    quiet,
    validate,
)
from torchbridge.export.program import capture
from torchbridge.export.torchscript import save_torchscript, to_torchscript
from torchbridge.measure.timing import measure
from torchbridge.measure.timing import threads as thread_count
from torchbridge.optimize import levels as lv

LEVEL_CHOICES = ("inference", "compile", "quantized", "production")
#: int8 outputs may be off by a few percent of the output's range; anything more is a bug.
QUANTIZED_RANGE_FRACTION = 0.05


@dataclass
class LevelResult:
    """One level: passed / failed (parity) / skipped (cannot run here), with numbers."""

    level: str
    status: str
    message: str = ""
    notes: list[str] = field(default_factory=list)
    tolerance: str = ""
    parity: list[Validation] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    eager_ms: float | None = None
    level_ms: float | None = None
    transformed: lv.Transformed | None = field(default=None, repr=False)
    #: The interleaved comparison with eager that confirmed (or not) a ``production`` pick.
    paired: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def speedup(self) -> float | None:
        if not self.eager_ms or not self.level_ms:
            return None
        return self.eager_ms / self.level_ms

    @property
    def max_abs_error(self) -> float:
        return max((v.max_abs for v in self.parity), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "status": self.status, "message": self.message,
                "notes": self.notes, "tolerance": self.tolerance,
                "max_abs_error": self.max_abs_error, "accuracy": self.accuracy,
                "eager_ms": self.eager_ms, "level_ms": self.level_ms, "speedup": self.speedup,
                "parity": [v.to_dict() for v in self.parity], "paired": self.paired}


@dataclass
class OptimizeReport:
    """All levels run for a request and the one chosen (``production`` picks one)."""

    requested: str
    results: list[LevelResult]
    chosen: LevelResult | None
    eager_ms: float

    @property
    def ok(self) -> bool:
        return self.chosen is not None and self.chosen.passed

    def summary(self) -> str:
        if self.chosen is None:
            return f"{self.requested}: no level could run here"
        c = self.chosen
        speed = f"{c.speedup:.2f}x eager ({c.level_ms:.3f} ms vs {c.eager_ms:.3f} ms)" \
            if c.speedup else "not timed"
        pick = f" chose {c.level}:" if self.requested == "production" else ""
        return f"{self.requested}:{pick} {c.status}; {speed}; {c.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "ok": self.ok, "eager_ms": self.eager_ms,
                "chosen": self.chosen.level if self.chosen else None,
                "summary": self.summary(), "levels": [r.to_dict() for r in self.results]}


# --------------------------------------------------------------------------- timing


def median_ms(fns: dict[str, Callable[[], Any]], device: str, seconds: float,
              rounds: int = 5, threads: int | None = None) -> dict[str, float]:
    """Median per-call latency (ms) of each function, timed by the measurement engine in
    interleaved rounds, so load that comes and goes on a shared machine hits every
    function alike instead of whichever happened to run at the time."""
    samples: dict[str, list[int]] = {name: [] for name in fns}
    with thread_count(threads):
        for _ in range(rounds):
            for name, fn in fns.items():
                samples[name] += measure(fn, device, max_time=seconds / rounds,
                                         min_samples=3).samples_ns
    return {name: statistics.median(values) / 1e6 for name, values in samples.items()}


def eager_call(model: Any) -> Callable[[Any], Any]:
    """The baseline: the model as given, called under ``torch.no_grad``."""
    def run(inputs: Any) -> Any:
        with torch.no_grad():
            return call_model(model, inputs)

    return run


# --------------------------------------------------------------------------- parity


def parity_points(subject: Subject) -> list[Point]:
    points = [Point("sample batch", {"batch": subject.batch_size}, subject.inputs)]
    if subject.batch_size != 1:
        points.append(Point("batch 1", {"batch": 1}, subject.with_batch(1)))
    return points


def quantized_tolerances(expected: Any) -> Tolerances:
    """Per output: absolute error up to 5 % of the output's largest magnitude."""
    table = {}
    for path, leaf in flatten(expected):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.numel():
            table[path] = (0.0, QUANTIZED_RANGE_FRACTION * float(leaf.abs().max()))
    return Tolerances(per_output=table)


def top1_agreement(actual: Any, expected: Any) -> dict[str, float]:
    """For logits-like outputs (last dim >= 2), the share of rows with the same argmax."""
    out = {}
    for (path, a), (_, e) in zip(flatten(actual), flatten(expected), strict=False):
        if path.endswith((".keys", ".values")):
            continue  # a KV cache's last dim is a head dim, not classes
        if isinstance(e, torch.Tensor) and isinstance(a, torch.Tensor) and \
                e.is_floating_point() and e.dim() >= 2 and e.shape[-1] >= 2 and \
                a.shape == e.shape:
            same = (a.argmax(-1) == e.argmax(-1)).float().mean()
            out[f"top1_agreement[{path}]"] = float(same)
    return out


def _check_parity(result: LevelResult, subject: Subject, tolerances: Tolerances) -> None:
    t = result.transformed
    assert t is not None
    try:
        first = t.call(subject.inputs)
    except Exception as exc:
        result.status = "failed"
        result.message = f"the {result.level} model fails to run: {type(exc).__name__}: " \
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        result.transformed = None
        return
    if result.level == "quantized" and tolerances.rtol is None and tolerances.atol is None \
            and not tolerances.per_output:
        tolerances = quantized_tolerances(subject.run())
        result.tolerance = f"abs error <= {QUANTIZED_RANGE_FRACTION:.0%} of each output's " \
                           "largest magnitude (int8 by design)"
        result.accuracy = top1_agreement(first, subject.run())
    else:
        tolerances = tolerances.or_defaults(GRAPH_RTOL, GRAPH_ATOL)
        result.tolerance = f"rtol={tolerances.rtol:g}, atol={tolerances.atol:g}"
    result.parity = validate(t.call, subject, parity_points(subject), tolerances)
    bad = [v for v in result.parity if not v.ok]
    if bad:
        result.status = "failed"
        result.message = f"parity failed at {bad[0].label}: {bad[0].message}"
    else:
        result.status = "passed"
        result.message = f"matches the original (max abs error " \
                         f"{max(v.max_abs for v in result.parity):.3g}; {result.tolerance})"


# --------------------------------------------------------------------------- levels


def transform(level: str, subject: Subject) -> lv.Transformed:
    model, inputs = subject.placed()
    if level == "inference":
        return lv.inference(model)
    if level == "compile":
        return lv.compiled(model, subject.device, inputs)
    if level == "quantized":
        return lv.quantized(model, subject.device)
    raise ConfigError(f"unknown optimization level {level!r}; use one of "
                      f"{', '.join(LEVEL_CHOICES)}")


def run_level(level: str, subject: Subject, tolerances: Tolerances) -> LevelResult:
    """Transform one level and check its parity with the original (timing comes later)."""
    result = LevelResult(level, "skipped")
    try:
        result.transformed = transform(level, subject)
    except CheckSkipped as exc:
        result.message = str(exc)
        return result
    result.notes = list(result.transformed.notes)
    _check_parity(result, subject, tolerances)
    return result


def optimize(subject: Subject, level: str, *, seconds: float = 0.5,
             tolerances: Tolerances | None = None,
             candidates: Sequence[str] = ("inference", "compile"),
             threads: int | None = None,
             choose_from: Sequence[str] | None = None) -> OptimizeReport:
    """Run ``level`` (or, for ``production``, every level in ``candidates``) on the subject.

    ``seconds`` is the timing budget per measurement; ``threads`` the intra-op threads
    to time with (``None``: as configured; 1 gives steadier numbers on shared machines).
    Quantization is a ``production`` candidate only when ``candidates`` names it, since
    it changes numerics by design; ``choose_from`` narrows which of the levels run
    ``production`` may pick (all of ``candidates`` by default).
    """
    if level not in LEVEL_CHOICES:
        raise ConfigError(f"unknown optimization level {level!r}; use one of "
                          f"{', '.join(LEVEL_CHOICES)}")
    unknown = sorted(set(candidates) - set(lv.LEVELS))
    if unknown:
        raise ConfigError(f"unknown candidate level(s) {unknown}; use {', '.join(lv.LEVELS)}")
    tolerances = tolerances or Tolerances()
    model, inputs = subject.placed()
    wanted = list(candidates) if level == "production" else [level]
    results = [run_level(name, subject, tolerances) for name in wanted]
    eager_ms = time_levels(results, eager_call(model), inputs, subject.device, seconds,
                           threads)
    eligible = [r for r in results if choose_from is None or r.level in choose_from]
    chosen = _choose(eligible, subject, eager_ms, seconds, threads) \
        if level == "production" else results[0]
    return OptimizeReport(level, results, chosen, eager_ms)


def time_levels(results: Sequence[LevelResult], baseline: Callable[[Any], Any], inputs: Any,
                device: str, seconds: float, threads: int | None = None) -> float:
    """Time eager and every level that ran, interleaved; fills ``eager_ms``/``level_ms``."""
    def bind(call: Callable[[Any], Any]) -> Callable[[], Any]:
        return lambda: call(inputs)

    fns = {"eager": bind(baseline)}
    fns |= {r.level: bind(r.transformed.call) for r in results if r.transformed is not None}
    timed = median_ms(fns, device, seconds * len(fns), threads=threads)
    for r in results:
        r.eager_ms = timed["eager"]
        r.level_ms = timed.get(r.level)
    return timed["eager"]


#: ``production`` takes a level only when it measured at least this much faster than eager:
#: timings of one model repeat to within a few percent on a shared machine, and a level
#: that wins by less than that could be slower on the next run.
MIN_SPEEDUP = 1.10


def confirm_faster(result: LevelResult, subject: Subject, seconds: float,
                   threads: int | None) -> bool:
    """Whether ``result``'s level is faster than eager by :data:`MIN_SPEEDUP` in an
    interleaved A/B comparison (:mod:`torchbridge.measure.ab`): median paired time ratio
    at most ``1 / MIN_SPEEDUP`` with its upper bound below 1. Recorded in ``paired``."""
    from torchbridge.measure.ab import LocalSide, compare

    assert result.transformed is not None
    model, inputs = subject.placed()
    level_call, eager = result.transformed.call, eager_call(model)
    with thread_count(threads):
        paired = compare(LocalSide(lambda: level_call(inputs), subject.device),
                         LocalSide(lambda: eager(inputs), subject.device),
                         seconds=seconds, label="eager", threshold=MIN_SPEEDUP - 1)
    result.paired = {k: v for k, v in paired.to_dict().items() if k != "ratios"}
    result.notes.append(f"{paired.describe('time per call')}: {paired.verdict}")
    return paired.improvement


def _choose(results: list[LevelResult], subject: Subject, eager_ms: float,
            seconds: float = 0.5, threads: int | None = None) -> LevelResult:
    passing = [r for r in results if r.passed and r.speedup is not None]
    best = max(passing, key=lambda r: r.speedup or 0.0, default=None)
    if best is not None and (best.speedup or 0.0) >= MIN_SPEEDUP and \
            confirm_faster(best, subject, seconds, threads):
        return best
    model, _ = subject.placed()
    keep = copy.deepcopy(model).eval() if isinstance(model, torch.nn.Module) else model
    why = "no level passed parity" if best is None else \
        f"the fastest passing level ({best.level}, {best.speedup:.2f}x) is not clearly " \
        f"faster (needs {MIN_SPEEDUP:.2f}x" + \
        (f"; interleaved: {best.notes[-1]})" if best.paired else ")")
    return LevelResult("eager", "passed", f"{why}; keeping the model as given (eval mode)",
                       notes=["no transformation"], eager_ms=eager_ms, level_ms=eager_ms,
                       transformed=lv.Transformed("eager", keep, eager_call(keep)))


# --------------------------------------------------------------------------- artifacts


@dataclass
class SavedArtifact:
    path: Path
    kind: str
    checksum_file: Path
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) for k, v in dataclasses.asdict(self).items()}


def save_artifact(result: LevelResult, subject: Subject, path: Path, *,
                  force: bool = False) -> SavedArtifact:
    """Write the level's module to ``path`` as a ``torch.export`` archive (TorchScript when
    torch.export cannot capture it, e.g. int8 modules), load it back and check it at the
    sample batch. The file is ``path`` whatever its suffix (loaders tell the kinds apart by
    content), except that TorchScript is not written under a ``.pt2`` name: ``m.pt2``
    becomes ``m.ts.pt``.

    Refuses (:class:`ConfigError`) a level that failed parity unless ``force``.
    """
    if result.transformed is None or (not result.passed and not force):
        raise ConfigError(f"not writing {path}: level {result.level} {result.status} "
                          f"({result.message}); pass --force to write it anyway")
    module = result.transformed.module
    path.parent.mkdir(parents=True, exist_ok=True)
    base = dataclasses.replace(export_subject(subject), model=module)
    try:
        if isinstance(module, torch.jit.ScriptModule):  # TorchScript in, TorchScript out
            raise ExportFailed("it is a TorchScript module")
        program = capture(module, base, dynamic=True)
        with quiet():
            torch.export.save(program, str(path))
        kind, note = "pt2", ""
    except ExportFailed as exc:
        if path.suffix == ".pt2":
            path = path.with_name(path.name.removesuffix(".pt2") + ".ts.pt")
        with quiet():
            save_torchscript(to_torchscript(module, base, "trace"), path, base.inputs)
        kind, note = "torchscript", f"torch.export could not capture the {result.level} " \
                                    f"model ({exc}); wrote TorchScript instead"
    _verify_saved(path, kind, subject, result)
    return SavedArtifact(path, kind, write_checksum(path, [path]), note)


def _verify_saved(path: Path, kind: str, subject: Subject, result: LevelResult) -> None:
    with quiet():
        loaded = torch.export.load(str(path)).module() if kind == "pt2" else \
            torch.jit.load(str(path), map_location=subject.device)
        with torch.inference_mode():
            got = call_model(loaded, subject.placed()[1])
    assert result.transformed is not None
    want = result.transformed.call(subject.placed()[1])
    comparison = compare_outputs(got, want, rtol=GRAPH_RTOL, atol=GRAPH_ATOL)
    if not comparison.ok:
        raise ConfigError(f"the saved {kind} artifact does not reproduce the {result.level} "
                          f"model: {comparison.describe()}")
