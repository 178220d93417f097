"""The edge_cases check: batch sizes, dynamic dims, empty batches and batch invariance."""

from __future__ import annotations

import pytest
import torch

from torchbridge.checks import Dim, InputSpec, Status, Subject, run
from torchbridge.errors import ConfigError


class CentersOverBatch(torch.nn.Module):
    """Normalises with statistics of the whole batch: rows leak into each other."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(0, keepdim=True)


class NeedsRows(torch.nn.Module):
    """Breaks on an empty batch (a reduction over the batch dim)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x.amax(0)


class RefusesEmpty(torch.nn.Module):
    """Rejects empty input on purpose, as a serving model might."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            raise ValueError("empty batch")
        return x * 2


class Pooler(torch.nn.Module):
    """Token ids (batch, seq) → one embedding per row; fails past 16 tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > 16:
            raise ValueError(f"at most 16 tokens, got {ids.shape[1]}")
        return self.embed(ids).mean(1)


def ids() -> torch.Tensor:
    return torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(0))


def seq_spec(max_len: int) -> InputSpec:
    return InputSpec(dims={"seq": Dim(input=0, axis=1, min=1, max=max_len)})


def test_well_behaved_model_passes_default_cases(mlp, mlp_input) -> None:
    result = run("edge_cases", Subject(mlp, mlp_input))
    assert result.status is Status.PASSED, result.message
    names = [case["case"] for case in result.details["cases"]]
    assert names == ["batch=0", "batch=1", "batch=8", "batch invariance"]


def test_default_largest_batch_comes_from_the_input_spec(mlp, mlp_input) -> None:
    result = run("edge_cases", Subject(mlp, mlp_input, spec=InputSpec(max_batch=32)))
    assert "batch=32" in [case["case"] for case in result.details["cases"]]


def test_model_mixing_rows_fails_batch_invariance(mlp_input) -> None:
    result = run("edge_cases", Subject(CentersOverBatch(), mlp_input))
    assert result.status is Status.FAILED
    assert "batch invariance: row 0 alone differs from row 0 of the batch of 4" \
        in result.message
    assert result.metrics["max_invariance_error"].value > 0.1


def test_invariance_can_be_turned_off(mlp_input) -> None:
    assert run("edge_cases", Subject(CentersOverBatch(), mlp_input),
               batch_invariance=False).passed


def test_model_breaking_on_empty_batch_fails_with_the_exception(mlp_input) -> None:
    result = run("edge_cases", Subject(NeedsRows(), mlp_input), batch_invariance=False)
    assert result.status is Status.FAILED
    assert result.message.startswith("batch=0: raised IndexError: amax(): Expected reduction dim 0")
    assert "empty_batch='rejects'" in result.message


def test_declared_rejection_of_empty_batch_passes(mlp_input) -> None:
    result = run("edge_cases", Subject(RefusesEmpty(), mlp_input), empty_batch="rejects")
    assert result.status is Status.PASSED, result.message
    assert "rejected as declared: raised ValueError: empty batch" in \
        result.details["cases"][0]["problem"]


def test_declared_rejection_that_does_not_happen_fails(mlp, mlp_input) -> None:
    result = run("edge_cases", Subject(mlp, mlp_input), empty_batch="rejects")
    assert result.status is Status.FAILED
    assert "accepted an empty batch" in result.message


def test_nan_on_a_batch_size_is_reported(mlp_input) -> None:
    class NanForSingleRows(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x / (x.shape[0] - 1)

    result = run("edge_cases", Subject(NanForSingleRows(), mlp_input),
                 batch_sizes=[1], batch_invariance=False)
    assert result.status is Status.FAILED
    assert "batch=1: non-finite outputs: output" in result.message


def test_output_not_following_the_batch_size_fails(mlp_input) -> None:
    class FixedBatch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(4, 2) + x.sum()

    result = run("edge_cases", Subject(FixedBatch(), mlp_input), batch_sizes=[2],
                 batch_invariance=False)
    assert result.status is Status.FAILED
    assert "outputs do not follow the batch size 2: output has 4 rows" in result.message


def test_dynamic_dim_extremes_from_the_spec_run_and_fail_past_the_limit() -> None:
    subject = Subject(Pooler(), ids(), spec=seq_spec(64))
    result = run("edge_cases", subject, batch_sizes=[1])
    assert result.status is Status.FAILED
    assert "seq=64: raised ValueError: at most 16 tokens, got 64" in result.message
    assert "seq=1" not in result.message


def test_dims_keyword_picks_the_sizes() -> None:
    result = run("edge_cases", Subject(Pooler(), ids(), spec=seq_spec(64)),
                 dims={"seq": (1, 16)})
    assert result.status is Status.PASSED, result.message
    assert {"seq=1", "seq=16"} <= {case["case"] for case in result.details["cases"]}


def test_unknown_dim_fails_naming_the_declared_ones() -> None:
    result = run("edge_cases", Subject(Pooler(), ids(), spec=seq_spec(16)),
                 dims={"tokens": (1, 8)})
    assert result.status is Status.FAILED
    assert "unknown dynamic dim(s) ['tokens']; the input spec declares: seq" in result.message


def test_dict_inputs_with_declared_batch_dims(mlp) -> None:
    class Keyword(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = mlp

        def forward(self, features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.inner(features) * scale

    inputs = {"features": torch.randn(4, 8), "scale": torch.tensor(2.0)}
    spec = InputSpec(batch_dims={"scale": None})
    assert run("edge_cases", Subject(Keyword(), inputs, spec=spec)).passed


@pytest.mark.parametrize("kwargs, fragment", [
    ({"batch_sizes": [-1]}, "batch_sizes must be whole numbers >= 0"),
    ({"dims": {"seq": ("a",)}}, "dims['seq'] must be whole numbers"),
    ({"empty_batch": "maybe"}, "empty_batch must be one of must_work, rejects"),
    ({"invariance_atol": -1}, "invariance_atol must be a finite number >= 0"),
])
def test_bad_settings_are_config_errors(mlp, mlp_input, kwargs, fragment) -> None:
    with pytest.raises(ConfigError) as info:
        run("edge_cases", Subject(mlp, mlp_input), **kwargs)
    assert fragment in str(info.value)


def test_single_row_sample_is_batched_with_itself_for_invariance() -> None:
    class AddsBatchSize(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + x.shape[0]

    result = run("edge_cases", Subject(AddsBatchSize(), torch.randn(1, 8)), batch_sizes=[1])
    assert result.status is Status.FAILED
    assert "row 0 alone differs from row 0 of the batch of 2" in result.message
