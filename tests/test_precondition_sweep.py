"""Checks that used to pass because their precondition silently did not hold."""

from __future__ import annotations

import torch

from torchbridge.checks import Status, Subject, run


class CentreBatch(torch.nn.Module):
    """Each row depends on its batch mates, like BatchNorm left in training mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return y - y.mean(dim=0, keepdim=True)


def zero_head() -> torch.nn.Module:
    """A zero-initialised head, like torchvision's ViT before training: all-zero logits."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)).eval()
    torch.nn.init.zeros_(model[1].weight)
    torch.nn.init.zeros_(model[1].bias)
    return model


def test_batch_invariance_of_a_one_row_sample_uses_distinct_rows() -> None:
    result = run("edge_cases", Subject(CentreBatch().eval(), torch.randn(1, 4)),
                 batch_sizes=[1])
    assert result.status is Status.FAILED
    assert "batch invariance: row 0 alone differs from row 0 of the batch of 2" \
        in result.message


def test_batch_invariance_of_a_sample_of_identical_rows_uses_distinct_rows() -> None:
    result = run("edge_cases", Subject(CentreBatch().eval(), torch.ones(4, 4)),
                 batch_sizes=[1])
    assert result.status is Status.FAILED
    assert "batch invariance: row 0 alone differs from row 0 of the batch of 4" \
        in result.message


def test_determinism_of_an_output_without_signal_passes_with_a_warning() -> None:
    result = run("determinism", Subject(zero_head(), torch.randn(2, 4)))
    assert result.passed
    assert "warning: no signal in output" in result.message


def test_batch_invariance_of_an_output_without_signal_warns() -> None:
    result = run("edge_cases", Subject(zero_head(), torch.randn(3, 4)))
    assert result.passed, result.message
    assert "warning: no signal in output" in result.message


def test_accuracy_against_a_reference_without_signal_warns() -> None:
    subject = Subject(zero_head(), torch.randn(2, 4), reference=zero_head())
    result = run("accuracy", subject)
    assert result.passed, result.message
    assert "warning: no signal in output" in result.message
