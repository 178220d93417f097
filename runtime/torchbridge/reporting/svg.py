"""Small, dependency-free SVG charts for the HTML report.

Hand-written rather than matplotlib: a report of thousands of checks needs hundreds of
small charts; a matplotlib figure saved as SVG took 65-85 ms per chart here, formatting
the SVG text directly 0.3 ms, and the result is still a plain ``<svg>`` any browser
renders offline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
BUDGET = "#d62728"
WIDTH, HEIGHT = 460, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 28, 44
BAR_WIDTH, BAR_LEFT = 720, 330


@dataclass
class Series:
    """One line of a chart: points (x, y) and its legend name."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    markers: bool = False


@dataclass
class Rule:
    """A vertical (``axis='x'``) or horizontal (``axis='y'``) reference line, e.g. a budget."""

    value: float
    label: str
    axis: str = "x"
    color: str = BUDGET


@dataclass
class Bar:
    """One horizontal bar with optional budget and estimate ticks."""

    label: str
    value: float
    budget: float | None = None
    estimate: float | None = None
    bad: bool = False
    extra: dict[str, float] = field(default_factory=dict)


def fmt(value: float) -> str:
    """A tick label: 3 significant digits, no exponent for ordinary magnitudes."""
    if value == 0:
        return "0"
    if abs(value) >= 1e9 or abs(value) < 1e-3:
        return f"{value:.2g}"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]``."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks: list[float] = []
    value = start
    while value <= high + step * 0.5 and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    return ticks


class _Scale:
    def __init__(self, low: float, high: float, start: float, end: float,
                 log: bool = False) -> None:
        self.log = log and low > 0
        if self.log:
            low, high = math.log10(low), math.log10(high)
        if high <= low:
            high = low + 1.0
        self.low, self.high, self.start, self.end = low, high, start, end

    def __call__(self, value: float) -> float:
        if self.log:
            value = math.log10(max(value, 1e-300))
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def _open(kind: str, title: str, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="tb-plot tb-plot-{kind}" '
            f'role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
            f"<title>{escape(title)}</title>",
            f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-weight="bold">'
            f"{escape(_shorten(title, 70))}</text>"]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def _axes(parts: list[str], xs: _Scale, ys: _Scale, xticks: list[float], yticks: list[float],
          x_label: str, y_label: str, height: int = HEIGHT) -> None:
    bottom = height - MARGIN_BOTTOM
    parts.append('<g stroke="#ccc" stroke-width="0.5">'
                 + "".join(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" '
                           f'y1="{ys(t):.1f}" y2="{ys(t):.1f}"/>' for t in yticks) + "</g>")
    parts.append('<g text-anchor="middle">'
                 + "".join(f'<text x="{xs(t):.1f}" y="{bottom + 14}">{fmt(t)}</text>'
                           for t in xticks) + "</g>")
    parts.append('<g text-anchor="end">'
                 + "".join(f'<text x="{MARGIN_LEFT - 4}" y="{ys(t) + 4:.1f}">{fmt(t)}</text>'
                           for t in yticks) + "</g>")
    parts.append(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{bottom}" '
                 f'y2="{bottom}" stroke="#333"/>'
                 f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT}" y1="{MARGIN_TOP}" '
                 f'y2="{bottom}" stroke="#333"/>')
    parts.append(f'<text x="{(MARGIN_LEFT + WIDTH - MARGIN_RIGHT) / 2:.0f}" '
                 f'y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {(MARGIN_TOP + bottom) / 2:.0f}) '
                 f'rotate(-90)" text-anchor="middle">{escape(y_label)}</text>')


def _log_ticks(low: float, high: float, base: int = 2) -> list[float]:
    """Powers of two (batch sizes), or 1-2-5 steps per decade (latencies)."""
    if base == 2:
        ticks = [2.0 ** k for k in range(math.floor(math.log2(low)),
                                         math.ceil(math.log2(high)) + 1)]
    else:
        ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(low)),
                                              math.ceil(math.log10(high)) + 1)
                 for m in (1, 2, 5)]
        ticks = [t for t in ticks if low / 5 <= t <= high * 5]
    while len(ticks) > 8:
        ticks = ticks[::2]
    return ticks


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str,
               rules: Sequence[Rule] = (), x_log: bool = False,
               y_range: tuple[float, float] | None = None, log_base: int = 2) -> str:
    """A line chart (CDFs, throughput against batch size) with optional budget rules."""
    xs_all = [x for s in series for x in s.xs] + [r.value for r in rules if r.axis == "x"]
    ys_all = [y for s in series for y in s.ys] + [r.value for r in rules if r.axis == "y"]
    if not xs_all or not ys_all:
        return ""
    x_low, x_high = min(xs_all), max(xs_all)
    y_low, y_high = y_range or (min(0.0, min(ys_all)), max(ys_all) * 1.05 or 1.0)
    if x_log and x_low > 0:
        xticks = _log_ticks(x_low, x_high, log_base)
        x_low, x_high = min(xticks[0], x_low), max(xticks[-1], x_high)
    else:
        xticks = nice_ticks(x_low, x_high)
        x_low, x_high = min(xticks[0], x_low), max(xticks[-1], x_high)
    yticks = nice_ticks(y_low, y_high)
    xs = _Scale(x_low, x_high, MARGIN_LEFT, WIDTH - MARGIN_RIGHT, log=x_log)
    ys = _Scale(min(yticks[0], y_low), max(yticks[-1], y_high), HEIGHT - MARGIN_BOTTOM,
                MARGIN_TOP)
    parts = _open("line", title)
    _axes(parts, xs, ys, [t for t in xticks if x_low <= t <= x_high],
          [t for t in yticks if ys.low <= t <= ys.high], x_label, y_label)
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        points = " ".join(f"{xs(x):.1f},{ys(y):.1f}" for x, y in zip(line.xs, line.ys,
                                                                       strict=False))
        parts.append(f'<polyline class="tb-series" fill="none" stroke="{color}" '
                     f'stroke-width="1.6" points="{points}"><title>{escape(line.name)}'
                     "</title></polyline>")
        if line.markers:
            parts.append("".join(f'<circle cx="{xs(x):.1f}" cy="{ys(y):.1f}" r="2.5" '
                                 f'fill="{color}"/>' for x, y in zip(line.xs, line.ys,
                                                                     strict=False)))
    _rules(parts, rules, xs, ys)
    _legend(parts, [s.name for s in series])
    parts.append("</svg>")
    return "".join(parts)


