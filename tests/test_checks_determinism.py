"""The determinism check on real models, including ones built to be nondeterministic."""

from __future__ import annotations

import pytest
import torch

from torchbridge.checks import Status, Subject, run
from torchbridge.errors import ConfigError


class AddsNoise(torch.nn.Module):
    """A model with a random op in its forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.linear(x)
        return {"logits": logits, "noisy": logits + 1e-3 * torch.rand_like(logits)}


def test_identical_runs_pass_bitwise(mlp, mlp_input) -> None:
    result = run("determinism", Subject(mlp, mlp_input))
    assert result.status is Status.PASSED, result.message
    assert result.metrics["runs"].value == 3
    assert result.metrics["max_abs_error"].value == 0.0


def test_dropout_left_on_fails_and_points_at_training_mode(mlp_input) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.5),
                                torch.nn.Linear(16, 4)).train()
    result = run("determinism", Subject(model, mlp_input))
    assert result.status is Status.FAILED
    assert "run 2 of 3 vs run 1 differs" in result.message
    assert "training mode" in result.message and "Dropout" in result.message
    assert result.metrics["diverging_runs"].value >= 1


def test_random_op_fails_naming_the_first_diverging_output(mlp_input) -> None:
    result = run("determinism", Subject(AddsNoise().eval(), mlp_input))
    assert result.status is Status.FAILED
    assert result.details["first_diverging_output"] == "output.noisy"
    assert "output.noisy:" in result.message and "output.logits" not in result.message
    assert "would pass with atol>=" in result.message


def test_a_tolerance_accepts_small_nondeterminism(mlp_input) -> None:
    result = run("determinism", Subject(AddsNoise().eval(), mlp_input), atol=2e-3, rtol=0)
    assert result.status is Status.PASSED, result.message
    assert 0 < result.metrics["max_abs_error"].value <= 2e-3


def test_fresh_instance_from_factory_with_unseeded_init_fails(mlp_input) -> None:
    torch.manual_seed(123)  # the fixture's model came from whatever state the RNG was in
    model = torch.nn.Linear(8, 4).eval()
    result = run("determinism", Subject(model, mlp_input,
                                        factory=lambda: torch.nn.Linear(8, 4).eval()))
    assert result.status is Status.FAILED
    assert "a fresh model from model_factory" in result.message


def test_seeded_factory_passes_across_instances(mlp_input) -> None:
    def build() -> torch.nn.Module:
        torch.manual_seed(7)
        return torch.nn.Linear(8, 4).eval()

    result = run("determinism", Subject(build(), mlp_input, factory=build), runs=2)
    assert result.status is Status.PASSED, result.message
    assert "fresh instance" in result.message
    assert len(result.details["compared"]) == 2


def test_across_instances_without_factory_is_an_error_saying_what_to_add(mlp, mlp_input
                                                                        ) -> None:
    result = run("determinism", Subject(mlp, mlp_input), across_instances=True)
    assert result.status is Status.ERROR
    assert "model_factory" in result.message


@pytest.mark.parametrize("kwargs", [{"runs": 1}, {"runs": "3"}, {"rtol": -1.0},
                                    {"atol": float("nan")}])
def test_impossible_settings_are_config_errors(mlp, mlp_input, kwargs) -> None:
    with pytest.raises(ConfigError, match=r"tb\.determinism"):
        run("determinism", Subject(mlp, mlp_input), **kwargs)
