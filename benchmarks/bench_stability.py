"""Benchmark 1: stability of p99 across separate runs, against pytest-benchmark.

Six separate processes each time the example MLP (batch 8, one thread) for about one
second — pytest-benchmark's default ``max_time`` — and report p99; the coefficient of
variation (std / mean) of the six p99s is the number to compare. Ours runs twice: as
shipped, and with ``host_filter=False`` (every call kept, no probes) to show what setting
aside host-slowed calls changes. pytest-benchmark runs
under the same conditions (its defaults, ``--benchmark-save-data``), and its p99 comes
from its raw per-round data. Run from the repository root::

    .venv/bin/python benchmarks/bench_stability.py [--runs 6] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

OURS = """
import sys, json
sys.path.insert(0, {here!r})
from _mlp import mlp_and_input
from torchbridge.core.subject import call_model
from torchbridge.measure import stats, timing
model, x = mlp_and_input(8)
m = timing.measure(lambda: call_model(model, x), "cpu", max_time=1.0, max_samples=10**7,
                  host_filter={host_filter})
s = stats.summarize(m.samples_ns)
print(json.dumps({{"p99": s.percentiles["p99"] / 1e9, "p50": s.percentiles["p50"] / 1e9,
                  "n": s.n, "drift": stats.median_drift(m.samples_ns),
                  "set_aside": len(m.interference.set_aside_ns)}}))
"""

PEER_TEST = """
import sys
sys.path.insert(0, {here!r})
import torch
from _mlp import mlp_and_input

model, x = mlp_and_input(8)

def forward():
    with torch.inference_mode():
        return model(x)

def test_mlp(benchmark):
    benchmark(forward)
"""


def nearest_rank(values: list[float], p: float) -> float:
    sys.path.insert(0, str(HERE.parent / "runtime"))
    from torchbridge.measure.stats import percentile

    return percentile(sorted(values), p)


def ours(host_filter: bool = True) -> dict[str, float]:
    code = OURS.format(here=str(HERE), host_filter=host_filter)
    out = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def peer(workdir: Path, index: int) -> dict[str, float]:
    test = workdir / "test_peer.py"
    test.write_text(PEER_TEST.format(here=str(HERE)))
    report = workdir / f"peer{index}.json"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-p", "no:xdist", "-p", "no:torchbridge", str(test),
                    "--benchmark-save-data", f"--benchmark-json={report}"],
                   capture_output=True, text=True, check=True, cwd=workdir)
    stats = json.loads(report.read_text())["benchmarks"][0]["stats"]
    return {"p99": nearest_rank(stats["data"], 0.99), "p50": stats["median"],
            "n": stats["rounds"]}


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


CONTENDERS = ("torchbridge", "torchbridge_raw", "pytest_benchmark")


def one_set(runs: int) -> dict[str, dict[str, object]]:
    """``runs`` interleaved triples of separate processes: ours, ours with
    ``host_filter=False`` (every call kept), then pytest-benchmark."""
    with tempfile.TemporaryDirectory() as tmp:
        triples = [(ours(), ours(host_filter=False), peer(Path(tmp), i)) for i in range(runs)]
    out: dict[str, dict[str, object]] = {}
    for index, name in enumerate(CONTENDERS):
        rows = [triple[index] for triple in triples]
        out[name] = {"p99_cv": cv([r["p99"] for r in rows]),
                     "p50_cv": cv([r["p50"] for r in rows]), "runs": rows}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--sets", type=int, default=1,
                        help="repeat the whole comparison; on a noisy host one set of six "
                             "runs is itself a noisy estimate of the CV")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sets = [one_set(args.runs) for _ in range(args.sets)]
    if args.json:
        print(json.dumps(sets if args.sets > 1 else sets[0], indent=2))
        return 0
    for index, summary in enumerate(sets, 1):
        print(f"set {index}")
        for name, data in summary.items():
            runs = data["runs"]
            assert isinstance(runs, list)
            p99s = ", ".join(f"{r['p99'] * 1e6:.0f}" for r in runs)
            ns = ", ".join(str(r["n"]) for r in runs)
            print(f"  {name:<17} p99 CV {float(data['p99_cv']) * 100:5.2f} %   p50 CV "
                  f"{float(data['p50_cv']) * 100:5.2f} %   p99 µs: {p99s}   samples: {ns}")
            if "drift" in runs[0]:
                drifts = ", ".join(f"{(r['drift'] or 0) * 100:.0f}" for r in runs)
                print(f"  {'':<17} median drift within each run, %: {drifts}")
            if runs[0].get("set_aside"):
                aside = ", ".join(str(r["set_aside"]) for r in runs)
                print(f"  {'':<17} calls set aside as slowed by the host: {aside}")
    if args.sets > 1:
        for name in CONTENDERS:
            cvs = [float(s[name]["p99_cv"]) * 100 for s in sets]
            print(f"{name:<17} median p99 CV over {args.sets} sets: "
                  f"{statistics.median(cvs):.2f} %  (sets: "
                  f"{', '.join(f'{c:.1f}' for c in cvs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
