"""``latency``: per-call percentiles gated with confidence bounds, stopping early.

Example::

    @tb.latency(p50="5ms", p99={"cuda": "8ms", "cpu": "40ms"}, batch_size=1, threads=1)

A failure reads like ``p99 23.1 ms > budget 20 ms (n=812, 95 % bounds 21.9-24.6 ms,
cpu, 1 thread, batch 1)``. See :mod:`torchbridge.measure.sequential` for the decision.
Without ``max_time`` the measuring time is sized from the call time so that a pass is
possible (:mod:`torchbridge.checks._latency_sizing`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torchbridge.checks._latency_sizing import Sizing, inconclusive_reason, size
from torchbridge.checks.base import CheckConfig, PerformanceCheck, RunContext
from torchbridge.checks.options import (
    between,
    count,
    flag,
    option,
    optional,
    per_device,
    positive_int,
)
from torchbridge.checks.registry import register
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import Subject
from torchbridge.measure import ab, sequential, stats, timing
from torchbridge.measure.baseline import apply_baseline, sized_stop
from torchbridge.measure.runner import ModelRejected, bind
from torchbridge.measure.stats import UNSTEADY_DRIFT
from torchbridge.units import PerDevice, format_duration, parse_duration

GATED: tuple[str, ...] = ("p50", "p90", "p95", "p99")
#: Without any budget for this device, measuring stops after this many samples.
UNGATED_SAMPLES = 1000


@dataclass(frozen=True)
class LatencyConfig(CheckConfig):
    """Percentile budgets (durations, per device if a dict), batch size, threads, caps.

    ``max_time``: how long to measure; by default (``None``) at least 5 s and long enough
    for the kept samples a pass needs (299 for p99 at 95 %), at most 120 s.
    """

    p50: PerDevice[float] = option(None, per_device(parse_duration))
    p90: PerDevice[float] = option(None, per_device(parse_duration))
    p95: PerDevice[float] = option(None, per_device(parse_duration))
    p99: PerDevice[float] = option(None, per_device(parse_duration))
    batch_size: int | None = option(None, positive_int)
    threads: int | None = option(None, positive_int)
    max_time: float | None = option(None, optional(parse_duration))
    max_samples: int = option(100_000, count)
    confidence: float = option(0.95, between(0.5, 1.0))
    warmup: float | None = option(None, optional(parse_duration))
    host_filter: bool = option(True, flag)

    def budgets_for(self, device: str) -> dict[str, float]:
        """Gated percentiles and their budgets (seconds) on ``device``."""
        found = {name: getattr(self, name).for_device(device) for name in GATED}
        return {name: value for name, value in found.items() if value is not None}

    def devices_with_budgets(self) -> list[str]:
        names: set[str] = set()
        for name in GATED:
            budget: PerDevice[float] = getattr(self, name)
            names.update(budget.by_device)
        return sorted(names)


def describe_env(device: str, threads: int, batch: int | None) -> str:
    plural = "thread" if threads == 1 else "threads"
    return f"{device}, {threads} {plural}" + (f", batch {batch}" if batch is not None else "")


def unsteady_note(drift: float | None) -> str:
    """A warning for the message when the machine's speed changed during the run."""
    if drift is None or drift <= UNSTEADY_DRIFT:
        return ""
    return (f"; unsteady machine: the median moved {drift * 100:.0f} % between quarters of "
            "the run, so the tail may not reproduce")


def set_aside_note(split: Any) -> str:
    """Says how many calls were left out as slowed by the host, if any."""
    if split is None or not split.set_aside_ns:
        return ""
    return (f"; {len(split.set_aside_ns)} calls ({split.fraction * 100:.1f} %) set aside: "
            "the host slowed the machine around them (host_filter=False keeps them)")


def _stop_rule(stopper: Any, budgets_ns: dict[str, float], context: RunContext) -> Any:
    """The budgets' early decision; when a baseline is saved or compared with, measuring
    also goes on until the median is precise enough to show a change of the threshold's
    size (not just the 299 samples a p99 budget needs)."""
    stop = stopper if budgets_ns else None
    if context.size_for_threshold is None:
        return stop
    return sized_stop(stop, context.size_for_threshold, stopper.confidence)


