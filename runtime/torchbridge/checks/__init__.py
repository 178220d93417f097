"""The check core: subjects, results, the registry and output comparison.

>>> from torchbridge.checks import Subject, run
>>> result = run("determinism", Subject(model, x), runs=3)   # doctest: +SKIP
>>> result.passed                                            # doctest: +SKIP
True
"""

from __future__ import annotations

from typing import Any

from torchbridge.checks.base import Check, CheckConfig, RunContext, execute
from torchbridge.checks.registry import get, names, parse_config, register
from torchbridge.core.compare import OutputComparison, compare_outputs
from torchbridge.core.result import CheckResult, Metric, Status
from torchbridge.core.subject import Dim, InputSpec, Subject

__all__ = [
    "Check", "CheckConfig", "CheckResult", "Dim", "InputSpec", "Metric", "OutputComparison",
    "RunContext", "Status", "Subject", "compare_outputs", "execute", "get", "names",
    "parse_config", "register", "run",
]


def run(name: str, subject: Subject, *args: Any, context: RunContext | None = None,
        **kwargs: Any) -> CheckResult:
    """Run the registered check ``name`` on ``subject`` with marker-style arguments."""
    check = get(name)
    config = parse_config(name, args, kwargs)
    return execute(check, subject, config, context)
