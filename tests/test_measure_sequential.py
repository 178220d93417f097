"""The early-stopping decision on synthetic samples: pass, fail, inconclusive."""

from __future__ import annotations

import itertools
import random

from torchbridge.measure import sequential


def lognormal(n: int, seed: int = 0, scale: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [scale * rng.lognormvariate(0.0, 0.25) for _ in range(n)]


def true_p99(scale: float = 1.0) -> float:
    return scale * 1.789  # exp(2.326 * 0.25)


def test_budget_well_above_p99_passes_once_enough_samples_bound_it() -> None:
    samples = lognormal(400)
    decision = sequential.evaluate(samples, {"p99": true_p99() * 1.5}, 0.95)
    assert decision.verdict == "pass"


def test_pass_is_impossible_before_the_maximum_bounds_p99() -> None:
    decision = sequential.evaluate(lognormal(298), {"p99": 1e9}, 0.95)
    assert decision.verdict == "undecided"


def test_budget_well_below_p99_fails_after_few_samples() -> None:
    decision = sequential.evaluate(lognormal(60), {"p99": true_p99() * 0.6}, 0.95)
    assert decision.verdict == "fail"
    assert decision.gates[0].lower > true_p99() * 0.6


def test_every_gate_must_pass_and_any_failing_gate_fails() -> None:
    samples = lognormal(1000)
    both = sequential.evaluate(samples, {"p50": 10.0, "p99": 10.0}, 0.95)
    one_bad = sequential.evaluate(samples, {"p50": 0.5, "p99": 10.0}, 0.95)
    assert both.verdict == "pass"
    assert one_bad.verdict == "fail"


def test_budget_at_the_true_p99_is_inconclusive_with_a_reason() -> None:
    samples = lognormal(2000, seed=3)
    decision = sequential.final(samples, {"p99": true_p99()}, 0.95)
    assert decision.verdict == "inconclusive"
    reason = sequential.why_inconclusive(decision.gates[0], 0.95)
    assert "straddles the budget" in reason


def test_too_few_samples_for_p99_cite_the_mlperf_minimum() -> None:
    decision = sequential.final(lognormal(100), {"p99": true_p99() * 1.2}, 0.95)
    assert decision.verdict == "inconclusive"
    reason = sequential.why_inconclusive(decision.gates[0], 0.95)
    assert "662" in reason and "MLPerf" in reason


def test_stopper_decides_only_with_budgets() -> None:
    assert sequential.Stopper({}, 0.95)([1, 2, 3]) is False
    stopper = sequential.Stopper({"p50": 0.1}, 0.95)
    assert stopper([1] * 50) is True
    assert stopper.looks == 1


def test_look_schedule_lands_exactly_where_p99_first_becomes_boundable() -> None:
    next_look = sequential.look_schedule({"p99": 1.0}, 0.95)
    n, looks = 0, []
    while n < 400:
        n = next_look(n)
        looks.append(n)
    assert 299 in looks
    assert all(b > a for a, b in itertools.pairwise(looks))
