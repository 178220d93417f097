"""Which probe tells host slow-downs apart: the evidence behind ``interference.probe``.

Each of ``--runs`` separate processes times the example MLP (batch 8, one thread) for
``--seconds`` and, after every call, times each candidate probe. Afterwards, for each probe
and threshold, the calls with a slow probe (over ``threshold`` x the run's median) on both
sides are set aside, and the p99 of the rest is compared across processes: the lower its
coefficient of variation, the better the probe separates the host's slow stretches from
the model. Run from the repository root::

    .venv/bin/python benchmarks/bench_probes.py [--runs 24] [--seconds 1.3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

RECORD = """
import gc, json, sys, time
sys.path.insert(0, {here!r})
import torch
from _mlp import mlp_and_input

model, x = mlp_and_input(8)
summed = torch.randn(256 * 1024)
scanned = bytes(1 << 20)
source, target = bytearray(512 << 10), bytearray(512 << 10)

def loop():
    total = 0
    for i in range(300):
        total += i

def copy():
    target[:] = source

probes = {{"loop 7us": loop, "torch.sum 1MB": lambda: summed.sum(),
          "memchr 1MiB": lambda: scanned.find(b"x"), "copy 512KiB": copy}}
clock = time.perf_counter_ns
calls, times = [], {{name: [] for name in probes}}
gc.disable()
with torch.inference_mode():
    for _ in range(50):
        model(x)
        for fn in probes.values():
            fn()
    end = time.perf_counter() + {seconds}
    while time.perf_counter() < end:
        start = clock()
        model(x)
        calls.append(clock() - start)
        for name, fn in probes.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
print(json.dumps({{"calls": calls, "probes": times}}))
"""


def p99(values: list[int]) -> float:
    ordered = sorted(values)
    return ordered[-(-len(ordered) * 99 // 100) - 1]


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values) * 100


def kept(calls: list[int], probe: list[int], threshold: float) -> list[int]:
    """Calls without a slow probe right before and right after them."""
    limit = threshold * statistics.median(probe)
    slow = [t > limit for t in probe]
    return [c for k, c in enumerate(calls) if not (k > 0 and slow[k - 1] and slow[k])]


def record(runs: int, seconds: float) -> list[dict[str, Any]]:
    code = RECORD.format(here=str(HERE), seconds=seconds)
    return [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                      text=True, check=True).stdout)
            for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=1.3)
    args = parser.parse_args()
    runs = record(args.runs, args.seconds)
    raw = [p99(r["calls"]) for r in runs]
    print(f"{args.runs} processes; every call kept: p99 CV {cv(raw):.1f} %, "
          f"mean p99 {statistics.mean(raw) / 1e3:.0f} µs")
    names = list(runs[0]["probes"])
    for name in names:
        median = statistics.median(runs[0]["probes"][name]) / 1e3
        for threshold in (1.1, 1.2, 1.25, 1.3):
            p99s, aside = [], []
            for r in runs:
                left = kept(r["calls"], r["probes"][name], threshold)
                p99s.append(p99(left))
                aside.append(1 - len(left) / len(r["calls"]))
            print(f"{name:<14} ({median:4.1f} µs) > {threshold:.2f}x: p99 CV "
                  f"{cv(p99s):5.1f} %, mean p99 {statistics.mean(p99s) / 1e3:.0f} µs, set "
                  f"aside median {statistics.median(aside) * 100:.1f} % "
                  f"(max {max(aside) * 100:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
