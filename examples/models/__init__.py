"""Small, real example models built in code, each with a seeded factory.

Every example has ``build_<name>()`` (same weights on every call), ``sample_<name>(batch)``
(a deterministic sample input) and an input spec that the example suite hands to
TorchBridge through the ``input_spec`` fixture::

    from examples.models import EXAMPLES

    ex = EXAMPLES["text"]
    model, x = ex.build(), ex.sample_input(4)
    logits = model(x)

``tb-serve examples.models:build_tiny_lm`` style ``package.module:factory`` paths work from
the repository root.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from examples.models.cnn import SmallCNN, build_cnn, sample_cnn
from examples.models.mlp import MLP, build_mlp, sample_mlp
from examples.models.text_classifier import (
    TextClassifier,
    build_text_classifier,
    sample_text,
    text_input_spec,
)
from examples.models.tiny_lm import TinyLM, build_tiny_lm, decode, encode, lm_input_spec, sample_lm


@dataclass(frozen=True)
class Example:
    """One example model: how to build it, a sample input, and its input spec."""

    name: str
    build: Callable[[], torch.nn.Module]
    sample_input: Callable[[int], torch.Tensor]
    input_spec: dict[str, Any] = field(default_factory=dict)
    batch: int = 8


EXAMPLES: dict[str, Example] = {
    "mlp": Example("mlp", build_mlp, sample_mlp, {"max_batch": 64}),
    "cnn": Example("cnn", build_cnn, sample_cnn, {"max_batch": 32}),
    "text": Example("text", build_text_classifier, sample_text, text_input_spec(), batch=4),
    "tiny_lm": Example("tiny_lm", build_tiny_lm, sample_lm, lm_input_spec(), batch=2),
}

__all__ = [
    "EXAMPLES", "MLP", "Example", "SmallCNN", "TextClassifier", "TinyLM", "build_cnn",
    "build_mlp", "build_text_classifier", "build_tiny_lm", "decode", "encode", "lm_input_spec",
    "sample_cnn", "sample_lm", "sample_mlp", "sample_text", "text_input_spec",
]
