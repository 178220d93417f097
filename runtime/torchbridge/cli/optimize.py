"""``tb-optimize``: optimize a model, prove parity with the original, measure the speed-up.

Example::

    tb-optimize --model pkg.models:build --weights clf.safetensors --input-shape 8,128 \\
                --dtype int64 --level production --output optimized.pt2

Exit codes: 0 the level passed parity (and the artifact was written), 1 parity failed
(nothing written unless ``--force``), 2 usage or environment error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchbridge.cli import arguments as cli
from torchbridge.cli.common import EXIT_FAILED, EXIT_OK, output_console, parser, print_json
from torchbridge.errors import ConfigError

LEVELS = ("inference", "compile", "quantized", "production", "all")


def build_parser() -> argparse.ArgumentParser:
    p = parser("tb-optimize", "Optimize a model and prove parity with the original.")
    cli.add_model_arguments(p)
    cli.add_input_arguments(p)
    p.add_argument("--level", choices=LEVELS, default="production",
                   help="inference | compile | quantized | production (the fastest level "
                        "that passes parity here; default) | all (report every level)")
    p.add_argument("--include-quantized", action="store_true",
                   help="let production choose int8 quantization (numerics change by design)")
    p.add_argument("--output", default=None,
                   help="write the optimized model here (.pt2; TorchScript when torch.export "
                        "cannot capture it, stated in the output)")
    p.add_argument("--force", action="store_true",
                   help="write the artifact even when parity failed")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance for parity")
    p.add_argument("--atol", type=float, default=None, help="absolute tolerance for parity")
    p.add_argument("--seconds", type=float, default=1.0,
                   help="timing budget per level in seconds (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads while timing (default: torch's setting)")
    cli.add_device_argument(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _subject(args: argparse.Namespace) -> Any:
    from torchbridge.core.subject import Subject
    from torchbridge.inputs import check_inputs_fit, describe_inputs

    loaded = cli.load_from_args(args, device=args.device)
    if not loaded.is_torch:
        raise ConfigError(f"{args.model} is {loaded.source}; tb-optimize needs a PyTorch model")
    inputs = cli.inputs_from_args(args, loaded.model, example=loaded.example_inputs,
                              device=args.device)
    check_inputs_fit(loaded.model, inputs, describe_inputs(inputs))
    return Subject(loaded.model, inputs, device=args.device, spec=cli.spec_from_args(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    from torchbridge.export.common import Tolerances
    from torchbridge.optimize import optimize, save_artifact

    if args.seconds <= 0:
        raise ConfigError("--seconds must be > 0")
    if args.level == "all" and args.output:
        raise ConfigError("--output needs one level; --level all only reports")
    from torchbridge.checks._tolerances import tolerance

    tolerances = Tolerances(tolerance("--rtol", args.rtol), tolerance("--atol", args.atol))
    subject = _subject(args)
    request = "production" if args.level == "all" else args.level
    eligible = ["inference", "compile"] + (["quantized"] if args.include_quantized else [])
    candidates = ["inference", "compile", "quantized"] if args.level == "all" else eligible
    with _status(f"optimizing ({request})", quiet=args.json):
        report = optimize(subject, request, seconds=args.seconds, tolerances=tolerances,
                          candidates=candidates, threads=args.threads, choose_from=eligible)
    saved = None
    write_error = ""
    if args.output and report.chosen is not None:
        try:
            saved = save_artifact(report.chosen, subject, Path(args.output), force=args.force)
        except ConfigError as exc:
            write_error = str(exc)
    ok = report.ok and not write_error
    if args.json:
        print_json(report.to_dict() | {"artifact": saved.to_dict() if saved else None,
                                       "write_error": write_error})
    else:
        _print(report, saved, write_error)
    return EXIT_OK if ok else EXIT_FAILED


def _status(text: str, quiet: bool) -> Any:
    from contextlib import nullcontext

    from rich.console import Console

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return nullcontext()
    return console.status(text)


def _print(report: Any, saved: Any, write_error: str) -> None:
    from rich.table import Table

    table = Table(title=f"tb-optimize: eager {report.eager_ms:.3f} ms per call")
    for column in ("level", "status", "ms/call", "speed-up", "max abs err", "tolerance",
                   "notes"):
        table.add_column(column)
    for r in report.results:
        speed = f"{r.speedup:.2f}x" if r.speedup else "-"
        ms = f"{r.level_ms:.3f}" if r.level_ms else "-"
        accuracy = "; ".join(f"{k} {v:.1%}" for k, v in r.accuracy.items())
        notes = "; ".join([*r.notes, accuracy] if accuracy else r.notes) or r.message
        table.add_row(r.level, r.status, ms, speed, f"{r.max_abs_error:.2e}", r.tolerance,
                      notes if r.status != "skipped" else r.message)
    console = output_console()
    console.print(table)
    console.print(report.summary(), highlight=False)
    if saved is not None:
        console.print(f"wrote {saved.path} ({saved.kind}); checksum {saved.checksum_file}"
                      + (f"; {saved.note}" if saved.note else ""), highlight=False)
    if write_error:
        console.print(f"[red]{write_error}[/]")


if __name__ == "__main__":
    sys.exit(main())
