"""Validation of tolerance settings and the defaults used when devices are compared."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from torchbridge.checks.base import CheckConfig
from torchbridge.checks.options import option
from torchbridge.core.compare import Tolerance, default_tolerance
from torchbridge.core.trees import flatten
from torchbridge.errors import ConfigError

# Across devices (GPU vs CPU, or batched vs single rows on a GPU) kernels differ: cuDNN
# convolutions use TF32 by default and reductions run in other orders, so float32 results
# agree to about 1e-3 relative, not to float32 rounding.
ACROSS_DEVICES: dict[torch.dtype, Tolerance] = {
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
    torch.float32: (1e-3, 1e-4),
    torch.float64: (1e-6, 1e-7),
}


def tolerance(name: str, value: Any) -> float | None:
    """``value`` as a tolerance: ``None`` or a finite number >= 0, else :class:`ConfigError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def per_output(name: str, value: Any) -> dict[str, Tolerance]:
    """``{"logits": (rtol, atol)}`` checked; each pair finite and >= 0."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} maps output names to (rtol, atol), got {value!r}")
    checked: dict[str, Tolerance] = {}
    for key, pair in value.items():
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ConfigError(f"{name}[{key!r}] must be a pair (rtol, atol), got {pair!r}")
        rtol = tolerance(f"{name}[{key!r}] rtol", pair[0])
        atol = tolerance(f"{name}[{key!r}] atol", pair[1])
        checked[str(key)] = (rtol or 0.0, atol or 0.0)
    return checked


def tolerance_option(value: object, what: str) -> float | None:
    """:func:`tolerance` as a config field's parser."""
    return tolerance(what, value)


def per_output_option(value: object, what: str) -> dict[str, Tolerance]:
    """:func:`per_output` as a config field's parser."""
    return per_output(what, value)


def is_accelerator(device: str) -> bool:
    return torch.device(device).type != "cpu"


def device_defaults(expected: Any, device: str) -> dict[str, Tolerance]:
    """Per-output tolerances for outputs computed on ``device``: the dtype's defaults
    (as ``torch.testing``) on the CPU, :data:`ACROSS_DEVICES` on accelerators."""
    table: dict[str, Tolerance] = {}
    for path, leaf in flatten(expected):
        if isinstance(leaf, torch.Tensor):
            table[path] = ACROSS_DEVICES.get(leaf.dtype, default_tolerance(leaf.dtype)) \
                if is_accelerator(device) else default_tolerance(leaf.dtype)
    return table


def effective_per_output(expected: Any, device: str, rtol: float | None, atol: float | None,
                         overrides: Mapping[str, Tolerance], loosen: bool) -> dict[str, Tolerance]:
    """Tolerances per output: user overrides first, then (when neither ``rtol`` nor ``atol``
    is set and ``loosen`` applies) the device-aware defaults."""
    table = dict(overrides)
    if loosen and rtol is None and atol is None:
        for path, tol in device_defaults(expected, device).items():
            table.setdefault(path, tol)
    return table


@dataclass(frozen=True)
class ToleranceConfig(CheckConfig):
    """Base of configs that compare outputs: ``rtol``/``atol`` for every output and
    ``per_output`` ``{"logits": (rtol, atol)}`` overrides, validated alike everywhere."""

    rtol: float | None = option(None, tolerance_option)
    atol: float | None = option(None, tolerance_option)
    per_output: Mapping[str, Tolerance] = option(None, per_output_option)
