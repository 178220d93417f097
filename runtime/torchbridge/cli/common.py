"""What every subcommand shares: exit codes, error handling, ``--json`` and table output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from torchbridge.errors import TorchBridgeError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_FAILED = 1  # a check failed
EXIT_USAGE = 2  # usage or environment error

#: Output width when stdout is not a terminal (a CI log, ``| tee``): rich would assume 80
#: columns and cut table cells such as p99 bounds; a log has no width to respect.
PIPED_WIDTH = 200


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser whose usage errors exit with code 2 (argparse's default)."""
    return argparse.ArgumentParser(prog=prog, description=description)


def output_console() -> Console:
    """A rich console on stdout for a command's tables: the terminal's width on a terminal,
    ``$COLUMNS`` when set, else :data:`PIPED_WIDTH` so that nothing is cut when piped."""
    from rich.console import Console

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(file=sys.stdout, width=PIPED_WIDTH if piped else None)


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
