"""Marker decorators: ``@tb.determinism``, ``@tb.latency(p99="20ms")``, ``@tb.requires(...)``.

A check decorator records ``pytest.mark.torchbridge(<check>, *args, **kwargs)`` on the test
and requests the ``tb_check_case`` fixture, which collection parametrizes into one item per
check. Nothing here imports torch: arguments are validated at collection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])

#: pytest mark carrying a check request on a test function or class.
CHECK_MARK = "torchbridge"
#: the fixture that collection parametrizes with one case per check (plus the body).
CASE_FIXTURE = "tb_check_case"

#: The one list of checks shipped with TorchBridge: each has a ``tb.<name>`` decorator and a
#: ``tb_<name>`` mark, and ``torchbridge.checks`` has a module registering it (a test keeps
#: the registry and this list equal). Kept here because the plugin must name them without
#: importing the runtime.
BUILTIN_CHECKS = (
    "forward", "determinism", "accuracy", "edge_cases", "cpu_fallback", "multi_gpu",
    "latency", "throughput", "memory", "gpu_utilization",
    "export", "serving", "security",
)

#: keywords every check marker accepts; they name fixtures rather than configure the check.
FIXTURE_KEYWORDS = ("model_fixture", "input_fixture", "factory_fixture", "spec_fixture",
                    "reference_fixture")


def _is_test_target(obj: object) -> bool:
    return callable(obj) and getattr(obj, "__name__", "").startswith(("test", "Test"))


class CheckMarker:
    """Decorator for one check, usable bare (``@tb.determinism``) or called
    (``@tb.determinism(runs=5)``)."""

    def __init__(self, check: str) -> None:
        self.check = check
        self.__name__ = check
        self.__doc__ = f"Run TorchBridge's {check!r} check as its own test item."

    def _apply(self, target: F, args: tuple[Any, ...], kwargs: dict[str, Any]) -> F:
        marked = pytest.mark.torchbridge(self.check, *args, **kwargs)(target)
        return pytest.mark.usefixtures(CASE_FIXTURE)(marked)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and _is_test_target(args[0]):
            return self._apply(args[0], (), {})

        def decorate(target: F) -> F:
            return self._apply(target, args, kwargs)

        return decorate

    def __repr__(self) -> str:
        return f"<tb.{self.check} marker>"


def requires(**conditions: Any) -> pytest.MarkDecorator:
    """Skip the whole test, with the reason in the report, unless the hardware fits.

    Keywords: ``device`` ("cuda", "mps", "xpu", "cpu"), ``min_gpus``, ``min_vram``
    ("8GiB"), ``min_compute_capability`` ((8, 0)), ``packages`` (importable modules).

    Example::

        @tb.requires(device="cuda", min_vram="8GiB")
        def test_big_model(model): ...

    Keywords are validated here, when the test module is imported, so a typo is a collection
    error at the decorator's line rather than a silent skip.
    """
    from torchbridge.requirements import validate  # torch-free; only for suites that use it

    validate(conditions)
    return pytest.mark.tb_requires(**conditions)


def mark_lines() -> list[str]:
    """``markers`` ini lines registering every mark this plugin uses."""
    lines = [
        f"{CHECK_MARK}(check, *args, **kwargs): a TorchBridge check request (use tb.<check>)",
        "tb: every item TorchBridge generates for a check",
        "tb_requires(**conditions): skip unless the hardware fits (use tb.requires)",
    ]
    lines += [f"tb_{name}: TorchBridge {name} check items" for name in BUILTIN_CHECKS]
    return lines
