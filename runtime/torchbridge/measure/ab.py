"""Paired, interleaved comparison of two sides of one measurement (an A/B test).

Two timings taken minutes apart differ by 10-20 % on a shared machine whatever the code
does, so no test on two separate runs sees a 5-15 % change. Measuring both sides in the
same run, in **alternating short blocks**, lets the machine's drift hit both alike:

* each side is warmed up, then the sides take turns, one block of ``block_calls`` calls
  each, lock-step (only one side runs at a time), the first side alternating from pair
  to pair so that running second carries no bias;
* each block pair gives a ratio, ``head time / base time`` of the blocks' fastest calls
  (> 1: the head is slower). The host only ever adds time to a call (preemption, a
  neighbour's cache traffic), so a block's fastest call is its least disturbed one:
  measured on this 2-core machine with a neighbour busy, the spread of the log ratios
  (IQR) is 0.17 with the fastest call against 0.32 with the median call, which is worth
  four times the pairs;
* the result is the **median paired ratio** with a distribution-free interval over the
  pairs (binomial order statistics, the sign test's interval: it assumes only that the
  pairs are independent, not any distribution of the ratios);
* a **regression** is a median ratio above ``1 + threshold`` whose lower bound is above
  1: larger than the team cares about *and* not noise.

The two sides are anything that times a block of calls: a model in this process
(:class:`LocalSide`), or, under pytest with ``--tb-baseline-ref``, the same test item
built by the code at a git ref in a worker process. Only the head's thread count and
batch size are used, on both sides.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from torchbridge.core.result import CheckResult, Status
from torchbridge.errors import ConfigError
from torchbridge.measure import stats
from torchbridge.measure.timing import Timer, is_cuda, quiet_region

#: Calls per block: short, so that drift within a pair is small, yet long enough that
#: the clock's resolution and the switch between sides do not dominate.
BLOCK_CALLS = 4
#: A call at least this long is timed in blocks of one call (more pairs in the time).
SINGLE_CALL_NS = 25_000_000
#: At least this many pairs are taken, even past the time budget (with block minima the
#: MLP's 95 % bounds are within about ±2 % at 20 pairs; 30 overran a one-sided item's
#: time and broke the "A/B costs at most twice" budget) ...
MIN_PAIRS = 20
#: ... unless that would take more than this many times the budget; then at least
#: this many (the fewest whose extremes bound the median at 95 %, two-sided: 2 ** -6 < 2.5 %).
OVERRUN = 2.0
FEWEST_PAIRS = 6
MAX_PAIRS = 20_000
#: Block pairs run and dropped after warm-up, so both sides start the series hot.
DISCARDED_PAIRS = 2


class NotCompared(Exception):
    """The other side cannot be measured (absent there, its setup failed, ...); the
    message is the reason shown to the user."""


class Side(Protocol):
    """One side of a comparison: warms up and times blocks of calls on request."""

    def warm_up(self, seconds: float) -> None:
        """Run calls for about ``seconds`` (untimed), until the side is steady."""

    def time_block(self, calls: int) -> list[int]:
        """Run ``calls`` calls back to back; each call's duration in nanoseconds."""


class LocalSide:
    """A zero-argument callable in this process (a bound model call) as a side.

    On CUDA the device is synchronised before and after each call, so a call's time is
    the time until the GPU finished its work.
    """

    def __init__(self, fn: Callable[[], Any], device: str = "cpu") -> None:
        self.fn = fn
        self.device = device
        self._sync: Callable[[], None] | None = None
        if is_cuda(device):
            import torch

            self._sync = lambda: torch.cuda.synchronize(torch.device(device))

    def warm_up(self, seconds: float) -> None:
        Timer(self.fn, self.device).warm_up(max_seconds=seconds)

    def time_block(self, calls: int) -> list[int]:
        fn, sync, clock = self.fn, self._sync, time.perf_counter_ns
        out = []
        if sync is not None:
            sync()
        for _ in range(calls):
            start = clock()
            fn()
            if sync is not None:
                sync()
            out.append(clock() - start)
        return out


@dataclass(frozen=True)
class SideRequest:
    """What the head asks of the other side: the same item, device, batch and threads."""

    test_id: str
    device: str
    batch_size: int | None
    threads: int


@dataclass(frozen=True)
class Sides:
    """What a connection gives: the base side, and a head side to use instead of the
    check's own bound call (``None``: the check's call, in this process)."""

    base: Side
    head: Side | None = None


@dataclass(frozen=True)
class PairedBaseline:
    """The other side of every performance item in a run, as a check receives it.

    ``connect(request)`` is a context manager giving the :class:`Sides` ready to time (or
    raising :class:`NotCompared`); ``label`` names the base in messages
    (``origin/main``). ``threshold`` is a fraction (0.1 = 10 %).
    """

    label: str
    connect: Callable[[SideRequest], contextlib.AbstractContextManager[Sides]]
    threshold: float = 0.10
    confidence: float = 0.95


