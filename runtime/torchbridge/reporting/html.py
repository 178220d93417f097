"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no network)."""

from __future__ import annotations

from html import escape
from pathlib import Path

from torchbridge.reporting.gate import GateVerdict
from torchbridge.reporting.merge import MergedReport
from torchbridge.reporting.plots import MAX_CHARTS, Chart, all_charts
from torchbridge.reporting.tables import (
    BASELINE_HEADER,
    BUDGET_HEADER,
    JOB_HEADER,
    PROBLEM_HEADER,
    RATIO_HEADER,
    amount,
    baseline_rows,
    budget_rows,
    job_rows,
    problem_rows,
    ratio_rows,
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:22px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
.verdict{padding:10px 14px;border-radius:6px;font-weight:bold;font-size:16px}
.pass{background:#e6f4ea;color:#0b6b2b} .fail{background:#fde8e8;color:#a11}
.warn{background:#fff7e0;padding:6px 10px;margin:4px 0;border-left:4px solid #e6a700}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4} tr.failed td,tr.error td{background:#fff0f0}
.charts{display:flex;flex-wrap:wrap;gap:12px} .charts svg{border:1px solid #eee;background:#fff}
.note{color:#666;font-size:13px}
"""

SECTION_TITLES = {
    "latency": "Latency distribution (CDF; dashed red: budget)",
    "throughput": "Throughput against batch size",
    "memory": "Peak memory against budget",
    "baseline": "Baseline against current",
}


def _table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None
           ) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{escape(str(c))}</td>" for c in row)
                    + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(heading)}</h2>{body}</section>'


def _charts(kind: str, charts: list[Chart]) -> str:
    if not charts:
        return ""
    note = ""
    if len(charts) >= MAX_CHARTS:
        note = (f'<p class="note">Only the first {MAX_CHARTS} charts are drawn (failing '
                "results first); the tables and the JSON report hold every result.</p>")
    body = "".join(chart.svg for chart in charts)
    return (f'<section id="{kind}"><h2>{escape(SECTION_TITLES[kind])}</h2>{note}'
            f'<div class="charts">{body}</div></section>')


def _results_table(report: MergedReport) -> str:
    rows, classes = [], []
    for r in report.results:
        metrics = ", ".join(f"{k}={amount(v)}" for k, v in list(r["metrics"].items())[:6])
        rows.append([r["key"], r["check"], r["device"], r["job"],
                     r["status"], r["message"], metrics])
        classes.append(r["status"])
    table = _table(["Test", "Check", "Device", "Job", "Status", "Message", "Metrics"], rows,
                   classes)
    return (f'<section id="results"><h2>All results ({len(rows)})</h2>'
            f"<details><summary>show every result</summary>{table}</details></section>")


def render_html(report: MergedReport, verdict: GateVerdict, title: str = "TorchBridge report"
                ) -> str:
    """The whole report as one HTML document."""
    css = "pass" if verdict.passed else "fail"
    parts = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
             f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{escape(title)}</h1>",
             f'<div class="verdict {css}" id="verdict">{escape(verdict.headline())}</div>']
    if verdict.reasons:
        parts.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in verdict.reasons)
                     + "</ul>")
    parts += [f'<div class="warn">warning: {escape(w)}</div>' for w in report.warnings]
    problems = problem_rows(report, icons=False)
    if problems:
        parts.append(_section("problems", "Failed and errored checks",
                              _table(PROBLEM_HEADER, problems)))
    for kind, charts in all_charts(report.results).items():
        parts.append(_charts(kind, charts))
    budgets = budget_rows(report, icons=False)
    if budgets:
        parts.append(_section("budgets", "Budgets", _table(BUDGET_HEADER, budgets)))
    baselines = baseline_rows(report, icons=False)
    if baselines:
        parts.append(_section("baselines", "Against the baseline",
                              _table(BASELINE_HEADER, baselines)))
    ratios = ratio_rows(report, icons=False)
    if ratios:
        parts.append(_section("ratios", "Against the base, interleaved",
                              _table(RATIO_HEADER, ratios)))
    parts.append(_section("jobs", "Jobs and machines", _table(JOB_HEADER, job_rows(report))))
    parts.append(_results_table(report))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(path: str | Path, text: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
