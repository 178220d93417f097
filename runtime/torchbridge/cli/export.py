"""``tb-export``: export a model to ONNX, TorchScript, SafeTensors or pt2, and prove it.

Example::

    tb-export --model pkg.models:build --weights clf.safetensors --input-shape 8,128 \\
              --dtype int64 --format all --validate --dynamic-axes --dim seq=1:1-512 \\
              --output-dir exports/

Exit codes: 0 every artifact exported and validated, 1 an export or a validation
failed, 2 usage or environment error (bad option, model that does not load, inputs that
do not fit, a missing optional package).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torchbridge.cli import arguments as cli
from torchbridge.cli.common import EXIT_FAILED, EXIT_OK, output_console, parser, print_json
from torchbridge.errors import ConfigError

FORMATS = ("onnx", "torchscript", "safetensors", "pt2")


def build_parser() -> argparse.ArgumentParser:
    p = parser("tb-export", "Export a model and prove the artifact matches eager PyTorch.")
    cli.add_model_arguments(p)
    cli.add_input_arguments(p)
    p.add_argument("--format", default="onnx", choices=[*FORMATS, "all"],
                   help="artifact format, or all of them (default onnx)")
    p.add_argument("--validate", action=argparse.BooleanOptionalAction, default=True,
                   help="load each artifact back and compare with eager PyTorch at several "
                        "batch sizes (default on; --no-validate only exports)")
    p.add_argument("--dynamic-axes", action=argparse.BooleanOptionalAction, default=True,
                   help="dynamic batch (and --dim) dims (default on; --no-dynamic-axes "
                        "exports static shapes)")
    p.add_argument("--max-batch", type=int, default=None,
                   help="largest batch the artifact must serve (validated)")
    p.add_argument("--batch-sizes", default=None,
                   help="comma-separated batch sizes to validate at instead of the default "
                        "plan (export batch, 1, odd, largest)")
    p.add_argument("--method", choices=("trace", "script"), default="trace",
                   help="TorchScript: trace (default) or script")
    p.add_argument("--exporter", choices=("dynamo", "legacy"), default="dynamo",
                   help="ONNX exporter (default dynamo; legacy is deprecated in torch)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (exporter default)")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance")
    p.add_argument("--atol", type=float, default=None, help="absolute tolerance")
    p.add_argument("--output", default=None, help="artifact path (one format only)")
    p.add_argument("--output-dir", default=".", help="folder for the artifacts (default .)")
    p.add_argument("--name", default=None,
                   help="file stem of the artifacts (default: the model file's name, or the "
                        "factory's name without build_, e.g. clf for pkg.models:build_clf)")
    cli.add_device_argument(p)
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    return p


def _targets(args: argparse.Namespace, stem: str) -> dict[str, Path]:
    from torchbridge.export import artifact_path

    formats = list(FORMATS) if args.format == "all" else [args.format]
    if args.output:
        if len(formats) > 1:
            raise ConfigError("--output names one file; with --format all use --output-dir")
        return {formats[0]: Path(args.output)}
    return {fmt: artifact_path(Path(args.output_dir), stem, fmt) for fmt in formats}


def _options(args: argparse.Namespace) -> Any:
    from torchbridge.export import ExportOptions, Tolerances

    sizes = None
    if args.batch_sizes:
        try:
            sizes = tuple(int(b) for b in args.batch_sizes.split(","))
        except ValueError:
            raise ConfigError(f"--batch-sizes {args.batch_sizes!r}: expected integers such "
                              "as 1,3,8") from None
        if any(b < 1 for b in sizes):
            raise ConfigError("--batch-sizes must all be >= 1")
    from torchbridge.checks._tolerances import tolerance

    if args.max_batch is not None and args.max_batch < 1:
        raise ConfigError(f"--max-batch must be >= 1, got {args.max_batch}")
    if args.opset is not None and not 7 <= args.opset <= 30:
        raise ConfigError(f"--opset {args.opset}: not an ONNX opset (e.g. 18)")
    return ExportOptions(dynamic=args.dynamic_axes, method=args.method, exporter=args.exporter,
                         opset=args.opset, validate=args.validate, batch_sizes=sizes,
                         tolerances=Tolerances(tolerance("--rtol", args.rtol),
                                               tolerance("--atol", args.atol)))


def _stem(args: argparse.Namespace) -> str:
    if args.name:
        return str(args.name)
    raw = args.model.rsplit(":", 1)[-1] if ":" in args.model and not Path(args.model).exists() \
        else Path(args.model).name.split(".")[0]
    return re.sub(r"^build_", "", raw) or "model"


def make_subject(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load the model, synthesize and check its inputs, and build the subject."""
    from torchbridge.core.subject import Subject
    from torchbridge.inputs import check_inputs_fit, describe_inputs

    loaded = cli.load_from_args(args, device=args.device)
    if loaded.source == "onnx":
        raise ConfigError(f"{args.model} is already ONNX; tb-export needs a PyTorch model "
                          "(.pt2, TorchScript, or package.module:factory)")
    inputs = cli.inputs_from_args(args, loaded.model, example=loaded.example_inputs,
                              device=args.device)
    check_inputs_fit(loaded.model, inputs, describe_inputs(inputs))
    spec = cli.spec_from_args(args, max_batch=args.max_batch)
    factory = _factory(args) if loaded.source == "factory" else None
    return Subject(loaded.model, inputs, device=args.device, spec=spec, factory=factory,
                   name=_stem(args)), loaded


def _factory(args: argparse.Namespace) -> Callable[[], Any]:
    """A fresh model from the same factory and weights (for the safetensors reload)."""
    from torchbridge.loading import load_model

    def build() -> Any:
        return load_model(args.model, args.weights, device=args.device,
                          allow_pickle=args.allow_pickle,
                          allowed_globals=tuple(args.allow_global)).model

    return build


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    options = _options(args)
    subject, loaded = make_subject(args)
    targets = _targets(args, subject.name)
    reports = _run_with_progress(subject, targets, options, quiet=args.json)
    ok = all(r.ok for r in reports)
    if args.json:
        print_json({"ok": ok, "model": args.model, "source": loaded.source,
                    "sha256": loaded.sha256, "reports": [r.to_dict() for r in reports]})
    else:
        _print_table(reports)
    return EXIT_OK if ok else EXIT_FAILED


def _run_with_progress(subject: Any, targets: dict[str, Path], options: Any,
                       quiet: bool) -> list[Any]:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from torchbridge.export import export_many

    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, disable=quiet or not console.is_terminal,
                  transient=True) as progress:
        task = progress.add_task(f"exporting {', '.join(targets)}", total=len(targets))

        def done(report: Any) -> None:
            progress.advance(task)
            if not quiet:
                mark = "[green]ok[/]" if report.ok else "[red]FAILED[/]"
                console.print(f"{mark} {report.summary()}", highlight=False)

        return export_many(subject, targets, options, on_done=done)


def _print_table(reports: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="tb-export")
    for column in ("format", "status", "file", "bytes", "export s", "max abs err", "runs"):
        table.add_column(column)
    for r in reports:
        runs = f"{sum(v.ok for v in r.validations)}/{len(r.validations)}"
        removed = " (removed)" if r.details.get("removed") else ""
        table.add_row(r.format, "ok" if r.ok else "FAILED", f"{r.path or ''}{removed}",
                      f"{r.file_bytes:,}", f"{r.export_s:.2f}", f"{r.max_abs_error:.2e}", runs)
    output_console().print(table)


if __name__ == "__main__":
    sys.exit(main())
