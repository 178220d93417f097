"""Latency results as pytest-benchmark JSON and github-action-benchmark entries.

The pytest-benchmark document follows its 5.x schema (times in seconds, raw ``data``
included), so ``pytest-benchmark compare FILE`` and github-action-benchmark's
``tool: pytest`` read it; ``stats`` is extended with ``p90``/``p95``/``p99`` and their
confidence bounds, ``machine_info`` with the device, GPUs, torch and CUDA versions.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from torchbridge.measure import stats as st
from torchbridge.reporting.document import commit_info as tb_commit
from torchbridge.reporting.document import git_output

PYTEST_BENCHMARK_VERSION = "5.1.0"


def _git_project() -> str:
    top = git_output("rev-parse", "--show-toplevel")
    return Path(top).name if top else Path.cwd().name


def machine_info(hardware: dict[str, Any] | None = None) -> dict[str, Any]:
    """pytest-benchmark's ``machine_info`` plus device, GPU, torch and CUDA versions."""
    import os

    if hardware is None:
        from torchbridge.hardware import detect

        hardware = detect().to_dict()
    gpus = hardware.get("gpus") or []
    return {
        "node": platform.node(), "processor": platform.processor(),
        "machine": platform.machine(), "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": platform.python_version(),
        "python_version": platform.python_version(),
        "python_build": list(platform.python_build()), "release": platform.release(),
        "system": platform.system(),
        "cpu": {"count": os.cpu_count(), "arch_string_raw": platform.machine(),
                "brand_raw": platform.processor() or platform.machine()},
        "torchbridge": {
            "device": hardware.get("backend"), "gpus": [g.get("name") for g in gpus],
            "torch_version": hardware.get("torch_version"),
            "cuda_version": hardware.get("cuda_version"),
            "driver_version": hardware.get("driver_version"),
            "torch_threads": hardware.get("torch_threads"),
        },
    }


def commit_info() -> dict[str, Any]:
    """pytest-benchmark's ``commit_info`` from git (empty values outside a checkout)."""
    info = tb_commit()
    return {"id": info.get("id"), "time": info.get("time"),
            "author_time": git_output("log", "-1", "--format=%aI"), "dirty": info.get("dirty"),
            "project": _git_project(), "branch": info.get("branch")}


def benchmark_stats(seconds: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` for per-call times in seconds, plus percentiles."""
    data = sorted(seconds)
    summary = st.summarize(data)
    q1, q3 = st.percentile(data, 0.25), st.percentile(data, 0.75)
    iqr = q3 - q1
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = [x for x in data if low_fence <= x <= high_fence] or data
    std_out = sum(1 for x in data if abs(x - summary.mean) > summary.std)
    iqr_out = len(data) - len(inside)
    return {
        "min": summary.min, "max": summary.max, "mean": summary.mean,
        "stddev": summary.std, "rounds": summary.n, "median": summary.percentiles["p50"],
        "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_out,
        "stddev_outliers": std_out, "outliers": f"{std_out};{iqr_out}",
        "ld15iqr": inside[0], "hd15iqr": inside[-1],
        "ops": 1.0 / summary.mean if summary.mean else 0.0, "total": sum(data),
        "iterations": 1, "data": list(seconds),
        "p90": summary.percentiles["p90"], "p95": summary.percentiles["p95"],
        "p99": summary.percentiles["p99"],
    }


def _paired(details: dict[str, Any]) -> dict[str, Any]:
    """The interleaved comparison against a base ref, when one was made."""
    data = details.get("baseline_ref")
    if not isinstance(data, dict) or data.get("compared") is False or "ratio" not in data:
        return {}
    low, high = (data.get("ratio_ci") or [None, None])[:2]
    return {"baseline_ref": data.get("against"), "baseline_ratio": data["ratio"],
            "baseline_ratio_low": low, "baseline_ratio_high": high,
            "baseline_pairs": data.get("pairs")}


def _entry(result: dict[str, Any]) -> dict[str, Any] | None:
    details = result.get("details") or {}
    samples = details.get("samples_ns")
    if result.get("check") != "latency" or not samples:
        return None
    test_id = result.get("test_id", "")
    data = benchmark_stats([s / 1e9 for s in samples])
    data["ci"] = {k: [None if v is None else v / 1e3 for v in pair]
                  for k, pair in (details.get("ci_ms") or {}).items()}
    return {
        "group": "torchbridge-latency",
        "name": test_id.split("::")[-1], "fullname": f"{test_id}@{result.get('device')}",
        "params": None, "param": None,
        "extra_info": {"device": result.get("device"), "status": result.get("status"),
                       "batch_size": details.get("batch_size"),
                       "threads": details.get("threads"), "decision": details.get("decision"),
                       "confidence": details.get("confidence"), "clock": details.get("clock"),
                       "set_aside": (details.get("host_interference") or {}).get("set_aside"),
                       **_paired(details)},
        "options": {"disable_gc": True, "timer": "torch.cuda.Event" if str(
            result.get("device", "")).startswith("cuda") else "time.perf_counter_ns",
                    "min_rounds": 1, "max_time": None, "warmup": True},
        "stats": data,
    }


def pytest_benchmark_document(results: Iterable[dict[str, Any]],
                              hardware: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pytest-benchmark JSON document for the latency results among ``results``."""
    entries = [e for e in map(_entry, results) if e is not None]
    return {"machine_info": machine_info(hardware), "commit_info": commit_info(),
            "benchmarks": entries,
            "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
            "version": PYTEST_BENCHMARK_VERSION}


def github_benchmark_entries(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """github-action-benchmark ``customSmallerIsBetter`` entries: latency percentiles (ms),
    time per sample (ms/sample, from throughput) and peak memory (bytes)."""
    out: list[dict[str, Any]] = []
    for result in results:
        metrics = {k: v.get("value") for k, v in (result.get("metrics") or {}).items()}
        name = f"{result.get('test_id', '')} [{result.get('device')}]"
        extra = f"status={result.get('status')}"
        check = result.get("check")
        if check == "latency":
            ci = (result.get("details") or {}).get("ci_ms") or {}
            for pct in ("p50", "p99"):
                value = metrics.get(f"{pct}_ms")
                if value is None:
                    continue
                entry = {"name": f"{name} {pct}", "unit": "ms", "value": value,
                         "extra": f"{extra}; n={int(metrics.get('samples') or 0)}"}
                lo, hi = (ci.get(pct) or [None, None])
                if lo is not None and hi is not None:
                    entry["range"] = f"{lo:.4g}-{hi:.4g}"
                out.append(entry)
        elif check == "throughput" and metrics.get("samples_per_s"):
            out.append({"name": f"{name} time per sample", "unit": "ms/sample",
                        "value": 1e3 / float(metrics["samples_per_s"]), "extra": extra})
        elif check == "memory" and metrics.get("peak_bytes") is not None:
            out.append({"name": f"{name} peak memory", "unit": "bytes",
                        "value": metrics["peak_bytes"], "extra": extra})
    return out