@register
class LatencyCheck(PerformanceCheck[LatencyConfig]):
    name = "latency"
    summary = "Per-call latency percentiles within budgets, with confidence bounds."

    def run(self, subject: Subject, config: LatencyConfig, context: RunContext) -> CheckResult:
        result = self.result_for(subject)
        budgets_ns = {k: v * 1e9 for k, v in config.budgets_for(subject.device).items()}
        with timing.threads(config.threads):
            try:
                call = bind(subject, config.batch_size)
            except ModelRejected as exc:
                result.status = Status.FAILED
                result.message = str(exc) + ("; pass a batch_size the model accepts"
                                             if config.batch_size else
                                             "; check the sample_input fixture")
                return result
            stopper = sequential.Stopper(budgets_ns, config.confidence)
            sizing = size(config.max_time, budgets_ns, config.confidence,
                          timing.Timer(call.fn, subject.device).sample)
            measured = timing.measure(
                call.fn, subject.device, max_time=sizing.max_time_s,
                max_samples=config.max_samples if budgets_ns or context.size_for_threshold else
                min(config.max_samples, UNGATED_SAMPLES),
                batch_size=call.batch_size, stop=_stop_rule(stopper, budgets_ns, context),
                next_look=sequential.look_schedule(budgets_ns, config.confidence),
                warmup_seconds=config.warmup, host_filter=config.host_filter)
        decision = sequential.final(measured.samples_ns, budgets_ns, config.confidence)
        summary = self._record(result, measured, budgets_ns, decision, config)
        result.details["looks"] = stopper.looks
        result.details["sizing"] = sizing.to_dict()
        where = describe_env(subject.device, measured.env.threads, call.batch_size)
        if sizing.call_s is None and summary.n:
            sizing = dataclasses.replace(sizing, call_s=summary.percentiles["p50"] / 1e9)
        result.status, result.message = self._verdict(decision, config, summary.n, where,
                                                      subject.device, summary.percentiles,
                                                      sizing, measured.stop_reason)
        result.message += unsteady_note(result.details["median_drift"])
        result.message += set_aside_note(measured.interference)
        apply_baseline(result, context.test_id, context.baseline, ["p50", *budgets_ns],
                       unit=" ms", scale=1e-6)
        with timing.threads(config.threads):
            ab.compare_into(result, context.compare_with,
                            ab.SideRequest(context.test_id, subject.device, call.batch_size,
                                           measured.env.threads),
                            ab.LocalSide(call.fn, subject.device),
                            ab.paired_seconds(measured.seconds + measured.warmup.seconds))
        return result

    def _record(self, result: CheckResult, measured: Any, budgets_ns: dict[str, float],
                decision: Any, config: LatencyConfig) -> Any:
        """Metrics, budgets and details of the contract; returns the summary."""
        samples = measured.samples_ns
        summary = stats.summarize(samples)
        for key, value in (("min", summary.min), ("max", summary.max), ("mean", summary.mean),
                           ("std", summary.std), *summary.percentiles.items()):
            result.metric(f"{key}_ms", value / 1e6, "ms")
        result.metric("samples", summary.n, "1")
        for name, budget in budgets_ns.items():
            result.budget(f"{name}_ms", budget / 1e6, "ms")
        ordered = sorted(samples)
        ci = {}
        for name in GATED:
            low, high = stats.bounds(ordered, stats.PERCENTILES[name], config.confidence)
            ci[name] = [low / 1e6 if low != float("-inf") else None,
                        high / 1e6 if high != float("inf") else None]
        env, warm = measured.env, measured.warmup
        result.details.update({
            "samples_ns": samples, "batch_size": env.batch_size, "threads": env.threads,
            "ci_ms": ci, "confidence": config.confidence, "clock": env.clock,
            "decision": decision.verdict if budgets_ns else "measured",
            "stopped_early": measured.stopped_early, "stop_reason": measured.stop_reason,
            "torch_version": env.torch_version, "seconds": measured.seconds,
            "warmup": {"calls": warm.calls, "seconds": warm.seconds, "settled": warm.settled},
            "median_drift": stats.median_drift(samples),
            "host_interference": measured.interference.to_dict()
            if measured.interference else None,
        })
        return summary

    def _verdict(self, decision: Any, config: LatencyConfig, n: int, where: str, device: str,
                 values: dict[str, float], sizing: Sizing, stopped_by: str
                 ) -> tuple[Status, str]:
        pct = f"{config.confidence * 100:g} %"
        if not decision.gates:
            others = config.devices_with_budgets()
            note = f"; budgets are given for {', '.join(others)} only, so {device} is " \
                   "measured, not gated" if others else ""
            return Status.PASSED, (f"p50 {format_duration(values['p50'] / 1e9)}, p99 "
                                   f"{format_duration(values['p99'] / 1e9)} (n={n}, {where})"
                                   f"{note}")
        parts = []
        for gate in decision.gates:
            lo = format_duration(gate.lower / 1e9) if gate.lower != float("-inf") else "-inf"
            hi = format_duration(gate.upper / 1e9) if gate.upper != float("inf") else "inf"
            sign = {"pass": "<=", "fail": ">", "undecided": "~"}[gate.state]
            text = (f"{gate.name} {format_duration(gate.value / 1e9)} {sign} budget "
                    f"{format_duration(gate.budget / 1e9)} (n={n}, {pct} bounds {lo}–{hi}, "  # noqa: RUF001
                    f"{where})")
            if gate.state == "undecided":
                text += ": inconclusive, " + inconclusive_reason(
                    gate, config.confidence, sizing, n, stopped_by, config.max_samples)
            parts.append((gate.state, text))
        if decision.verdict == "pass":
            return Status.PASSED, "; ".join(text for _, text in parts)
        wanted = "fail" if decision.verdict == "fail" else "undecided"
        return Status.FAILED, "; ".join(text for state, text in parts if state == wanted)
