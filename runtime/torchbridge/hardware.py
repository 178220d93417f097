"""What hardware this process can use: CPU, CUDA/ROCm, MPS and XPU, from torch and NVML.

NVML (``nvidia-ml-py``) is optional; when it is absent or fails, the reason is recorded in
``HardwareInfo.nvml_error`` and detection goes on with torch alone.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from torchbridge.errors import HardwareUnavailable


@dataclass
class GPUInfo:
    index: int
    name: str
    total_memory: int
    free_memory: int | None = None
    compute_capability: tuple[int, int] | None = None
    uuid: str | None = None


@dataclass
class HardwareInfo:
    cpu_count: int
    torch_threads: int
    platform: str
    torch_version: str
    cuda_available: bool
    cuda_version: str | None
    hip_version: str | None
    driver_version: str | None
    mps_available: bool
    xpu_available: bool
    gpus: list[GPUInfo] = field(default_factory=list)
    nvml_gpus: list[GPUInfo] = field(default_factory=list)
    nvml_error: str | None = None

    @property
    def backend(self) -> str:
        """``"rocm"`` on a HIP build with GPUs, ``"cuda"`` with CUDA GPUs, else ``"cpu"``."""
        if self.cuda_available and self.hip_version:
            return "rocm"
        return "cuda" if self.cuda_available else "cpu"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backend"] = self.backend
        return data


def _torch_gpus() -> list[GPUInfo]:
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        try:
            free, _ = torch.cuda.mem_get_info(index)
        except RuntimeError:
            free = None
        gpus.append(GPUInfo(index, props.name, int(props.total_memory), free,
                            (props.major, props.minor), str(getattr(props, "uuid", "")) or None))
    return gpus


def nvml_gpus() -> tuple[list[GPUInfo], str | None, str | None]:
    """GPUs as NVML sees them, the driver version, and the reason NVML could not be read."""
    try:
        import pynvml
    except ImportError:
        return [], None, "nvidia-ml-py is not installed (pip install 'pytest-torchbridge[nvidia]')"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError has many subclasses; every one means "no NVML here"
        return [], None, f"NVML could not initialise: {exc}"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(GPUInfo(index, str(pynvml.nvmlDeviceGetName(handle)), int(mem.total),
                                int(mem.free), (major, minor),
                                str(pynvml.nvmlDeviceGetUUID(handle))))
        return gpus, str(driver), None
    except Exception as exc:
        return [], None, f"NVML query failed: {exc}"
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _xpu_available() -> bool:
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


def detect() -> HardwareInfo:
    """Detect the hardware visible to this process."""
    cuda = torch.cuda.is_available()
    nvml, driver, nvml_error = nvml_gpus()
    return HardwareInfo(
        cpu_count=os.cpu_count() or 1,
        torch_threads=torch.get_num_threads(),
        platform=platform.platform(),
        torch_version=torch.__version__,
        cuda_available=cuda,
        cuda_version=torch.version.cuda,
        hip_version=getattr(torch.version, "hip", None),
        driver_version=driver,
        mps_available=bool(torch.backends.mps.is_available()),
        xpu_available=_xpu_available(),
        gpus=_torch_gpus() if cuda else [],
        nvml_gpus=nvml,
        nvml_error=nvml_error,
    )


def why_unavailable(device: str) -> str | None:
    """``None`` when ``device`` ("cpu", "cuda", "cuda:1", "mps", "xpu") can be used here,
    else the reason it cannot."""
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return None
    if kind == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            return f"torch {torch.__version__} was built without CUDA"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return "CUDA is not available: no GPU visible (check the driver and " \
                   "CUDA_VISIBLE_DEVICES)"
        if index and int(index) >= count:
            return f"{device} does not exist: found {count} GPU(s)"
        return None
    if kind == "mps":
        return None if torch.backends.mps.is_available() else "MPS is not available here"
    if kind == "xpu":
        return None if _xpu_available() else "XPU is not available here"
    return f"unknown device kind {kind!r} (use cpu, cuda, cuda:N, mps or xpu)"


def check_device(name: str) -> str:
    """The one device validator: ``name`` normalised (``"cuda"`` stays ``"cuda"``,
    ``"CUDA:1"`` is refused by torch), or :class:`HardwareUnavailable` naming why this
    machine or this torch build cannot use it (not a device name, absent, unknown kind)."""
    try:
        device = str(torch.device(name))
    except (RuntimeError, ValueError):
        raise HardwareUnavailable(f"{name!r} is not a device name (cpu, cuda, cuda:1, mps, "
                                  "xpu)") from None
    reason = why_unavailable(device)
    if reason is not None:
        raise HardwareUnavailable(reason)
    return device


def best_device() -> str:
    """The fastest device available: cuda, then mps, then xpu, then cpu."""
    for device in ("cuda", "mps", "xpu"):
        if why_unavailable(device) is None:
            return device
    return "cpu"


def resolve_devices(spec: str) -> list[str]:
    """Devices for a ``--tb-hardware`` value: ``auto``, ``cpu``, ``cuda:1``, ``cpu,cuda``.

    Raises :class:`HardwareUnavailable` naming the reason for any absent device.
    """
    devices = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        device = best_device() if part == "auto" else part
        reason = why_unavailable(device)
        if reason:
            raise HardwareUnavailable(f"--tb-hardware={spec}: {reason}")
        if device not in devices:
            devices.append(device)
    if not devices:
        raise HardwareUnavailable(f"--tb-hardware={spec!r} names no device")
    return devices


def pin_worker(device: str, worker_index: int) -> str:
    """The GPU one xdist worker uses: ``cuda`` → ``cuda:<worker index mod GPU count>``."""
    if device != "cuda" or not torch.cuda.is_available():
        return device
    return f"cuda:{worker_index % torch.cuda.device_count()}"


def accelerator_memory(device: str) -> tuple[int, int] | None:
    """(free, total) bytes of an accelerator device, ``None`` on CPU."""
    if device.startswith("cuda") and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(free), int(total)
    return None
