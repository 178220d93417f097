"""The forward check on real models: NaN-producing inputs and training mode."""

from __future__ import annotations

import torch

from torchbridge.checks import Status, Subject, run


class LogFeatures(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.log(x)  # NaN for negative inputs
        return features, self.head(features)


def test_nan_producing_input_fails_naming_each_output() -> None:
    x = torch.tensor([[1.0, 2.0, -1.0, 3.0]])
    result = run("forward", Subject(LogFeatures().eval(), x))
    assert result.status is Status.FAILED
    assert "output[0] (1 NaN, 0 Inf of 4)" in result.message
    assert "output[1] (2 NaN, 0 Inf of 2)" in result.message


def test_the_metric_counts_non_finite_outputs_under_a_name_that_says_so() -> None:
    x = torch.tensor([[1.0, 2.0, -1.0, 3.0]])
    result = run("forward", Subject(LogFeatures().eval(), x))
    assert result.metrics["nonfinite_outputs"].value == 2
    assert "outputs" not in result.metrics


def test_valid_input_passes() -> None:
    assert run("forward", Subject(LogFeatures().eval(), torch.rand(3, 4) + 0.1)).passed


def test_batch_norm_left_in_training_mode_is_reported() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)).train()
    result = run("forward", Subject(model, torch.randn(3, 4)))
    assert result.status is Status.FAILED
    assert "1 (BatchNorm1d)" in result.message and "model.eval()" in result.message
