"""Baseline comparison: a regression needs the threshold *and* significance."""

from __future__ import annotations

import random

from torchbridge.measure.baseline import (
    compare_samples,
    mann_whitney_p,
    precise_enough,
    sized_stop,
)


def draw(n: int, seed: int, scale: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [scale * rng.lognormvariate(0.0, 0.3) for _ in range(n)]


def test_large_significant_slowdown_is_a_regression() -> None:
    result = compare_samples(draw(1000, 1), draw(1000, 2, scale=1.3), "p99", threshold=0.1)
    assert result.regression
    assert result.verdict == "regression"
    assert result.change_low > 0


def test_same_distribution_is_not_a_regression() -> None:
    result = compare_samples(draw(1000, 1), draw(1000, 2), "p99", threshold=0.1)
    assert not result.regression
    assert result.verdict == "unchanged"


def test_slowdown_below_threshold_is_not_a_regression_even_when_significant() -> None:
    result = compare_samples(draw(5000, 1), draw(5000, 2, scale=1.05), "p50", threshold=0.1)
    assert result.significant
    assert not result.regression


def test_large_change_on_few_noisy_samples_is_noise_not_a_regression() -> None:
    old = [1.0, 1.5, 0.8, 1.2, 0.9, 1.4, 1.1, 0.7]
    new = [1.3, 0.9, 1.6, 1.25, 1.45, 0.85, 0.75, 1.5]
    result = compare_samples(old, new, "p50", threshold=0.1)
    assert result.change > 0.1
    assert not result.significant
    assert result.verdict == "noise"


def test_improvement_passes_and_is_named() -> None:
    result = compare_samples(draw(1000, 1), draw(1000, 2, scale=0.6), "p50")
    assert result.verdict == "improvement"
    assert not result.regression


def test_higher_is_better_flips_the_direction() -> None:
    result = compare_samples(draw(500, 1, scale=100), draw(500, 2, scale=60), "p50",
                             higher_is_better=True)
    assert result.regression


def test_mann_whitney_p_is_small_for_a_clear_shift_and_large_without_one() -> None:
    assert mann_whitney_p(draw(300, 1), draw(300, 2, scale=1.5)) < 1e-6
    assert mann_whitney_p(draw(300, 1), draw(300, 2)) > 0.01


def test_the_median_of_299_noisy_samples_cannot_resolve_a_5_percent_change() -> None:
    # lognormal sigma 0.3: the median's 95 % interval at n=299 spans ~7 % of it
    assert not precise_enough(draw(299, 1), threshold=0.05)
    assert precise_enough(draw(5000, 1), threshold=0.05)


def test_a_wider_threshold_needs_fewer_samples() -> None:
    assert precise_enough(draw(299, 1), threshold=0.2)


def test_the_sized_rule_waits_for_both_the_budget_decision_and_the_precision() -> None:
    many = [int(x * 1000) for x in draw(5000, 3)]
    assert not sized_stop(lambda samples: False, 0.05)(many)
    assert sized_stop(lambda samples: True, 0.05)(many)
    assert sized_stop(None, 0.05)(many)
    assert not sized_stop(None, 0.05)(many[:100])
