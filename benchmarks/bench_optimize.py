"""Benchmark: eager PyTorch vs onnxruntime vs every tb-optimize level, per example model.

For each example model (mlp, cnn, text, tiny_lm) at its sample batch: the median per-call
latency of eager PyTorch (``torch.no_grad``), onnxruntime (the exported, validated ONNX
file, CPU provider), and the ``inference``, ``compile``, ``quantized`` and ``production``
levels, all timed together in interleaved rounds with the measurement engine, on one
intra-op thread for torch and onnxruntime alike (steady numbers on a shared machine).
``production`` must never be slower than eager: it keeps the model as given when no level
beats eager. Every level's parity with the original is in the table.

Takes a few minutes on 2 cores (torch.compile dominates); ``--no-compile`` skips it.

    .venv/bin/python benchmarks/bench_optimize.py
    .venv/bin/python benchmarks/bench_optimize.py --models mlp,cnn --seconds 2 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: production may measure this much above eager before we call it slower (timer noise)
NOISE = 0.05


def bench_model(name: str, seconds: float, compile_level: bool) -> dict[str, Any]:
    from examples.models import EXAMPLES
    from torchbridge.checks import Subject
    from torchbridge.export import ExportOptions, export_model
    from torchbridge.loading import OnnxModel
    from torchbridge.optimize import optimize
    from torchbridge.optimize.core import eager_call, median_ms

    example = EXAMPLES[name]
    subject = Subject(example.build(), example.sample_input(example.batch),
                      spec=example.input_spec, name=name)
    levels = ["inference", *(["compile"] if compile_level else []), "quantized"]
    report = optimize(subject, "production", seconds=0.3, candidates=levels,
                      choose_from=[lv for lv in levels if lv != "quantized"], threads=1)
    model, inputs = subject.placed()
    fns = {"eager": _bind(eager_call(model), inputs)}
    parity = {"eager": "-"}
    with tempfile.TemporaryDirectory() as folder:
        onnx = export_model(subject, "onnx", Path(folder) / f"{name}.onnx", ExportOptions())
        session = OnnxModel(Path(folder) / f"{name}.onnx", threads=1)
        fns["onnxruntime"] = _bind(lambda x: session(*_tensors(x)), inputs)
        parity["onnxruntime"] = f"{'ok' if onnx.ok else 'FAILED'} {onnx.max_abs_error:.1e}"
        for r in report.results:
            if r.transformed is not None:
                fns[r.level] = _bind(r.transformed.call, inputs)
            parity[r.level] = r.status if r.status != "passed" else \
                f"ok {r.max_abs_error:.1e}"
        chosen = report.chosen
        assert chosen is not None and chosen.transformed is not None
        fns["production"] = _bind(chosen.transformed.call, inputs)
        parity["production"] = f"= {chosen.level}"
        timed = median_ms(fns, "cpu", seconds * len(fns), rounds=7, threads=1)
    eager = timed["eager"]
    return {"model": name, "batch": subject.batch_size, "ms": timed,
            "speedup": {k: eager / v for k, v in timed.items()}, "parity": parity,
            "production_level": chosen.level,
            # production that kept eager is the eager model: any gap is timer noise
            "production_not_slower": chosen.level == "eager"
            or timed["production"] <= eager * (1 + NOISE),
            "skipped": {r.level: r.message for r in report.results if r.status == "skipped"}}


def _bind(call: Any, inputs: Any) -> Any:
    return lambda: call(inputs)


def _tensors(inputs: Any) -> list[Any]:
    from torchbridge.export.common import tensor_inputs

    return [v for _, v in tensor_inputs(inputs)]


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = ["eager", "onnxruntime", "inference", "compile", "quantized", "production"]
    table = Table(title="median ms per call (speed-up vs eager; parity)")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        cells = []
        for column in columns:
            if column not in row["ms"]:
                cells.append(row["parity"].get(column, "skipped"))
                continue
            cells.append(f"{row['ms'][column]:.3f} ({row['speedup'][column]:.2f}x; "
                         f"{row['parity'].get(column, '')})")
        table.add_row(f"{row['model']} (batch {row['batch']})", *cells)
    console = Console(width=200)
    console.print(table)
    for row in rows:
        verdict = "not slower" if row["production_not_slower"] else "SLOWER"
        console.print(f"{row['model']}: production = {row['production_level']}, {verdict} "
                      f"than eager", highlight=False)
        for level, why in row["skipped"].items():
            console.print(f"  {level} skipped: {why}", highlight=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn,text,tiny_lm")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="timing budget per variant (default 1 s)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "runtime")]
    import torch

    rows = [bench_model(name, args.seconds, not args.no_compile)
            for name in args.models.split(",")]
    if args.json:
        print(json.dumps({"torch": torch.__version__, "threads": 1, "rows": rows}, indent=2))
    else:
        print_table(rows)
    return 0 if all(r["production_not_slower"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
