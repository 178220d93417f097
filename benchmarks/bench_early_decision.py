"""Benchmark 3: early decision. With a p99 budget 20 % (or more) away from the true p99,
the latency check must decide with at most a third of the samples a fixed 1,000-sample
run uses (333).

The "true" p99 is taken from a long reference run (20,000 calls) of the example MLP
(batch 8, one thread). Then the check runs with budgets at 0.8x and 1.2x that p99,
``--repeats`` times each, and we report the samples it took and whether it decided
correctly. Run from the repository root::

    .venv/bin/python benchmarks/bench_early_decision.py [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mlp import mlp_and_input

from torchbridge.checks import Subject, run
from torchbridge.checks.subject import call_model
from torchbridge.measure import stats, timing


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model, x = mlp_and_input(8)
    reference = timing.measure(lambda: call_model(model, x), "cpu", max_time=30.0,
                               max_samples=20_000)
    true_p99 = stats.percentile(sorted(reference.samples_ns), 0.99) / 1e9
    rows = []
    for factor, expected in ((1.2, "passed"), (0.8, "failed"), (1.5, "passed"),
                             (0.5, "failed")):
        for _ in range(args.repeats):
            result = run("latency", Subject(model, x), p99=true_p99 * factor, threads=1,
                         max_time="10s")
            rows.append({"factor": factor, "samples": int(result.metrics["samples"].value),
                         "status": result.status.value, "correct": result.status.value
                         == expected, "decision": result.details["decision"]})
    by_factor = {}
    for factor in sorted({r["factor"] for r in rows}):
        mine = [r for r in rows if r["factor"] == factor]
        by_factor[str(factor)] = {
            "median_samples": statistics.median(r["samples"] for r in mine),
            "max_samples": max(r["samples"] for r in mine),
            "correct": sum(r["correct"] for r in mine), "runs": len(mine)}
    ok = all(v["max_samples"] <= 333 and v["correct"] == v["runs"]
             for k, v in by_factor.items() if k in ("0.8", "1.2"))
    summary = {"true_p99_ms": true_p99 * 1e3, "by_factor": by_factor,
               "goal_le_333_samples_at_20pct": ok}
    if args.json:
        summary["rows"] = rows
    print(json.dumps(summary, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
