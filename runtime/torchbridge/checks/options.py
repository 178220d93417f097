"""Typed check options: each config field names its parser once, and the shared validators.

A check's configuration is a frozen dataclass whose fields carry their parser::

    @dataclass(frozen=True)
    class LatencyConfig(CheckConfig):
        p99: PerDevice[float] = option(None, per_device(parse_duration))
        threads: int | None = option(None, positive_int)

:class:`~torchbridge.checks.base.CheckConfig` runs every field's parser once, on the raw
marker value (``"5ms"``, ``{"cuda": "8ms"}``, ``5``), so the field holds the typed value its
annotation names and a bad value is a :class:`ConfigError` naming the field. A parser is a
function ``(value, name) -> typed value``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any, TypeVar

from torchbridge.errors import ConfigError
from torchbridge.units import PerDevice

T = TypeVar("T")
Parser = Callable[[Any, str], Any]


def option(default: Any = None, parse: Parser | None = None) -> Any:
    """A config field whose raw value ``parse(value, field name)`` turns into its typed one."""
    return field(default=default, metadata={"parse": parse} if parse else {})


def per_device(parse: Callable[[object, str], T]) -> Callable[[object, str], PerDevice[T]]:
    """A budget given once or per device (``{"cuda": "8ms", "cpu": "40ms"}``)."""
    return lambda value, name: PerDevice.parse(value, parse, name)


def optional(parse: Callable[[object, str], T]) -> Callable[[object, str], T | None]:
    """``parse``, with ``None`` kept as "not given"."""
    return lambda value, name: None if value is None else parse(value, name)


def positive_int(value: object, what: str, allow_none: bool = True) -> int | None:
    """A whole number >= 1 (``None`` allowed unless ``allow_none`` is false)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


def fraction(value: object, what: str, low: float = 0.0, high: float = 1.0) -> float:
    """A number strictly between ``low`` and ``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not low < float(value) < high:
        raise ConfigError(f"{what} must be a number strictly between {low:g} and {high:g}, "
                          f"got {value!r}")
    return float(value)


def flag(value: object, what: str) -> bool:
    """``True`` or ``False``, nothing else (``"no"`` is a typo, not false)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be True or False, got {value!r}")
    return value


def count(value: object, what: str) -> int:
    """A whole number >= 1 that must be given (no ``None``)."""
    return int(positive_int(value, what, allow_none=False) or 0)


def between(low: float, high: float) -> Callable[[object, str], float]:
    """A :func:`fraction` parser for the open interval (``low``, ``high``)."""
    return lambda value, name: fraction(value, name, low, high)


def batch_sizes(value: object, what: str) -> tuple[int, ...]:
    """Batch sizes: one whole number or a non-empty list of them, each >= 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{what} must be a non-empty list of whole numbers >= 1, "
                          f"got {value!r}")
    return tuple(count(v, f"{what} entry {v!r}") for v in value)
