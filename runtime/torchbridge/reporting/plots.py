"""The report's charts, drawn from result details: latency CDFs with their budgets,
throughput against batch size, memory against budget, baseline against current."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torchbridge.reporting.baseline import BaselineRow, comparisons
from torchbridge.reporting.svg import Bar, Rule, Series, bar_chart, line_chart, paired_bars

#: at most this many charts of one kind; failing results are drawn first
MAX_CHARTS = 200
#: points kept per CDF; enough to read any percentile to the pixel
CDF_POINTS = 120
BARS_PER_CHART = 24
#: a CDF whose samples span more than this ratio gets a logarithmic latency axis
LOG_SPAN = 30.0
_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)_ms$")
MIB = 2**20


@dataclass
class Chart:
    """One rendered chart and the result(s) it shows."""

    kind: str
    title: str
    svg: str
    failing: bool = False


def _label(result: dict[str, Any]) -> str:
    return f"{result['key']} [{result['check']}, {result['device']}]"


def _by_priority(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(results, key=lambda r: r["status"] not in ("failed", "error"))


def cdf_points(samples_ns: list[float], points: int = CDF_POINTS) -> tuple[list[float],
                                                                           list[float]]:
    """(latency in ms, cumulative fraction) at ``points`` evenly spaced ranks, max included."""
    ordered = sorted(samples_ns)
    count = len(ordered)
    if count == 0:
        return [], []
    ranks = sorted({min(count - 1, int(i * count / points)) for i in range(points)}
                   | {count - 1})
    return [ordered[r] / 1e6 for r in ranks], [(r + 1) / count for r in ranks]


def latency_rules(result: dict[str, Any]) -> list[Rule]:
    """A vertical rule per percentile budget (``p99_ms`` → 'p99 budget')."""
    rules = []
    for name, budget in result["budgets"].items():
        match = _PERCENTILE.match(name)
        if match and isinstance(budget, dict) and budget.get("value") is not None:
            rules.append(Rule(float(budget["value"]), f"p{match.group(1)} budget"))
            rules.append(Rule(float(match.group(1)) / 100, f"p{match.group(1)}", axis="y",
                              color="#999"))
    return rules


def latency_charts(results: list[dict[str, Any]]) -> Iterator[Chart]:
    """One CDF per result that carries raw latency samples."""
    with_samples = [r for r in results
                    if isinstance(r["details"].get("samples_ns"), list)
                    and r["details"]["samples_ns"]]
    for result in _by_priority(with_samples)[:MAX_CHARTS]:
        xs, ys = cdf_points(result["details"]["samples_ns"])
        title = f"{_label(result)} — n={len(result['details']['samples_ns'])}"
        rules = latency_rules(result)
        values = xs + [r.value for r in rules if r.axis == "x"]
        wide = min(values) > 0 and max(values) / min(values) > LOG_SPAN
        svg = line_chart(title, [Series("latency", xs, ys)],
                         "latency (ms, log scale)" if wide else "latency (ms)",
                         "fraction of calls ≤ x", rules, x_log=wide, y_range=(0.0, 1.0),
                         log_base=10)
        yield Chart("latency", title, svg, result["status"] in ("failed", "error"))


def _rate_budget(result: dict[str, Any]) -> list[Rule]:
    return [Rule(float(b["value"]), f"{name} budget", axis="y")
            for name, b in result["budgets"].items()
            if "per_s" in name and isinstance(b, dict) and b.get("value") is not None]


def throughput_charts(results: list[dict[str, Any]]) -> Iterator[Chart]:
    """Samples per second against batch size, per result with a batch sweep."""
    sweeps = [r for r in results if isinstance(r["details"].get("by_batch"), list)
              and r["details"]["by_batch"]]
    for result in _by_priority(sweeps)[:MAX_CHARTS]:
        rows = sorted((row for row in result["details"]["by_batch"]
                       if isinstance(row, dict) and row.get("samples_per_s") is not None),
                      key=lambda row: float(row.get("batch_size", 0)))
        if not rows:
            continue
        xs = [float(row.get("batch_size", 0)) for row in rows]
        ys = [float(row["samples_per_s"]) for row in rows]
        title = _label(result)
        svg = line_chart(title, [Series("samples/s", xs, ys, markers=True)], "batch size",
                         "samples / s", _rate_budget(result), x_log=min(xs) > 0)
        yield Chart("throughput", title, svg, result["status"] in ("failed", "error"))


def _value(block: dict[str, Any], name: str) -> float | None:
    item = block.get(name)
    if isinstance(item, dict) and isinstance(item.get("value"), int | float):
        return float(item["value"])
    return None


def memory_bars(results: list[dict[str, Any]]) -> list[Bar]:
    bars = []
    for result in results:
        peak = _value(result["metrics"], "peak_bytes")
        if peak is None:
            continue
        budget = _value(result["budgets"], "peak_bytes")
        estimate = _value(result["metrics"], "estimate_bytes") or \
            _value(result["budgets"], "estimate_bytes")
        bars.append(Bar(_label(result), peak / MIB,
                        None if budget is None else budget / MIB,
                        None if estimate is None else estimate / MIB,
                        bad=result["status"] in ("failed", "error")))
    return bars


def memory_charts(results: list[dict[str, Any]]) -> Iterator[Chart]:
    """Peak memory per result as bars, the budget as a red tick, the estimate as a ring."""
    bars = memory_bars(_by_priority(results))[:MAX_CHARTS * BARS_PER_CHART // 4]
    for start in range(0, len(bars), BARS_PER_CHART):
        chunk = bars[start:start + BARS_PER_CHART]
        title = f"peak memory (MiB), results {start + 1}-{start + len(chunk)}"
        yield Chart("memory", title, bar_chart(title, chunk, "MiB (red tick: budget, "
                                                             "ring: estimate)"),
                    any(b.bad for b in chunk))


def baseline_charts(results: list[dict[str, Any]]) -> Iterator[Chart]:
    """Baseline against current, two bars per compared statistic, one chart per unit;
    regressions in red and first."""
    by_unit: dict[str, list[tuple[str, BaselineRow]]] = {}
    for result in results:
        for c in comparisons(result):
            by_unit.setdefault(c.unit, []).append((f"{_label(result)} {c.statistic}", c))
    per_chart = BARS_PER_CHART // 2
    for unit, pairs in by_unit.items():
        pairs.sort(key=lambda pair: not pair[1].regression)
        for start in range(0, min(len(pairs), MAX_CHARTS * per_chart // 4), per_chart):
            chunk = pairs[start:start + per_chart]
            title = f"baseline vs current ({unit or 'value'}), {start + 1}-{start + len(chunk)}"
            svg = paired_bars(title, [label for label, _ in chunk], [c.old for _, c in chunk],
                              [c.new for _, c in chunk], [c.regression for _, c in chunk],
                              unit or "value")
            yield Chart("baseline", title, svg, any(c.regression for _, c in chunk))


def all_charts(results: list[dict[str, Any]]) -> dict[str, list[Chart]]:
    """Every chart the report draws, by section."""
    return {
        "latency": list(latency_charts(results)),
        "throughput": list(throughput_charts(results)),
        "memory": list(memory_charts(results)),
        "baseline": list(baseline_charts(results)),
    }
