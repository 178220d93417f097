"""``tb-benchmark``: latency percentiles and throughput of a model, per batch size.

Examples::

    tb-benchmark --model model.pt2 --quick
    tb-benchmark --model mypkg.models:build --input-shape 1,256 --stress --batch-sizes 1,4,8,16,32
    tb-benchmark --model model.pt2 --json > bench.json
    tb-benchmark --model optimized.pt2 --compare-with model.pt2 --regression-threshold 5%
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchbridge.cli import arguments as cli
from torchbridge.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    output_console,
    parser,
    print_json,
)
from torchbridge.errors import ConfigError
from torchbridge.measure.stats import UNSTEADY_DRIFT


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--batch-sizes {text!r}: expected comma-separated whole numbers, "
                          "e.g. 1,4,8,16,32") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"--batch-sizes {text!r}: every batch size must be >= 1")
    return sizes


def build_parser() -> Any:
    p = parser("tb-benchmark", "Measure per-call latency percentiles (with 95 % bounds on "
                               "p99) and throughput of a model at each batch size.")
    cli.add_model_arguments(p)
    cli.add_input_arguments(p, dims=False)
    cli.add_device_argument(p)
    p.add_argument("--batch-sizes", default=None,
                   help="comma list, e.g. 1,4,8,16,32 (default: the input's batch)")
    p.add_argument("--quick", action="store_true", help="a short run (~0.5 s per batch size)")
    p.add_argument("--stress", action="store_true",
                   help="sweep batch sizes upward and stop at the first out-of-memory, "
                        "reporting the largest batch that fits")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: "
                                                            "torch's)")
    p.add_argument("--max-time", default=None,
                   help="latency timing budget per batch size, e.g. 2s (default 2s)")
    p.add_argument("--keep-host-noise", action="store_true",
                   help="keep calls that the host slowed down (by default they are set "
                        "aside and counted after the '+' in the n column)")
    p.add_argument("--compare-with", default=None, metavar="MODEL",
                   help="also time --model against this model on the same inputs, "
                        "interleaved in short blocks; exit 1 on a regression (a median "
                        "paired ratio above the threshold whose lower bound is above 1)")
    p.add_argument("--compare-weights", default=None,
                   help="weights for a --compare-with factory model")
    p.add_argument("--regression-threshold", default="10%",
                   help="with --compare-with: the slowdown counted as a regression "
                        "(default 10%%)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _compare(args: Any, model: Any, inputs: Any, sizes: list[int] | None,
             seconds: float, threshold: float) -> Any:
    """``--model`` against ``--compare-with``, interleaved, at the largest batch size."""
    import argparse

    from torchbridge.measure.ab import compare_models

    other = cli.load_from_args(argparse.Namespace(**{**vars(args), "model": args.compare_with,
                                                 "weights": args.compare_weights}),
                           device=args.device)
    return compare_models(model, other.model, inputs, device=args.device,
                          batch_size=max(sizes) if sizes else None, threads=args.threads,
                          seconds=seconds, label=args.compare_with,
                          threshold=threshold)


def _table(report: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"tb-benchmark · {report.device} · {report.threads} thread(s)")
    for name in ("batch", "n", "p50 ms", "p90 ms", "p99 ms", "p99 95% bounds", "samples/s",
                 "drift"):
        table.add_column(name, justify="right")
    for row in report.rows:
        lo, hi = row["p99_bounds_ms"]
        bounds = f"{lo:.3f}-{hi:.3f}" if lo is not None and hi is not None else \
            f">= {lo:.3f}" if lo is not None else "n too small"
        counted = str(row["samples"]) + (f" +{row['set_aside']}" if row["set_aside"] else "")
        table.add_row(str(row["batch_size"]), counted, f"{row['p50_ms']:.3f}",
                      f"{row['p90_ms']:.3f}", f"{row['p99_ms']:.3f}", bounds,
                      f"{row['samples_per_s']:,.0f}", _drift(row["median_drift"]))
    notes = []
    if any((row["median_drift"] or 0) > UNSTEADY_DRIFT for row in report.rows):
        notes.append("drift: how far the median moved between quarters of a run; over "
                     f"{UNSTEADY_DRIFT:.0%} the machine was unsteady and the tail may not "
                     "reproduce")
    if any(row["set_aside"] for row in report.rows):
        notes.append("n +k: k more calls were set aside because the host slowed the CPU "
                     "around them (--keep-host-noise keeps them)")
    table.caption = "\n".join(notes) or None
    return table


def _drift(value: float | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.0%}"
    return f"[yellow]{text}[/yellow]" if value > UNSTEADY_DRIFT else text


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from torchbridge.measure.ab import parse_threshold
    from torchbridge.measure.bench import BenchmarkSettings, benchmark_model
    from torchbridge.units import parse_duration

    args = cli.parse_args(build_parser(), argv)
    sizes = _batch_sizes(args.batch_sizes) if args.batch_sizes else None
    if args.stress and not sizes:
        sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    settings = BenchmarkSettings.quick() if args.quick else BenchmarkSettings()
    if args.max_time:
        settings.latency_time = parse_duration(args.max_time, "--max-time")
    settings.host_filter = not args.keep_host_noise
    threshold = parse_threshold(args.regression_threshold)
    loaded = cli.load_from_args(args, device=args.device)
    inputs = cli.inputs_from_args(args, loaded.model, example=loaded.example_inputs,
                              device=args.device)
    err = Console(stderr=True)
    with Progress(console=err, transient=True, disable=args.json) as progress:
        task = progress.add_task("benchmarking", total=len(sizes) if sizes else 1)
        report = benchmark_model(loaded.model, inputs, device=args.device, batch_sizes=sizes,
                                 stress=args.stress, threads=args.threads, settings=settings,
                                 on_batch=lambda row: progress.advance(task))
    compared = _compare(args, loaded.model, inputs, sizes, settings.latency_time,
                        threshold) if args.compare_with else None
    if args.json:
        print_json({"model": args.model, **report.to_dict(),
                    **({"compare": compared.to_dict()} if compared else {})})
    else:
        out = output_console()
        out.print(_table(report))
        if report.stopped:
            err.print(f"[yellow]{report.stopped}[/yellow]")
        if args.stress:
            out.print(f"largest batch that fits: {report.largest_batch_that_fits}")
    if not report.rows:
        err.print(f"[red]no batch size could run: {report.stopped}[/red]")
        return EXIT_USAGE
    if compared is not None:
        if not args.json:
            print(f"{compared.describe()}: {compared.verdict}")
        if compared.regression:
            return EXIT_FAILED
    return EXIT_FAILED if report.stopped and not args.stress else EXIT_OK