@dataclass(frozen=True)
class PairedComparison:
    """The median of ``head / base`` block-time ratios over ``pairs`` interleaved pairs,
    with its two-sided distribution-free interval (``None``: too few pairs to bound)."""

    label: str
    ratio: float
    low: float | None
    high: float | None
    pairs: int
    block_calls: int
    threshold: float
    confidence: float
    seconds: float
    ratios: list[float] = field(repr=False, default_factory=list)

    @property
    def regression(self) -> bool:
        return self.ratio > 1 + self.threshold and self.low is not None and self.low > 1

    @property
    def improvement(self) -> bool:
        return self.ratio * (1 + self.threshold) < 1 and self.high is not None \
            and self.high < 1

    @property
    def verdict(self) -> str:
        if self.regression:
            return "regression"
        if self.improvement:
            return "improvement"
        if self.low is None or self.high is None:
            return "inconclusive"
        return "unchanged"

    def describe(self, statistic: str = "p50") -> str:
        """``p50 +13.1 % against origin/main (95 % bounds +10.2…+16.0 %, 240 interleaved
        pairs)``."""
        def pct(value: float | None) -> str:
            return "?" if value is None else f"{(value - 1) * 100:+.1f}"

        bounds = f"{self.confidence * 100:g} % bounds {pct(self.low)}…{pct(self.high)} %"
        return (f"{statistic} {pct(self.ratio)} % against {self.label} ({bounds}, "
                f"{self.pairs} interleaved pairs)")

    def to_dict(self) -> dict[str, Any]:
        return {"against": self.label, "ratio": self.ratio, "ratio_ci": [self.low, self.high],
                "pairs": self.pairs, "block_calls": self.block_calls,
                "threshold": self.threshold, "confidence": self.confidence,
                "seconds": self.seconds, "verdict": self.verdict, "ratios": self.ratios}


def summarize_ratios(ratios: list[float], *, label: str, threshold: float,
                     confidence: float, block_calls: int = BLOCK_CALLS,
                     seconds: float = 0.0) -> PairedComparison:
    """The median ratio and its sign-test interval (binomial order statistics, p = 0.5)."""
    if not ratios:
        raise ValueError("no block pairs to summarise")
    ordered = sorted(ratios)
    lo_rank, hi_rank = stats.interval_ranks(len(ordered), 0.5, confidence)
    return PairedComparison(
        label, statistics.median(ordered), ordered[lo_rank - 1] if lo_rank else None,
        ordered[hi_rank - 1] if hi_rank else None, len(ordered), block_calls, threshold,
        confidence, seconds, ratios)


def _block_calls(head: Side) -> int:
    one = head.time_block(1)[0]
    return 1 if one >= SINGLE_CALL_NS else BLOCK_CALLS


def _enough(pairs: int, elapsed: float, seconds: float) -> bool:
    if pairs >= MAX_PAIRS:
        return True
    if elapsed >= seconds and pairs >= MIN_PAIRS:
        return True
    return elapsed >= OVERRUN * seconds and pairs >= FEWEST_PAIRS


def _pair(head: Side, base: Side, calls: int, head_first: bool) -> float:
    """One block each, in the given order; the ratio of the blocks' fastest calls (the
    host's preemptions only add time, so the fastest call is the least disturbed)."""
    if head_first:
        head_ns = head.time_block(calls)
        base_ns = base.time_block(calls)
    else:
        base_ns = base.time_block(calls)
        head_ns = head.time_block(calls)
    return min(head_ns) / max(min(base_ns), 1)


