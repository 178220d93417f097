"""Benchmark: scanning a large checkpoint stays fast and small.

Generates a ``torch.save`` checkpoint of ``--size-mb`` megabytes (default 500) in a
temporary folder (deleted afterwards), then scans it in a fresh subprocess per tool and
reports wall time and extra peak RSS (the high-water mark reset through
``/proc/self/clear_refs`` just before the scan, minus RSS at that moment, so import
costs are excluded). Budget for torchbridge: < 5 s and < 100 MB.

    .venv/bin/python benchmarks/bench_scan.py                 # torchbridge only
    .venv/bin/python benchmarks/bench_scan.py --tools torchbridge,picklescan,modelscan
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


def make_checkpoint(path: Path, size_mb: int, kind: str = "zip") -> None:
    """``zip``: torch.save of a state dict; ``inline``: a raw pickle whose tensor bytes
    sit inline in the pickle stream (as legacy ``torch.save`` and ``pickle.dump`` of
    numpy arrays write them)."""
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--tools", default="torchbridge",
                    help="comma list of torchbridge, picklescan, modelscan")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kind", choices=("zip", "inline"), default="zip",
                    help="zip: torch.save checkpoint; inline: raw pickle with inline bytes")
    ap.add_argument("--make", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        make_checkpoint(Path(args.make), args.size_mb, args.kind)
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-scan-") as tmp:
        path = Path(tmp) / ("big.pt" if args.kind == "zip" else "big.pkl")
        start = time.perf_counter()
        # In a child: RSS high-water marks survive fork+exec on Linux, so the scanning
        # children must not be forked from a process that held the tensors.
        subprocess.run([sys.executable, __file__, "--make", str(path), "--size-mb",
                        str(args.size_mb), "--kind", args.kind], check=True)
        size = path.stat().st_size
        print(f"generated {size / 2**20:.0f} MiB checkpoint in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        for tool in args.tools.split(","):
            runs = []
            for _ in range(args.repeat):
                done = subprocess.run([sys.executable, "-c", CHILD, tool, str(path)],
                                      capture_output=True, text=True, check=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            best = min(runs, key=lambda r: r["seconds"])
            results.append({"tool": tool, "kind": args.kind, "file_mb": round(size / 2**20, 1),
                            "seconds_min": round(best["seconds"], 4),
                            "seconds_max": round(max(r["seconds"] for r in runs), 4),
                            "extra_rss_mb_max": round(max(r["extra_rss_mb"] for r in runs), 1),
                            "verdict": best["verdict"]})
    print(json.dumps(results, indent=2))
    ours = next((r for r in results if r["tool"] == "torchbridge"), None)
    if ours is not None and (ours["seconds_max"] >= 5 or ours["extra_rss_mb_max"] >= 100):
        print("torchbridge scan over budget (5 s, 100 MB)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
