"""cpu_fallback and multi_gpu: skipped with a reason without the hardware; on a GPU
machine they compare the devices for real."""

from __future__ import annotations

import pytest
import torch

from torchbridge.checks import Status, Subject, run

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="Only runs on cuda")


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def test_cpu_fallback_is_skipped_with_a_reason_on_the_cpu(mlp, mlp_input) -> None:
    result = run("cpu_fallback", Subject(mlp, mlp_input, device="cpu"))
    assert result.status is Status.SKIPPED
    assert "runs on the CPU already" in result.message


@pytest.mark.skipif(gpu_count() >= 2, reason="this machine has several GPUs")
def test_multi_gpu_is_skipped_saying_how_many_gpus_it_found(mlp, mlp_input) -> None:
    result = run("multi_gpu", Subject(mlp, mlp_input))
    assert result.status is Status.SKIPPED
    assert result.message == f"needs 2 GPUs, found {gpu_count()}"


@needs_cuda
def test_cpu_fallback_matches_on_cuda(mlp, mlp_input) -> None:
    result = run("cpu_fallback", Subject(mlp, mlp_input, device="cuda"))
    assert result.status is Status.PASSED, result.message
    assert result.metrics["max_abs_error"].value < 1e-3


@needs_cuda
def test_cpu_fallback_fails_when_the_device_computes_differently(mlp_input) -> None:
    class DeviceDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + (1.0 if x.is_cuda else 0.0)

    result = run("cpu_fallback", Subject(DeviceDependent(), mlp_input, device="cuda"))
    assert result.status is Status.FAILED
    assert "CPU output differs from cuda" in result.message and "max abs 1" in result.message


@needs_cuda
def test_cpu_fallback_fails_when_the_model_cannot_run_on_the_cpu(mlp_input) -> None:
    class CudaOnly(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.ones(1, device="cuda")

    result = run("cpu_fallback", Subject(CudaOnly(), mlp_input, device="cuda"))
    assert result.status is Status.FAILED
    assert "does not run on the CPU" in result.message


@needs_cuda
def test_edge_cases_and_determinism_on_cuda(mlp, mlp_input) -> None:
    assert run("edge_cases", Subject(mlp, mlp_input, device="cuda")).passed
    assert run("determinism", Subject(mlp, mlp_input, device="cuda")).passed


@pytest.mark.skipif(gpu_count() < 2, reason="needs 2 GPUs")
def test_multi_gpu_agrees_across_gpus(mlp, mlp_input) -> None:
    result = run("multi_gpu", Subject(mlp, mlp_input, device="cuda"))
    assert result.status is Status.PASSED, result.message
    assert result.metrics["gpus"].value == gpu_count()
