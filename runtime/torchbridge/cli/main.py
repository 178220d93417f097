"""Entry points: ``tb <command>`` and the checklist's spellings ``tb-<command>``.

Each command lives in ``torchbridge.cli.<command>`` as ``main(argv) -> int`` and is
imported only when run, so ``tb --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from torchbridge.cli.common import EXIT_USAGE, guarded

COMMANDS = {
    "doctor": "diagnose the environment (Python, torch, GPUs, drivers, providers)",
    "benchmark": "measure latency and throughput of a model",
    "profile": "profile a model (summary, memory, detailed)",
    "export": "export a model to ONNX, TorchScript, SafeTensors or pt2, and validate it",
    "optimize": "optimize a model and prove parity with the original",
    "serve": "serve a model over HTTP",
    "check": "run a checklist file (pytest underneath)",
    "scan": "scan model files for malicious pickles and secrets",
    "checksum": "create or verify sha256sum-compatible checksum files",
    "report": "merge TorchBridge JSON reports, render summaries, decide the gate",
    "smoke": "smoke-test a deployed server",
}


def run_command(name: str, argv: Sequence[str] | None = None) -> int:
    module = importlib.import_module(f"torchbridge.cli.{name}")
    return guarded(module.main, list(sys.argv[1:] if argv is None else argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
        print("usage: tb <command> [options]\n\ncommands:\n" + "\n".join(lines))
        return 0 if args else EXIT_USAGE
    if args[0] not in COMMANDS:
        print(f"tb: unknown command {args[0]!r}; see 'tb --help'", file=sys.stderr)
        return EXIT_USAGE
    return run_command(args[0], args[1:])


def _entry(name: str) -> int:
    return run_command(name)


def doctor() -> int:
    return _entry("doctor")


def benchmark() -> int:
    return _entry("benchmark")


def profile() -> int:
    return _entry("profile")


def export() -> int:
    return _entry("export")


def optimize() -> int:
    return _entry("optimize")


def serve() -> int:
    return _entry("serve")


def check() -> int:
    return _entry("check")


def scan() -> int:
    return _entry("scan")


def checksum() -> int:
    return _entry("checksum")


def report() -> int:
    return _entry("report")


def smoke() -> int:
    return _entry("smoke")


if __name__ == "__main__":
    sys.exit(main())
