"""Production readiness of the transformer text classifier (token ids, dynamic ``seq``)."""

from __future__ import annotations

import torch

import pytest_torchbridge as tb
from examples.models.text_classifier import PAD_ID

EXAMPLE = "text"


@tb.forward
@tb.determinism(runs=3)
@tb.accuracy(golden="goldens/text_classifier.safetensors", per_output={"output": (1e-5, 1e-5)})
@tb.edge_cases(batch_sizes=[0, 1, 32], dims={"seq": (1, 512)})
@tb.cpu_fallback
@tb.latency(p99={"cpu": "50ms", "cuda": "5ms"}, batch_size=1)
@tb.memory(peak="256MiB")
@tb.export("onnx", dynamic=True)
@tb.export("pt2")
@tb.security(artifacts=["goldens/text_classifier.safetensors"], checksum="goldens/SHA256SUMS")
def test_text_classifier_ready(model: torch.nn.Module, sample_input: torch.Tensor) -> None:
    assert model(sample_input).shape == (4, 4)


def test_padding_does_not_change_the_prediction(model: torch.nn.Module,
                                                sample_input: torch.Tensor) -> None:
    padded = torch.cat([sample_input, torch.full((4, 8), PAD_ID)], dim=1)
    with torch.inference_mode():
        torch.testing.assert_close(model(padded), model(sample_input))
