"""What every subcommand shares: exit codes, error handling and ``--json`` output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from torchbridge.errors import TorchBridgeError

EXIT_OK = 0
EXIT_FAILED = 1  # a check failed
EXIT_USAGE = 2  # usage or environment error


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser whose usage errors exit with code 2 (argparse's default)."""
    return argparse.ArgumentParser(prog=prog, description=description)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def guarded(run: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a subcommand; a TorchBridge error is a usage/environment error (exit 2)."""
    try:
        return run(argv)
    except TorchBridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
