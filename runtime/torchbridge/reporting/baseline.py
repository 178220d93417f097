"""Baseline comparisons stored in results, in one shape for the tables, plots and gate.

The performance checks store ``details["baseline"] = {"path", "found", "comparisons":
[{"statistic", "old", "new", "change", "significant", "verdict", ...}]}`` (latency in
nanoseconds, throughput in samples per second). A flat form
``{"baseline_p99_ms", "current_p99_ms", "change_pct", "significant", "regression"}`` is
read too, for reports written by other tools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# how each check's raw comparison values convert to what people read
_SCALE = {"latency": (1e-6, "ms"), "throughput": (1.0, "samples/s")}


@dataclass(frozen=True)
class BaselineRow:
    """One statistic of one result against the baseline, in the units people read (ms,
    samples/s): a row of the baseline table and a bar of its plot."""

    statistic: str
    old: float
    new: float
    unit: str
    change_pct: float | None
    significant: bool
    regression: bool


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _flat(data: dict[str, Any]) -> list[BaselineRow]:
    old, new = _number(data.get("baseline_p99_ms")), _number(data.get("current_p99_ms"))
    if old is None or new is None:
        return []
    return [BaselineRow("p99", old, new, "ms", _number(data.get("change_pct")),
                       bool(data.get("significant")), bool(data.get("regression")))]


def comparisons(result: dict[str, Any]) -> list[BaselineRow]:
    """The baseline comparisons of a result (empty when it was not compared)."""
    data = result["details"].get("baseline")
    if not isinstance(data, dict):
        return []
    if "comparisons" not in data:
        return _flat(data)
    scale, unit = _SCALE.get(str(result.get("check")), (1.0, ""))
    found = []
    for item in data.get("comparisons") or []:
        if not isinstance(item, dict):
            continue
        old, new = _number(item.get("old")), _number(item.get("new"))
        if old is None or new is None:
            continue
        change = _number(item.get("change"))
        found.append(BaselineRow(str(item.get("statistic", "")), old * scale, new * scale, unit,
                                None if change is None else change * 100,
                                bool(item.get("significant")),
                                item.get("verdict") == "regression"))
    return found


def regressed(result: dict[str, Any]) -> bool:
    return any(c.regression for c in comparisons(result))
