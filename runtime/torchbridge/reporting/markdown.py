"""The markdown summary: verdict, reasons, warnings, failures, budgets, baselines, jobs.

Sized for GitHub's job summary (at most 1 MiB per step): long tables are cut at
``MAX_ROWS`` with a line saying how many rows were left out and where to find them.
"""

from __future__ import annotations

import os
from pathlib import Path

from torchbridge.reporting.gate import GateVerdict
from torchbridge.reporting.merge import MergedReport
from torchbridge.reporting.tables import (
    BASELINE_HEADER,
    BUDGET_HEADER,
    JOB_HEADER,
    PROBLEM_HEADER,
    RATIO_HEADER,
    baseline_rows,
    budget_rows,
    job_rows,
    problem_rows,
    ratio_rows,
)

MAX_ROWS = 50
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def _cell(text: str) -> str:
    return " ".join(str(text).replace("|", "\\|").split())[:300]


def table(header: list[str], rows: list[list[str]], limit: int = MAX_ROWS) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n*{len(rows) - limit} more row(s) not shown; the HTML report and the "
                     "merged JSON have all of them.*")
    return lines


def render_markdown(report: MergedReport, verdict: GateVerdict) -> str:
    """The summary as GitHub-flavoured markdown."""
    icon = "✅" if verdict.passed else "❌"
    lines = [f"## {icon} TorchBridge {verdict.headline()}", ""]
    if verdict.reasons:
        lines += ["### Why the gate failed", ""] + [f"- {_cell(r)}" for r in verdict.reasons]
        lines.append("")
    if report.warnings:
        lines += ["### Warnings", ""] + [f"- ⚠️ {_cell(w)}" for w in report.warnings] + [""]
    sections = [
        ("Failed and errored checks", PROBLEM_HEADER, problem_rows(report)),
        ("Budgets", BUDGET_HEADER, budget_rows(report)),
        ("Against the baseline", BASELINE_HEADER, baseline_rows(report)),
        ("Against the base, interleaved", RATIO_HEADER, ratio_rows(report)),
    ]
    for heading, header, rows in sections:
        if rows:
            lines += [f"### {heading}", "", *table(header, rows), ""]
    lines += ["### Jobs", "", *table(JOB_HEADER, job_rows(report)), ""]
    return "\n".join(lines)


def write_markdown(path: str | Path | None, text: str, step_summary: bool = True) -> list[Path]:
    """Write ``text`` to ``path`` (if given) and append it to ``$GITHUB_STEP_SUMMARY``
    (if set and ``step_summary``). Returns the files written."""
    written = []
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    summary = os.environ.get(STEP_SUMMARY_ENV)
    if step_summary and summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
        written.append(Path(summary))
    return written
