"""Everything one server holds: model, signature, batcher, access control, metrics, lifecycle.

Lifecycle: :meth:`ServingState.start` starts the batcher and warms the model up in the
background, so ``/health`` answers at once while ``/ready`` stays 503 until the model is
loaded *and* warm. :meth:`ServingState.stop` marks the server not ready and finishes every
queued request before the worker ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import torch

from torchbridge.core.subject import named_inputs
from torchbridge.serving.batcher import (
    Batcher,
    Dropped,
    EncodeFailed,
    QueueFull,
    Work,
    WorkerDied,
)
from torchbridge.serving.config import ServerConfig
from torchbridge.serving.errors import (
    ApiError,
    KeyRing,
    OutputInvalid,
    RateLimiter,
    failure_reason,
    overloaded,
)
from torchbridge.serving.logging import AuditLog, log_exception
from torchbridge.serving.metrics import ServerMetrics
from torchbridge.serving.padding import Padding, resized
from torchbridge.serving.runner import (
    ModelRunner,
    OutputLayout,
    check_finite,
    contiguous,
    following_axis,
    json_default,
    learn_layout,
    leaves,
    map_leaves,
)
from torchbridge.serving.schemas import (
    V2_DATATYPES,
    InvalidInput,
    Signature,
    group_key,
    rows_of,
)

log = logging.getLogger("torchbridge.serving")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class ServingState:
    """The server's parts; created by :func:`~torchbridge.serving.app.create_fastapi_server`."""

    def __init__(self, model: Any, config: ServerConfig, sig: Signature,
                 sample: Any = None, padding: Padding | None = None) -> None:
        self.model = model
        self.config = config
        self.sig = sig
        self.sample = sample
        self.keys = KeyRing(config.load_api_keys())
        self.limiter = RateLimiter(config.rate_limit, config.rate_burst or config.rate_limit) \
            if config.rate_limit else None
        self.metrics = ServerMetrics(config.model_name, config.model_version,
                                     config.weights_sha256, self._queue_depth, config.device)
        self.padding = padding
        self.runner = ModelRunner(model, sig, config.device, self.metrics.on_failure, padding)
        self.batcher = Batcher(self.runner, max_rows=config.max_batch_size,
                               max_delay_s=config.max_batch_delay_s,
                               max_queue=config.max_queue_size, hooks=self.metrics,
                               on_death=self._worker_died)
        # Requests run alone until warm-up has learned which outputs carry the batch.
        self.batcher.max_requests = 1
        #: why requests are not batched together ("" when they are)
        self.unbatched_reason = "not warmed up"
        #: set when the inference worker died: the server is not live any more
        self.failed = ""
        #: a forward pass longer than this (seconds) means the worker hangs: every request
        #: in it has long passed its deadline, so liveness says so (see :meth:`dead`)
        self.stuck_after_s = max(2.0 * config.timeout_seconds, 10.0)
        #: called (from any thread) when the server cannot serve any more; ``run_server``
        #: makes it end the process with a non-zero status
        self.on_fatal: Callable[[str], None] | None = None
        self.audit: AuditLog | None = None
        self.generator = ThreadPoolExecutor(1, thread_name_prefix="tb-generate",
                                            initializer=self._thread_setup) \
            if has_generate(model) else None
        self._torch_threads = config.torch_threads
        self.generating = 0
        self.ready = False
        self.not_ready_reason = "starting"
        self.outputs: list[dict[str, Any]] = []
        self._warmup_task: asyncio.Task[None] | None = None
        version = config.model_version

        def encode_predict(tree: Any) -> bytes:
            check_finite(tree)
            return orjson.dumps({"outputs": tree, "model_version": version}, option=_NUMPY,
                                default=json_default)

        self.encode_predict: Callable[[Any], bytes] = encode_predict
        #: extra encoders (the v2 route's) that warm-up must prove on the sample's outputs
        self.encoders: list[Callable[[Any], Any]] = [encode_predict]

    def _thread_setup(self) -> None:
        if self._torch_threads:
            torch.set_num_threads(self._torch_threads)

    def _queue_depth(self) -> int:
        return self.batcher.depth

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.batcher.alive:
            return
        if self.config.audit_log:
            self.audit = AuditLog(self.config.audit_log)
        # OpenMP thread counts are per thread: a worker thread would otherwise use every
        # core whatever the process set, and its spinning threads starve the event loop.
        self._torch_threads = self.config.torch_threads or torch.get_num_threads()
        self.batcher.start(self._thread_setup)
        self._warmup_task = asyncio.get_running_loop().create_task(self._warm_up())

    async def _warm_up(self) -> None:
        if self.sample is None or not self.config.warmup:
            self.ready = True
            self.not_ready_reason = ""
            self.unbatched_reason = "no warm-up, so which outputs carry the batch is unknown"
            log.warning("ready without warm-up (%s); requests are served one at a time, "
                        "unbatched, and their outputs are not checked for row counts",
                        "warm-up disabled" if self.config.warmup is False
                        else "no sample input to warm up with")
            return
        self.not_ready_reason = "warming up"
        try:
            layout = await self._learn()
        except Exception as exc:
            root = exc.__cause__ if isinstance(exc, ApiError) and exc.__cause__ else exc
            self.not_ready_reason = f"warm-up failed: {type(root).__name__}: {root}"
            # redacted like any model error: the sample may be real data
            log_exception(log, "warm-up failed; the server stays not ready", root,
                          self.config.log_payloads)
            return
        self.runner.layout = layout
        if layout.batched:
            self.batcher.max_requests = None
            self.unbatched_reason = ""
        else:
            self.unbatched_reason = layout.reason
            log.warning("serving unbatched (each request in its own forward pass): %s",
                        layout.reason)
        self.ready = True
        self.not_ready_reason = ""
        log.info("model %s version %s warmed up and ready", self.config.model_name,
                 self.config.model_version)

    async def _learn(self) -> OutputLayout:
        """Run the full request path at 1 and at ``max_batch_size`` rows: forward pass,
        every encoder; learn which outputs carry the batch. If they all do, also run each
        varied row alone, the rows together at every smaller batch size (see
        :func:`warmup_sizes`) and the largest batch reversed, to learn whether any row's
        answer depends on its batch mates, their number or its place among them."""
        rows = self.config.max_batch_size
        base = sample_arrays(self.sample, self.sig, 1)
        single = await self._warm_run(base, prove=True)
        self.outputs = output_metadata(single)
        if self.padding is not None:
            await self._learn_padded(base, single)
        if rows == 1:
            return learn_layout([single], {})
        modulus = _vocab(self.model)
        try:
            varied = sample_arrays(self.sample, self.sig, rows, True, modulus)
            full = await self._warm_run(varied)
        except ApiError:
            log.info("warm-up at %d varied rows failed; trying the sample's rows repeated",
                     rows)
            varied = sample_arrays(self.sample, self.sig, rows)
            full = await self._warm_run(varied)
        layout = learn_layout([single], {rows: full})
        if layout.batched:
            alone = [single]
            for row in range(1, min(rows, 64)):  # rows past 64: by the reversed run
                try:
                    alone.append(await self._warm_run(_rows(varied, self.sig, row, row + 1)))
                except ApiError as exc:  # fine in a batch, fails alone: depends on mates
                    return OutputLayout(layout.batch, False, f"row {row} of the warm-up "
                                        f"batch fails alone ({exc.message}) but not batched")
            runs = {rows: full}
            for size in warmup_sizes(rows):
                try:
                    runs[size] = await self._warm_run(_rows(varied, self.sig, 0, size))
                except ApiError as exc:  # such a batch is re-run request by request
                    log.info("warm-up: a batch of %d rows failed (%s)", size, exc.message)
            reversed_rows = [_reverse(a, s.batch_axis) for a, s in zip(varied, self.sig.inputs,
                                                                        strict=True)]
            flipped = await self._warm_run(reversed_rows)
            layout = learn_layout(alone, runs, flipped)
        self.outputs = output_metadata(single, layout.batch)
        return layout

    async def _learn_padded(self, base: list[np.ndarray], single: Any) -> None:
        """Which outputs carry the padded length, and on which axis: the sample run again
        one position longer (or shorter, at the top of the dim's range) must change
        exactly those. If the dim has one allowed length, requests never differ in it and
        padding is switched off."""
        padding = self.padding
        assert padding is not None
        length = padding.length(base)
        low, high = self.sig.inputs[padding.inputs[0]].ranges.get(padding.axis, (1, None))
        other = length + 1 if high is None or length < high else length - 1
        if other < max(low, 1):
            self.padding = self.runner.padding = None
            return
        changed = dict(leaves(await self._warm_run(resized(base, padding, other))))
        self.runner.padded = {
            name: axis for name, array in leaves(single)
            if (axis := following_axis(array, changed.get(name), length, other)) is not None}

    async def _warm_run(self, arrays: list[np.ndarray], prove: bool = False) -> Any:
        """One forward pass of the warm-up; with ``prove``, also every response encoder on
        its output (once is enough: encodability does not depend on the row count, and
        a language model's logits are large)."""
        tree = await self.infer(arrays, time.monotonic() + 600.0, encode=None)
        # Copies: a model may return views of a buffer it overwrites on its next call.
        tree = map_leaves(tree, lambda _, array: array.copy())
        if not prove:
            return tree
        try:
            check_finite(tree)
        except OutputInvalid as exc:
            log.warning("warm-up: %s (such requests will get a 500)", exc.message)
        finite = _zero_nonfinite(tree)
        for name, array in leaves(finite):
            try:
                orjson.dumps(array, option=_NUMPY, default=json_default)
            except orjson.JSONEncodeError as exc:
                raise ValueError(f"output {name!r} ({array.dtype}) cannot be encoded as "
                                 f"JSON: {exc}") from None
        for encode in self.encoders:
            encode(finite)
        return tree

    def _worker_died(self, exc: BaseException) -> None:
        """On the worker thread: the server cannot compute any more."""
        self.failed = f"inference worker died: {type(exc).__name__}"
        self.ready = False
        self.not_ready_reason = self.failed
        if self.on_fatal is not None:
            self.on_fatal(self.failed)

    async def stop(self) -> None:
        self.ready = False
        self.not_ready_reason = "shutting down"
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()
        await asyncio.to_thread(self.batcher.stop, self.config.grace_period_s)
        if self.generator is not None:
            self.generator.shutdown(wait=False, cancel_futures=True)
        if self.audit is not None:
            self.audit.close()

    # ------------------------------------------------------------------ inference
    def enqueue(self, arrays: Sequence[np.ndarray], deadline: float,
                encode: Callable[[Any], Any] | None,
                gone: Callable[[], bool] | None = None, announced: bool = False) -> Work:
        """Queue one request (503 when the queue is full); await it with :meth:`wait`."""
        work = Work(arrays, rows_of(arrays, self.sig),
                    group_key(arrays, self.sig, self.padding), deadline,
                    asyncio.get_running_loop(), encode)
        work.gone = gone
        try:
            self.batcher.submit(work, announced)
        except QueueFull as exc:
            raise overloaded(str(exc)) from None
        return work

    async def wait(self, work: Work) -> Any:
        """The request's result; a passed deadline, a model error or a disconnect become
        :class:`ApiError` 504, 500 or 499."""
        loop = work.loop
        timer = loop.call_at(_loop_time(loop, work.deadline), work.abandon, "deadline")
        try:
            return await work.future
        except Dropped as exc:
            self.batcher.discard(work, exc.reason)
            if exc.reason == "deadline":
                raise ApiError(504, "deadline passed before the result was ready (timeout "
                                    f"{self.config.timeout_seconds:g} s)") from None
            raise ApiError(499, "client disconnected") from None
        except OutputInvalid as exc:
            log.error("answer refused: %s", exc.message)
            raise
        except InvalidInput:
            raise
        except WorkerDied as exc:
            raise overloaded(str(exc)) from None
        except EncodeFailed as exc:
            log_exception(log, str(exc), exc.__cause__ or exc, self.config.log_payloads)
            raise ApiError(500, f"{exc}; see the server log") from exc
        except Exception as exc:
            name = failure_reason(exc)
            log_exception(log, "inference failed", exc, self.config.log_payloads)
            raise ApiError(500, f"inference failed ({name}); see the server log") from exc
        finally:
            timer.cancel()
            if not work.future.done():  # cancelled while waiting: nobody wants the result
                work.abandon("disconnected")
                self.batcher.discard(work, "disconnected")

    async def infer(self, arrays: Sequence[np.ndarray], deadline: float,
                    encode: Callable[[Any], Any] | None) -> Any:
        return await self.wait(self.enqueue(arrays, deadline, encode))

    def deadline(self, start: float, header: str | None) -> float:
        """``start`` plus the timeout, shortened by a valid ``X-Request-Timeout`` header."""
        timeout = self.config.timeout_seconds
        if header is not None:
            try:
                asked = float(header)
            except ValueError:
                raise ApiError(400, "X-Request-Timeout must be a number of seconds") from None
            if not math.isfinite(asked) or asked <= 0:
                raise ApiError(400, "X-Request-Timeout must be a positive number of seconds")
            timeout = min(timeout, asked)
        return start + timeout

    def dead(self) -> str:
        """Why the server is not live ("" while it is): its inference worker died, or
        (once warmed up) hangs inside one forward pass for over ``stuck_after_s`` -- a
        hung CUDA call or a deadlocked model, which no request can get past and which
        only a restart cures."""
        if self.failed:
            return self.failed
        since = self.batcher.busy_since
        if since is not None and self.ready and \
                time.monotonic() - since > self.stuck_after_s:
            return (f"inference worker stuck in one forward pass for "
                    f"{time.monotonic() - since:.0f} s")
        return ""

    @property
    def public_not_ready_reason(self) -> str:
        """Why not ready, for the open ``/ready`` route: with API keys configured a warm-up
        failure is named by its exception type only -- its message may quote the model's
        internals or the sample, and the full text is in the server log."""
        reason = self.not_ready_reason
        if self.keys.enabled and reason.startswith("warm-up failed: "):
            kind = reason.removeprefix("warm-up failed: ").partition(":")[0]
            return f"warm-up failed ({kind}); see the server log"
        return reason

    def require_ready(self) -> None:
        if not self.ready:
            raise overloaded(f"model not ready ({self.not_ready_reason})")

    # ------------------------------------------------------------------ metadata
    def v2_metadata(self) -> dict[str, Any]:
        return {"name": self.config.model_name, "versions": [self.config.model_version],
                "platform": "pytorch_torchbridge",
                "inputs": [spec.metadata() for spec in self.sig.inputs],
                "outputs": self.outputs}


