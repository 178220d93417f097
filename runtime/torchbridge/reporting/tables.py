"""Rows shared by the markdown summary and the HTML report."""

from __future__ import annotations

from collections import Counter
from typing import Any

from torchbridge.reporting.baseline import comparisons
from torchbridge.reporting.merge import MergedReport
from torchbridge.units import format_bytes

STATUS_ICON = {"passed": "✅", "failed": "❌", "error": "💥", "skipped": "⏭️"}
PROBLEMS = ("failed", "error")
PROBLEM_HEADER = ["Test", "Check", "Device", "Job", "", "Message"]
BUDGET_HEADER = ["Test", "Check", "Device", "Job", "Metric", "Measured", "Budget", ""]
BASELINE_HEADER = ["Test", "Device", "Job", "Statistic", "Baseline", "Current", "Change",
                   "Significant", "Verdict"]
JOB_HEADER = ["Job", "Machine", "Results", "Passed", "Failed", "Errors", "Skipped"]
RATIO_HEADER = ["Test", "Device", "Job", "Against", "Change", "Bounds", "Pairs", "Verdict"]


def amount(metric: Any) -> str:
    """A metric dict ``{value, unit}`` as a person reads it (bytes in binary units)."""
    if not isinstance(metric, dict) or metric.get("value") is None:
        return ""
    value, unit = metric["value"], str(metric.get("unit") or "")
    if unit in ("bytes", "B"):
        return format_bytes(float(value))
    number = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{number} {unit}".strip()


def problems(report: MergedReport) -> list[dict[str, Any]]:
    return [r for r in report.results if r["status"] in PROBLEMS]


def status_text(status: str, icons: bool) -> str:
    return STATUS_ICON.get(status, status) if icons else status


def budget_rows(report: MergedReport, icons: bool = True) -> list[list[str]]:
    """One row per gated metric: test, check, device, job, metric, value, budget, status."""
    rows = []
    for result in report.results:
        for name, budget in sorted(result["budgets"].items()):
            rows.append([result["key"], result["check"], result["device"], result["job"],
                         name, amount(measured(result["metrics"], name)), amount(budget),
                         status_text(result["status"], icons)])
    return rows


def measured(metrics: dict[str, Any], budget_name: str) -> Any:
    """The metric a budget gates: same name, or without a ``min_``/``max_`` prefix."""
    if budget_name in metrics:
        return metrics[budget_name]
    for prefix in ("min_", "max_"):
        if budget_name.startswith(prefix) and budget_name[len(prefix):] in metrics:
            return metrics[budget_name[len(prefix):]]
    return None


def baseline_rows(report: MergedReport, icons: bool = True) -> list[list[str]]:
    """One row per compared statistic: test, device, job, statistic, old, new, change."""
    rows = []
    for result in report.results:
        for c in comparisons(result):
            verdict = ("❌ regression" if icons else "regression") if c.regression else "ok"
            rows.append([result["key"], result["device"], result["job"], c.statistic,
                         f"{c.old:.4g} {c.unit}".strip(), f"{c.new:.4g} {c.unit}".strip(),
                         f"{c.change_pct:+.1f} %" if c.change_pct is not None else "",
                         "yes" if c.significant else "no", verdict])
    return rows


def ratio_rows(report: MergedReport, icons: bool = True) -> list[list[str]]:
    """One row per item measured interleaved against a base (``--tb-baseline-ref``):
    the median paired time ratio as a change, its bounds, the pair count, the verdict
    (or why it was not compared)."""
    rows = []
    for result in report.results:
        data = result["details"].get("baseline_ref")
        if not isinstance(data, dict):
            continue
        head = [result["key"], result["device"], result["job"], str(data.get("against", ""))]
        if data.get("compared") is False:
            rows.append([*head, "", "", "", f"not compared: {data.get('reason', '')}"])
            continue
        low, high = (data.get("ratio_ci") or [None, None])[:2]
        bounds = "…".join("?" if v is None else f"{(v - 1) * 100:+.1f} %" for v in (low, high))
        verdict = str(data.get("verdict", ""))
        if icons and verdict == "regression":
            verdict = "❌ regression"
        rows.append([*head, f"{(float(data['ratio']) - 1) * 100:+.1f} %", bounds,
                     str(data.get("pairs", "")), verdict])
    return rows


def job_rows(report: MergedReport) -> list[list[str]]:
    """Per job: machine, schema, and counts by status."""
    counts: dict[str, Counter[str]] = {}
    machines: dict[str, str] = {}
    for result in report.results:
        counts.setdefault(result["job"], Counter())[result["status"]] += 1
        machines[result["job"]] = result["machine"]
    for source in report.sources:
        if not source.merged:
            counts.setdefault(source.job, Counter())
            machines.setdefault(source.job, source.machine)
    return [[job, machines[job], str(sum(c.values())), str(c["passed"]), str(c["failed"]),
             str(c["error"]), str(c["skipped"])] for job, c in counts.items()]


def problem_rows(report: MergedReport, icons: bool = True) -> list[list[str]]:
    return [[r["key"], r["check"], r["device"], r["job"],
             status_text(r["status"], icons), r["message"]]
            for r in problems(report)]
