"""Benchmark: merge gates on unchanged code and on a ~15 % slower model (issue 15).

A temporary git repository holds the example MLP (256→1024→1024→10, batch 8, one thread)
on a branch ``base``. Each run measures the working tree either unchanged or with the
second hidden layer widened from 1024 to 1192 (~15 % more work), through three gates at
a 5 % threshold, each in its own pytest process:

* ``--tb-baseline-ref=base``: both sides measured in the same run, interleaved;
* ``--tb-baseline=saved.json``: a baseline saved once at the start, then compared;
* pytest-benchmark ``--benchmark-compare-fail=median:5%`` against a run saved at the start.

A run is *flagged* when the gate fails it. It also records the A/B item's cost against a
one-sided item with the same settings: the seconds spent timing (both phases) and the
item's wall time (which adds the side workers' start-up). Run from the repository root::

    .venv/bin/python benchmarks/bench_ab_gate.py --runs 30     # the full measurement
    .venv/bin/python benchmarks/bench_ab_gate.py --runs 3      # a smoke run

Results go to ``benchmarks/results/ab_gate_cpu.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WIDE = 1192  # the slower model's second hidden layer (the base has 1024)

MODEL = """
import torch

HIDDEN = {hidden}

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                               torch.nn.Linear(1024, HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, 10)).eval()
"""

CONFTEST = """
import pytest, torch
from mlpmodel import build

torch.set_num_threads(1)

@pytest.fixture
def model():
    return build()

@pytest.fixture
def sample_input():
    return torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
"""

TESTS = """
import torch
import pytest_torchbridge as tb

@tb.latency(max_time="{max_time}", threads=1)
def test_mlp(model):
    pass

def test_peer(benchmark, model, sample_input):
    def forward():
        with torch.inference_mode():
            return model(sample_input)
    benchmark(forward)
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com",
                    *args], cwd=repo, check=True, capture_output=True)


def make_repo(root: Path, max_time: str) -> Path:
    repo = root / "repo"
    repo.mkdir()
    (repo / "mlpmodel.py").write_text(MODEL.format(hidden=1024))
    (repo / "conftest.py").write_text(CONFTEST)
    (repo / "test_mlp.py").write_text(TESTS.format(max_time=max_time))
    (repo / ".gitignore").write_text(".benchmarks/\n*.json\n__pycache__/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "branch", "base")
    return repo


def pytest(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", *args], cwd=repo, env=env, text=True,
                          capture_output=True, timeout=900)


def latency_result(repo: Path, report: str) -> dict[str, Any]:
    results = json.loads((repo / report).read_text())["results"]
    return next(r for r in results if r["check"] == "latency")


def one_sided(result: dict[str, Any]) -> float:
    """Seconds the item's own measurement spent timing, warm-up included."""
    details = result["details"]
    return float(details["seconds"]) + float(details["warmup"]["seconds"])


def set_width(repo: Path, hidden: int) -> None:
    (repo / "mlpmodel.py").write_text(MODEL.format(hidden=hidden))


def run_ab(repo: Path) -> dict[str, Any]:
    done = pytest(repo, "-m", "tb_latency", "--tb-baseline-ref=base",
                  "--tb-regression-threshold=5%", "--tb-json=ab.json")
    result = latency_result(repo, "ab.json")
    paired = result["details"].get("baseline_ref", {})
    return {"flagged": done.returncode != 0, "ratio": paired.get("ratio"),
            "bounds": paired.get("ratio_ci"), "pairs": paired.get("pairs"),
            "paired_seconds": paired.get("seconds"),
            "one_sided_seconds": one_sided(result),
            "item_seconds": result["duration_s"], "message": result["message"][-200:]}


def run_saved(repo: Path) -> dict[str, Any]:
    done = pytest(repo, "-m", "tb_latency", "--tb-baseline=saved.json",
                  "--tb-regression-threshold=5%", "--tb-json=saved-run.json")
    result = latency_result(repo, "saved-run.json")
    comparisons = result["details"].get("baseline", {}).get("comparisons", [])
    return {"flagged": done.returncode != 0,
            "change": comparisons[0]["change"] if comparisons else None,
            "samples": result["metrics"]["samples"]["value"],
            "item_seconds": result["duration_s"]}


def run_peer(repo: Path) -> dict[str, Any]:
    done = pytest(repo, "test_mlp.py::test_peer", "--benchmark-compare=0001",
                  "--benchmark-compare-fail=median:5%", "-p", "no:torchbridge")
    tail = (done.stdout + done.stderr).strip().splitlines()
    return {"flagged": done.returncode != 0, "returncode": done.returncode,
            "last_line": tail[-1][-200:] if tail else ""}


def run_one_sided(repo: Path) -> dict[str, Any]:
    pytest(repo, "-m", "tb_latency", "--tb-json=one.json")
    result = latency_result(repo, "one.json")
    return {"one_sided_seconds": one_sided(result), "item_seconds": result["duration_s"]}


def prepare(repo: Path) -> None:
    """The saved baselines both one-sided gates compare with, taken at the base."""
    pytest(repo, "-m", "tb_latency", "--tb-save-baseline=saved.json",
           "--tb-regression-threshold=5%")
    done = pytest(repo, "test_mlp.py::test_peer", "--benchmark-save=base",
                  "-p", "no:torchbridge")
    if done.returncode != 0:
        raise SystemExit(f"pytest-benchmark did not run:\n{done.stdout[-2000:]}")


def tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"flagged": sum(r["flagged"] for r in rows), "runs": len(rows), "rows": rows}


