"""Leaf-by-leaf comparison of model outputs of any pytree shape.

Outputs are flattened by :func:`torchbridge.core.trees.flatten` (tensors, containers,
dataclasses, pytree nodes such as HF ``ModelOutput``, HF caches). Each tensor leaf gets max
absolute / relative error, error statistics, and the smallest tolerance that would have
passed (Polygraphy's "minimum required tolerance"), so a failure says both how far off it
is and what setting would accept it. A leaf that cannot be flattened fails with a hint; it
is never compared by identity.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from torchbridge.core.trees import Opaque, flatten, opaque_reason

# (rtol, atol) per dtype, as torch.testing.assert_close has them; other dtypes are exact.
DEFAULT_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
    torch.complex64: (1.3e-6, 1e-5),
    torch.complex128: (1e-7, 1e-7),
}


def default_tolerance(dtype: torch.dtype) -> tuple[float, float]:
    return DEFAULT_TOLERANCES.get(dtype, (0.0, 0.0))


@dataclass
class LeafComparison:
    """How one output leaf compares with its expectation."""

    path: str
    ok: bool
    reason: str = ""
    shape: tuple[int, ...] = ()
    dtype: str = ""
    rtol: float = 0.0
    atol: float = 0.0
    max_abs: float = 0.0
    max_rel: float = 0.0
    mean_abs: float = 0.0
    p99_abs: float = 0.0
    mismatched: int = 0
    total: int = 0
    #: smallest atol that passes with the given rtol, and smallest rtol that passes with atol
    min_atol: float = 0.0
    min_rtol: float = 0.0

    def describe(self) -> str:
        if self.reason:
            return f"{self.path}: {self.reason}"
        rtol_hint = f" or rtol>={self.min_rtol:.3g}" if math.isfinite(self.min_rtol) else ""
        return (f"{self.path}: {self.mismatched}/{self.total} elements differ; max abs "
                f"{self.max_abs:.3g}, max rel {self.max_rel:.3g} (rtol={self.rtol:g}, "
                f"atol={self.atol:g}); would pass with atol>={self.min_atol:.3g}{rtol_hint}")


@dataclass
class OutputComparison:
    """Two output trees compared leaf by leaf (model outputs, not measurements); ``ok`` when
    every leaf matched."""

    leaves: list[LeafComparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(leaf.ok for leaf in self.leaves)

    @property
    def first_mismatch(self) -> LeafComparison | None:
        return next((leaf for leaf in self.leaves if not leaf.ok), None)

    @property
    def max_abs(self) -> float:
        return max((leaf.max_abs for leaf in self.leaves), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((leaf.max_rel for leaf in self.leaves), default=0.0)

    def describe(self, limit: int = 3) -> str:
        bad = [leaf.describe() for leaf in self.leaves if not leaf.ok]
        more = f" (+{len(bad) - limit} more outputs)" if len(bad) > limit else ""
        return "; ".join(bad[:limit]) + more

    def to_dict(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(leaf) for leaf in self.leaves]


Tolerance = tuple[float, float]


def _tolerance_for(path: str, dtype: torch.dtype, rtol: float | None, atol: float | None,
                   per_output: Mapping[str, Tolerance] | None) -> Tolerance:
    if per_output:
        for key, tol in per_output.items():
            if path == key or path.endswith(key):
                return tol
    base_rtol, base_atol = default_tolerance(dtype)
    return (base_rtol if rtol is None else rtol, base_atol if atol is None else atol)


def _ratio(diff: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """diff / scale, with 0/0 = 0 and x/0 = inf (not a huge finite number)."""
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    ratio = diff / safe
    return torch.where(scale == 0, torch.where(diff == 0, 0.0, math.inf), ratio)


def _compare_tensors(path: str, actual: torch.Tensor, expected: torch.Tensor,
                     tol: Tolerance, bitwise: bool) -> LeafComparison:
    rtol, atol = (0.0, 0.0) if bitwise else tol
    leaf = LeafComparison(path, True, shape=tuple(expected.shape), dtype=str(expected.dtype),
                          rtol=rtol, atol=atol, total=expected.numel())
    if actual.shape != expected.shape:
        leaf.ok, leaf.reason = False, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
        return leaf
    if actual.dtype != expected.dtype:
        leaf.ok, leaf.reason = False, f"dtype {actual.dtype} != {expected.dtype}"
        return leaf
    a = actual.detach().cpu()
    e = expected.detach().cpu()
    if bitwise or not (e.is_floating_point() or e.is_complex()):
        differ = ~((a == e) | (a.isnan() & e.isnan())) if e.is_floating_point() else a != e
        leaf.mismatched = int(differ.sum())
        leaf.ok = leaf.mismatched == 0
        if e.is_floating_point() and e.numel():
            diff = (a.double() - e.double()).abs().nan_to_num(0.0)
            leaf.max_abs = float(diff.max())
        leaf.min_atol = leaf.max_abs
        return leaf
    a64, e64 = a.to(torch.complex128 if e.is_complex() else torch.float64), \
        e.to(torch.complex128 if e.is_complex() else torch.float64)
    same_nonfinite = (a64 == e64) | (a64.isnan() & e64.isnan())
    diff = torch.where(same_nonfinite, torch.zeros_like(a64.real if e.is_complex() else a64),
                       (a64 - e64).abs())
    scale = e64.abs()
    bad = (diff > atol + rtol * scale) | diff.isnan()
    leaf.mismatched = int(bad.sum())
    leaf.ok = leaf.mismatched == 0
    if diff.numel():
        finite = diff.nan_to_num(math.inf)
        leaf.max_abs = float(finite.max())
        leaf.mean_abs = float(finite.mean())
        leaf.p99_abs = float(torch.quantile(finite.flatten().float(), 0.99)) \
            if finite.numel() <= 16_000_000 else leaf.max_abs
        leaf.max_rel = float(_ratio(finite, scale).max())
        leaf.min_atol = float((finite - rtol * scale).clamp_min(0).max())
        # Where the expectation is 0 only atol can absorb a difference: no rtol would pass.
        leaf.min_rtol = float(_ratio((finite - atol).clamp_min(0), scale).max())
    return leaf


def compare_outputs(actual: Any, expected: Any, *, rtol: float | None = None,
                    atol: float | None = None, bitwise: bool = False,
                    per_output: Mapping[str, Tolerance] | None = None) -> OutputComparison:
    """Compare two outputs leaf by leaf.

    ``rtol``/``atol`` override the per-dtype defaults; ``per_output`` maps an output path
    (or its suffix, e.g. ``"logits"``) to its own ``(rtol, atol)``; ``bitwise`` demands
    exact equality.

    >>> compare_outputs(torch.ones(2), torch.ones(2)).ok
    True
    """
    got, want = flatten(actual), flatten(expected)
    result = OutputComparison()
    if [p for p, _ in got] != [p for p, _ in want]:
        result.leaves.append(LeafComparison(
            "output", False, reason=structure_difference([p for p, _ in got],
                                                         [p for p, _ in want])))
        return result
    for (path, a), (_, e) in zip(got, want, strict=True):
        if isinstance(e, torch.Tensor) and isinstance(a, torch.Tensor):
            tol = _tolerance_for(path, e.dtype, rtol, atol, per_output)
            result.leaves.append(_compare_tensors(path, a, e, tol, bitwise))
        elif isinstance(e, torch.Tensor) or isinstance(a, torch.Tensor):
            result.leaves.append(LeafComparison(
                path, False, reason=f"type {type(a).__name__} != {type(e).__name__}"))
        else:
            result.leaves.append(_compare_values(path, a, e))
    return result


def _compare_values(path: str, actual: Any, expected: Any) -> LeafComparison:
    """Plain leaves by value; an :class:`Opaque` leaf fails with how to make it comparable."""
    opaque = next((v for v in (expected, actual) if isinstance(v, Opaque)), None)
    if opaque is not None:
        return LeafComparison(path, False, reason=opaque_reason(opaque))
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        same = np.array_equal(np.asarray(actual), np.asarray(expected), equal_nan=True)
    else:
        same = bool(actual == expected) or (actual != actual and expected != expected)
    return LeafComparison(path, same, reason="" if same else f"value {actual!r} != {expected!r}")


def structure_difference(got: list[str], want: list[str], limit: int = 6) -> str:
    """Which output paths one side has and the other lacks (or that only the order differs)."""
    missing = [p for p in want if p not in set(got)]
    extra = [p for p in got if p not in set(want)]

    def cut(paths: list[str]) -> str:
        more = f" (+{len(paths) - limit} more)" if len(paths) > limit else ""
        return ", ".join(paths[:limit]) + more

    parts = ([f"missing {cut(missing)}"] if missing else []) + \
        ([f"unexpected {cut(extra)}"] if extra else [])
    return "structure differs: " + ("; ".join(parts) or f"same outputs in another order "
                                                       f"(got {cut(got)})")


def nonfinite_outputs(output: Any) -> list[str]:
    """Paths of output leaves holding NaN or Inf, with counts."""
    found = []
    for path, leaf in flatten(output):
        if isinstance(leaf, torch.Tensor) and (leaf.is_floating_point() or leaf.is_complex()):
            nan = int(leaf.isnan().sum())
            inf = int(leaf.isinf().sum())
            if nan or inf:
                found.append(f"{path} ({nan} NaN, {inf} Inf of {leaf.numel()})")
    return found
