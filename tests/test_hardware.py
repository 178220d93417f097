"""Hardware detection on this machine, NVML absent or failing, and device resolution."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from torchbridge import hardware
from torchbridge.errors import HardwareUnavailable


def test_detect_describes_this_machine() -> None:
    info = hardware.detect()
    assert info.cpu_count >= 1
    assert info.torch_threads == torch.get_num_threads()
    assert info.torch_version == torch.__version__
    assert info.cuda_available == torch.cuda.is_available()
    assert len(info.gpus) == (torch.cuda.device_count() if info.cuda_available else 0)
    assert info.backend in ("cpu", "cuda", "rocm")
    json.dumps(info.to_dict())  # reports embed it


@pytest.mark.skipif(torch.cuda.is_available(), reason="describes a machine without a GPU")
def test_without_a_gpu_nvml_gives_a_reason_instead_of_gpus() -> None:
    info = hardware.detect()
    assert info.backend == "cpu" and info.gpus == []
    assert info.nvml_gpus == []
    assert info.nvml_error  # not installed, or no driver: either way a stated reason


def test_nvml_absent_is_a_recorded_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    gpus, driver, reason = hardware.nvml_gpus()
    assert (gpus, driver) == ([], None)
    assert reason is not None and "pytest-torchbridge[nvidia]" in reason
    assert hardware.detect().nvml_error == reason


def test_nvml_failing_to_initialise_is_a_recorded_reason(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    pynvml = pytest.importorskip("pynvml")

    def broken() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", broken)
    gpus, _, reason = hardware.nvml_gpus()
    assert gpus == []
    assert reason is not None and reason.startswith("NVML could not initialise")


def test_cpu_and_auto_resolve_here() -> None:
    assert hardware.resolve_devices("cpu") == ["cpu"]
    assert hardware.resolve_devices("auto") == [hardware.best_device()]
    assert hardware.resolve_devices("cpu, cpu,") == ["cpu"]


@pytest.mark.skipif(torch.version.cuda is not None, reason="needs a torch built without CUDA")
def test_cuda_on_a_cpu_build_says_torch_was_built_without_it() -> None:
    with pytest.raises(HardwareUnavailable, match="built without CUDA"):
        hardware.resolve_devices("cpu,cuda")


@pytest.mark.parametrize("spec, fragment", [
    ("tpu", "unknown device kind 'tpu'"),
    (",", "names no device"),
])
def test_unusable_specs_are_errors_that_say_why(spec: str, fragment: str) -> None:
    with pytest.raises(HardwareUnavailable, match=fragment):
        hardware.resolve_devices(spec)


def test_missing_gpu_index_names_how_many_exist() -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        with pytest.raises(HardwareUnavailable, match=f"found {count} GPU"):
            hardware.resolve_devices(f"cuda:{count}")
    else:
        assert hardware.why_unavailable(f"cuda:{count}") is not None


def test_workers_stay_on_the_cpu_and_memory_is_gpu_only() -> None:
    assert hardware.pin_worker("cpu", 3) == "cpu"
    assert hardware.accelerator_memory("cpu") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Only runs on cuda")
def test_gpus_report_memory_and_compute_capability() -> None:
    gpu = hardware.detect().gpus[0]
    assert gpu.total_memory > 0 and gpu.free_memory is not None
    assert gpu.compute_capability is not None and gpu.compute_capability[0] >= 3
    assert hardware.pin_worker("cuda", 1) == f"cuda:{1 % torch.cuda.device_count()}"
