"""Production readiness of the MLP (256 → 1024 → 1024 → 10)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pytest_torchbridge as tb

EXAMPLE = "mlp"


@pytest.fixture
def mlp_reference(model: torch.nn.Module) -> object:
    """The same network written out with plain tensor operations: an independent reference."""
    weights = [(layer.weight, layer.bias) for layer in model.layers
               if isinstance(layer, torch.nn.Linear)]

    def reference(x: torch.Tensor) -> torch.Tensor:
        for index, (weight, bias) in enumerate(weights):
            x = x @ weight.T + bias
            if index < len(weights) - 1:
                x = F.relu(x)
        return x

    return reference


@tb.forward
@tb.determinism(runs=5)
@tb.accuracy(golden="goldens/mlp.safetensors")
@tb.accuracy(reference_fixture="mlp_reference", rtol=1e-5, atol=1e-5)
@tb.edge_cases(batch_sizes=[0, 1, 64])
@tb.cpu_fallback
@tb.latency(p50={"cpu": "5ms", "cuda": "1ms"}, p99={"cpu": "25ms", "cuda": "5ms"}, batch_size=1)
@tb.throughput(min_samples_per_s={"cpu": 1000, "cuda": 20000}, batch_sizes=[1, 8, 32])
@tb.memory(peak="256MiB")
@tb.export("onnx", dynamic=True)
@tb.export("torchscript", method="trace")
@tb.export("safetensors")
@tb.export("pt2")
@tb.serving(max_batch_size=8)
@tb.security(artifacts=["goldens/mlp.safetensors"], checksum="goldens/SHA256SUMS")
def test_mlp_ready(model: torch.nn.Module, sample_input: torch.Tensor) -> None:
    assert model(sample_input).shape == (8, 10)


@tb.multi_gpu
@tb.requires(device="cuda")
def test_mlp_on_gpus(model: torch.nn.Module, sample_input: torch.Tensor) -> None:
    assert model.cuda()(sample_input.cuda()).device.type == "cuda"
