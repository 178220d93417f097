"""``tb-smoke --url URL --sample sample.json``: the post-deployment smoke test.

Also ``--canary-url`` (the same requests against a canary: parity and latency) and
``--watch 15m --interval 30s`` (poll ``/metrics``; fail when the error rate or the p99
crosses its threshold). Exit 0 when every step passed, 1 when one failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchbridge.cli.common import EXIT_FAILED, EXIT_OK, parser, print_json
from torchbridge.errors import ConfigError

API_KEY_ENV = "TB_API_KEY"
_SHORT_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(h|m|s|ms)\s*$")


def duration(text: str) -> float:
    """Seconds from ``15m``, ``30s``, ``1h``, ``500ms`` or anything parse_duration reads."""
    match = _SHORT_DURATION.match(text)
    if match:
        scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3}[match.group(2)]
        return float(match.group(1)) * scale
    from torchbridge.units import parse_duration

    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def fraction(text: str) -> float:
    """``1%`` or ``0.01``."""
    value = text.strip()
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}; write e.g. 1% or 0.01") \
            from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return number


def build_parser() -> argparse.ArgumentParser:
    p = parser("tb-smoke", "Smoke-test a deployed model server: health, readiness, a "
                           "prediction against expected outputs, latency; a canary against "
                           "the current deployment; or watch /metrics for a while.")
    p.add_argument("--url", required=True, help="base URL of the deployment")
    p.add_argument("--sample", type=Path, help="JSON request body to POST, e.g. "
                                               '{"inputs": [[0.1, 0.2]]}')
    p.add_argument("--expected", type=Path, help="JSON expected outputs (or a whole response)")
    p.add_argument("--endpoint", default="/predict", help="inference route (default /predict)")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (1e-4)")
    p.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (1e-5)")
    p.add_argument("--requests", type=int, default=20, help="requests timed for latency (20)")
    p.add_argument("--max-p99", type=duration, default=None,
                   help="fail when the p99 latency exceeds this (e.g. 200ms)")
    p.add_argument("--canary-url", help="base URL of a canary to compare with --url")
    p.add_argument("--max-slowdown", type=fraction, default=0.2,
                   help="how much slower the canary's p99 may be (default 20%%)")
    p.add_argument("--api-key", default=None,
                   help=f"API key sent as 'Authorization: Bearer' (default ${API_KEY_ENV})")
    p.add_argument("--timeout", type=duration, default=10.0, help="per-request timeout (10s)")
    p.add_argument("--wait-ready", type=duration, default=0.0, metavar="DURATION",
                   help="first poll /ready for up to this long (e.g. 2m), for a rollout "
                        "that is still warming up")
    p.add_argument("--watch", type=duration, default=None, metavar="DURATION",
                   help="poll /metrics for this long (e.g. 15m) after the smoke steps")
    p.add_argument("--interval", type=duration, default=30.0, help="poll interval (30s)")
    p.add_argument("--max-error-rate", type=fraction, default=0.01,
                   help="watch: fail above this error rate (default 1%%)")
    p.add_argument("--min-requests", type=int, default=10,
                   help="watch: judge only windows with at least this many requests (10)")
    p.add_argument("--count-4xx", action="store_true",
                   help="watch: count 4xx answers as errors too (default: 5xx only)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _json_file(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--{what} {path}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--{what} {path}: not JSON ({exc.msg}, line {exc.lineno})") \
            from None


def _validate(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.sample is None and args.watch is None:
        p.error("give --sample (smoke test) and/or --watch (monitor /metrics)")
    if args.sample is None and (args.expected or args.canary_url):
        p.error("--expected and --canary-url need --sample")
    if args.requests < 1:
        p.error("--requests must be at least 1")


def _print(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tb-smoke {report.url}")
    table.add_column("step")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for step in report.steps:
        status = "[green]passed[/]" if step.passed else \
            "[red]FAILED[/]" if step.exercised else "[red]NOT EXERCISED[/]"
        table.add_row(step.name, status, step.detail)
    console = Console()
    console.print(table)
    console.print("[green]smoke test passed[/]" if report.passed else
                  f"[red]smoke test failed: {len(report.failures())} step(s)[/]")


def main(argv: Sequence[str] | None = None) -> int:
    from torchbridge.smoke import SmokeConfig, SmokeReport, WatchConfig, run_smoke, watch

    p = build_parser()
    args = p.parse_args(argv)
    _validate(p, args)
    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    report = SmokeReport(args.url)
    if args.sample is not None:
        config = SmokeConfig(url=args.url, sample=_json_file(args.sample, "sample"),
                             expected=_json_file(args.expected, "expected"),
                             endpoint=args.endpoint, rtol=args.rtol, atol=args.atol,
                             requests=args.requests, max_p99_s=args.max_p99,
                             canary_url=args.canary_url, max_slowdown=args.max_slowdown,
                             api_key=api_key, timeout_s=args.timeout,
                             wait_ready_s=args.wait_ready)
        report = run_smoke(config)
    if args.watch is not None and (args.sample is None or report.passed):
        statuses = ("4", "5") if args.count_4xx else ("5",)
        watched = watch(args.url, WatchConfig(args.watch, args.interval, args.max_error_rate,
                                              args.max_p99, args.min_requests, statuses),
                        api_key)
        report.steps += watched.steps
    if args.json:
        print_json(report.to_dict())
    else:
        _print(report)
    return EXIT_OK if report.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
