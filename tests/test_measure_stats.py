"""Percentiles by nearest rank and distribution-free (binomial) confidence bounds."""

from __future__ import annotations

import math
import random

import pytest

from torchbridge.measure import stats


def test_nearest_rank_is_ceil_of_n_times_p() -> None:
    assert stats.nearest_rank(1000, 0.99) == 990
    assert stats.nearest_rank(100, 0.29) == 29  # 0.29 * 100 is 28.999... in floating point
    assert stats.nearest_rank(10, 0.5) == 5
    assert stats.nearest_rank(1, 0.99) == 1


def test_percentile_is_always_an_observed_sample() -> None:
    data = list(range(1, 101))
    assert stats.percentile(data, 0.99) == 99
    assert stats.percentile(data, 0.5) == 50
    assert stats.percentile([3.0, 1.0, 2.0][:1], 0.9) == 3.0


def test_two_sided_95_interval_for_p99_at_n_1000_spans_ranks_983_to_997() -> None:
    assert stats.interval_ranks(1000, 0.99, 0.95) == (983, 997)


def test_maximum_of_299_samples_is_a_95_upper_bound_for_p99() -> None:
    assert stats.upper_rank(299, 0.99, 0.95) == 299
    assert stats.upper_rank(298, 0.99, 0.95) is None
    assert stats.min_samples_for_upper_bound(0.99, 0.95) == 299


def test_too_few_samples_give_an_infinite_upper_bound() -> None:
    low, high = stats.bounds(sorted(float(i) for i in range(50)), 0.99, 0.95)
    assert high == math.inf
    assert low <= 49


def test_bounds_cover_the_true_percentile_at_least_as_often_as_promised() -> None:
    rng = random.Random(7)
    trials, misses_low, misses_high = 400, 0, 0
    true_p90 = 0.9  # of Uniform(0, 1)
    for _ in range(trials):
        sample = sorted(rng.random() for _ in range(200))
        low, high = stats.bounds(sample, 0.9, 0.95)
        misses_low += low > true_p90
        misses_high += high < true_p90
    # each one-sided bound may miss at most 5 % of the time; allow binomial slack
    assert misses_low / trials < 0.09
    assert misses_high / trials < 0.09


def test_summary_reports_min_max_mean_std_and_percentiles() -> None:
    summary = stats.summarize([float(i) for i in range(1, 101)])
    assert (summary.n, summary.min, summary.max, summary.mean) == (100, 1.0, 100.0, 50.5)
    assert summary.std == pytest.approx(29.0115, rel=1e-4)
    assert summary.percentiles == {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


def test_percentile_names_parse_and_reject_nonsense() -> None:
    assert stats.parse_percentile("p99") == 0.99
    assert stats.parse_percentile("p99.9") == pytest.approx(0.999)
    with pytest.raises(ValueError):
        stats.parse_percentile("p100")


def test_median_drift_is_small_for_a_steady_run() -> None:
    rng = random.Random(3)
    samples = [100.0 + rng.random() for _ in range(400)]
    drift = stats.median_drift(samples)
    assert drift is not None and drift < 0.01


def test_median_drift_reports_a_run_that_slowed_down_halfway() -> None:
    samples = [100.0] * 200 + [150.0] * 200
    assert stats.median_drift(samples) == pytest.approx(0.5)


def test_median_drift_needs_fifty_samples_in_each_quarter() -> None:
    assert stats.median_drift([1.0] * 199) is None
    assert stats.median_drift([1.0] * 200) == 0.0
