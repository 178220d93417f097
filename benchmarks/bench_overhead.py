"""Benchmark 2: the timing loop's own cost. Timing a no-op callable must report a p50 of
at most 1 µs. Run from the repository root::

    .venv/bin/python benchmarks/bench_overhead.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from torchbridge.measure import stats, timing


def noop() -> None:
    return None


def main() -> int:
    measured = timing.measure(noop, "cpu", max_time=0.5, max_samples=10**6)
    summary = stats.summarize(measured.samples_ns)
    back_to_back = []
    for _ in range(100_000):
        a = time.perf_counter_ns()
        b = time.perf_counter_ns()
        back_to_back.append(b - a)
    clock = stats.summarize(back_to_back)
    result = {"noop_p50_ns": summary.percentiles["p50"], "noop_p99_ns":
              summary.percentiles["p99"], "n": summary.n,
              "perf_counter_ns_pair_p50_ns": clock.percentiles["p50"],
              "goal_p50_le_1us": summary.percentiles["p50"] <= 1000}
    print(json.dumps(result, indent=2))
    return 0 if result["goal_p50_le_1us"] else 1


if __name__ == "__main__":
    sys.exit(main())
