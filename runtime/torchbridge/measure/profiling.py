"""``profile_model``: ``torch.profiler`` over a few forward passes, as rows or a trace.

Modes:

* ``summary`` — operators by self CPU (and device) time;
* ``memory`` — operators by memory they allocate (``profile_memory=True``);
* ``detailed`` — operators grouped by input shape, with shapes recorded and stacks.

A Chrome trace (``chrome://tracing``, Perfetto) is written on request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from torchbridge.core.subject import call_model, to_device
from torchbridge.errors import ConfigError

MODES = ("summary", "memory", "detailed")


@dataclass
class ProfileReport:
    mode: str
    device: str
    steps: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    trace: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "device": self.device, "steps": self.steps,
                "rows": self.rows, "trace": self.trace}


def _row(event: Any, on_device: bool) -> dict[str, Any]:
    row = {
        "name": event.key, "calls": event.count,
        "self_cpu_us": event.self_cpu_time_total, "cpu_total_us": event.cpu_time_total,
        "self_cpu_memory_bytes": getattr(event, "self_cpu_memory_usage", 0),
        "input_shapes": str(event.input_shapes) if event.input_shapes else None,
    }
    if on_device:
        row["self_device_us"] = getattr(event, "self_device_time_total", 0)
        row["device_total_us"] = getattr(event, "device_time_total", 0)
        row["self_device_memory_bytes"] = getattr(event, "self_device_memory_usage", 0)
    return row


def profile_model(model: Any, inputs: Any, *, mode: str = "summary", device: str = "cpu",
                  steps: int = 5, warmup: int = 2, row_limit: int = 20,
                  trace: str | Path | None = None) -> ProfileReport:
    """Profile ``steps`` inference calls (after ``warmup`` unprofiled ones)."""
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    on_device = device.split(":")[0] == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    inputs = to_device(inputs, device)
    with torch.inference_mode():
        for _ in range(warmup):
            call_model(model, inputs)
        if on_device:
            torch.cuda.synchronize()
        with profile(activities=activities, record_shapes=mode == "detailed",
                     profile_memory=mode == "memory", with_stack=mode == "detailed") as prof:
            for _ in range(steps):
                call_model(model, inputs)
            if on_device:
                torch.cuda.synchronize()
    averages = prof.key_averages(group_by_input_shape=mode == "detailed")
    where = "cuda" if on_device else "cpu"
    sort_by = {"summary": f"self_{where}_time_total",
               "memory": f"self_{where}_memory_usage",
               "detailed": f"self_{where}_time_total"}[mode]
    key = {"self_cpu_time_total": "self_cpu_us", "self_cuda_time_total": "self_device_us",
           "self_cpu_memory_usage": "self_cpu_memory_bytes",
           "self_cuda_memory_usage": "self_device_memory_bytes"}[sort_by]
    rows = sorted((_row(e, on_device) for e in averages), key=lambda r: r.get(key) or 0,
                  reverse=True)[:row_limit]
    table = averages.table(sort_by=sort_by, row_limit=row_limit)
    written = None
    if trace:
        Path(trace).parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace))
        written = str(trace)
    return ProfileReport(mode, device, steps, rows, table, written)
