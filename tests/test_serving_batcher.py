"""The batcher on its own: release rules, grouping by shape, drops, isolation and drain."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from torchbridge.serving.batcher import Batcher, Dropped, QueueFull, Work


class Recorder:
    """A compute function that records each batch (as request tags) and can be held."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def __call__(self, batch: list[Work]) -> list[Any]:
        self.entered.set()
        self.hold.wait(10)
        tags = [w.inputs[0] for w in batch]
        if "boom" in tags:
            raise ValueError("boom")
        self.batches.append(tags)
        return [f"out-{t}" for t in tags]


def _work(loop: asyncio.AbstractEventLoop, tag: Any, key: Any = "k", rows: int = 1,
          ttl: float = 30.0) -> Work:
    return Work([tag], rows, key, time.monotonic() + ttl, loop)


async def _wait_for(condition: Any) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def _batcher(recorder: Recorder, **kw: Any) -> Batcher:
    options = {"max_rows": 4, "max_delay_s": 0.002, "max_queue": 8, **kw}
    batcher = Batcher(recorder, **options)
    batcher.start()
    return batcher


def test_a_lone_request_is_not_held_for_the_batch_delay() -> None:
    recorder = Recorder()
    # A 5 s delay would be waited in full if the worker waited for company that never comes.
    batcher = _batcher(recorder, max_delay_s=5.0)

    async def scenario() -> Any:
        work = _work(asyncio.get_running_loop(), "a")
        batcher.arriving()
        batcher.submit(work, announced=True)
        return await asyncio.wait_for(work.future, 2.0)

    assert asyncio.run(scenario()) == "out-a"
    batcher.stop(5)


def test_queued_requests_of_one_shape_share_a_batch_up_to_max_rows() -> None:
    recorder = Recorder()
    batcher = _batcher(recorder)

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        recorder.hold.clear()
        first = _work(loop, 0)
        batcher.submit(first)
        await _wait_for(recorder.entered.is_set)
        rest = [_work(loop, i) for i in range(1, 7)]
        for work in rest:
            batcher.submit(work)
        recorder.hold.set()
        return await asyncio.gather(*(w.future for w in [first, *rest]))

    results = asyncio.run(scenario())
    batcher.stop(5)
    assert results == [f"out-{i}" for i in range(7)]
    assert recorder.batches == [[0], [1, 2, 3, 4], [5, 6]]


def test_requests_of_different_shapes_are_grouped_not_mixed() -> None:
    recorder = Recorder()
    batcher = _batcher(recorder)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        recorder.hold.clear()
        blocker = _work(loop, "x")
        batcher.submit(blocker)
        await _wait_for(recorder.entered.is_set)
        works = [_work(loop, "s1", key="short"), _work(loop, "l1", key="long"),
                 _work(loop, "s2", key="short"), _work(loop, "l2", key="long")]
        for work in works:
            batcher.submit(work)
        recorder.hold.set()
        await asyncio.gather(blocker.future, *(w.future for w in works))

    asyncio.run(scenario())
    batcher.stop(5)
    assert recorder.batches == [["x"], ["s1", "s2"], ["l1", "l2"]]


def test_expired_and_abandoned_requests_are_dropped_before_compute() -> None:
    recorder = Recorder()
    drops: list[str] = []

    class Hooks:
        def on_batch(self, *args: Any) -> None:
            pass

        def on_drop(self, reason: str) -> None:
            drops.append(reason)

    batcher = _batcher(recorder, hooks=Hooks())

    async def scenario() -> tuple[BaseException, BaseException, Any]:
        loop = asyncio.get_running_loop()
        recorder.hold.clear()
        blocker = _work(loop, "x")
        batcher.submit(blocker)
        await _wait_for(recorder.entered.is_set)
        expired, gone, kept = _work(loop, "e", ttl=0.01), _work(loop, "g"), _work(loop, "k")
        gone.gone = lambda: True
        for work in (expired, gone, kept):
            batcher.submit(work)
        await asyncio.sleep(0.05)
        recorder.hold.set()
        errors = await asyncio.gather(expired.future, gone.future, return_exceptions=True)
        return errors[0], errors[1], await kept.future

    expired, gone, kept = asyncio.run(scenario())
    batcher.stop(5)
    assert isinstance(expired, Dropped) and expired.reason == "deadline"
    assert isinstance(gone, Dropped) and gone.reason == "disconnected"
    assert kept == "out-k"
    assert recorder.batches == [["x"], ["k"]]
    assert sorted(drops) == ["deadline", "disconnected"]


def test_a_failing_request_is_isolated_from_its_batch() -> None:
    recorder = Recorder()
    batcher = _batcher(recorder)

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        recorder.hold.clear()
        blocker = _work(loop, "x")
        batcher.submit(blocker)
        await _wait_for(recorder.entered.is_set)
        works = [_work(loop, "a"), _work(loop, "boom"), _work(loop, "b")]
        for work in works:
            batcher.submit(work)
        recorder.hold.set()
        return await asyncio.gather(*(w.future for w in works), return_exceptions=True)

    a, boom, b = asyncio.run(scenario())
    batcher.stop(5)
    assert (a, b) == ("out-a", "out-b")
    assert isinstance(boom, ValueError)


def test_a_full_queue_refuses_and_stop_finishes_what_was_queued() -> None:
    recorder = Recorder()
    batcher = _batcher(recorder, max_queue=2)

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        recorder.hold.clear()
        blocker = _work(loop, "x")
        batcher.submit(blocker)
        await _wait_for(recorder.entered.is_set)
        queued = [_work(loop, "q1"), _work(loop, "q2")]
        for work in queued:
            batcher.submit(work)
        with pytest.raises(QueueFull, match="queue full"):
            batcher.submit(_work(loop, "q3"))
        stopper = loop.run_in_executor(None, batcher.stop, 10)
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull, match="shutting down"):
            batcher.submit(_work(loop, "late"))
        recorder.hold.set()
        assert await stopper is True
        return await asyncio.gather(blocker.future, *(w.future for w in queued))

    assert asyncio.run(scenario()) == ["out-x", "out-q1", "out-q2"]
    assert not batcher.alive and batcher.depth == 0
