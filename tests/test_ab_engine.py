"""The paired, interleaved comparison engine (torchbridge.measure.ab) on real models."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

from torchbridge.core.result import CheckResult, Status
from torchbridge.measure import ab
from torchbridge.measure.timing import threads


def matmuls(repeats: int) -> ab.LocalSide:
    """A side doing ``repeats`` 128x128 matmuls per call (one thread)."""
    weight = torch.randn(128, 128) / 12
    x = torch.randn(16, 128)

    def call() -> torch.Tensor:
        y = x
        for _ in range(repeats):
            y = torch.tanh(y @ weight)
        return y

    return ab.LocalSide(call)


def test_the_interval_is_the_sign_test_order_statistics_around_the_median() -> None:
    ratios = [1.0 + i / 100 for i in range(100)]  # 1.00 .. 1.99, median 1.495
    comparison = ab.summarize_ratios(ratios, label="main", threshold=0.1, confidence=0.95)
    # Two-sided 95 % for the median of 100: ranks 40 and 61 (binomial, p = 1/2).
    assert comparison.ratio == pytest.approx(1.495)
    assert (comparison.low, comparison.high) == (pytest.approx(1.39), pytest.approx(1.60))
    assert comparison.regression


def test_a_ratio_above_the_threshold_whose_interval_reaches_one_is_not_a_regression() -> None:
    ratios = [0.9, 0.95, 1.0, 1.2, 1.25, 1.3, 1.35, 1.4]
    comparison = ab.summarize_ratios(ratios, label="main", threshold=0.1, confidence=0.95)
    assert comparison.ratio > 1.1 and comparison.low is not None and comparison.low <= 1
    assert comparison.verdict == "unchanged"


def test_too_few_pairs_to_bound_the_median_are_inconclusive() -> None:
    comparison = ab.summarize_ratios([1.5] * 5, label="main", threshold=0.1, confidence=0.95)
    assert comparison.low is None and comparison.verdict == "inconclusive"
    assert "bounds ?…? %" in comparison.describe()


def test_a_regression_fails_a_passing_result_with_the_ratio_first_in_the_message() -> None:
    result = CheckResult("latency", Status.PASSED, "p50 1 ms", "cpu")
    comparison = ab.summarize_ratios([1.13] * 240, label="origin/main", threshold=0.05,
                                     confidence=0.95)
    ab.record(result, comparison)
    assert result.status is Status.FAILED
    assert result.message.startswith(
        "regression: p50 +13.0 % against origin/main (95 % bounds +13.0…+13.0 %, "
        "240 interleaved pairs), above the 5 % threshold; p50 1 ms")
    assert result.metrics["baseline_ratio"].value == pytest.approx(1.13)
    assert result.metrics["baseline_pairs"].value == 240
    assert result.details["baseline_ref"]["verdict"] == "regression"


def test_a_side_that_cannot_be_measured_is_reported_not_compared() -> None:
    @contextlib.contextmanager
    def absent(request: ab.SideRequest) -> Iterator[ab.Sides]:
        raise ab.NotCompared(f"no such test item at main ({request.test_id})")
        yield  # pragma: no cover

    result = CheckResult("latency", Status.PASSED, "p50 1 ms", "cpu")
    ab.compare_into(result, ab.PairedBaseline("main", absent),
                    ab.SideRequest("t.py::x", "cpu", 1, 1), matmuls(1), 0.1)
    assert result.status is Status.PASSED
    assert result.message.endswith("; not compared against main: no such test item at main "
                                   "(t.py::x)")
    assert result.details["baseline_ref"] == {
        "against": "main", "compared": False,
        "reason": "no such test item at main (t.py::x)"}


def test_four_times_the_work_is_a_regression_and_the_same_work_is_not() -> None:
    with threads(1):
        slower = ab.compare(matmuls(4), matmuls(1), seconds=0.3, label="main", threshold=0.1)
        same = ab.compare(matmuls(1), matmuls(1), seconds=0.3, label="main", threshold=0.1)
    assert slower.regression and slower.ratio > 2
    assert not same.regression
    assert slower.pairs >= ab.MIN_PAIRS


def test_a_non_positive_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="seconds must be positive"):
        ab.compare(matmuls(1), matmuls(1), seconds=0, label="main")
