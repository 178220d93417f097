"""Builders of small, realistic TorchBridge reports for the reporting tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CPU_MACHINE = {"backend": "cpu", "cpu_count": 2, "platform": "Linux-x86_64", "gpus": []}
GPU_MACHINE = {"backend": "cuda", "cpu_count": 16, "platform": "Linux-x86_64",
               "gpus": [{"index": 0, "name": "NVIDIA H100", "total_memory": 80 * 2**30}]}


def result(test_id: str, check: str = "forward", status: str = "passed",
           device: str = "cpu", **extra: Any) -> dict[str, Any]:
    base = {"check": check, "status": status, "message": f"{check} {status}",
            "device": device, "metrics": {}, "budgets": {}, "details": {}, "duration_s": 0.1,
            "test_id": test_id}
    base.update(extra)
    return base


def latency(test_id: str, p99_ms: float, budget_ms: float, status: str = "passed",
            baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    samples = [int((0.5 + i / 100) * 1e6) for i in range(100)]
    details: dict[str, Any] = {"samples_ns": samples}
    if baseline is not None:
        details["baseline"] = baseline
    return result(test_id, "latency", status,
                  metrics={"p50_ms": {"value": 1.0, "unit": "ms"},
                           "p99_ms": {"value": p99_ms, "unit": "ms"}},
                  budgets={"p99_ms": {"value": budget_ms, "unit": "ms"}}, details=details)


def throughput(test_id: str) -> dict[str, Any]:
    rows = [{"batch_size": b, "samples_per_s": 900.0 * b ** 0.8, "p50_ms": 1.0 + b / 10}
            for b in (1, 4, 16)]
    return result(test_id, "throughput",
                  metrics={"samples_per_s": {"value": rows[-1]["samples_per_s"],
                                             "unit": "samples/s"}},
                  budgets={"min_samples_per_s": {"value": 1000.0, "unit": "samples/s"}},
                  details={"by_batch": rows})


def memory(test_id: str, peak: float, budget: float, status: str = "passed") -> dict[str, Any]:
    return result(test_id, "memory", status,
                  metrics={"peak_bytes": {"value": peak, "unit": "bytes"},
                           "estimate_bytes": {"value": peak * 0.9, "unit": "bytes"}},
                  budgets={"peak_bytes": {"value": budget, "unit": "bytes"}})


def document(results: list[dict[str, Any]], machine: dict[str, Any] | None = None,
             schema_version: int | None = 1) -> dict[str, Any]:
    doc: dict[str, Any] = {"tool": "torchbridge", "machine": machine or CPU_MACHINE,
                           "versions": {"torch": "2.13.0"}, "commit": {"id": "abc"},
                           "results": results}
    if schema_version is not None:
        doc["schema_version"] = schema_version
    return doc


def write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path
