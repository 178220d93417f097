"""The latency check's default measuring time: long enough for a pass to be possible."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from torchbridge.checks._latency_sizing import AUTO_MAX_TIME_CAP_S, samples_for_a_pass, size


def calls_of(seconds: float) -> Callable[[int], list[int]]:
    """A ``Timer.sample`` stand-in: every call takes ``seconds``."""
    return lambda count: [int(seconds * 1e9)] * count


def test_p99_at_95_percent_needs_299_kept_samples() -> None:
    assert samples_for_a_pass({"p99": 0.02}, 0.95) == 299
    assert samples_for_a_pass({"p50": 0.02, "p99": 0.02}, 0.95) == 299
    assert samples_for_a_pass({}, 0.95) == 0


def test_a_20_ms_model_gets_time_for_299_samples_with_margin() -> None:
    sizing = size(None, {"p99": 1.0}, 0.95, calls_of(0.020))
    assert sizing.auto
    assert sizing.max_time_s == pytest.approx(299 * 1.25 * 0.020)
    assert sizing.suggestion() == 'max_time="8s"'


def test_a_fast_model_keeps_the_5_second_default() -> None:
    assert size(None, {"p99": 1.0}, 0.95, calls_of(0.001)).max_time_s == 5.0


def test_a_slow_model_is_capped_and_the_suggestion_names_the_time_it_needs() -> None:
    sizing = size(None, {"p99": 10.0}, 0.95, calls_of(1.0))
    assert sizing.max_time_s == AUTO_MAX_TIME_CAP_S
    assert sizing.suggestion() == 'max_time="374s"'


def test_an_explicit_max_time_is_kept_and_nothing_is_timed() -> None:
    def never(count: int) -> list[int]:
        raise AssertionError("an explicit max_time must not time calls")

    sizing = size(2.0, {"p99": 1.0}, 0.95, never)
    assert (sizing.max_time_s, sizing.auto) == (2.0, False)