def has_generate(model: Any) -> bool:
    """Whether ``/generate`` can serve ``model``: it has ``stream``, or a ``generate`` that
    continues the prompt. An encoder-decoder's ``generate`` (transformers' T5, BART,
    Whisper: ``config.is_encoder_decoder``) returns decoder ids that do not start with the
    prompt, so every request would fail; such a model is served on ``/predict`` only."""
    if callable(getattr(model, "stream", None)):
        return True
    encoder_decoder = getattr(getattr(model, "config", None), "is_encoder_decoder", False)
    return callable(getattr(model, "generate", None)) and encoder_decoder is not True


def sample_arrays(sample: Any, sig: Signature, rows: int, vary: bool = False,
                  modulus: int | None = None) -> list[np.ndarray]:
    """The sample input as numpy arrays with ``rows`` rows (repeating its rows).

    ``vary``: rows after the first differ from one another (floats scaled by 1 + i/2n and
    shifted by i/2n; integers shifted by i modulo ``modulus`` -- the vocabulary -- or, with
    no modulus, rolled along the last axis), so that a model whose rows depend on their
    batch mates shows it even when the sample is one row of zeros; row 0 is the sample's.
    """
    arrays = []
    for (_, value), spec in zip(named_inputs(sample), sig.inputs, strict=True):
        tensor = value.detach().cpu()
        if tensor.dtype is torch.bfloat16:
            tensor = tensor.float()
        array = tensor.numpy()
        axis = spec.batch_axis
        if axis is not None:
            have = array.shape[axis]
            index = np.arange(rows) % max(have, 1)
            array = np.take(array, index, axis=axis)
            if vary:
                array = _varied(array, axis, rows, modulus)
        arrays.append(contiguous(array))
    return arrays


