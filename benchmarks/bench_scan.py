"""Benchmark: scanning a large checkpoint stays fast and small, and hostile archives
are refused in bounded time and memory (issue 12.5).

Generates a file in a temporary folder (deleted afterwards), then scans it in a fresh
subprocess per tool and reports wall time and extra peak RSS (the high-water mark reset
through ``/proc/self/clear_refs`` just before the scan, minus RSS at that moment, so
import costs are excluded). Kinds:

* ``zip`` / ``inline``: a ``--size-mb`` (default 500) ``torch.save`` checkpoint, or a raw
  pickle with inline tensor bytes. Budget for torchbridge: < 5 s, < 100 MB, ``safe``.
* ``text-members``: a zip of 1,500 one-MiB text members (~1.5 MB on disk).
* ``text-members-lowratio``: the same of random words (compresses 4x only: ~420 MB),
  so no compression-ratio check can catch it; the text budget must.
* ``nested``: two levels of zips, 16 x 16 members of 64 MiB zeros (16 GiB inflated,
  ~50 KB on disk).
  Budget for the three hostile kinds: ``invalid`` in < 5 s and < 200 MB extra RSS.

    .venv/bin/python benchmarks/bench_scan.py                 # torchbridge only
    .venv/bin/python benchmarks/bench_scan.py --tools torchbridge,picklescan,modelscan
    .venv/bin/python benchmarks/bench_scan.py --kind text-members --repeat 3
    .venv/bin/python benchmarks/bench_scan.py --all --json-out benchmarks/results/scan_cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, logging
import psutil
logging.disable(logging.CRITICAL)
tool, path = sys.argv[1], sys.argv[2]
if tool == "torchbridge":
    from torchbridge.security.scan import scan_file
    from torchbridge.security.policy import weights_only_allowed
    weights_only_allowed()  # import torch's allowlist before measuring
    run = lambda: scan_file(path).verdict.value
elif tool == "picklescan":
    from picklescan.scanner import scan_file_path
    run = lambda: f"infected={scan_file_path(path).infected_files}"
else:
    from modelscan.modelscan import ModelScan
    run = lambda: f"issues={ModelScan().scan(path)['summary']['total_issues']}"
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = psutil.Process().memory_info().rss
try:  # reset the high-water mark (Linux), so only the scan's peak counts
    open("/proc/self/clear_refs", "w").write("5")
    peak_of = hwm
except OSError:
    peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
verdict = run()
seconds = time.perf_counter() - start
peak = peak_of()
print(json.dumps({"tool": tool, "seconds": seconds, "extra_rss_mb": (peak - before) / 2**20,
                  "verdict": verdict}))
"""


HOSTILE = ("text-members", "text-members-lowratio", "nested")
KINDS = ("zip", "inline", *HOSTILE)


