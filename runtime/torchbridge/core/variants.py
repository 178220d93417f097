"""Inputs that are not copies of the sample: extra rows, and fresh values for validation.

A check that only ever feeds back the sample it was built on cannot see a model (or an
artifact) that baked the sample's values in: a traced ``if x.max() > 1`` branch, a batch of
identical rows hiding a cross-row leak. These helpers derive other inputs of the same
structure and dtypes from the sample:

* :func:`distinct_rows` grows the batch to ``rows`` rows whose added rows differ from the
  sample's (floats scaled and shifted, integers rolled along their last axis);
* :func:`scaled_and_shuffled` and :func:`uniform_noise` are fresh inputs of the sample's
  shapes for validating exported artifacts.

Integer inputs (token ids, masks) keep values the sample holds or values inside its
``[min, max]`` range, so ids stay valid for the model's embeddings; booleans are kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from torchbridge.core.subject import InputKey, Inputs, InputSpec, named_inputs, rebuild

#: Factors the rows of :func:`scaled_and_shuffled` are multiplied by, in turn: above and
#: below 1, so values leave the sample's range on both sides.
ROW_SCALES = (3.0, 0.25, 2.0, 0.5)


def _map_tensors(inputs: Inputs, spec: InputSpec,
                 fn: Callable[[InputKey, torch.Tensor, int | None], torch.Tensor]) -> Inputs:
    values = []
    for key, value in named_inputs(inputs):
        values.append(fn(key, value, spec.batch_axis(key)) if isinstance(value, torch.Tensor)
                      else value)
    return rebuild(inputs, values)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def distinct_rows(inputs: Inputs, spec: InputSpec, rows: int) -> Inputs:
    """The sample grown to at least ``rows`` rows; rows past the sample's own are changed
    copies (float rows scaled by ``1 + 0.1 k`` and shifted by ``0.01 k``, integer rows
    rolled by ``k`` along their last axis), so no two rows of a 1-row sample are equal.

    Rows already in the sample are kept as they are; batch-less inputs are left alone.
    """

    def grow(key: InputKey, value: torch.Tensor, axis: int | None) -> torch.Tensor:
        if axis is None or value.shape[axis] >= rows:
            return value
        have = int(value.shape[axis])
        if have == 0:
            return value
        extra = []
        for k in range(1, rows - have + 1):
            source = value.narrow(axis, (k - 1) % have, 1)
            extra.append(_changed(source, k))
        return torch.cat([value, *extra], dim=axis)

    return _map_tensors(inputs, spec, grow)


def _changed(row: torch.Tensor, k: int) -> torch.Tensor:
    if row.dtype.is_floating_point or row.dtype.is_complex:
        return row * (1 + 0.1 * k) + 0.01 * k
    if row.dtype == torch.bool or row.ndim < 2:
        return row.clone()
    return torch.roll(row, shifts=k, dims=-1)


def scaled_and_shuffled(inputs: Inputs, spec: InputSpec, seed: int = 0) -> Inputs:
    """The sample's rows in a shuffled order, float rows multiplied by :data:`ROW_SCALES`
    in turn; integer and boolean inputs get the same row order with their own values."""
    order: dict[int, torch.Tensor] = {}

    def permuted(size: int) -> torch.Tensor:
        if size not in order:
            perm = torch.randperm(size, generator=_generator(seed))
            if size > 1 and torch.equal(perm, torch.arange(size)):
                perm = perm.roll(1)  # never the sample's own order
            order[size] = perm
        return order[size]

    def change(key: InputKey, value: torch.Tensor, axis: int | None) -> torch.Tensor:
        if axis is None or value.ndim == 0:
            return value
        out = value.index_select(axis, permuted(int(value.shape[axis])).to(value.device))
        if not value.dtype.is_floating_point:
            return out
        shape = [1] * value.ndim
        shape[axis] = -1
        scales = torch.tensor([ROW_SCALES[i % len(ROW_SCALES)]
                               for i in range(int(value.shape[axis]))], dtype=value.dtype,
                              device=value.device).reshape(shape)
        return out * scales

    return _map_tensors(inputs, spec, change)


def uniform_noise(inputs: Inputs, spec: InputSpec, seed: int = 1) -> Inputs:
    """Inputs of the sample's shapes and dtypes with fresh values: floats uniform in
    ``[0, 1)``, integers uniform in the sample's ``[min, max]`` (valid ids stay valid),
    booleans and 0/1 integer inputs (masks) as in the sample."""

    def draw(key: InputKey, value: torch.Tensor, axis: int | None) -> torch.Tensor:
        generator = _generator(seed)
        if value.dtype.is_floating_point:
            noise = torch.rand(value.shape, generator=generator, dtype=torch.float32)
            return noise.to(dtype=value.dtype, device=value.device)
        if value.dtype == torch.bool or value.numel() == 0 or value.dtype.is_complex:
            return value
        low, high = int(value.min()), int(value.max())
        if low >= 0 and high <= 1:
            # A 0/1 input is a mask (or token types): random masks would blank whole rows
            # and divide by zero in eager and artifact alike, so the sample's pattern stays.
            return value
        drawn = torch.randint(low, high + 1, tuple(value.shape), generator=generator,
                              dtype=torch.int64)
        return drawn.to(dtype=value.dtype, device=value.device)

    return _map_tensors(inputs, spec, draw)
