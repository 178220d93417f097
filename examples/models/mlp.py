"""A multilayer perceptron, 256 → 1024 → 1024 → 10 (the reference measurements' model)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Two hidden ReLU layers; input ``(batch, 256)``, output logits ``(batch, 10)``."""

    def __init__(self, in_features: int = 256, hidden: int = 1024, classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def build_mlp(seed: int = 0) -> MLP:
    """The MLP with the weights ``seed`` gives, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP().eval()


def sample_mlp(batch: int = 8) -> torch.Tensor:
    """A deterministic ``(batch, 256)`` float32 input."""
    return torch.randn(batch, 256, generator=torch.Generator().manual_seed(1))
