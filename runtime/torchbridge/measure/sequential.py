"""The early-stopping decision for percentile budgets.

After each look at the samples, every gated percentile gets a lower and an upper
confidence bound (binomial order statistics, :mod:`torchbridge.measure.stats`), each
one-sided at the configured confidence:

* the upper bound is below the budget → that percentile **passes** ("p99 ≤ budget with
  95 % confidence");
* the lower bound is above the budget → it **fails**;
* otherwise it is still undecided.

Measuring stops as soon as every gated percentile is decided, or at the time/sample cap.
A cap reached while a percentile is undecided is a failure marked *inconclusive*, and the
message says why: the interval still straddles the budget, or fewer samples were taken
than MLPerf asks for that percentile (64 for p90, 662 for p99). Nothing is guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torchbridge.measure import stats

#: MLPerf LoadGen's minimum query counts for early stopping on a percentile.
MLPERF_MINIMUM = {0.90: 64, 0.99: 662}

PASS, FAIL, UNDECIDED = "pass", "fail", "undecided"


def minimum_samples(p: float) -> int:
    """Samples MLPerf asks for before trusting percentile ``p`` (interpolated for others:
    at least enough for the sample maximum to bound it at 99 % confidence)."""
    for level, count in sorted(MLPERF_MINIMUM.items()):
        if math.isclose(p, level):
            return count
    return max(1, math.ceil(math.log(0.01) / math.log(p))) if p < 1 else 1


@dataclass(frozen=True)
class GateState:
    """Where one gated percentile stands after a look."""

    name: str
    p: float
    budget: float
    value: float
    lower: float
    upper: float
    state: str
    n: int


@dataclass(frozen=True)
class Decision:
    """The verdict over every gated percentile: ``pass``, ``fail``, ``inconclusive``, or
    ``undecided`` (only while still measuring)."""

    verdict: str
    gates: list[GateState] = field(default_factory=list)

    @property
    def decided(self) -> bool:
        return self.verdict in (PASS, FAIL)


def evaluate(samples: Sequence[float], budgets: Mapping[str, float], confidence: float
             ) -> Decision:
    """Decide every gated percentile (``{"p99": budget}``, same unit as ``samples``)."""
    ordered = sorted(samples)
    gates = []
    for name, budget in budgets.items():
        p = stats.parse_percentile(name)
        lower, upper = stats.bounds(ordered, p, confidence)
        state = PASS if upper <= budget else FAIL if lower > budget else UNDECIDED
        gates.append(GateState(name, p, budget, stats.percentile(ordered, p), lower, upper,
                               state, len(ordered)))
    if any(g.state == FAIL for g in gates):
        verdict = FAIL
    elif all(g.state == PASS for g in gates):
        verdict = PASS
    else:
        verdict = UNDECIDED
    return Decision(verdict, gates)


def final(samples: Sequence[float], budgets: Mapping[str, float], confidence: float
          ) -> Decision:
    """The decision once measuring has stopped: an undecided one becomes inconclusive."""
    decision = evaluate(samples, budgets, confidence)
    if decision.verdict == UNDECIDED:
        return Decision("inconclusive", decision.gates)
    return decision


def why_inconclusive(gate: GateState, confidence: float) -> str:
    """The reason one percentile stayed undecided, and what to change."""
    need = minimum_samples(gate.p)
    pct = f"{confidence * 100:g} %"
    if gate.n < need:
        return (f"only {gate.n} samples, {gate.name} needs at least {need} (MLPerf minimum); "
                "raise max_time or max_samples")
    if math.isinf(gate.upper):
        return (f"{gate.n} samples cannot bound {gate.name} from above at {pct} "
                f"(needs {stats.min_samples_for_upper_bound(gate.p, confidence)}); raise "
                "max_time or max_samples")
    return (f"the {pct} interval still straddles the budget after {gate.n} samples; the true "
            f"{gate.name} is too close to the budget to call — raise max_time or move the budget")


def look_schedule(budgets: Mapping[str, float], confidence: float
                  ) -> Callable[[int], int]:
    """When to look next: every ~10 % more samples, and exactly at the first sample count
    where a gated percentile can be bounded from above (299 for p99 at 95 %), so a pass
    is never delayed by the schedule."""
    specials = sorted({stats.min_samples_for_upper_bound(stats.parse_percentile(name),
                                                         confidence) for name in budgets})

    def next_look(n: int) -> int:
        regular = max(n + 8, int(n * 1.1))
        return next((s for s in specials if n < s < regular), regular)

    return next_look


class Stopper:
    """``stop(samples)`` callable for :func:`torchbridge.measure.timing.measure`."""

    def __init__(self, budgets_ns: Mapping[str, float], confidence: float) -> None:
        self.budgets = dict(budgets_ns)
        self.confidence = confidence
        self.looks = 0

    def __call__(self, samples: list[int]) -> bool:
        if not self.budgets:
            return False
        self.looks += 1
        return evaluate(samples, self.budgets, self.confidence).decided
