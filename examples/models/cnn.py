"""A small image classifier: two conv blocks with batch norm, global pooling, a linear head."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Input ``(batch, 3, 32, 32)`` images, output logits ``(batch, 10)``.

    Batch norm makes the train/eval distinction matter, as it does in real CNNs.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(32, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).flatten(1))


def build_cnn(seed: int = 0) -> SmallCNN:
    """The CNN with the weights ``seed`` gives (batch-norm statistics included), eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN()
        # Non-trivial running statistics, as a trained model would have.
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        return model.eval()


def sample_cnn(batch: int = 8) -> torch.Tensor:
    """A deterministic ``(batch, 3, 32, 32)`` float32 input."""
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(2))
