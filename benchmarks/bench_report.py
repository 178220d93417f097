"""Merging 20 reports of 500 checks each and rendering the HTML report (target: < 10 s).

Run:  .venv/bin/python benchmarks/bench_report.py [--reports 20] [--checks 500]

The reports are synthetic but shaped like real ones: a fifth of the checks are latency
results carrying 1,000 raw samples each (as the latency check stores them), others carry
throughput sweeps, memory peaks with budgets and estimates, and baseline comparisons;
about 2 % fail. Generating them is not timed; reading the files is.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

CHECKS = ("latency", "throughput", "memory", "forward", "determinism")


def _latency(rng: random.Random) -> dict[str, Any]:
    base = rng.uniform(0.2, 20.0) * 1e6
    samples = sorted(base * rng.lognormvariate(0, 0.15) for _ in range(1000))
    p50, p99 = samples[500] / 1e6, samples[990] / 1e6
    budget = p99 * rng.choice((0.9, 1.5, 2.0, 3.0))
    return {"metrics": {"p50_ms": {"value": p50, "unit": "ms"},
                        "p99_ms": {"value": p99, "unit": "ms"},
                        "samples": {"value": 1000, "unit": ""}},
            "budgets": {"p99_ms": {"value": budget, "unit": "ms"}},
            "details": {"samples_ns": [int(s) for s in samples],
                        "baseline": {"path": "base.json", "found": True, "comparisons": [
                            {"statistic": s, "old": v * 1e6 * rng.uniform(0.8, 1.1),
                             "new": v * 1e6, "change": 0.05, "significant": False,
                             "verdict": "unchanged"} for s, v in (("p50", p50), ("p99", p99))]}},
            "status": "passed" if p99 <= budget else "failed"}


def _throughput(rng: random.Random) -> dict[str, Any]:
    rows = [{"batch_size": b, "samples_per_s": b * 1000 / (1 + 0.05 * b) * rng.uniform(.9, 1.1),
             "p50_ms": 1 + 0.05 * b} for b in (1, 4, 8, 16, 32)]
    return {"metrics": {"samples_per_s": {"value": rows[-1]["samples_per_s"], "unit": "1/s"}},
            "budgets": {"min_samples_per_s": {"value": 2000.0, "unit": "1/s"}},
            "details": {"by_batch": rows}, "status": "passed"}


def _memory(rng: random.Random) -> dict[str, Any]:
    peak = rng.uniform(50, 900) * 2**20
    return {"metrics": {"peak_bytes": {"value": peak, "unit": "bytes"},
                        "estimate_bytes": {"value": peak * rng.uniform(0.85, 1.15),
                                           "unit": "bytes"}},
            "budgets": {"peak_bytes": {"value": 2**30, "unit": "bytes"}},
            "details": {}, "status": "passed"}


def synthetic_result(index: int, rng: random.Random) -> dict[str, Any]:
    check = CHECKS[index % len(CHECKS)]
    body = {"latency": _latency, "throughput": _throughput, "memory": _memory}.get(
        check, lambda _: {"metrics": {}, "budgets": {}, "details": {}, "status": "passed"})(rng)
    if rng.random() < 0.02:
        body["status"] = "failed"
    return {"check": check, "message": f"{check} measured", "device": "cpu",
            "duration_s": 0.5, "test_id": f"tests/test_m{index // 50}.py::test_{index}"
                                          f"[tb-{check}]", **body}


def synthetic_report(job: int, checks: int) -> dict[str, Any]:
    rng = random.Random(job)
    results = [synthetic_result(i, rng) for i in range(checks)]
    return {"schema_version": 1, "tool": "torchbridge", "tool_version": "0.1.0",
            "machine": {"backend": "cpu", "cpu_count": 16, "platform": "Linux"},
            "versions": {"torch": "2.13.0"}, "commit": {"id": "0" * 40},
            "results": results}


def main() -> None:
    from torchbridge.reporting import GatePolicy, Outputs, merge_reports, publish

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for job in range(args.reports):
            path = Path(tmp) / f"job{job}.json"
            path.write_text(json.dumps(synthetic_report(job, args.checks)))
            paths.append(path)
        size = sum(p.stat().st_size for p in paths) / 2**20
        timings = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            merged = merge_reports(paths)
            published = publish(merged, Outputs(json=Path(tmp) / "merged.json",
                                                markdown=Path(tmp) / "summary.md",
                                                html=Path(tmp) / "report.html",
                                                step_summary=False), GatePolicy())
            timings.append(time.perf_counter() - start)
        page = (Path(tmp) / "report.html").read_text()
        html = len(page.encode()) / 2**20
        charts = page.count("<svg")
        print(f"{args.reports} reports x {args.checks} checks ({size:.1f} MiB of JSON): "
              f"merge + gate + merged JSON + markdown + HTML ({html:.1f} MiB, {charts} charts, "
              f"{published.verdict.headline()})")
        print(f"  wall time over {args.repeat} runs: median {statistics.median(timings):.2f} s,"
              f" min {min(timings):.2f} s, max {max(timings):.2f} s")


if __name__ == "__main__":
    main()