def compare(head: Side, base: Side, *, seconds: float, label: str,
            threshold: float = 0.10, confidence: float = 0.95,
            warmup_seconds: float = 0.2, block_calls: int | None = None) -> PairedComparison:
    """Time ``head`` and ``base`` interleaved for about ``seconds``, warm-up included (at
    least :data:`MIN_PAIRS` pairs unless that overruns the budget twice over).

    Raises :class:`ValueError` for a non-positive ``seconds``; whatever a side raises
    (e.g. :class:`NotCompared`) propagates.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    # Inference mode, and no garbage collection inside a block (a collection would be
    # charged to whichever side it hit); a side in another process does the same there.
    with quiet_region():
        return _interleave(head, base, seconds, label, threshold, confidence,
                           warmup_seconds, block_calls)


def _interleave(head: Side, base: Side, seconds: float, label: str, threshold: float,
                confidence: float, warmup_seconds: float, block_calls: int | None
                ) -> PairedComparison:
    begin = time.perf_counter()  # the budget covers the warm-up too
    base.warm_up(warmup_seconds)
    head.warm_up(warmup_seconds)
    calls = block_calls or _block_calls(head)
    for index in range(DISCARDED_PAIRS):
        _pair(head, base, calls, index % 2 == 0)
    ratios: list[float] = []
    while not _enough(len(ratios), time.perf_counter() - begin, seconds):
        ratios.append(_pair(head, base, calls, len(ratios) % 2 == 0))
    return summarize_ratios(ratios, label=label, threshold=threshold, confidence=confidence,
                            block_calls=calls, seconds=time.perf_counter() - begin)


def record(result: CheckResult, comparison: PairedComparison, statistic: str = "p50") -> None:
    """Add the comparison to ``result``: metrics ``baseline_ratio`` (+ ``_low``/``_high``,
    ``baseline_pairs``), ``details["baseline_ref"]``, the message; a regression fails a
    passing result."""
    result.metric("baseline_ratio", comparison.ratio, "1")
    if comparison.low is not None:
        result.metric("baseline_ratio_low", comparison.low, "1")
    if comparison.high is not None:
        result.metric("baseline_ratio_high", comparison.high, "1")
    result.metric("baseline_pairs", comparison.pairs, "1")
    result.details["baseline_ref"] = comparison.to_dict()
    text = comparison.describe(statistic)
    if comparison.regression and result.status is Status.PASSED:
        result.status = Status.FAILED
        result.message = (f"regression: {text}, above the "
                          f"{comparison.threshold * 100:g} % threshold; {result.message}")
    else:
        result.message += f"; {text}: {comparison.verdict}"


def not_compared(result: CheckResult, label: str, reason: str) -> None:
    """Say in ``result`` that the comparison could not be made, and why; never fails it."""
    result.details["baseline_ref"] = {"against": label, "compared": False, "reason": reason}
    result.message += f"; not compared against {label}: {reason}"


def compare_into(result: CheckResult, baseline: PairedBaseline | None, request: SideRequest,
                 head: Side, seconds: float, statistic: str = "p50") -> None:
    """Run the paired comparison of ``head`` against ``baseline``'s side for ``request``
    and record it (or why it was not made) in ``result``. Nothing when ``baseline`` is
    ``None``."""
    if baseline is None:
        return
    try:
        with baseline.connect(request) as sides:
            comparison = compare(sides.head or head, sides.base, seconds=seconds,
                                 label=baseline.label,
                                 threshold=baseline.threshold,
                                 confidence=baseline.confidence)
    except NotCompared as exc:
        not_compared(result, baseline.label, str(exc))
        return
    record(result, comparison, statistic)


def local_baseline(label: str, bind_call: Callable[[SideRequest], tuple[Callable[[], Any], str]],
                   threshold: float = 0.10, confidence: float = 0.95) -> PairedBaseline:
    """A :class:`PairedBaseline` whose side runs in this process: ``bind_call(request)``
    returns the other model's bound call and its device."""

    @contextlib.contextmanager
    def connect(request: SideRequest) -> Iterator[Sides]:
        fn, device = bind_call(request)
        yield Sides(LocalSide(fn, device))

    return PairedBaseline(label, connect, threshold, confidence)


def paired_seconds(one_sided: float, floor: float = 0.25) -> float:
    """The paired phase's budget, warm-up included: as long as the one-sided measurement
    took with its warm-up (so an A/B item times about twice as long as a one-sided one),
    at least ``floor`` seconds."""
    return max(floor, one_sided) if math.isfinite(one_sided) else floor


def parse_threshold(text: str | float, what: str = "--regression-threshold") -> float:
    """``'5%'`` or ``0.05`` → 0.05; raises :class:`ConfigError` on anything else."""
    value = str(text).strip()
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise ConfigError(f"{what}: cannot read {text!r}; write e.g. '5%' or 0.05") from None
    if not 0 < number < 10:
        raise ConfigError(f"{what}: {text!r} must be a positive fraction such as 0.05 or '5%'")
    return number


def compare_models(head_model: Any, base_model: Any, inputs: Any, *, device: str = "cpu",
                   batch_size: int | None = None, threads: int | None = None,
                   seconds: float = 2.0, threshold: float = 0.10, confidence: float = 0.95,
                   label: str = "the other model") -> PairedComparison:
    """Time ``head_model`` against ``base_model`` on the same ``inputs``, interleaved in
    this process (an optimized artifact against its original, a canary against
    production). ``ratio`` > 1: the head is slower. A model that rejects the inputs
    raises :class:`~torchbridge.measure.runner.ModelRejected`."""
    from torchbridge.core.subject import Subject
    from torchbridge.measure.runner import bind
    from torchbridge.measure.timing import threads as using_threads

    with using_threads(threads):
        head = bind(Subject(head_model, inputs, device=device), batch_size)
        base = bind(Subject(base_model, inputs, device=device), batch_size)
        return compare(LocalSide(head.fn, device), LocalSide(base.fn, device),
                       seconds=seconds, label=label, threshold=threshold,
                       confidence=confidence)
