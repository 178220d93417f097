"""Turning a check's subject into a timed call: placement, batch size, first-call check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from torchbridge.core.subject import Subject, call_model
from torchbridge.errors import ConfigError
from torchbridge.measure.memory import is_out_of_memory


@dataclass
class BoundCall:
    """A zero-argument callable running the model once on fixed inputs."""

    fn: Callable[[], Any]
    model: Any
    inputs: Any
    batch_size: int | None


class ModelRejected(Exception):
    """The model raised on its first call with these inputs (not an out-of-memory)."""


def bind(subject: Subject, batch_size: int | None = None) -> BoundCall:
    """The subject's model and inputs on its device, at ``batch_size`` when given.

    The first call runs here, outside any timing: an exception there becomes
    :class:`ModelRejected` (or propagates when it is an out-of-memory).
    """
    model, placed = subject.placed()
    if batch_size is not None:
        # Grow the batch where it will run: a huge stress batch must fail with the
        # device's out-of-memory, not exhaust host RAM on the way there.
        on_device = Subject(model, placed, device=subject.device, spec=subject.spec)
        inputs = on_device.with_batch(batch_size)
        size: int | None = batch_size
    else:
        inputs = placed
        try:
            size = subject.batch_size
        except ConfigError:
            size = None

    def fn() -> Any:
        return call_model(model, inputs)

    try:
        with torch.inference_mode():
            fn()
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        what = f"batch size {size}" if size is not None else "its sample input"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelRejected(f"the model rejects {what}: {type(exc).__name__}: {first}") \
            from exc
    return BoundCall(fn, model, inputs, size)