def _varied(array: np.ndarray, axis: int, rows: int, modulus: int | None) -> np.ndarray:
    moved = np.moveaxis(array.copy(), axis, 0)
    for i in range(1, rows):
        if moved.dtype.kind == "f":
            moved[i] = moved[i] * (1.0 + i / (2.0 * rows)) + i / (2.0 * rows)
        elif moved.dtype.kind in "iu" and modulus is not None and moved.min() >= 0 and \
                moved.max() < modulus:
            moved[i] = (moved[i] + i) % modulus
        elif moved.dtype.kind in "iu" and moved.ndim > 1:
            moved[i] = np.roll(moved[i], i, axis=-1)
    return np.moveaxis(moved, 0, axis)


def warmup_sizes(rows: int) -> list[int]:
    """Batch sizes that warm-up tries besides 1 and ``rows``: every one up to 64, and
    beyond that powers of two and ``rows - 1`` (a model may misbehave at one size only)."""
    sizes = set(range(2, min(rows, 65)))
    if rows > 65:
        sizes |= {2 ** k for k in range(7, rows.bit_length())} | {rows - 1}
    return sorted(size for size in sizes if size < rows)


def _rows(arrays: Sequence[np.ndarray], sig: Signature, start: int, stop: int
          ) -> list[np.ndarray]:
    """Rows ``start:stop`` of a request's arrays (inputs without a batch dim whole)."""
    return [array if spec.batch_axis is None else
            np.ascontiguousarray(np.take(array, range(start, stop), spec.batch_axis))
            for array, spec in zip(arrays, sig.inputs, strict=True)]


