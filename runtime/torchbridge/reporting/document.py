"""The TorchBridge JSON report: every result of a run with hardware, versions and commit.

Schema (``schema_version`` 1)::

    {"schema_version": 1, "tool": "torchbridge", "tool_version": "...",
     "created": "<ISO UTC>", "machine": {...hardware...}, "versions": {...},
     "commit": {"id", "branch", "dirty"}, "results": [CheckResult.to_dict() + "test_id"],
     "summary": {"passed": n, "failed": n, "skipped": n, "error": n}}

:func:`torchbridge.reporting.load_report` reads one back, each result through
:meth:`~torchbridge.core.result.CheckResult.from_dict`.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torchbridge

SCHEMA_VERSION = 1


def git_output(*args: str) -> str | None:
    """``git args...``'s stripped stdout; ``None`` outside a checkout or without git."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def commit_info() -> dict[str, Any]:
    """The current git commit, branch and dirtiness (empty values outside a checkout)."""
    status = git_output("status", "--porcelain")
    return {"id": git_output("rev-parse", "HEAD"),
            "branch": git_output("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(status) if status is not None else None,
            "time": git_output("log", "-1", "--format=%cI")}


def versions() -> dict[str, str | None]:
    """Versions of Python, torch and the optional packages checks rely on."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version(),
                                    "torchbridge": torchbridge.__version__}
    for name in ("torch", "onnx", "onnxruntime", "onnxscript", "safetensors", "numpy",
                 "pytest", "fastapi", "uvicorn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def summarise(results: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(r["status"] for r in results)
    return {s: counts.get(s, 0) for s in ("passed", "failed", "skipped", "error")}


def build_report(results: list[dict[str, Any]], machine: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """A report document for ``results`` (dicts from ``CheckResult.to_dict``)."""
    if machine is None:
        from torchbridge.hardware import detect

        machine = detect().to_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "torchbridge",
        "tool_version": torchbridge.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "machine": machine,
        "versions": versions(),
        "commit": commit_info(),
        "results": results,
        "summary": summarise(results),
    }


def write_json(path: str | Path, document: dict[str, Any]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return target