def make_hostile(path: Path, kind: str) -> None:
    """The archives of issue 12.5 (see the module docstring)."""
    import random
    import zipfile

    if kind == "nested":
        inner = path.with_suffix(".inner")
        with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as archive:
            for i in range(16):
                archive.writestr(f"blob{i}.bin", bytes(64 << 20))
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for i in range(16):
                archive.write(inner, f"inner{i}.zip")
        inner.unlink()
        return
    if kind == "text-members":
        line = b"Model card. Trained on public data; evaluation in the appendix. " * 16
        text = (line * (1 + (1 << 20) // len(line)))[: 1 << 20]
    else:
        rng = random.Random(0)
        words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
                 for _ in range(200)]
        text = " ".join(rng.choice(words) for _ in range(200_000)).encode()[: 1 << 20]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(1500):
            archive.writestr(f"notes/{i}.txt", text)


def make_checkpoint(path: Path, size_mb: int, kind: str = "zip") -> None:
    """``zip``: torch.save of a state dict; ``inline``: a raw pickle whose tensor bytes
    sit inline in the pickle stream (as legacy ``torch.save`` and ``pickle.dump`` of
    numpy arrays write them); the hostile kinds: :func:`make_hostile`."""
    if kind in HOSTILE:
        make_hostile(path, kind)
        return
    import torch

    if kind == "inline":
        import pickle

        with open(path, "wb") as handle:
            pickle.dump({f"layers.{i}.weight": bytes(4 << 20) for i in range(size_mb // 4)},
                        handle, protocol=4)
        return
    tensor_mb = 4
    count = max(1, size_mb // tensor_mb)
    generator = torch.Generator().manual_seed(0)
    state = {f"layers.{i}.weight": torch.randn(tensor_mb * 2**18, generator=generator)
             for i in range(count)}
    torch.save(state, path)


def run_kind(kind: str, tools: list[str], size_mb: int, repeat: int) -> list[dict]:
    """Generate one file of ``kind`` and scan it ``repeat`` times with each tool."""
    results = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-scan-") as tmp:
        name = {"zip": "big.pt", "inline": "big.pkl"}.get(kind, f"{kind}.zip")
        path = Path(tmp) / name
        start = time.perf_counter()
        # In a child: RSS high-water marks survive fork+exec on Linux, so the scanning
        # children must not be forked from a process that held the tensors.
        subprocess.run([sys.executable, __file__, "--make", str(path), "--size-mb",
                        str(size_mb), "--kind", kind], check=True)
        size = path.stat().st_size
        print(f"generated {kind}: {size / 2**20:.1f} MiB in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        for tool in tools:
            runs = []
            for _ in range(repeat):
                try:
                    done = subprocess.run([sys.executable, "-c", CHILD, tool, str(path)],
                                          capture_output=True, text=True, check=True,
                                          timeout=120)
                    runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                except subprocess.TimeoutExpired:
                    runs.append({"seconds": 120.0, "extra_rss_mb": float("nan"),
                                 "verdict": "killed at 120 s"})
                except subprocess.CalledProcessError as exc:
                    runs.append({"seconds": float("nan"), "extra_rss_mb": float("nan"),
                                 "verdict": f"error: {exc.stderr.strip()[-160:]}"})
            best = min(runs, key=lambda r: r["seconds"])
            results.append({"tool": tool, "kind": kind, "file_mb": round(size / 2**20, 2),
                            "seconds_min": round(best["seconds"], 4),
                            "seconds_max": round(max(r["seconds"] for r in runs), 4),
                            "extra_rss_mb_max": round(max(r["extra_rss_mb"] for r in runs), 1),
                            "verdict": best["verdict"]})
    return results


def over_budget(result: dict) -> str | None:
    """Why a torchbridge result misses its budget, if it does."""
    hostile = result["kind"] in HOSTILE
    seconds, rss = 5, (200 if hostile else 100)
    want = "invalid" if hostile else "safe"
    if result["seconds_max"] >= seconds or result["extra_rss_mb_max"] >= rss or \
            result["verdict"] != want:
        return (f"{result['kind']}: {result['seconds_max']} s, "
                f"{result['extra_rss_mb_max']} MB, {result['verdict']} (budget {seconds} s, "
                f"{rss} MB, {want})")
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--tools", default="torchbridge",
                    help="comma list of torchbridge, picklescan, modelscan")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kind", choices=KINDS, default="zip",
                    help="zip / inline: a checkpoint; text-members, text-members-lowratio, "
                         "nested: hostile archives")
    ap.add_argument("--all", action="store_true", help="every kind, one after the other")
    ap.add_argument("--json-out", default=None, help="also write the results here")
    ap.add_argument("--make", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        make_checkpoint(Path(args.make), args.size_mb, args.kind)
        return 0
    tools = args.tools.split(",")
    results = []
    for kind in (KINDS if args.all else (args.kind,)):
        results += run_kind(kind, tools, args.size_mb, args.repeat)
    print(json.dumps(results, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    misses = [m for r in results if r["tool"] == "torchbridge" and (m := over_budget(r))]
    for miss in misses:
        print(f"torchbridge over budget: {miss}", file=sys.stderr)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
