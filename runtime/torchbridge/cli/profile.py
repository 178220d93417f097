"""``tb-profile``: where a model spends time and memory, from ``torch.profiler``.

Examples::

    tb-profile --model model.pt2 --mode summary
    tb-profile --model mypkg.models:build --input-shape 8,256 --mode memory --json
    tb-profile --model model.pt2 --mode detailed --device cuda --trace trace.json
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from torchbridge.cli import arguments as cli
from torchbridge.cli.common import EXIT_OK, parser, print_json
from torchbridge.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from torchbridge.measure.profiling import MODES

    p = parser("tb-profile", "Profile a model's forward pass with torch.profiler.")
    cli.add_model_arguments(p)
    cli.add_input_arguments(p, dims=False)
    p.add_argument("--mode", choices=MODES, default="summary",
                   help="summary: time per operator; memory: allocations per operator; "
                        "detailed: per input shape, with stacks")
    cli.add_device_argument(p)
    p.add_argument("--steps", type=int, default=5, help="profiled forward passes (default 5)")
    p.add_argument("--row-limit", type=int, default=20, help="operators shown (default 20)")
    p.add_argument("--trace", default=None, metavar="PATH",
                   help="also write a Chrome trace (open in chrome://tracing or Perfetto)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    from torchbridge.measure.profiling import profile_model

    args = cli.parse_args(build_parser(), argv)
    if args.steps < 1:
        raise ConfigError("--steps must be >= 1")
    loaded = cli.load_from_args(args, device=args.device)
    inputs = cli.inputs_from_args(args, loaded.model, example=loaded.example_inputs,
                              device=args.device)
    console = Console(stderr=args.json)
    with console.status(f"profiling {args.steps} step(s) on {args.device}"):
        report = profile_model(loaded.model, inputs, mode=args.mode, device=args.device,
                               steps=args.steps, row_limit=args.row_limit, trace=args.trace)
    if args.json:
        print_json({"model": args.model, **report.to_dict()})
    else:
        print(report.table)
        if report.trace:
            console.print(f"Chrome trace written to {report.trace}")
    return EXIT_OK
