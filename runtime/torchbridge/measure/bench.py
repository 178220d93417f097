"""``benchmark_model``: per-call latency percentiles and throughput at each batch size.

The runtime function behind ``tb-benchmark``; Python users call it directly::

    report = benchmark_model(model, x, batch_sizes=[1, 8, 32])
    report.rows[0]["p99_ms"], report.rows[-1]["samples_per_s"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from torchbridge.core.subject import Subject
from torchbridge.errors import ConfigError
from torchbridge.measure import stats, throughput, timing
from torchbridge.measure.memory import is_out_of_memory
from torchbridge.measure.runner import ModelRejected, bind


@dataclass
class BenchmarkSettings:
    """How long to measure: ``quick`` is a smoke-level run of a few tenths of a second."""

    latency_time: float = 2.0
    throughput_time: float = 1.0
    max_samples: int = 100_000
    #: Set aside calls the host slowed down (see ``torchbridge.measure.interference``).
    host_filter: bool = True

    @classmethod
    def quick(cls) -> BenchmarkSettings:
        return cls(latency_time=0.3, throughput_time=0.2, max_samples=2_000)


@dataclass
class BenchmarkReport:
    device: str
    threads: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    largest_batch_that_fits: int | None = None
    clock: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "threads": self.threads, "by_batch": self.rows,
                "stopped": self.stopped, "largest_batch_that_fits": self.largest_batch_that_fits,
                "clock": self.clock}


def _one_batch(subject: Subject, size: int, settings: BenchmarkSettings) -> dict[str, Any]:
    call = bind(subject, size)
    measured = timing.measure(call.fn, subject.device, max_time=settings.latency_time,
                              max_samples=settings.max_samples, batch_size=size,
                              host_filter=settings.host_filter)
    summary = stats.summarize(measured.samples_ns)
    rate = throughput.measure_batch(call.fn, size, subject.device, settings.throughput_time)
    row: dict[str, Any] = {"batch_size": size, "samples": summary.n,
           **{f"{k}_ms": v / 1e6 for k, v in summary.percentiles.items()},
           "mean_ms": summary.mean / 1e6, "std_ms": summary.std / 1e6,
           "samples_per_s": rate.samples_per_s}
    ordered = sorted(measured.samples_ns)
    low, high = stats.bounds(ordered, 0.99, 0.95)
    row["p99_bounds_ms"] = [None if low == float("-inf") else low / 1e6,
                            None if high == float("inf") else high / 1e6]
    row["median_drift"] = stats.median_drift(measured.samples_ns)
    aside = measured.interference.set_aside_ns if measured.interference else []
    row["set_aside"] = len(aside)
    return row


def benchmark_model(model: Any, inputs: Any, *, device: str = "cpu",
                    batch_sizes: Sequence[int] | None = None, stress: bool = False,
                    threads: int | None = None, settings: BenchmarkSettings | None = None,
                    on_batch: Callable[[dict[str, Any]], None] | None = None
                    ) -> BenchmarkReport:
    """Measure ``model`` at each batch size (the inputs' own when none are given).

    With ``stress`` the sweep stops at the first out-of-memory and reports the largest
    batch that fit; without it an out-of-memory ends the run with ``stopped`` set. A batch
    size the model rejects raises :class:`ConfigError`.
    """
    settings = settings or BenchmarkSettings()
    subject = Subject(model, inputs, device=device)
    sizes = sorted(set(batch_sizes)) if batch_sizes else [subject.batch_size]
    with timing.threads(threads) as used:
        report = BenchmarkReport(device, used, clock=timing.environment(device, None).clock)
        for size in sizes:
            try:
                row = _one_batch(subject, size, settings)
            except ModelRejected as exc:
                hint = "choose batch sizes the model accepts" if batch_sizes else \
                    "check the input shape and dtype (--input-shape, --dtype)"
                raise ConfigError(f"{exc}; {hint}") from None
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                report.stopped = f"out of memory at batch size {size}"
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                break
            report.rows.append(row)
            if on_batch is not None:
                on_batch(row)
    if stress and report.rows:
        report.largest_batch_that_fits = report.rows[-1]["batch_size"]
    return report
