"""Smoke and watch results: named steps that passed or failed, with numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Step:
    """One thing the smoke test verified."""

    name: str
    passed: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class SmokeReport:
    """Every step run against one deployment; passed when every step passed."""

    url: str
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.passed for step in self.steps)

    def failures(self) -> list[Step]:
        return [step for step in self.steps if not step.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "passed": self.passed,
                "steps": [asdict(step) for step in self.steps]}
