"""Padding requests of different lengths into one batch, for models that declare it.

By default requests whose dynamic dims differ go to different batches (grouped by shape):
always correct, whatever the model does with its inputs. A model that takes an attention
mask can declare padding instead, as an attribute::

    class Encoder(nn.Module):
        serving_padding = {"dim": "seq", "value": 0, "mask": "attention_mask"}

``dim`` is a named dynamic dim of the input spec; every input that has it (the inputs the
spec names, and the mask) is padded along its axis to the longest request in the batch,
with ``value`` (the mask with 0). Outputs that carry the padded length are cut back to
each request's own length; which outputs do (and on which axis) is learned at warm-up by
running the sample at another length, never guessed from a size that may be equal by
coincidence (``pooled`` of 4 features in a batch padded to 4 tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from torchbridge.core.subject import InputSpec
from torchbridge.errors import ConfigError
from torchbridge.serving.schemas import Signature


@dataclass(frozen=True)
class Padding:
    """Which inputs (by index) are padded along ``axis``, with what; ``mask`` is the index
    of the mask input (padded with 0)."""

    axis: int
    inputs: tuple[int, ...]
    value: float
    mask: int

    def length(self, arrays: Sequence[np.ndarray]) -> int:
        return int(arrays[self.inputs[0]].shape[self.axis])


def declared_padding(model: Any, spec: InputSpec, sig: Signature) -> Padding | None:
    """The model's ``serving_padding`` checked against the signature, or ``None``."""
    declared = getattr(model, "serving_padding", None)
    if declared is None:
        return None
    if not isinstance(declared, Mapping) or not {"dim", "mask"} <= set(declared):
        raise ConfigError("serving_padding must be a dict with 'dim' (a named dynamic dim), "
                          "'mask' (the mask input's name) and optionally 'value'")
    name = declared["dim"]
    if name not in spec.dims:
        raise ConfigError(f"serving_padding: dim {name!r} is not a dynamic dim of the input "
                          f"spec (declared: {', '.join(spec.dims) or 'none'})")
    dim = spec.dims[name]
    names = sig.names()
    # every input the dim lives on is padded, and the mask even when the spec omits it
    axes = {key if isinstance(key, str) else f"input_{key}": axis
            for key, axis in dim.axes.items()}
    mask = declared["mask"]
    axes.setdefault(mask, dim.first[1])
    for label in axes:
        if label not in names:
            raise ConfigError(f"serving_padding: {label!r} is not one of the model's inputs "
                              f"{names}")
    if len(set(axes.values())) > 1:
        raise ConfigError(f"serving_padding pads along one axis, but dim {name!r} lives on "
                          f"several ({dim.describe()})")
    axis = next(iter(axes.values()))
    indices = tuple(sorted(names.index(label) for label in axes))
    for index in indices:
        if len(sig.inputs[index].shape) <= axis:
            raise ConfigError(f"serving_padding: input {names[index]!r} has no axis {axis}")
    return Padding(axis, indices, float(declared.get("value", 0)), names.index(mask))


def resized(arrays: Sequence[np.ndarray], padding: Padding, length: int
            ) -> list[np.ndarray]:
    """One request's inputs padded (or cut) to ``length`` along the padded axis."""
    out = list(arrays)
    for index in padding.inputs:
        array = arrays[index]
        have = array.shape[padding.axis]
        if length <= have:
            out[index] = np.ascontiguousarray(np.take(array, range(length), padding.axis))
            continue
        widths = [(0, 0)] * array.ndim
        widths[padding.axis] = (0, length - have)
        fill = 0 if index == padding.mask else padding.value
        out[index] = np.pad(array, widths, constant_values=fill)
    return out


def pad_batch(batches: Sequence[Sequence[np.ndarray]], padding: Padding
              ) -> tuple[list[list[np.ndarray]], list[int]]:
    """Each request's inputs padded to the longest length in the batch, and the lengths."""
    lengths = [padding.length(arrays) for arrays in batches]
    longest = max(lengths)
    out = [resized(arrays, padding, longest) if length < longest else list(arrays)
           for arrays, length in zip(batches, lengths, strict=True)]
    return out, lengths
