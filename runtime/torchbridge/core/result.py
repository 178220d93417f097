"""The outcome of one check: status, an actionable message, metrics, budgets and details."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """How a check ended: ``passed``, ``failed`` (a budget or property not met), ``skipped``
    (it cannot run here) or ``error`` (the check or the model raised)."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"

    @classmethod
    def parse(cls, value: object) -> Status:
        """The status spelled ``value`` in any case; :class:`ResultFormatError` otherwise."""
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ResultFormatError(f"unknown status {value!r}; expected one of "
                                    f"{', '.join(s.value for s in cls)}") from None


class ResultFormatError(ValueError):
    """A mapping read back from a report is not a check result."""


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
    #: skipped because this machine lacks hardware the check needs (not for a missing
    #: package or an option): what ``--tb-fail-on-skip`` fails on
    hardware_skip: bool = False

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
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        """The result that :meth:`to_dict` wrote, as a report file holds it.

        ``check`` and ``status`` are required (any case of a known status); the other
        fields take their defaults when absent or of the wrong type, so results written by
        older versions load too (pytest's ``nodeid`` stands for a missing ``test_id``).
        A metric is ``{"value": v, "unit": u}`` or a bare number. Raises
        :class:`ResultFormatError` for anything that is not a check result.
        """
        if not isinstance(data, Mapping) or "check" not in data or "status" not in data:
            raise ResultFormatError("not a check result (needs 'check' and 'status')")
        return cls(
            check=str(data["check"]),
            status=Status.parse(data["status"]),
            message=str(data.get("message") or ""),
            device=str(data.get("device") or "cpu"),
            metrics=_metrics(data.get("metrics")),
            budgets=_metrics(data.get("budgets")),
            details=dict(_mapping(data.get("details"))),
            duration_s=_number(data.get("duration_s")) or 0.0,
            test_id=str(data.get("test_id") or data.get("nodeid") or ""),
            hardware_skip=data.get("hardware_skip") is True,
        )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _metrics(value: Any) -> dict[str, Metric]:
    """Metrics as :meth:`CheckResult.to_dict` writes them; unreadable entries are dropped."""
    found = {}
    for name, entry in _mapping(value).items():
        number = _number(entry.get("value") if isinstance(entry, Mapping) else entry)
        if number is not None:
            unit = entry.get("unit", "") if isinstance(entry, Mapping) else ""
            found[str(name)] = Metric(number, str(unit))
    return found
