"""The outcome of one check: status, an actionable message, metrics, budgets and details."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"


@dataclass
class Metric:
    """A measured or budgeted number with its unit (``ms``, ``bytes``, ``samples/s``, ``1``)."""

    value: float
    unit: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit}


@dataclass
class CheckResult:
    """Result of one check on one subject. JSON-serialisable through :meth:`to_dict`.

    ``metrics`` and ``budgets`` map a metric name (``p99_ms``) to a :class:`Metric`;
    ``details`` holds anything else worth keeping (raw samples, per-output errors).
    """

    check: str
    status: Status
    message: str = ""
    device: str = "cpu"
    metrics: dict[str, Metric] = field(default_factory=dict)
    budgets: dict[str, Metric] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    test_id: str = ""

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    def metric(self, name: str, value: float, unit: str = "") -> None:
        self.metrics[name] = Metric(float(value), unit)

    def budget(self, name: str, value: float, unit: str = "") -> None:
        self.budgets[name] = Metric(float(value), unit)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            check=data["check"],
            status=Status(data["status"]),
            message=data.get("message", ""),
            device=data.get("device", "cpu"),
            metrics={k: Metric(**v) for k, v in data.get("metrics", {}).items()},
            budgets={k: Metric(**v) for k, v in data.get("budgets", {}).items()},
            details=dict(data.get("details", {})),
            duration_s=float(data.get("duration_s", 0.0)),
            test_id=data.get("test_id", ""),
        )

    def summary_line(self) -> str:
        return f"{self.check} [{self.device}] {self.status.value}: {self.message}"


def passed(check: str, message: str, device: str, **kw: Any) -> CheckResult:
    return CheckResult(check, Status.PASSED, message, device, **kw)


def failed(check: str, message: str, device: str, **kw: Any) -> CheckResult:
    return CheckResult(check, Status.FAILED, message, device, **kw)


def skipped(check: str, message: str, device: str, **kw: Any) -> CheckResult:
    return CheckResult(check, Status.SKIPPED, message, device, **kw)
