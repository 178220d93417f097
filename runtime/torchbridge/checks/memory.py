"""``memory``: measured peak of a forward pass within a budget, against the estimate and
the device's free memory.

Example::

    @tb.memory(peak="1GiB")                    # gate the measured peak
    @tb.memory(peak={"cuda": "6GiB"}, headroom=0.2, batch_size=32)   # and leave 20 % free
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torchbridge.checks.base import CheckConfig, PerformanceCheck, RunContext
from torchbridge.checks.options import option, per_device, positive_int
from torchbridge.checks.registry import register
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import Subject
from torchbridge.errors import ConfigError
from torchbridge.measure.estimate import estimate_memory
from torchbridge.measure.memory import free_memory, measure_peak
from torchbridge.units import PerDevice, format_bytes, parse_bytes


def _headroom(value: object, what: str) -> float | int | None:
    """A fraction of free memory (0 < f < 1) or an amount of bytes to keep free."""
    if value is None:
        return None
    if isinstance(value, float) and 0 < value < 1:
        return value
    try:
        return parse_bytes(value, what)
    except ConfigError:
        raise ConfigError(f"{what}: give a fraction of free memory between 0 and 1 (0.2) "
                          f"or an amount ('2GiB'), got {value!r}") from None


@dataclass(frozen=True)
class MemoryConfig(CheckConfig):
    """``peak`` budget (bytes or '1GiB', per device if a dict), ``headroom`` to leave free,
    ``batch_size`` (default: the sample's)."""

    peak: PerDevice[int] = option(None, per_device(parse_bytes))
    headroom: float | int | None = option(None, _headroom)
    batch_size: int | None = option(None, positive_int)


@register
class MemoryCheck(PerformanceCheck[MemoryConfig]):
    name = "memory"
    summary = "Peak memory of a forward pass within budget; fits in free memory."

    def run(self, subject: Subject, config: MemoryConfig, context: RunContext) -> CheckResult:
        result = self.result_for(subject)
        free = free_memory(subject.device)
        call = self.bound(subject, config.batch_size, result)
        if call is None:
            return result
        peak = measure_peak(call.model, call.inputs, subject.device)
        result.metric("peak_bytes", peak.peak_bytes, "bytes")
        result.details.update({"method": peak.method, "batch_size": call.batch_size,
                               "measured": peak.to_dict()})
        estimate = self._estimate(subject, call, result, estimate_memory)
        if free is not None:
            result.metric("free_bytes", free, "bytes")
        budget = config.peak.for_device(subject.device)
        if budget is not None:
            result.budget("peak_bytes", budget, "bytes")
        problems = []
        if budget is not None and peak.peak_bytes > budget:
            problems.append(f"peak {format_bytes(peak.peak_bytes)} > budget "
                            f"{format_bytes(budget)}")
        if config.headroom is not None and free is None:
            problems.append(f"headroom was asked for but the free memory on {subject.device} "
                            "is unknown (install psutil for the CPU), so it was not checked")
        if config.headroom is not None and free is not None:
            keep = int(free * config.headroom) if isinstance(config.headroom, float) \
                else int(config.headroom)
            # What this forward pass still needs beyond what is already resident, as the
            # process sees it (library buffers outside torch's allocator included).
            need = peak.process_forward_bytes + keep
            result.details["headroom_bytes"] = keep
            if need > free:
                problems.append(f"needs {format_bytes(peak.process_forward_bytes)} more plus "
                                f"{format_bytes(keep)} headroom, only {format_bytes(free)} "
                                f"free on {subject.device}")
        est = f", estimate {format_bytes(estimate)}" if estimate is not None else ""
        where = f"{subject.device}, batch {call.batch_size}, {peak.method}"
        if peak.rss_forward_bytes is not None:
            where += f"; process RSS +{format_bytes(peak.rss_forward_bytes)}"
        if problems:
            result.status = Status.FAILED
            result.message = "; ".join(problems) + f" ({where}{est})"
        else:
            within = f" <= budget {format_bytes(budget)}" if budget is not None else ""
            result.message = f"peak {format_bytes(peak.peak_bytes)}{within} ({where}{est})"
        return result

    def _estimate(self, subject: Subject, call: Any, result: CheckResult, estimate: Any
                  ) -> int | None:
        try:
            # The bound inputs are already on the device and at the measured batch size.
            value = estimate(call.model, call.batch_size or 1, call.inputs,
                             device=subject.device, batch_dim=subject.spec.batch_dim)
        except ConfigError as exc:
            result.details["estimate_error"] = str(exc)
            return None
        result.metric("estimate_bytes", int(value), "bytes")
        result.details["estimate"] = value.to_dict()
        measured = result.metrics["peak_bytes"].value
        if measured:
            result.details["estimate_ratio"] = int(value) / measured
        return int(value)
