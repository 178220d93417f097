"""Shared fixtures for the project's own tests: small real models and their inputs."""

from __future__ import annotations

import pytest
import torch

# torch.testing.assert_close imports torch.distributed.tensor on first use. If that first use
# happens inside a pytester inner session, pytester unloads the modules afterwards and the
# re-import fails ("Only a single TORCH_LIBRARY ... c10d_functional"): import it up front.
import torch.distributed.tensor


@pytest.fixture
def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 4)).eval()


@pytest.fixture
def mlp_input() -> torch.Tensor:
    return torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
