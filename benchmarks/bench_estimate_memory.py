"""Benchmark 4: estimate_memory against the measured peak for every example model.

Goal: the estimate within ±20 % of the measured peak at batch sizes 1 and 32, each
estimate in under a second. The measured peak is the one the memory check gates on
(torch's allocator accounting, ``cpu-allocator`` / ``cuda-allocator``); on CPU the
process view (state + inputs + the forward pass's RSS growth in a forked child) is
printed beside it for comparison. Run from the repository root::

    .venv/bin/python benchmarks/bench_estimate_memory.py [--device cpu|cuda] [--json]

The first estimate in a process also pays for importing torch's fake-tensor machinery;
it is timed separately ("first call") and excluded from the per-estimate times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.models import EXAMPLES
from torchbridge.core.subject import to_device
from torchbridge.measure.estimate import estimate_memory
from torchbridge.measure.memory import measure_peak


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    start = time.perf_counter()
    first = EXAMPLES[next(iter(EXAMPLES))]
    estimate_memory(first.build(), 1, first.sample_input(1), device=args.device)
    first_call = time.perf_counter() - start
    rows = []
    for name, example in EXAMPLES.items():
        model = example.build().to(args.device).eval()
        for size in sizes:
            sample = example.sample_input(size)
            est = estimate_memory(model, size, example.sample_input(1), device=args.device)
            peak = measure_peak(model, to_device(sample, args.device), args.device)
            rss = None if peak.rss_forward_bytes is None else \
                peak.state_bytes + peak.input_bytes + peak.rss_forward_bytes
            rows.append({"model": name, "batch_size": size, "estimate": int(est),
                         "measured": peak.peak_bytes, "ratio": int(est) / peak.peak_bytes,
                         "process_rss": rss,
                         "ratio_to_rss": None if not rss else int(est) / rss,
                         "estimate_s": est.seconds, "method": peak.method,
                         "breakdown": est.to_dict(), "measured_parts": peak.to_dict()})
    ok = all(0.8 <= r["ratio"] <= 1.2 and r["estimate_s"] < 1.0 for r in rows)
    if args.json:
        print(json.dumps({"first_call_s": first_call, "rows": rows, "ok": ok}, indent=2))
    else:
        print(f"first estimate in the process (imports fake tensors): {first_call:.2f} s")
        print(f"{'model':<12}{'batch':>6}{'estimate':>14}{'measured':>14}{'ratio':>8}"
              f"{'est. s':>8}  method         {'RSS view':>12}{'ratio':>7}")
        for r in rows:
            print(f"{r['model']:<12}{r['batch_size']:>6}{r['estimate']:>14,}"
                  f"{r['measured']:>14,}{r['ratio']:>8.3f}{r['estimate_s']:>8.3f}  "
                  f"{r['method']:<15}{r['process_rss'] or 0:>12,}{r['ratio_to_rss'] or 0:>7.2f}")
        print("all within ±20 % and < 1 s:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
