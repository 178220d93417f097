"""One short script (well under 3 minutes) exercising the CUDA paths of the measurement
engine on a real GPU, printing a compact JSON summary.

    PYTHONPATH=runtime:. python3 benchmarks/gpu_measure.py [--out summary.json]

Covers: CUDA-event timing of the example MLP (256→1024→1024→10, batch 8) against
wall-clock time around a synchronise; the latency check with a budget and its early
decision; NVML clocks; throughput with NVML utilisation sampling; the allocator's peak
memory and ``estimate_memory(device="cuda")`` for every example model at batch 1 and 32;
the gpu_utilization check; an out-of-memory in the middle of a stress sweep.
Each section is independent: a failure is recorded in the summary, not fatal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "runtime"), str(ROOT)]

import torch  # noqa: E402

from torchbridge.checks import Subject, run  # noqa: E402
from torchbridge.measure import stats, timing  # noqa: E402
from torchbridge.measure.estimate import estimate_memory  # noqa: E402
from torchbridge.measure.memory import measure_peak  # noqa: E402

DEVICE = "cuda"


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                               torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                               torch.nn.Linear(1024, 10)).eval()


def section(summary: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    start = time.perf_counter()
    try:
        summary[name] = fn()
    except Exception as exc:
        summary[name] = {"error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-1500:]}
    if isinstance(summary[name], dict):
        summary[name]["seconds"] = round(time.perf_counter() - start, 2)


def result_summary(result: Any, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"status": result.status.value, "message": result.message,
            "metrics": {k: round(v.value, 4) for k, v in result.metrics.items()},
            **{k: result.details.get(k) for k in keep}}


def event_timing() -> dict[str, Any]:
    model = mlp().to(DEVICE)
    x = torch.randn(8, 256, device=DEVICE)
    measured = timing.measure(lambda: model(x), DEVICE, max_time=2.0, batch_size=8)
    summary = stats.summarize(measured.samples_ns)
    # wall clock around each call plus a synchronise: an upper bound on the event time
    walls = []
    with torch.inference_mode():
        for _ in range(300):
            start = time.perf_counter_ns()
            model(x)
            if DEVICE == "cuda":
                torch.cuda.synchronize()
            walls.append(time.perf_counter_ns() - start)
    wall = stats.summarize(walls)
    return {"n": summary.n, "event_p50_us": summary.percentiles["p50"] / 1e3,
            "event_p99_us": summary.percentiles["p99"] / 1e3,
            "wall_p50_us": wall.percentiles["p50"] / 1e3,
            "event_le_wall": summary.percentiles["p50"] <= wall.percentiles["p50"],
            "warmup": vars(measured.warmup), "clock": measured.env.clock}


def latency_check() -> dict[str, Any]:
    subject = Subject(mlp(), torch.randn(8, 256), device=DEVICE)
    loose = run("latency", subject, p99={"cuda": "50ms", "cpu": "1s"}, max_time="3s")
    tight = run("latency", subject, p99="1us", max_time="3s")
    return {"loose": result_summary(loose, ("decision", "stopped_early", "ci_ms", "clock")),
            "tight": result_summary(tight, ("decision", "stopped_early"))}


def throughput_check() -> dict[str, Any]:
    subject = Subject(mlp(), torch.randn(8, 256), device=DEVICE)
    result = run("throughput", subject, batch_sizes=[1, 64, 4096], max_time="1s")
    util = result.details.get("gpu_utilization") or {}
    return {**result_summary(result), "nvml_samples": len(util.get("gpu_percent") or []),
            "nvml_skipped": util.get("skipped"),
            "mean_gpu_percent": util.get("mean_gpu_percent")}


def memory_examples() -> dict[str, Any]:
    rows = []
    try:
        from examples.models import EXAMPLES
        examples = {name: (ex.build, ex.sample_input) for name, ex in EXAMPLES.items()}
    except ImportError:
        examples = {"mlp": (mlp, lambda b: torch.randn(b, 256))}
    for name, (build, sample) in examples.items():
        model = build().to(DEVICE).eval()
        for size in (1, 32):
            est = estimate_memory(model, size, sample(1).to(DEVICE), device=DEVICE)
            peak = measure_peak(model, sample(size).to(DEVICE), DEVICE)
            rows.append({"model": name, "batch": size, "estimate": int(est),
                         "measured": peak.peak_bytes, "ratio": round(int(est) / peak.peak_bytes, 3),
                         "forward_bytes": peak.forward_bytes, "method": peak.method,
                         "estimate_s": round(est.seconds, 3)})
    check = run("memory", Subject(mlp(), torch.randn(32, 256), device=DEVICE),
                peak={"cuda": "64MiB"}, headroom=0.1)
    return {"rows": rows, "check": result_summary(check, ("method",)),
            "within_20pct": all(0.8 <= r["ratio"] <= 1.2 for r in rows)}


def gpu_utilization_check() -> dict[str, Any]:
    subject = Subject(mlp(), torch.randn(4096, 256), device=DEVICE)
    return result_summary(run("gpu_utilization", subject, duration="2s"))


def oom_sweep() -> dict[str, Any]:
    big = torch.nn.Linear(8192, 8192).eval()
    subject = Subject(big, torch.randn(1, 8192), device=DEVICE)
    # batch 2**22 needs 128 GiB for its output alone: a real CUDA out-of-memory
    sizes = [256, 4096, 2**22] if DEVICE == "cuda" else [16, 2**30]
    result = run("throughput", subject, stress=True, batch_sizes=sizes,
                 max_time="0.5s")
    after = torch.cuda.memory_allocated() / 2**20 if DEVICE == "cuda" else 0.0
    return {**result_summary(result, ("largest_batch_that_fits", "stopped")),
            "allocated_after_mib": round(after, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "CUDA is not available here"}))
        return 2
    summary: dict[str, Any] = {
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else None,
    }
    for name, fn in (("event_timing", event_timing), ("latency_check", latency_check),
                     ("throughput_check", throughput_check),
                     ("memory", memory_examples), ("gpu_utilization", gpu_utilization_check),
                     ("oom_sweep", oom_sweep)):
        section(summary, name, fn)
        print(f"[{name}] done", file=sys.stderr, flush=True)
    text = json.dumps(summary, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
