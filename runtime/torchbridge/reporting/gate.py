"""The merge gate: one verdict, with its reasons, from a merged report.

The gate fails when a check failed or errored, when a baseline comparison found a
significant regression, when nothing was checked at all — no results, or only skipped
ones — (unless allowed), and, only when asked, when a check was skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torchbridge.reporting.baseline import regressed
from torchbridge.reporting.merge import MergedReport


@dataclass(frozen=True)
class GatePolicy:
    """What fails the gate beyond failed and errored checks."""

    fail_on_skip: bool = False
    fail_on_regression: bool = True
    allow_empty: bool = False


@dataclass
class GateVerdict:
    """The gate's decision: ``passed``, the reasons it failed, and the counts behind it."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    regressions: int = 0

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def headline(self) -> str:
        total = sum(self.counts.values())
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items() if n)
        verdict = "PASSED" if self.passed else "FAILED"
        return f"gate {verdict}: {total} check result(s)" + (f" ({counts})" if counts else "")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def regressions(report: MergedReport) -> list[dict[str, Any]]:
    """Results whose baseline comparison declared a regression."""
    return [r for r in report.results if regressed(r)]


def _ids(results: list[dict[str, Any]], limit: int = 3) -> str:
    shown = ", ".join(f"{r['key']} [{r['check']}]" for r in results[:limit])
    return shown + (f" and {len(results) - limit} more" if len(results) > limit else "")


def decide(report: MergedReport, policy: GatePolicy | None = None) -> GateVerdict:
    """The gate verdict for ``report`` under ``policy``."""
    policy = policy or GatePolicy()
    counts = report.summary
    reasons = []
    by_status: dict[str, list[dict[str, Any]]] = {}
    for result in report.results:
        by_status.setdefault(result["status"], []).append(result)
    if by_status.get("failed"):
        reasons.append(f"{counts['failed']} check(s) failed: {_ids(by_status['failed'])}")
    if by_status.get("error"):
        reasons.append(f"{counts['error']} check(s) errored: {_ids(by_status['error'])}")
    found = regressions(report)
    if found and policy.fail_on_regression:
        reasons.append(f"{len(found)} significant regression(s) against the baseline: "
                       f"{_ids(found)}")
    if by_status.get("skipped") and policy.fail_on_skip:
        reasons.append(f"{counts['skipped']} check(s) skipped and skips fail the gate: "
                       f"{_ids(by_status['skipped'])}")
    if not report.results and not policy.allow_empty:
        reasons.append("no check results at all: nothing was checked, so nothing can pass "
                       "(allow this with --allow-empty)")
    elif report.results and len(by_status.get("skipped", [])) == len(report.results) \
            and not policy.allow_empty and not policy.fail_on_skip:
        reasons.append(f"every one of the {len(report.results)} check result(s) was skipped: "
                       "nothing was checked, so nothing can pass (allow this with "
                       "--allow-empty)")
    return GateVerdict(passed=not reasons, reasons=reasons, counts=counts,
                   regressions=len(found))
