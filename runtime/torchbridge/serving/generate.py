"""``POST /generate`` for models with ``stream`` and/or ``generate`` methods.

The model contract (as the example language model has it): ``stream(input_ids,
max_new_tokens, eos_token_id)`` yields the next token of every sequence, ``(batch,)``, one
step at a time; ``generate(input_ids, max_new_tokens=..., eos_token_id=...)`` returns the
prompt followed by the new tokens. Generation runs on its own worker thread, one step per
hop, so the deadline and a client's disconnect stop it between two tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import torch

from torchbridge.serving.errors import (
    ApiError,
    ModelFault,
    OutputInvalid,
    failure_reason,
    overloaded,
)
from torchbridge.serving.logging import log_exception
from torchbridge.serving.state import ServingState

log = logging.getLogger("torchbridge.serving")
_DONE = object()
_INT64_MAX = 2**63 - 1
#: config attributes and model attributes that give a language model's context length
_FIELDS = frozenset({"input_ids", "max_new_tokens", "eos_token_id", "stream"})
_POSITION_NAMES = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len",
                   "max_sequence_length", "seq_length")


class GenerateRequest:
    """A validated ``/generate`` body."""

    def __init__(self, body: Any, state: ServingState) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, 'body must be a JSON object {"input_ids": [...]}')
        unknown = sorted(set(body) - _FIELDS)
        if unknown:  # sampling settings the model would never see: a wrong 200
            raise ApiError(422, f"unknown field(s) {unknown}; /generate takes "
                                f"{sorted(_FIELDS)} (greedy decoding as the model's "
                                "stream/generate does it)")
        ids = body.get("input_ids")
        rows = [ids] if isinstance(ids, list) and ids and not isinstance(ids[0], list) else ids
        if not isinstance(rows, list) or not rows or not all(
                isinstance(r, list) and r and len(r) == len(rows[0]) for r in rows):
            raise ApiError(422, "input_ids must be a non-empty list of token ids, or a list "
                                "of such lists of equal length")
        vocab = vocab_size(state.model)
        limit = vocab if vocab is not None else _INT64_MAX + 1
        bound = f"[0, {limit})"
        rows = [[_integer(t, f"input_ids must be integers in {bound}") for t in row]
                for row in rows]
        for row in rows:
            for token in row:
                if token < 0 or token >= limit:
                    raise ApiError(422, f"input_ids must be integers in {bound}")
        if len(rows) > state.config.max_batch_size:
            raise ApiError(422, f"at most {state.config.max_batch_size} prompts per request")
        self.input_ids = rows
        default = min(16, state.config.max_new_tokens)
        self.max_new_tokens = _int(body.get("max_new_tokens", default), "max_new_tokens", 0,
                                   state.config.max_new_tokens)
        eos = body.get("eos_token_id")
        self.eos_token_id = None if eos is None else \
            _int(eos, "eos_token_id", 0, vocab - 1 if vocab is not None else _INT64_MAX)
        positions = max_positions(state.model)
        if positions is not None and len(rows[0]) + self.max_new_tokens > positions:
            raise ApiError(422, f"prompt of {len(rows[0])} tokens + max_new_tokens "
                                f"{self.max_new_tokens} exceeds the model's {positions} "
                                "positions")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(422, "stream must be true or false")
        if stream and not state.config.enable_streaming:
            raise ApiError(400, "streaming is disabled on this server (enable_streaming)")
        self.stream = stream


def vocab_size(model: Any) -> int | None:
    """The model's vocabulary: ``vocab_size`` attribute, else its first embedding's size."""
    size = getattr(model, "vocab_size", None)
    if isinstance(size, int):
        return size
    if isinstance(model, torch.nn.Module):
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                return int(module.num_embeddings)
    return None


def max_positions(model: Any) -> int | None:
    """The longest sequence the model takes (prompt + new tokens), where it says: its
    config's ``max_position_embeddings``/``n_positions``/``n_ctx``..., or the same
    attribute on the model itself."""
    for owner in (getattr(model, "config", None), model):
        for name in _POSITION_NAMES:
            value = getattr(owner, name, None) if owner is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _integer(value: Any, message: str) -> int:
    """An int from JSON, where ``3.0`` is an integer too (as JSON Schema has it)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(422, message)
    return value


def _int(value: Any, name: str, low: int, high: int | None) -> int:
    bound = f"between {low} and {high}" if high is not None else f">= {low}"
    number = _integer(value, f"{name} must be an integer {bound}")
    if number < low or (high is not None and number > high):
        raise ApiError(422, f"{name} must be an integer {bound}")
    return number


