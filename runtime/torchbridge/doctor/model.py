"""One diagnostic: a name, a status, a line a person can act on, and details."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Health(str, enum.Enum):
    """The health of one part of the environment (a check's outcome is a
    :class:`~torchbridge.core.result.Status`): ``ok``; ``warn`` works but is degraded or
    risky; ``fail`` broken; ``skip`` does not apply here (no GPU on a CPU runner is not a
    problem)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass
class Diagnostic:
    """The outcome of one environment check. ``fix`` says what to do when not ok."""

    name: str
    category: str
    status: Health
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "status": self.status.value,
                "summary": self.summary, "fix": self.fix, "details": self.details}


def overall(diagnostics: list[Diagnostic]) -> Health:
    """``fail`` if any failed, else ``warn`` if any warned, else ``ok``."""
    statuses = {d.status for d in diagnostics}
    if Health.FAIL in statuses:
        return Health.FAIL
    return Health.WARN if Health.WARN in statuses else Health.OK


def exit_code(diagnostics: list[Diagnostic]) -> int:
    """0 all good, 1 a failure, 2 warnings only."""
    return {Health.OK: 0, Health.FAIL: 1, Health.WARN: 2}[overall(diagnostics)]
