"""Inputs that are not copies of the sample, for export validation and batched parity."""

from __future__ import annotations

import torch

from torchbridge.core.subject import InputSpec
from torchbridge.core.variants import distinct_rows, scaled_and_shuffled, uniform_noise

SPEC = InputSpec()


def test_a_one_row_sample_grows_to_distinct_rows_with_valid_ids() -> None:
    grown = distinct_rows({"x": torch.randn(1, 4), "ids": torch.tensor([[1, 2, 3]])}, SPEC, 3)
    x, ids = grown["x"], grown["ids"]
    assert x.shape == (3, 4) and ids.shape == (3, 3)
    assert len({tuple(row.tolist()) for row in x}) == 3
    assert len({tuple(row.tolist()) for row in ids}) == 3
    assert sorted(ids[2].tolist()) == [1, 2, 3]  # rolled, so every id stays valid


def test_rows_are_shuffled_and_float_rows_scaled() -> None:
    x = torch.arange(8.0).reshape(4, 2) + 1
    fresh = scaled_and_shuffled(x, SPEC)
    assert not torch.equal(fresh, x)
    assert fresh.abs().max() > x.abs().max()  # a row scaled by 3 leaves the sample's range


def test_noise_is_uniform_for_floats_within_range_for_ids_and_keeps_masks() -> None:
    inputs = (torch.randn(4, 6) * 10, torch.randint(5, 50, (4, 6)),
              torch.tensor([[1, 1, 0, 0]] * 4))
    floats, ids, mask = uniform_noise(inputs, SPEC)
    assert floats.dtype == torch.float32 and float(floats.min()) >= 0 and floats.max() < 1
    assert int(ids.min()) >= int(inputs[1].min()) and int(ids.max()) <= int(inputs[1].max())
    assert not torch.equal(ids, inputs[1])
    assert torch.equal(mask, inputs[2])
