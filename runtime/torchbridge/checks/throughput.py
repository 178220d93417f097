"""``throughput``: samples per second per batch size; a stress sweep up to out-of-memory.

Example::

    @tb.throughput(min_samples_per_s=2000, batch_sizes=[1, 8, 32])
    @tb.throughput(stress=True, batch_sizes=[1, 4, 16, 64, 256])   # largest batch that fits

The gated number is the throughput at the largest batch size measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchbridge.checks.base import CheckConfig, PerformanceCheck, RunContext
from torchbridge.checks.options import (
    batch_sizes,
    flag,
    option,
    optional,
    per_device,
    positive_int,
)
from torchbridge.checks.registry import register
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import Subject
from torchbridge.measure import ab, throughput, timing
from torchbridge.measure.baseline import apply_baseline
from torchbridge.measure.gpu import UtilizationSampler
from torchbridge.measure.runner import ModelRejected, bind
from torchbridge.units import PerDevice, parse_duration, parse_rate


@dataclass(frozen=True)
class ThroughputConfig(CheckConfig):
    """``min_samples_per_s`` (per device if a dict), ``batch_sizes`` (default: the sample's),
    ``max_time`` per batch size, ``stress`` (stop at the first OOM instead of failing)."""

    min_samples_per_s: PerDevice[float] = option(None, per_device(parse_rate))
    batch_sizes: tuple[int, ...] | None = option(None, optional(batch_sizes))
    max_time: float = option("1s", parse_duration)
    stress: bool = option(False, flag)
    threads: int | None = option(None, positive_int)


def _round_rates(details: dict[str, Any]) -> list[float] | None:
    rows = details.get("by_batch") or []
    return list(rows[-1].get("round_rates") or []) if rows else None


@register
class ThroughputCheck(PerformanceCheck[ThroughputConfig]):
    name = "throughput"
    summary = "Samples per second (batch-size aware) at or above a floor."

    def run(self, subject: Subject, config: ThroughputConfig, context: RunContext) -> CheckResult:
        result = self.result_for(subject)
        sizes = config.batch_sizes or (subject.batch_size,)

        def make_fn(size: int) -> Callable[[], Any]:
            try:
                return bind(subject, size).fn
            except ModelRejected as exc:
                raise throughput.BatchRejected(size, exc.__cause__ or exc) from exc

        with timing.threads(config.threads) as threads, \
                UtilizationSampler(subject.device) as sampler:
            try:
                sweep = throughput.sweep(make_fn, sizes, subject.device, config.max_time)
            except throughput.BatchRejected as exc:
                result.status = Status.FAILED
                result.message = f"{exc}; pass batch_sizes the model accepts"
                return result
        self._record(result, sweep, config, sampler.samples, threads)
        apply_baseline(result, context.test_id, context.baseline, ["p50"],
                       samples_of=_round_rates, higher_is_better=True, unit=" samples/s")
        if sweep.by_batch and context.compare_with is not None:
            size = sweep.by_batch[-1].batch_size  # the gated row
            with timing.threads(config.threads) as threads:
                ab.compare_into(result, context.compare_with,
                                ab.SideRequest(context.test_id, subject.device, size, threads),
                                ab.LocalSide(bind(subject, size).fn, subject.device),
                                ab.paired_seconds(config.max_time), "time per batch")
        return result

    def _record(self, result: CheckResult, sweep: Any, config: ThroughputConfig,
                utilization: Any, threads: int) -> None:
        rows = [b.to_dict() for b in sweep.by_batch]
        result.details.update({"by_batch": rows, "threads": threads,
                               "stopped": sweep.stopped,
                               "gpu_utilization": utilization.to_dict()})
        if config.stress:
            result.details["largest_batch_that_fits"] = sweep.largest_batch_that_fits
        for row in sweep.by_batch:
            result.metric(f"samples_per_s_bs{row.batch_size}", row.samples_per_s, "samples/s")
        if not sweep.by_batch:
            result.status = Status.FAILED
            result.message = f"{sweep.stopped}: no batch size fits on {result.device}"
            return
        best = sweep.by_batch[-1]
        result.metric("samples_per_s", best.samples_per_s, "samples/s")
        if utilization.mean_gpu_percent is not None:
            result.metric("gpu_utilization_pct", utilization.mean_gpu_percent, "%")
        floor = config.min_samples_per_s.for_device(result.device)
        if floor is not None:
            result.budget("samples_per_s", floor, "samples/s")
        table = ", ".join(f"bs{b.batch_size} {b.samples_per_s:,.0f}/s" for b in sweep.by_batch)
        if sweep.stopped and not config.stress:
            result.status = Status.FAILED
            result.message = (f"{sweep.stopped} (measured: {table}); lower batch_sizes or use "
                              "stress=True to find the largest batch that fits")
        elif floor is not None and best.samples_per_s < floor:
            result.status = Status.FAILED
            result.message = (f"{best.samples_per_s:,.0f} samples/s < floor {floor:,.0f} at "
                              f"batch {best.batch_size} ({table}, {threads} threads)")
        else:
            fits = f"; largest batch that fits: {sweep.largest_batch_that_fits}" \
                if config.stress else ""
            gated = f" >= floor {floor:,.0f}" if floor is not None else ""
            result.message = f"{table}{gated}{fits}"
