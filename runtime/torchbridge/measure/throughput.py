"""Samples per second per batch size, and a stress sweep up to the first out-of-memory.

Throughput is timed in rounds of back-to-back calls (on CUDA with one synchronise per
round, so the GPU stays fed as in serving); a round's rate is ``batch_size * calls /
seconds``. The reported rate is the median round's, so one slow round (another process
waking up) does not move it; per-call latency is round time divided by calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torchbridge.measure.memory import is_out_of_memory
from torchbridge.measure.timing import is_cuda, quiet_region

#: Aim for rounds this long, so timer resolution and loop overhead do not matter.
ROUND_SECONDS = 0.02


@dataclass
class BatchThroughput:
    batch_size: int
    samples_per_s: float
    p50_ms: float
    round_rates: list[float]
    calls_per_round: int

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "samples_per_s": self.samples_per_s,
                "p50_ms": self.p50_ms, "round_rates": self.round_rates,
                "calls_per_round": self.calls_per_round}


@dataclass
class Sweep:
    """Results per batch size; ``stopped`` says why a sweep ended before its last size."""

    by_batch: list[BatchThroughput] = field(default_factory=list)
    stopped: str | None = None
    failed_batch: int | None = None

    @property
    def largest_batch_that_fits(self) -> int | None:
        return self.by_batch[-1].batch_size if self.by_batch else None


class BatchRejected(Exception):
    """The model raised at this batch size for a reason other than memory."""

    def __init__(self, batch_size: int, error: BaseException) -> None:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        super().__init__(f"the model rejects batch size {batch_size}: "
                         f"{type(error).__name__}: {first}")
        self.batch_size = batch_size
        self.error = error


def _timed_round(fn: Callable[[], Any], calls: int, sync: Callable[[], None]) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter_ns() - start) / 1e9


def measure_batch(fn: Callable[[], Any], batch_size: int, device: str = "cpu",
                  max_time: float = 1.0, min_rounds: int = 3) -> BatchThroughput:
    """Throughput of ``fn`` (one call processes ``batch_size`` samples)."""
    import torch

    def sync() -> None:
        if is_cuda(device):
            torch.cuda.synchronize(torch.device(device))

    with quiet_region():
        first = _timed_round(fn, 1, sync)  # warm-up, and a first guess at the call time
        second = _timed_round(fn, 1, sync)
        calls = max(1, int(ROUND_SECONDS / max(min(first, second), 1e-7)))
        deadline = time.perf_counter() + max_time
        rates: list[float] = []
        times: list[float] = []
        while len(rates) < min_rounds or time.perf_counter() < deadline:
            seconds = _timed_round(fn, calls, sync)
            times.append(seconds / calls)
            rates.append(batch_size * calls / seconds)
            if len(rates) >= 10_000:
                break
    return BatchThroughput(batch_size, statistics.median(rates),
                           statistics.median(times) * 1e3, rates, calls)


def sweep(make_fn: Callable[[int], Callable[[], Any]], batch_sizes: Sequence[int],
          device: str = "cpu", max_time_per_batch: float = 1.0,
          on_batch: Callable[[BatchThroughput], None] | None = None) -> Sweep:
    """Measure each batch size in ascending order; stop at the first out-of-memory.

    A batch size the model rejects for another reason raises :class:`BatchRejected`.
    """
    import torch

    result = Sweep()
    for size in sorted(set(batch_sizes)):
        try:
            entry = measure_batch(make_fn(size), size, device, max_time_per_batch)
        except Exception as exc:
            if is_out_of_memory(exc):
                result.stopped = f"out of memory at batch size {size}"
                result.failed_batch = size
                if is_cuda(device):
                    torch.cuda.empty_cache()
                break
            raise BatchRejected(size, exc) from exc
        result.by_batch.append(entry)
        if on_batch is not None:
            on_batch(entry)
    return result
