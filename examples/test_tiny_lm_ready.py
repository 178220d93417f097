"""Production readiness of the tiny decoder-only language model, generation included."""

from __future__ import annotations

import torch

import pytest_torchbridge as tb
from examples.models import decode, encode

EXAMPLE = "tiny_lm"


@tb.forward
@tb.determinism
@tb.accuracy(golden="goldens/tiny_lm.safetensors")
@tb.edge_cases(dims={"seq": (1, 128)})
@tb.cpu_fallback
@tb.latency(p99={"cpu": "50ms", "cuda": "5ms"})
@tb.export("pt2")
@tb.serving(max_batch_size=4)
def test_tiny_lm_ready(model: torch.nn.Module, sample_input: torch.Tensor) -> None:
    assert model(sample_input).shape == (2, 16, 256)


def test_generation_is_greedy_and_reproducible(model: torch.nn.Module) -> None:
    prompt = encode("Hello")
    first = model.generate(prompt, max_new_tokens=8)
    assert first.shape == (1, 13)
    assert torch.equal(first, model.generate(prompt, max_new_tokens=8))
    assert decode(first).startswith("Hello")


def test_generation_is_causal(model: torch.nn.Module, sample_input: torch.Tensor) -> None:
    with torch.inference_mode():
        full = model(sample_input)
        prefix = model(sample_input[:, :8])
    torch.testing.assert_close(full[:, :8], prefix, rtol=1e-5, atol=1e-5)