def summarize(runs: dict[str, dict[str, list[dict[str, Any]]]],
              cost: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {gate: {case: tally(rows) for case, rows in cases.items()}
                           for gate, cases in runs.items()}
    # The cost is compared on the unchanged model: "the same settings" means the same
    # model, and the slower model's own measurement takes longer by itself.
    ab_rows = runs["ab"]["unchanged"]
    one = statistics.median(r["one_sided_seconds"] for r in cost)
    one_item = statistics.median(r["item_seconds"] for r in cost)
    timed = statistics.median(r["one_sided_seconds"] + (r["paired_seconds"] or 0)
                              for r in ab_rows)
    wall = statistics.median(r["item_seconds"] for r in ab_rows)
    out["cost"] = {"one_sided_timing_s": one, "ab_timing_s": timed,
                   "timing_ratio": timed / one, "one_sided_item_s": one_item,
                   "ab_item_s": wall, "item_ratio": wall / one_item, "rows": cost}
    for case in ("unchanged", "slower"):
        ratios = [r["ratio"] for r in runs["ab"][case] if r["ratio"] is not None]
        if ratios:
            out["ab"][case]["ratio_range"] = [min(ratios), max(ratios)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per gate and case")
    parser.add_argument("--max-time", default="2s", help="the latency item's max_time")
    parser.add_argument("--out", default=str(HERE / "results" / "ab_gate_cpu.json"))
    args = parser.parse_args()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        gate: {"unchanged": [], "slower": []} for gate in ("ab", "saved", "pytest_benchmark")}
    cost: list[dict[str, Any]] = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-ab-gate-") as root:
        repo = make_repo(Path(root), args.max_time)
        prepare(repo)
        for index in range(args.runs):
            for case, hidden in (("unchanged", 1024), ("slower", WIDE)):
                set_width(repo, hidden)
                runs["ab"][case].append(run_ab(repo))
                runs["saved"][case].append(run_saved(repo))
                runs["pytest_benchmark"][case].append(run_peer(repo))
            set_width(repo, 1024)
            cost.append(run_one_sided(repo))
            print(f"run {index + 1}/{args.runs}: " + ", ".join(
                f"{gate} {sum(r['flagged'] for r in cases['unchanged'])}/"
                f"{sum(r['flagged'] for r in cases['slower'])}" for gate, cases in runs.items()),
                file=sys.stderr)
    document = {"benchmark": "ab_gate", "runs": args.runs, "threshold": 0.05,
                "smoke": args.runs < 30, "max_time": args.max_time,
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                            "python": platform.python_version()},
                "seconds": time.time() - started, **summarize(runs, cost)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=2))
    print(json.dumps({k: v for k, v in document.items() if k not in (
        "ab", "saved", "pytest_benchmark", "cost")}, indent=2))
    for gate in ("ab", "saved", "pytest_benchmark"):
        print(f"{gate:17s} unchanged flagged {document[gate]['unchanged']['flagged']}/"
              f"{args.runs}, slower caught {document[gate]['slower']['flagged']}/{args.runs}")
    c = document["cost"]
    print(f"A/B cost: timing {c['ab_timing_s']:.2f} s vs {c['one_sided_timing_s']:.2f} s "
          f"({c['timing_ratio']:.2f}x); item {c['ab_item_s']:.2f} s vs "
          f"{c['one_sided_item_s']:.2f} s ({c['item_ratio']:.2f}x)")


if __name__ == "__main__":
    main()
