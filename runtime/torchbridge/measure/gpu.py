"""GPU utilisation sampled from NVML on a background thread while work runs."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from torchbridge.measure.timing import nvml_handle


@dataclass
class UtilizationSamples:
    """NVML readings taken during a run: GPU busy %, memory-controller busy %, used bytes."""

    gpu_percent: list[int] = field(default_factory=list)
    memory_percent: list[int] = field(default_factory=list)
    used_bytes: list[int] = field(default_factory=list)
    interval_s: float = 0.0
    skipped: str | None = None

    @property
    def mean_gpu_percent(self) -> float | None:
        return sum(self.gpu_percent) / len(self.gpu_percent) if self.gpu_percent else None

    def to_dict(self) -> dict[str, Any]:
        return {"gpu_percent": self.gpu_percent, "memory_percent": self.memory_percent,
                "used_bytes": self.used_bytes, "interval_s": self.interval_s,
                "mean_gpu_percent": self.mean_gpu_percent, "skipped": self.skipped}


def nvml_unavailable(device: str) -> str | None:
    """Why NVML utilisation cannot be sampled for ``device``; ``None`` when it can."""
    if device.split(":")[0] != "cuda":
        return f"GPU utilisation needs a CUDA device; this run uses {device}"
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed (pip install 'pytest-torchbridge[nvidia]')"
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return f"NVML could not initialise: {exc}"
    with contextlib.suppress(Exception):
        pynvml.nvmlShutdown()
    return None


class UtilizationSampler:
    """Context manager: samples NVML every ``interval`` seconds while the block runs.

    Without NVML (or on a non-CUDA device) it samples nothing and records why.
    """

    def __init__(self, device: str, interval: float = 0.05) -> None:
        self.device = device
        self.samples = UtilizationSamples(interval_s=interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None

    def __enter__(self) -> UtilizationSampler:
        reason = nvml_unavailable(self.device)
        if reason:
            self.samples.skipped = reason
            return self
        import pynvml
        import torch

        pynvml.nvmlInit()
        index = torch.device(self.device).index
        self._handle = nvml_handle(pynvml, torch.cuda.current_device() if index is None
                                   else index)
        self._thread = threading.Thread(target=self._run, args=(pynvml,), daemon=True)
        self._thread.start()
        return self

    def _run(self, pynvml: Any) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                rates = pynvml.nvmlDeviceGetUtilizationRates(self._handle)
                mem = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
                self.samples.gpu_percent.append(int(rates.gpu))
                self.samples.memory_percent.append(int(rates.memory))
                self.samples.used_bytes.append(int(mem.used))
            time.sleep(self.samples.interval_s)

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            import pynvml

            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
