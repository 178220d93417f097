"""How long ``@tb.latency`` measures by default: long enough for a pass to be possible.

A percentile can only *pass* once its upper confidence bound exists and sits below the
budget; for p99 at 95 % that takes 299 kept samples (the sample maximum is then a 95 %
upper bound). A fixed 5 s default gives a 20 ms model 250 calls, so p99 could never pass
and the item ended "inconclusive" on every run. Without an explicit ``max_time`` the check
times a few calls first and measures for ``max(5 s, 1.25 * needed * call time)``, capped at
:data:`AUTO_MAX_TIME_CAP_S`; an explicit ``max_time`` is kept as given, and an inconclusive
result then says how many kept samples a pass needs and which ``max_time`` would get them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torchbridge.measure import stats
from torchbridge.units import format_duration

#: ``max_time`` when the model is fast enough to reach the needed samples in it.
DEFAULT_MAX_TIME_S = 5.0
#: The longest default measurement; slower models need an explicit ``max_time``.
AUTO_MAX_TIME_CAP_S = 120.0
#: Room for warm-up variation and for calls the host filter sets aside.
MARGIN = 1.25


@dataclass(frozen=True)
class Sizing:
    """The measuring time used, whether it was sized automatically, and the numbers it
    came from (``need``: kept samples a pass needs; ``call_s``: seconds per call)."""

    max_time_s: float
    auto: bool
    need: int
    call_s: float | None

    def suggestion(self, kept: int = 0) -> str:
        """A ``max_time`` that would collect :attr:`need` kept samples, as users write it.

        From the larger of the median call time and the rate this run kept samples at
        (``kept`` in :attr:`max_time_s`): warm-up, slow first calls and calls the host
        filter set aside spend time the median does not show, so a suggestion from the
        median alone can name the very ``max_time`` that just fell short."""
        per_sample = [self.call_s] if self.call_s else []
        if kept:
            per_sample.append(self.max_time_s / kept)
        if not per_sample:
            return "a longer max_time"
        seconds = math.ceil(self.need * MARGIN * max(per_sample))
        return f"max_time=\"{seconds}s\""

    def to_dict(self) -> dict[str, Any]:
        return {"max_time_s": self.max_time_s, "auto": self.auto, "need": self.need,
                "call_s": self.call_s}


def samples_for_a_pass(budgets: Mapping[str, float], confidence: float) -> int:
    """Kept samples before every gated percentile can have an upper bound (299 for p99 at
    95 %); 0 without budgets."""
    return max((stats.min_samples_for_upper_bound(stats.parse_percentile(name), confidence)
                for name in budgets), default=0)


def seconds_per_call(sample: Callable[[int], list[int]]) -> float:
    """Median seconds of three timed calls after one untimed one (``sample(n)`` returns
    nanoseconds per call, as :meth:`torchbridge.measure.timing.Timer.sample`)."""
    sample(1)
    return statistics.median(sample(3)) / 1e9


def size(max_time_s: float | None, budgets: Mapping[str, float], confidence: float,
         sample: Callable[[int], list[int]]) -> Sizing:
    """The measuring time: ``max_time_s`` when given, else sized from the call time."""
    need = samples_for_a_pass(budgets, confidence)
    if max_time_s is not None:
        return Sizing(max_time_s, False, need, None)
    if not need:
        return Sizing(DEFAULT_MAX_TIME_S, False, need, None)
    call_s = seconds_per_call(sample)
    wanted = need * MARGIN * call_s
    return Sizing(min(AUTO_MAX_TIME_CAP_S, max(DEFAULT_MAX_TIME_S, wanted)), True, need,
                  call_s)


def inconclusive_reason(gate: Any, confidence: float, sizing: Sizing, kept: int,
                        stopped_by: str = "max_time", max_samples: int | None = None) -> str:
    """Why a percentile stayed undecided, and what to change (``stopped_by``: the cap that
    ended the run, ``max_time`` or ``max_samples``)."""
    pct = f"{confidence * 100:g} %"
    need = stats.min_samples_for_upper_bound(gate.p, confidence)
    if kept < need:
        head = f"a pass needs {need} kept samples at {pct} for {gate.name} and {kept} were kept"
        if stopped_by == "max_samples":
            return f"{head}: max_samples={max_samples} stopped the run; raise it to {need} or more"
        took = f"max_time={format_duration(sizing.max_time_s)}" + (
            " (sized from the call time, capped)" if sizing.auto else "")
        per_call = (f" at {format_duration(sizing.call_s)} a call" if sizing.call_s
                    else "")
        if kept and sizing.max_time_s / kept > 2 * (sizing.call_s or 0):
            per_call += (f" and {format_duration(sizing.max_time_s / kept)} per kept sample "
                         "in this run (warm-up, slow first calls and set-aside calls count)")
        return f"{head} in {took}; {sizing.suggestion(kept)} would do{per_call}"
    return (f"the {pct} interval still straddles the budget after {kept} samples; the true "
            f"{gate.name} is too close to the budget to call: raise max_time or move the "
            "budget")
