"""Summary statistics of latency samples with distribution-free percentile bounds.

Percentiles use the **nearest-rank** definition: the p-th percentile of ``n`` sorted
samples is the sample of (1-based) rank ``ceil(n * p)``, i.e. ``sorted[ceil(n*p) - 1]``.
It is always an observed value, never an interpolation, and it is the smallest sample
with at least a fraction ``p`` of the samples at or below it. MLPerf LoadGen uses
``sorted[floor(n*p)]``, which is one rank higher whenever ``n*p`` is a whole number
(n = 1000: MLPerf reports rank 991 for p99, we report rank 990).

Confidence bounds come from binomial order statistics and need no assumption about the
shape of the distribution: the number of samples at or below the true percentile
``q_p`` is Binomial(n, p), so

* ``sorted[l - 1] <= q_p`` with probability ``P(B >= l)`` (a lower bound), and
* ``sorted[u - 1] >= q_p`` with probability ``P(B < u)`` (an upper bound).

With n = 299 the sample maximum is a 95 % upper bound for p99; at n = 1000 the
two-sided 95 % interval for p99 spans ranks 983 to 997.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

#: Percentiles every summary reports, by name.
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}


def nearest_rank(n: int, p: float) -> int:
    """1-based nearest rank of percentile ``p`` (0 < p <= 1) among ``n`` samples."""
    if n <= 0:
        raise ValueError("no samples")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"percentile fraction must be in (0, 1], got {p}")
    # round() first so that e.g. 0.29 * 100 = 28.999999999999996 still gives rank 29
    return max(1, min(n, math.ceil(round(n * p, 9))))


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    return sorted_samples[nearest_rank(len(sorted_samples), p) - 1]


def _log_pmf_table(n: int, p: float) -> list[float]:
    log_p, log_q = math.log(p), math.log1p(-p)
    lg_n1 = math.lgamma(n + 1)
    return [lg_n1 - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
            for k in range(n + 1)]


@lru_cache(maxsize=4096)
def _binomial_cdf(n: int, p: float) -> tuple[float, ...]:
    """``cdf[k] = P(B <= k)`` for B ~ Binomial(n, p), computed stably in log space."""
    logs = _log_pmf_table(n, p)
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = math.fsum(weights)
    cdf, running = [], 0.0
    for w in weights:
        running += w
        cdf.append(min(1.0, running / total))
    return tuple(cdf)


def lower_rank(n: int, p: float, confidence: float) -> int | None:
    """The largest rank ``l`` with ``P(sorted[l-1] <= q_p) >= confidence``, or ``None``
    when no sample is a lower bound at that confidence."""
    cdf = _binomial_cdf(n, p)
    alpha = 1.0 - confidence
    # P(sorted[l-1] > q_p) = P(B <= l - 1) must stay <= alpha; it grows with l.
    best = None
    for rank in range(1, n + 1):
        if cdf[rank - 1] <= alpha:
            best = rank
        else:
            break
    return best


def upper_rank(n: int, p: float, confidence: float) -> int | None:
    """The smallest rank ``u`` with ``P(sorted[u-1] >= q_p) >= confidence``, or ``None``
    when even the maximum is not an upper bound at that confidence (too few samples)."""
    cdf = _binomial_cdf(n, p)
    alpha = 1.0 - confidence
    # P(sorted[u-1] < q_p) <= P(B >= u) = 1 - cdf[u - 1] must stay <= alpha.
    for rank in range(1, n + 1):
        if 1.0 - cdf[rank - 1] <= alpha:
            return rank
    return None


def bounds_ranks(n: int, p: float, confidence: float) -> tuple[int | None, int | None]:
    """(lower, upper) ranks, each a *one-sided* bound at ``confidence``."""
    return lower_rank(n, p, confidence), upper_rank(n, p, confidence)


def interval_ranks(n: int, p: float, confidence: float) -> tuple[int | None, int | None]:
    """(lower, upper) ranks of the equal-tailed *two-sided* interval at ``confidence``."""
    one_sided = 1.0 - (1.0 - confidence) / 2.0
    return bounds_ranks(n, p, one_sided)


def bounds(sorted_samples: Sequence[float], p: float, confidence: float
           ) -> tuple[float, float]:
    """One-sided lower and upper confidence bounds for percentile ``p``.

    A missing bound is ``-inf`` / ``+inf``: too few samples to bound that side.
    """
    lo, hi = bounds_ranks(len(sorted_samples), p, confidence)
    return (sorted_samples[lo - 1] if lo else -math.inf,
            sorted_samples[hi - 1] if hi else math.inf)


def min_samples_for_upper_bound(p: float, confidence: float) -> int:
    """The fewest samples whose maximum is an upper bound for ``p`` at ``confidence``
    (299 for p99 at 95 %): until then no run can show that a percentile is *below* a budget."""
    return math.ceil(math.log(1.0 - confidence) / math.log(p))


@dataclass(frozen=True)
class Summary:
    """Statistics of one set of samples, in the samples' own unit."""

    n: int
    min: float
    max: float
    mean: float
    std: float
    percentiles: dict[str, float]

    def to_dict(self) -> dict[str, float]:
        return {"n": self.n, "min": self.min, "max": self.max, "mean": self.mean,
                "std": self.std, **self.percentiles}


def summarize(samples: Sequence[float]) -> Summary:
    """min, max, mean, sample standard deviation and nearest-rank p50/p90/p95/p99."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    var = math.fsum((x - mean) ** 2 for x in ordered) / (n - 1) if n > 1 else 0.0
    return Summary(n, ordered[0], ordered[-1], mean, math.sqrt(var),
                   {name: percentile(ordered, p) for name, p in PERCENTILES.items()})


#: A run whose quarter medians differ by more than this is reported as unsteady.
UNSTEADY_DRIFT = 0.10
#: Fewest samples in each quarter for their medians to be compared at all.
DRIFT_MIN_PART = 50


def median_drift(samples: Sequence[float], parts: int = 4) -> float | None:
    """How far the median moved during a run: the largest median of ``parts`` consecutive
    slices of the (time-ordered) samples over the smallest, minus one. ``None`` with fewer
    than ``DRIFT_MIN_PART`` samples per slice.

    A steady machine keeps it within a few percent. A host whose neighbours slow it down
    in bursts moves it by tens of percent, and then a tail percentile depends on how many
    bursts the run happened to catch: it will not reproduce in the next run.

    >>> median_drift([1.0] * 100 + [1.5] * 100, parts=2)   # doctest: +SKIP
    0.5
    """
    size = len(samples) // parts
    if size < DRIFT_MIN_PART:
        return None
    medians = [statistics.median(samples[i * size:(i + 1) * size]) for i in range(parts)]
    return max(medians) / min(medians) - 1.0 if min(medians) > 0 else None


def parse_percentile(name: str) -> float:
    """``"p99"`` → 0.99, ``"p99.9"`` → 0.999, ``"p50"`` → 0.5."""
    if not name.startswith("p"):
        raise ValueError(f"not a percentile name: {name!r}")
    value = float(name[1:]) / 100.0
    if not 0.0 < value < 1.0:
        raise ValueError(f"percentile {name!r} must lie strictly between p0 and p100")
    return value
