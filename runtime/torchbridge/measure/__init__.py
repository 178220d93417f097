"""The measurement engine behind the performance checks and ``tb-benchmark``.

* :mod:`~torchbridge.measure.timing` — per-call samples (``perf_counter_ns`` / CUDA events)
* :mod:`~torchbridge.measure.stats` — nearest-rank percentiles, binomial confidence bounds
* :mod:`~torchbridge.measure.sequential` — early stopping against percentile budgets
* :mod:`~torchbridge.measure.throughput` — samples/s per batch size, stress sweeps
* :mod:`~torchbridge.measure.memory` — measured peak memory
* :mod:`~torchbridge.measure.estimate` — peak memory predicted on fake tensors
* :mod:`~torchbridge.measure.gpu` — NVML utilisation sampling
* :mod:`~torchbridge.measure.baseline` — regression = beyond threshold *and* significant
"""

from __future__ import annotations

from torchbridge.measure.estimate import MemoryEstimate, estimate_memory
from torchbridge.measure.memory import measure_peak
from torchbridge.measure.stats import Summary, percentile, summarize
from torchbridge.measure.timing import Measurement, measure

__all__ = [
           "Measurement",
           "MemoryEstimate",
           "Summary",
           "estimate_memory",
           "measure",
           "measure_peak",
           "percentile",
           "summarize",
]
