"""``edge_cases``: empty batch, batch of one, the largest batch, min/max of dynamic dims,
and batch invariance (row i of a batched output equals the output for row i alone)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from torchbridge.checks import _tolerances
from torchbridge.checks.base import Check, CheckConfig, RunContext
from torchbridge.checks.options import count, flag, option, optional
from torchbridge.checks.registry import register
from torchbridge.core.compare import OutputComparison, compare_outputs, nonfinite_outputs
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.signal import no_signal_note
from torchbridge.core.subject import Inputs, Subject, named_inputs
from torchbridge.core.trees import Flat, map_tensors, tensor_leaves
from torchbridge.core.variants import distinct_rows
from torchbridge.errors import ConfigError

EMPTY_BATCH_MODES = ("must_work", "rejects")


def _sizes(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, tuple | list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ConfigError(f"{name} must be whole numbers >= 0, got {value!r}")
    return tuple(value)


def _dims(value: object, what: str) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} maps dim names to sizes, e.g. {{'seq': (1, 512)}}, "
                          f"got {value!r}")
    return {str(k): _sizes(v, f"{what}[{k!r}]") for k, v in value.items()}


def _empty_batch(value: object, what: str) -> str:
    if value not in EMPTY_BATCH_MODES:
        raise ConfigError(f"{what} must be one of {', '.join(EMPTY_BATCH_MODES)}, "
                          f"got {value!r}")
    return str(value)


@dataclass(frozen=True)
class EdgeCasesConfig(CheckConfig):
    """``batch_sizes``: batches to run (default: 0, 1 and the spec's ``max_batch`` or twice
    the sample's batch). ``dims``: sizes per named dynamic dim, ``{"seq": (1, 512)}``
    (default: each declared dim's min and max). ``batch_invariance`` with
    ``invariance_rtol``/``invariance_atol``. ``empty_batch``: ``"must_work"`` or
    ``"rejects"`` (the model refuses empty input by design: an exception is expected)."""

    batch_sizes: tuple[int, ...] | None = option(None, optional(_sizes))
    dims: Mapping[str, tuple[int, ...]] | None = option(None, optional(_dims))
    batch_invariance: bool = option(True, flag)
    invariance_rtol: float | None = option(None, _tolerances.tolerance_option)
    invariance_atol: float | None = option(None, _tolerances.tolerance_option)
    invariance_rows: int = option(8, count)
    empty_batch: str = option("must_work", _empty_batch)


@dataclass
class Case:
    """One edge case that ran: what it was, whether it held, and why not."""

    name: str
    ok: bool
    problem: str = ""
    #: input name → shape fed, for the dynamic-dim cases (shows every shared input resized)
    shapes: dict[str, list[int]] | None = None
    #: how a case that held was compared, when not the plain way (pairwise outputs)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        found = {"case": self.name, "ok": self.ok, "problem": self.problem}
        found |= {"note": self.note} if self.note else {}
        return found | ({"input_shapes": self.shapes} if self.shapes is not None else {})


def _rows_identical(subject: Subject) -> bool:
    """Whether every row of every batched tensor input equals its row 0."""
    found = False
    for key, value in named_inputs(subject.inputs):
        axis = subject.spec.batch_axis(key)
        if not isinstance(value, torch.Tensor) or axis is None or value.shape[axis] < 2:
            continue
        found = True
        if not bool((value == value.narrow(axis, 0, 1)).all()):
            return False
    return found


def _shapes(inputs: Inputs) -> dict[str, list[int]]:
    return {str(key): list(value.shape) for key, value in named_inputs(inputs)
            if isinstance(value, torch.Tensor)}


def _batch_leaves(output: Any, batch: int) -> list[str]:
    """Output paths whose leading dim is the batch (equals the sample's batch size)."""
    return [path for path, leaf in tensor_leaves(output) if leaf.dim() and leaf.shape[0] == batch]


def _leading_dims(output: Any) -> dict[str, int]:
    return {path: int(leaf.shape[0]) for path, leaf in tensor_leaves(output) if leaf.dim()}


def pairwise_axes(single: Any, batched: Any, batch: int) -> dict[str, list[int]]:
    """Output path → the further axes (after the batch axis) on which the batched output
    has the batch size and the output for one row has 1: in-batch pairwise outputs such as
    CLIP's ``logits_per_image`` (B, B), whose row i is paired with every row of its batch
    by design. Empty for ``batch`` < 2."""
    if batch < 2:
        return {}
    alone = dict(tensor_leaves(single))
    found: dict[str, list[int]] = {}
    for path, leaf in tensor_leaves(batched):
        one = alone.get(path)
        if one is None or one.dim() != leaf.dim() or leaf.dim() < 2 or leaf.shape[0] != batch:
            continue
        axes = [a for a in range(1, leaf.dim()) if leaf.shape[a] == batch and one.shape[a] == 1]
        if axes:
            found[path] = axes
    return found


def _row_of(output: Any, index: int, batch: int,
            pairwise: dict[str, list[int]] | None = None) -> Flat:
    """Row ``index`` of every batch-leading leaf, caches' key/value tensors included; on a
    ``pairwise`` leaf's further axes, the row's own entry (``[i, i]`` of a (B, B) output)."""
    def pick(path: str, leaf: torch.Tensor) -> torch.Tensor:
        if not leaf.dim() or leaf.shape[0] != batch:
            return leaf
        leaf = leaf.narrow(0, index, 1)
        for axis in (pairwise or {}).get(path, []):
            leaf = leaf.narrow(axis, index, 1)
        return leaf

    return map_tensors(output, pick)


def _pairwise_note(pairwise: dict[str, list[int]]) -> str:
    """Why a pairwise output was compared on its diagonal only (shown with the pass)."""
    if not pairwise:
        return ""
    listed = ", ".join(f"{path} (axis {', '.join(map(str, axes))})"
                       for path, axes in pairwise.items())
    return (f"{listed} pair each row with every row of its batch (the batch size on a "
            "further axis), so row i is compared on its own entry [i, i]")


#: config attributes where transformers models keep their longest sequence
_LENGTH_LIMITS = ("max_position_embeddings", "n_positions", "max_source_positions",
                  "max_target_positions")


def _length_limit_hint(model: Any, size: int) -> str:
    """``; the model's config.max_position_embeddings is 32 ...`` when a failing dim case
    is longer than a length limit the model's config declares ("" otherwise)."""
    config = getattr(model, "config", None)
    for attr in _LENGTH_LIMITS:
        limit = getattr(config, attr, None)
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < size:
            return (f"; the model's config.{attr} is {limit}, shorter than {size}: declare "
                    f"the dim's max as at most {limit}")
    return ""


class _Runner:
    """Runs one edge case, turning an exception or a non-finite output into a problem."""

    def __init__(self, subject: Subject, model: Any) -> None:
        self.subject = subject
        self.model = model

    def __call__(self, inputs: Inputs) -> tuple[Any, str]:
        try:
            output = self.subject.run(inputs, model=self.model)
        except Exception as exc:  # the model's failure is the finding, not a crash
            return None, f"raised {type(exc).__name__}: {exc}"
        bad = nonfinite_outputs(output)
        return output, f"non-finite outputs: {'; '.join(bad)}" if bad else ""


@register
class EdgeCasesCheck(Check[EdgeCasesConfig]):
    name = "edge_cases"
    summary = "Empty batch, batch of one, the largest batch, dynamic-dim extremes, " \
              "batch invariance."

    def run(self, subject: Subject, config: EdgeCasesConfig, context: RunContext) -> CheckResult:
        model, _ = subject.placed()
        runner = _Runner(subject, model)
        base, problem = runner(subject.inputs)
        if problem:
            return CheckResult(self.name, Status.FAILED, f"the sample input itself {problem}",
                               subject.device)
        batch = subject.batch_size
        cases = [self._batch_case(runner, subject, size, base, batch, config)
                 for size in self._batch_sizes(subject, config)]
        dims, unknown = self._dims(subject, config)
        if unknown:
            known = ", ".join(subject.spec.dims) or "none (declare them in the input_spec fixture)"
            cases.append(Case(f"dims {unknown}", False,
                              f"unknown dynamic dim(s) {unknown}; the input spec declares: "
                              f"{known}"))
        for name, size in dims:
            resized = subject.with_dim(name, size)
            _, problem = runner(resized)
            problem += subject.sharing_hint(name) + _length_limit_hint(subject.model, size) \
                if problem else ""
            cases.append(Case(f"{name}={size}", not problem, problem, _shapes(resized)))
        invariance = self._invariance(runner, subject, base, batch, config) \
            if config.batch_invariance else None
        return self._result(subject, cases, invariance, base)

    @staticmethod
    def _batch_sizes(subject: Subject, config: EdgeCasesConfig) -> tuple[int, ...]:
        if config.batch_sizes is not None:
            return config.batch_sizes
        largest = subject.spec.max_batch or 2 * subject.batch_size
        return tuple(dict.fromkeys((0, 1, largest)))

    @staticmethod
    def _dims(subject: Subject, config: EdgeCasesConfig) -> tuple[list[tuple[str, int]],
                                                                  list[str]]:
        if config.dims is None:
            wanted = {name: tuple(s for s in (dim.min, dim.max) if s is not None)
                      for name, dim in subject.spec.dims.items()}
        else:
            wanted = dict(config.dims)
        unknown = [name for name in wanted if name not in subject.spec.dims]
        runs = [(name, size) for name, sizes in wanted.items() if name not in unknown
                for size in dict.fromkeys(sizes)]
        return runs, unknown

    @staticmethod
    def _batch_case(runner: _Runner, subject: Subject, size: int, base: Any, batch: int,
                    config: EdgeCasesConfig) -> Case:
        name = f"batch={size}"
        output, problem = runner(subject.with_batch(size))
        if size == 0 and config.empty_batch == "rejects":
            if output is None and problem.startswith("raised"):
                return Case(name, True, f"rejected as declared: {problem}")
            return Case(name, False, "empty_batch='rejects' but the model accepted an empty "
                                     "batch; drop empty_batch= or make the model refuse it")
        if problem:
            hint = " (if the model rejects empty input by design, use empty_batch='rejects')" \
                if size == 0 else ""
            return Case(name, False, problem + hint)
        expected = _batch_leaves(base, batch)
        got = _leading_dims(output)
        wrong = [f"{path} has {got.get(path)} rows" for path in expected
                 if got.get(path) != size]
        if wrong:
            return Case(name, False, f"outputs do not follow the batch size {size}: "
                                     f"{', '.join(wrong)}")
        return Case(name, True)

    @staticmethod
    def _invariance(runner: _Runner, subject: Subject, base: Any, batch: int,
                    config: EdgeCasesConfig) -> tuple[Case, OutputComparison | None]:
        rows_of = subject.row
        if batch < 2 or _rows_identical(subject):
            # One sample row, or rows that are all the same: a row that leaks into its
            # batch mates (BatchNorm in training mode, x - x.mean(0)) looks invariant in a
            # batch of identical rows, so the rows compared are made distinct.
            size = max(2, batch)
            varied = dataclasses.replace(
                subject, inputs=distinct_rows(subject.row(0), subject.spec, size))
            base, problem = runner(varied.inputs)
            if problem:
                return Case("batch invariance", False,
                            f"a batch of {size} distinct rows {problem}"), None
            batch, rows_of = size, varied.row
        overrides = _tolerances.effective_per_output(
            base, subject.device, config.invariance_rtol, config.invariance_atol, {},
            loosen=True)
        worst = OutputComparison()
        pairwise: dict[str, list[int]] | None = None
        for index in range(min(batch, config.invariance_rows)):
            single, problem = runner(rows_of(index))
            if problem:
                return Case("batch invariance", False, f"row {index} alone {problem}"), None
            if pairwise is None:
                pairwise = pairwise_axes(single, base, batch)
            comparison = compare_outputs(single, _row_of(base, index, batch, pairwise),
                                         rtol=config.invariance_rtol,
                                         atol=config.invariance_atol, per_output=overrides)
            if not comparison.ok:
                return Case("batch invariance", False,
                            f"row {index} alone differs from row {index} of the batch of "
                            f"{batch}: {comparison.describe()}"), comparison
            if comparison.max_abs >= worst.max_abs:
                worst = comparison
        return Case("batch invariance", True, note=_pairwise_note(pairwise or {})), worst

    def _result(self, subject: Subject, cases: list[Case],
                invariance: tuple[Case, OutputComparison | None] | None, base: Any) -> CheckResult:
        result = self.result_for(subject)
        if invariance is not None:
            cases.append(invariance[0])
            if invariance[1] is not None:
                result.details["comparison"] = invariance[1].to_dict()
                result.metric("max_invariance_error", invariance[1].max_abs)
        failed = [case for case in cases if not case.ok]
        result.metric("cases", len(cases))
        result.metric("failed_cases", len(failed))
        result.details["cases"] = [case.to_dict() for case in cases]
        if subject.notes:
            result.details["notes"] = list(subject.notes)
        if failed:
            result.status = Status.FAILED
            result.message = "; ".join(f"{case.name}: {case.problem}" for case in failed)
        else:
            result.message = f"{len(cases)} edge cases held: " + \
                ", ".join(case.name for case in cases)
            if invariance is not None:  # invariance of an output without signal proves little
                result.message += no_signal_note(base)
                if invariance[0].note:
                    result.message += f"; note: {invariance[0].note}"
        if subject.notes and any(case.shapes is not None for case in cases):
            result.message += " (" + "; ".join(subject.notes) + ")"
        return result
