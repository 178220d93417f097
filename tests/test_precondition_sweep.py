"""Checks that used to pass because their precondition silently did not hold."""

from __future__ import annotations

import pytest
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


def test_a_module_moved_to_the_device_counts_as_run_there() -> None:
    from torchbridge.checks._placement import ran_on

    model = torch.nn.Linear(2, 2).to("meta")
    assert ran_on(model, model(torch.zeros(1, 2, device="meta")), "meta")


def test_a_plain_callable_left_on_the_cpu_does_not_count_as_run_on_the_device() -> None:
    from torchbridge.checks._placement import ran_on

    weights = torch.randn(2, 2)

    def model(x: torch.Tensor) -> torch.Tensor:  # ignores .to(): its weights stay put
        return x.cpu() @ weights

    assert not ran_on(model, model(torch.zeros(1, 2)), "meta")
    assert not ran_on(torch.nn.Linear(2, 2), torch.zeros(1), "cuda:0")


def test_memory_headroom_that_cannot_be_checked_fails_saying_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torchbridge.checks.memory as memory_check

    # As on a machine without psutil, where the CPU's free memory is unknown.
    monkeypatch.setattr(memory_check, "free_memory", lambda device: None)
    result = run("memory", Subject(zero_head(), torch.randn(2, 4)), headroom=0.2)
    assert result.status is Status.FAILED
    assert "free memory on cpu is unknown" in result.message


def test_a_reference_that_is_the_model_itself_fails() -> None:
    model = zero_head()
    result = run("accuracy", Subject(model, torch.randn(2, 4), reference=model))
    assert result.status is Status.FAILED
    assert "the reference is the model under test itself" in result.message
