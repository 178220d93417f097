"""Dynamic batching: a bounded queue drained by one worker thread.

The event loop only enqueues and awaits; inference runs on the worker thread. A batch is
released when it holds ``max_rows`` rows or ``max_delay`` passed since its first request
-- but the worker waits for more only while another request is known to be on its way
(being parsed on the event loop). With one client nobody is on the way, so a request runs
the moment it is queued and batching adds no latency.

Requests are grouped by shape (apart from the batch dim); a request whose deadline passed
or whose client went away is dropped before compute. Each request's future is resolved
exactly once, on the event loop, with one wake-up per batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("torchbridge.serving")


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests; the caller answers 503 with Retry-After."""


class Dropped(Exception):
    """A request left before compute: its deadline passed or its client disconnected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Work:
    """One request in the queue. ``encode`` turns its outputs into the response body on the
    worker thread, so serialisation does not hold up the event loop."""

    __slots__ = ("batched_with", "dead", "deadline", "encode", "enqueued", "future", "gone",
                 "inputs", "key", "loop", "queued_s", "rows")

    def __init__(self, inputs: Sequence[Any], rows: int, key: Any, deadline: float,
                 loop: asyncio.AbstractEventLoop, encode: Callable[[Any], Any] | None = None
                 ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.deadline = deadline
        self.loop = loop
        self.encode = encode
        self.future: asyncio.Future[Any] = loop.create_future()
        self.enqueued = 0.0
        self.queued_s = 0.0
        self.dead: str | None = None  # set on the event loop; read by the worker
        #: returns True once the client has disconnected (read by the worker thread)
        self.gone: Callable[[], bool] | None = None
        #: requests in the forward pass that produced this request's result (set by the
        #: worker): 1 = it ran alone, also when its batch raised and was re-run one by one
        self.batched_with = 0

    def abandon(self, reason: str) -> None:
        """Mark the request as gone (event loop only) so the worker skips it."""
        if self.dead is None:
            self.dead = reason
        if not self.future.done():
            self.future.set_exception(Dropped(reason))


Compute = Callable[[list[Work]], list[Any]]


class Batcher:
    """Queue + worker thread. ``compute(batch)`` returns one output per request in order.

    ``hooks`` receives ``on_batch(rows, (), inference_s)`` for every forward pass (so a
    batch that raised and was re-run request by request counts as those single passes),
    ``on_queued(queue_seconds_list)``, ``on_drop(reason)`` and, when it has them,
    ``on_fallback(requests)`` and ``on_failure(exc)`` (an encode failure) for metrics.

    ``fallbacks`` counts batches that raised and were re-run one request at a time; each
    :class:`Work` says in ``batched_with`` how many requests shared its forward pass.
    ``on_death(exc)`` is called (on the worker thread) if the worker loop itself fails;
    every waiting request then fails with :class:`WorkerDied`.
    """

    def __init__(self, compute: Compute, *, max_rows: int, max_delay_s: float,
                 max_queue: int, hooks: Any = None, name: str = "tb-batcher",
                 on_death: Callable[[BaseException], None] | None = None) -> None:
        self._compute = compute
        self.max_rows = max_rows
        #: at most this many requests per forward pass (``None``: as many as fit in
        #: ``max_rows``; 1: every request runs alone)
        self.max_requests: int | None = None
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._hooks = hooks
        self._queue: collections.deque[Work] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._arriving = 0
        self._stopping = False
        self._busy = False
        self._on_start: Callable[[], None] | None = None
        self._on_death = on_death
        self._current: list[Work] = []
        self.fallbacks = 0
        self.death: BaseException | None = None
        #: when the batch being computed started (time.monotonic), None when idle
        self.busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ------------------------------------------------------------------ event-loop side
    def start(self, on_start: Callable[[], None] | None = None) -> None:
        """Start the worker; ``on_start`` runs first on the worker thread (thread-local
        settings such as PyTorch's intra-op thread count belong there)."""
        self._on_start = on_start
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting in the queue (not counting the batch being computed)."""
        return len(self._queue)

    def pending(self) -> list[Work]:
        """A snapshot of the queued requests, oldest first."""
        with self._cond:
            return list(self._queue)

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread.is_alive()

    @property
    def idle(self) -> bool:
        return not self._queue and not self._busy

    def arriving(self) -> None:
        """A request is being parsed and will probably join the queue soon (event loop
        thread only; end with ``submit(..., announced=True)`` or :meth:`withdraw`)."""
        self._arriving += 1

    def withdraw(self) -> None:
        """The request announced with :meth:`arriving` will not be queued after all."""
        with self._cond:
            self._arriving -= 1
            self._cond.notify()

    def submit(self, work: Work, announced: bool = False) -> None:
        """Queue ``work``; raise :class:`QueueFull` when the queue is at its limit.

        ``announced``: the request was announced with :meth:`arriving`; it stops counting
        as on its way in the same step as it joins the queue, so the worker never waits
        for a request that has already arrived.
        """
        with self._cond:
            if self.death is not None:
                raise QueueFull("the inference worker died; the server is restarting")
            if self._stopping:
                raise QueueFull("server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"queue full ({self.max_queue} requests waiting)")
            if announced:
                self._arriving -= 1
            work.enqueued = time.monotonic()
            self._queue.append(work)
            self._cond.notify()

    def discard(self, work: Work, reason: str) -> None:
        """Take an abandoned request out of the queue at once, freeing its slot."""
        with self._cond:
            try:
                self._queue.remove(work)
            except ValueError:
                return  # already taken by the worker (which drops or delivers it)
        if self._hooks is not None:
            self._hooks.on_drop(reason)

    def stop(self, timeout: float | None = None) -> bool:
        """Finish every queued request, then end the worker. True when it ended in time."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # ------------------------------------------------------------------ worker side
    def _run(self) -> None:
        try:
            if self._on_start is not None:
                self._on_start()
            while True:
                batch = self._collect()
                if batch is None:
                    return
                if batch:
                    self._process(batch)
        except BaseException as exc:
            self._died(exc)

    def _collect(self) -> list[Work] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            self._busy = True
            batch: list[Work] = []
            rows = self._take(batch, 0)
            if not batch:  # everything queued was dead
                self._busy = False
                return []
            release_at = batch[0].enqueued + self.max_delay_s
            while rows < self.max_rows and self._arriving > 0 and not self._stopping \
                    and not self._full(batch):
                remaining = release_at - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                rows = self._take(batch, rows)
            return batch

    def _take(self, batch: list[Work], rows: int) -> int:
        """Move live requests of the batch's shape group from the queue into ``batch``."""
        now = time.monotonic()
        keep: list[Work] = []
        queue = self._queue
        while queue:
            work = queue.popleft()
            if work.dead is not None or now >= work.deadline:
                self._drop(work, work.dead or "deadline")
                continue
            if work.gone is not None and work.gone():
                self._drop(work, "disconnected")
                continue
            fits = not batch or (work.key == batch[0].key and rows + work.rows <= self.max_rows)
            if fits:
                batch.append(work)
                rows += work.rows
                if rows >= self.max_rows or self._full(batch):
                    break
            else:
                keep.append(work)
        if keep:  # requests of other shapes keep their place at the front
            queue.extendleft(reversed(keep))
        return rows

    def _full(self, batch: list[Work]) -> bool:
        return self.max_requests is not None and len(batch) >= self.max_requests

    def _drop(self, work: Work, reason: str) -> None:
        if self._hooks is not None:
            self._hooks.on_drop(reason)
        _on_loop(work.loop, work.abandon, reason)

    def _process(self, batch: list[Work]) -> None:
        start = time.monotonic()
        for work in batch:
            work.queued_s = start - work.enqueued
        self._current = batch
        self.busy_since = start
        try:
            results = self._run_batch(batch)
        finally:
            self.busy_since = None
            with self._cond:
                self._busy = False
        _call(self._hooks, "on_queued", [w.queued_s for w in batch])
        # One wake-up of the event loop per batch, not per request.
        self._current = []
        _on_loop(batch[0].loop, _deliver, batch, results)

    def _run_batch(self, batch: list[Work]) -> list[Any]:
        """One result (or exception) per request: one forward pass for the whole batch; if
        it raises, one pass per request, so that one bad request fails alone."""
        outputs = self._forward(batch)
        if isinstance(outputs, BaseException):
            if len(batch) == 1:
                outputs = [outputs]
            else:
                self.fallbacks += 1
                _call(self._hooks, "on_fallback", len(batch))
                log.info("a batch of %d requests raised (%s); running them one at a time",
                         len(batch), type(outputs).__name__)
                # Each answer is encoded before the next pass: a model may return views of
                # a buffer that its next call overwrites.
                return [self._encode(work, self._one(work)) for work in batch]
        return [self._encode(work, result) for work, result in zip(batch, outputs, strict=True)]

    def _one(self, work: Work) -> Any:
        result = self._forward([work])
        return result if isinstance(result, BaseException) else result[0]

    def _forward(self, batch: list[Work]) -> list[Any] | BaseException:
        start = time.monotonic()
        try:
            results = self._compute(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"compute returned {len(results)} results for "
                                   f"{len(batch)} requests")
            return results
        except StopIteration as exc:  # cannot be set on an asyncio future (TypeError)
            return _Fault(exc)
        except Exception as exc:
            return exc
        except BaseException as exc:  # a model's sys.exit must not end the worker
            return _Fault(exc)
        finally:
            for work in batch:
                work.batched_with = len(batch)
            if self._hooks is not None:
                self._hooks.on_batch(sum(w.rows for w in batch), (),
                                     time.monotonic() - start)

    def _encode(self, work: Work, result: Any) -> Any:
        if isinstance(result, BaseException) or work.encode is None:
            return result
        try:
            return work.encode(result)
        except Exception as exc:
            failure = exc if hasattr(exc, "status") else EncodeFailed(exc)
            _call(self._hooks, "on_failure", failure)
            return failure
        except BaseException as exc:  # an output object's hook may raise anything
            fault = _Fault(exc)
            _call(self._hooks, "on_failure", fault)
            return fault

    def _died(self, exc: BaseException) -> None:
        """The worker loop itself failed: refuse new work, fail everything waiting, and
        tell the owner (who marks the server not live and ends the process)."""
        self.death = exc
        log.critical("the inference worker died (%s); failing queued requests",
                     type(exc).__name__, exc_info=exc)
        with self._cond:
            self._stopping = True
            waiting = list(self._queue) + list(self._current)
            self._queue.clear()
            self._busy = False
        failure = WorkerDied(f"the inference worker died ({type(exc).__name__})")
        for work in waiting:
            _on_loop(work.loop, _fail, work, failure)
        if self._on_death is not None:
            self._on_death(exc)


class EncodeFailed(Exception):
    """The forward pass succeeded but its output could not be turned into an answer."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(f"the model's output could not be encoded ({type(exc).__name__})")
        self.reason = "encode"
        self.__cause__ = exc


class WorkerDied(Exception):
    """The batching worker thread ended on an error; no request will be computed."""


class _Fault(Exception):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"compute raised {type(exc).__name__}")
        self.reason = type(exc).__name__


def _call(hooks: Any, name: str, *args: Any) -> None:
    method = getattr(hooks, name, None)
    if method is not None:
        method(*args)


def _fail(work: Work, exc: BaseException) -> None:
    if not work.future.done():
        work.future.set_exception(exc)


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop closed (app torn down without shutdown); nobody waits
        log.debug("event loop closed; %d result(s) discarded", len(args))


def _deliver(batch: list[Work], results: list[Any]) -> None:
    for work, result in zip(batch, results, strict=True):
        if work.future.done():
            continue  # timed out or disconnected meanwhile; nobody is waiting
        if isinstance(result, BaseException):
            if isinstance(result, StopIteration) or not isinstance(result, Exception):
                result = _Fault(result)  # asyncio futures refuse these
            work.future.set_exception(result)
        else:
            work.future.set_result(result)


__all__ = ["Batcher", "Dropped", "EncodeFailed", "QueueFull", "Work", "WorkerDied"]