def _rules(parts: list[str], rules: Sequence[Rule], xs: _Scale, ys: _Scale) -> None:
    for rule in rules:
        if rule.axis == "x":
            x = xs(rule.value)
            parts.append(f'<line class="tb-budget" x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_TOP}" '
                         f'y2="{HEIGHT - MARGIN_BOTTOM}" stroke="{rule.color}" '
                         'stroke-dasharray="5 3" stroke-width="1.4"/>'
                         f'<text x="{x - 3:.1f}" y="{MARGIN_TOP + 10}" text-anchor="end" '
                         f'fill="{rule.color}">{escape(rule.label)}</text>')
        else:
            y = ys(rule.value)
            parts.append(f'<line class="tb-budget" x1="{MARGIN_LEFT}" '
                         f'x2="{WIDTH - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'stroke="{rule.color}" stroke-dasharray="5 3" stroke-width="1.4"/>'
                         f'<text x="{WIDTH - MARGIN_RIGHT - 2}" y="{y - 3:.1f}" '
                         f'text-anchor="end" fill="{rule.color}">{escape(rule.label)}</text>')


def _legend(parts: list[str], names: list[str]) -> None:
    if len(names) < 2:
        return
    for index, name in enumerate(names[:6]):
        y = MARGIN_TOP + 14 + index * 13
        color = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{MARGIN_LEFT + 8}" y="{y - 8}" width="10" height="3" '
                     f'fill="{color}"/><text x="{MARGIN_LEFT + 22}" y="{y - 4}">'
                     f"{escape(_shorten(name, 40))}</text>")


def bar_chart(title: str, bars: Sequence[Bar], x_label: str,
              value_name: str = "measured") -> str:
    """Horizontal bars (measured value) with a budget tick and an estimate marker per bar."""
    if not bars:
        return ""
    row, width, left = 18, BAR_WIDTH, BAR_LEFT
    height = MARGIN_TOP + MARGIN_BOTTOM + row * len(bars)
    high = max(max(b.value, b.budget or 0, b.estimate or 0) for b in bars) * 1.05 or 1.0
    ticks = nice_ticks(0, high)
    xs = _Scale(0, max(ticks[-1], high), left, width - MARGIN_RIGHT)
    parts = _open("bar", title, width=width, height=height)
    bottom = height - MARGIN_BOTTOM
    parts.append('<g stroke="#ccc" stroke-width="0.5">' + "".join(
        f'<line x1="{xs(t):.1f}" x2="{xs(t):.1f}" y1="{MARGIN_TOP}" y2="{bottom}"/>'
        for t in ticks) + "</g>")
    parts.append('<g text-anchor="middle">' + "".join(
        f'<text x="{xs(t):.1f}" y="{bottom + 14}">{fmt(t)}</text>' for t in ticks) + "</g>")
    parts.append(f'<text x="{(left + width) / 2:.0f}" y="{height - 8}" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    for index, bar in enumerate(bars):
        y = MARGIN_TOP + index * row
        color = BUDGET if bar.bad else PALETTE[0]
        tip = f"{bar.label}: {value_name} {fmt(bar.value)}"
        tip += f", budget {fmt(bar.budget)}" if bar.budget is not None else ""
        tip += f", estimate {fmt(bar.estimate)}" if bar.estimate is not None else ""
        parts.append(f'<text x="{left - 4}" y="{y + 12}" text-anchor="end">'
                     f"{escape(_shorten(bar.label, 52))}</text>"
                     f'<rect class="tb-bar" x="{left}" y="{y + 3}" height="{row - 6}" '
                     f'width="{max(xs(bar.value) - left, 0.5):.1f}" fill="{color}">'
                     f"<title>{escape(tip)}</title></rect>")
        if bar.budget is not None:
            x = xs(bar.budget)
            parts.append(f'<line class="tb-budget" x1="{x:.1f}" x2="{x:.1f}" y1="{y + 1}" '
                         f'y2="{y + row - 1}" stroke="{BUDGET}" stroke-width="2.5"/>')
        if bar.estimate is not None:
            x = xs(bar.estimate)
            parts.append(f'<circle class="tb-estimate" cx="{x:.1f}" cy="{y + row / 2:.1f}" '
                         'r="3.5" fill="none" stroke="#333" stroke-width="1.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def paired_bars(title: str, labels: Sequence[str], before: Sequence[float],
                after: Sequence[float], bad: Sequence[bool], x_label: str) -> str:
    """Two bars per label (baseline, current); the current bar is red when it regressed."""
    if not labels:
        return ""
    bars = []
    for label, old, new, worse in zip(labels, before, after, bad, strict=True):
        bars.append(Bar(f"{label} (baseline)", old))
        bars.append(Bar(f"{label} (current)", new, bad=worse))
    return bar_chart(title, bars, x_label).replace("tb-plot-bar", "tb-plot-baseline", 1)