def _reverse(array: np.ndarray, axis: int | None) -> np.ndarray:
    return array if axis is None else np.ascontiguousarray(np.flip(array, axis))


def _vocab(model: Any) -> int | None:
    from torchbridge.serving.generate import vocab_size

    return vocab_size(model)


def _zero_nonfinite(tree: Any) -> Any:
    """``tree`` with NaN and infinities replaced by 0, to prove the encoders on it."""

    return map_leaves(tree, lambda _, a: np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
                      if a.dtype.kind in "fc" else a)


def output_metadata(tree: Any, batch: Mapping[str, int] | None = None
                    ) -> list[dict[str, Any]]:
    """v2 output metadata from one result: names, datatypes, shapes with -1 on the batch
    axis of the outputs in ``batch`` (on dim 0 of every output when ``batch`` is None)."""
    out = []
    for name, array in leaves(tree):
        dtype = torch.from_numpy(np.empty(0, dtype=array.dtype)).dtype
        axis = (0 if array.ndim else None) if batch is None else batch.get(name)
        shape = list(array.shape)
        if axis is not None and axis < len(shape):
            shape[axis] = -1
        out.append({"name": name, "datatype": V2_DATATYPES.get(dtype, "BYTES"), "shape": shape})
    return out


def _loop_time(loop: asyncio.AbstractEventLoop, deadline: float) -> float:
    """``deadline`` (time.monotonic) on the loop's clock."""
    return loop.time() + (deadline - time.monotonic())
