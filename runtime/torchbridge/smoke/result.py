"""Smoke, watch and serving-check results: named steps that passed, failed, or could not
run (not exercised), with numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Step:
    """One thing verified against a server.

    ``exercised=False`` marks a step that could not run (``passed`` is then ``False`` and
    ``detail`` says why): it is reported as not exercised, never as passed.
    """

    name: str
    passed: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    exercised: bool = True

    @classmethod
    def not_exercised(cls, name: str, why: str) -> Step:
        """A step that could not run, and why."""
        return cls(name, False, why, exercised=False)

    @property
    def status(self) -> str:
        """``passed``, ``failed`` or ``not exercised``."""
        if not self.exercised:
            return "not exercised"
        return "passed" if self.passed else "failed"


@dataclass
class SmokeReport:
    """Every step run against one deployment; passed when every step passed."""

    url: str
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.passed for step in self.steps)

    def failures(self) -> list[Step]:
        """Steps that ran and failed, and steps that could not run."""
        return [step for step in self.steps if not step.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "passed": self.passed,
                "steps": [asdict(step) for step in self.steps]}
