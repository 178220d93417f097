"""Parsing of budgets given as numbers or strings with units.

Durations are held in seconds, sizes in bytes, throughputs in samples per second.

>>> parse_duration("5ms")
0.005
>>> parse_bytes("1GiB")
1073741824
>>> PerDevice.parse({"cuda": "8ms", "cpu": "40ms"}, parse_duration).for_device("cuda:1")
0.008
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from torchbridge.errors import ConfigError

T = TypeVar("T")

_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ/]*)\s*$")

_DURATION_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9,
    "min": 60.0,
}
_BYTE_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_RATE_UNITS = {"": 1.0, "/s": 1.0, "k/s": 1e3, "k": 1e3}


def _split(value: object, what: str) -> tuple[float, str]:
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a number or a string with a unit, got {value!r}")
    if isinstance(value, int | float):
        return float(value), ""
    if not isinstance(value, str):
        raise ConfigError(f"{what}: expected a number or a string with a unit, got {value!r}")
    match = _NUMBER_UNIT.match(value)
    if not match:
        raise ConfigError(f"{what}: cannot read {value!r}; write e.g. '5ms', '1.5s', '512MB'")
    return float(match.group(1)), match.group(2)


def _checked(number: float, what: str, original: object) -> float:
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{what}: {original!r} must be a positive, finite amount")
    return number


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from ``5``, ``"5ms"``, ``"1.5s"``, ``"250us"`` (a bare number means seconds)."""
    number, unit = _split(value, what)
    if unit not in _DURATION_UNITS:
        known = ", ".join(u for u in _DURATION_UNITS if u)
        raise ConfigError(f"{what}: unknown time unit {unit!r} in {value!r} (use one of {known})")
    return _checked(number * _DURATION_UNITS[unit], what, value)


def parse_bytes(value: object, what: str = "size") -> int:
    """Bytes from ``1024``, ``"512MB"``, ``"1GiB"`` (decimal MB/GB, binary MiB/GiB)."""
    number, unit = _split(value, what)
    key = unit.lower()
    if key not in _BYTE_UNITS:
        raise ConfigError(f"{what}: unknown size unit {unit!r} in {value!r} (use B, KB, MB, GB, "
                          "KiB, MiB, GiB)")
    return int(_checked(number * _BYTE_UNITS[key], what, value))


def parse_rate(value: object, what: str = "rate") -> float:
    """Samples per second from ``2000`` or ``"2k/s"``."""
    number, unit = _split(value, what)
    if unit.lower() not in _RATE_UNITS:
        raise ConfigError(f"{what}: unknown rate unit {unit!r} in {value!r} (use '/s' or 'k/s')")
    return _checked(number * _RATE_UNITS[unit.lower()], what, value)


def format_duration(seconds: float) -> str:
    """Human form of a duration: ``0.0231`` → ``'23.1 ms'``."""
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e9:.3g} ns"


def format_bytes(size: float) -> str:
    """Human form of a size in binary units: ``1536`` → ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} TiB"


DEVICE_KINDS = ("cpu", "cuda", "mps", "xpu", "rocm")


@dataclass(frozen=True)
class PerDevice(Generic[T]):
    """A budget that may differ per device kind; a device with no entry is measured, not gated."""

    default: T | None = None
    by_device: Mapping[str, T] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: object, parse: Callable[[object, str], T],
              what: str = "budget") -> PerDevice[T]:
        if value is None:
            return cls()
        if isinstance(value, Mapping):
            parsed: dict[str, T] = {}
            for device, item in value.items():
                kind = str(device).split(":")[0]
                if kind not in DEVICE_KINDS:
                    raise ConfigError(f"{what}: unknown device {device!r} "
                                      f"(use one of {', '.join(DEVICE_KINDS)})")
                parsed[str(device)] = parse(item, f"{what}[{device}]")
            return cls(None, parsed)
        return cls(parse(value, what), {})

    def for_device(self, device: str) -> T | None:
        """The budget for ``device`` ('cuda:1' falls back to 'cuda', then to the default)."""
        if device in self.by_device:
            return self.by_device[device]
        kind = device.split(":")[0]
        if kind in self.by_device:
            return self.by_device[kind]
        return self.default

    def __bool__(self) -> bool:
        return self.default is not None or bool(self.by_device)
