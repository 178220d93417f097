"""Outputs without signal are named, so a comparison that cannot fail says so."""

from __future__ import annotations

import torch

from torchbridge.core.signal import no_signal_note, silent_outputs


def zero_head_classifier() -> torch.nn.Module:
    """A backbone with a zero-initialised head, like torchvision's ViT before training."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 10)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), head).eval()


def test_zero_initialised_head_has_no_signal() -> None:
    logits = zero_head_classifier()(torch.randn(4, 8))
    assert silent_outputs(logits) == ["output"]
    note = no_signal_note({"logits": logits, "features": torch.randn(4, 16)})
    assert note.startswith("; warning: no signal in output.logits (every value within 1e-06")


def test_values_around_1e_9_have_no_signal_but_real_outputs_do() -> None:
    assert silent_outputs((torch.full((2, 3), 1e-9), torch.randn(2, 3))) == ["output[0]"]
    assert no_signal_note(torch.randn(2, 3)) == ""


def test_integer_and_empty_outputs_are_not_judged() -> None:
    assert silent_outputs({"ids": torch.zeros(2, 3, dtype=torch.long),
                           "empty": torch.zeros(0)}) == []
