"""Production readiness of the small CNN (batch norm: eval mode matters)."""

from __future__ import annotations

import torch

import pytest_torchbridge as tb

EXAMPLE = "cnn"


@tb.forward
@tb.determinism
@tb.accuracy(golden="goldens/cnn.safetensors")
@tb.edge_cases
@tb.cpu_fallback(rtol=1e-3, atol=1e-3)
@tb.latency(p99={"cpu": "50ms", "cuda": "5ms"}, batch_size=1)
@tb.memory(peak="256MiB")
@tb.export("onnx", dynamic=True)
@tb.export("pt2")
def test_cnn_ready(model: torch.nn.Module, sample_input: torch.Tensor) -> None:
    probabilities = model(sample_input).softmax(-1)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(8))


@tb.cpu_fallback
@tb.requires(device="cuda", min_vram="1GiB")
def test_cnn_on_gpu(model: torch.nn.Module, sample_input: torch.Tensor) -> None:
    assert model.cuda()(sample_input.cuda()).shape == (8, 10)
