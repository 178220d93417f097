"""Benchmark: export + full validation of the example transformer classifier to every format.

Goal: all four formats (onnx, torchscript, safetensors, pt2), each loaded back and
compared with eager PyTorch at every point of the validation plan (export batch, batch 1,
an odd batch, the largest batch, and both ends of the ``seq`` dim), in under 30 s on the
2-core development machine. Runs in a fresh process so import costs are counted the way a
CI job pays them (reported separately).

    .venv/bin/python benchmarks/bench_export.py            # table + goal verdict
    .venv/bin/python benchmarks/bench_export.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--model", default="text", help="example name (default text)")
    args = parser.parse_args()
    start = time.perf_counter()
    sys.path[:0] = [str(ROOT), str(ROOT / "runtime")]
    import torch

    from examples.models import EXAMPLES
    from torchbridge.checks import Subject
    from torchbridge.export import FORMATS, artifact_path, export_many
    imported = time.perf_counter() - start

    example = EXAMPLES[args.model]
    subject = Subject(example.build(), example.sample_input(example.batch),
                      spec=example.input_spec, factory=example.build, name=args.model)
    with tempfile.TemporaryDirectory() as folder:
        targets = {fmt: artifact_path(Path(folder), args.model, fmt) for fmt in FORMATS}
        begin = time.perf_counter()
        reports = export_many(subject, targets)
        total = time.perf_counter() - begin
        rows = [{"format": r.format, "ok": r.ok, "export_s": round(r.export_s, 3),
                 "validation_runs": len(r.validations), "max_abs_error": r.max_abs_error,
                 "file_bytes": r.file_bytes, "message": r.summary()} for r in reports]
    result = {"model": args.model, "torch": torch.__version__, "threads":
              torch.get_num_threads(), "import_s": round(imported, 2),
              "export_and_validate_s": round(total, 2), "goal_s": GOAL_S,
              "goal_met": total < GOAL_S and all(r.ok for r in reports), "formats": rows}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for row in rows:
            print(f"{row['format']:<12} {'ok' if row['ok'] else 'FAILED':<7} "
                  f"export {row['export_s']:>6.2f}s  runs {row['validation_runs']}  "
                  f"max abs err {row['max_abs_error']:.2e}  {row['file_bytes']:>9,} bytes")
        print(f"export + validation of all formats: {total:.1f} s (goal < {GOAL_S:.0f} s: "
              f"{'met' if result['goal_met'] else 'NOT met'}); imports {imported:.1f} s")
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
