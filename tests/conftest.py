"""Shared fixtures for the project's own tests: small real models and their inputs."""

from __future__ import annotations

# Modules imported for the first time inside a pytester inner session are unloaded after it
# and imported afresh later, which breaks two libraries the tests use: torch's operator
# registry ("Only a single TORCH_LIBRARY ... c10d_functional" once torch.testing.assert_close
# reloads torch.distributed.tensor), and httpx's mapping of httpcore's exceptions (a
# re-imported httpcore.ConnectError escapes `except httpx.HTTPError`). Import them up front.
import httpcore  # noqa: F401
import httpx  # noqa: F401
import pytest
import torch
import torch.distributed.tensor


@pytest.fixture
def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 4)).eval()


@pytest.fixture
def mlp_input() -> torch.Tensor:
    return torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