class Generation:
    """One generation on the generate thread: steps until done, deadline or cancel."""

    def __init__(self, state: ServingState, request: GenerateRequest, deadline: float,
                 start: float | None = None) -> None:
        if state.generating >= state.config.max_queue_size:
            raise overloaded(f"{state.generating} generations in progress")
        self.state = state
        self.request = request
        self.deadline = deadline
        #: when the request arrived (time.monotonic): time to first token counts from here
        self.start = time.monotonic() if start is None else start
        self.tokens: list[list[int]] = [[] for _ in request.input_ids]
        self.finish_reason = "length"
        self._iterator: Iterator[Any] | None = None

    def _start(self) -> Iterator[Any]:
        model = self.state.model
        ids = torch.tensor(self.request.input_ids, dtype=torch.long,
                           device=self.state.config.device)
        if callable(getattr(model, "stream", None)):
            return iter(model.stream(ids, self.request.max_new_tokens, self.request.eos_token_id))
        with torch.inference_mode():
            full = model.generate(ids, max_new_tokens=self.request.max_new_tokens,
                                  eos_token_id=self.request.eos_token_id)
        full = torch.as_tensor(full)
        prompt = ids.shape[1]
        if full.dim() != 2 or full.shape[0] != ids.shape[0] or full.shape[1] < prompt or \
                not torch.equal(full[:, :prompt].to(ids.device, ids.dtype), ids):
            raise OutputInvalid(f"model.generate returned {list(full.shape)}, not the "
                                f"{list(ids.shape)} prompt followed by the new tokens", "tokens")
        return iter(full[:, prompt:].unbind(1))

    def _step(self) -> Any:
        try:
            if self._iterator is None:
                self._iterator = self._start()
            with torch.inference_mode():
                return next(self._iterator, _DONE)
        except StopIteration as exc:  # cannot cross into an asyncio future (TypeError)
            raise ModelFault(exc) from exc
        except Exception:
            raise
        except BaseException as exc:  # a model's sys.exit must not reach the event loop
            raise ModelFault(exc) from exc

    def _tokens(self, token: Any) -> list[int]:
        """One step's tokens, one per prompt, as ints in the vocabulary; else
        :class:`OutputInvalid` (500): a 200 must never carry a token that is not one."""
        values = torch.as_tensor(token).detach().reshape(-1).cpu()
        if values.numel() != len(self.tokens):
            raise OutputInvalid(f"the model produced {values.numel()} token(s) for "
                                f"{len(self.tokens)} prompt(s) in one step", "row_count")
        if values.is_floating_point() or values.is_complex() or values.dtype is torch.bool:
            if not (values.is_floating_point() and bool(torch.isfinite(values).all())
                    and bool((values == values.round()).all())):
                raise OutputInvalid(f"the model produced tokens of dtype {values.dtype} "
                                    "that are not integers", "tokens")
            values = values.double()
        step = [int(value) for value in values.tolist()]
        vocab = vocab_size(self.state.model)
        limit = vocab if vocab is not None else _INT64_MAX + 1
        if any(value < 0 or value >= limit for value in step):
            raise OutputInvalid(f"the model produced a token outside [0, {limit})", "tokens")
        return step

    def _close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    async def steps(self) -> AsyncIterator[list[int]]:
        """The new token of every sequence, step by step; raises ApiError 504 at the deadline."""
        state = self.state
        loop = asyncio.get_running_loop()
        assert state.generator is not None
        state.generating += 1
        metrics = state.metrics
        last = self.start
        try:
            while True:
                # A model that ignores max_new_tokens or eos must not run to the deadline.
                if self.finish_reason == "eos" or \
                        len(self.tokens[0]) >= self.request.max_new_tokens:
                    return
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    raise ApiError(504, "deadline passed during generation")
                future = loop.run_in_executor(state.generator, self._step)
                try:
                    token = await asyncio.wait_for(asyncio.shield(future), remaining)
                except TimeoutError:
                    raise ApiError(504, "deadline passed during generation") from None
                if token is _DONE:
                    return
                step = self._tokens(token)
                now = time.monotonic()
                histogram = metrics.inter_token if last != self.start else \
                    metrics.time_to_first_token
                histogram.observe(now - last)
                last = now
                for row, value in zip(self.tokens, step, strict=True):
                    row.append(value)
                if self.request.eos_token_id is not None and \
                        all(self.request.eos_token_id in row for row in self.tokens):
                    self.finish_reason = "eos"
                yield step
        except Exception as exc:
            if isinstance(exc, OutputInvalid):
                state.metrics.on_failure(exc)
                log.error("generation refused: %s", exc.message)
            if isinstance(exc, ApiError):
                raise
            state.metrics.on_failure(exc)
            log_exception(log, "generation failed", exc, state.config.log_payloads)
            name = failure_reason(exc)
            raise ApiError(500, f"generation failed ({name}); see the server log") from exc
        finally:
            state.generating -= 1
            # Runs after any step in flight (one thread), so the generator is not busy.
            if state.generator is not None:
                with contextlib.suppress(RuntimeError):  # executor shut down with the server
                    loop.run_in_executor(state.generator, self._close)

    async def collect(self) -> bytes:
        async for _ in self.steps():
            pass
        return orjson.dumps({"tokens": self.tokens, "finish_reason": self.finish_reason,
                             "model_version": self.state.config.model_version})

    async def events(self) -> AsyncIterator[bytes]:
        """Server-sent events: one ``data:`` per step, then ``event: done`` (or ``error``)."""
        index = 0
        try:
            async for step in self.steps():
                yield b"data: " + orjson.dumps({"index": index, "tokens": step}) + b"\n\n"
                index += 1
        except ApiError as exc:
            yield b"event: error\ndata: " + orjson.dumps({"error": exc.message,
                                                          "status": exc.status}) + b"\n\n"
            return
        yield b"event: done\ndata: " + orjson.dumps(
            {"tokens": self.tokens, "finish_reason": self.finish_reason,
             "model_version": self.state.config.model_version}) + b"\n\n"
