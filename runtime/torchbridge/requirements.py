"""Hardware requirements of a test or model: ``device``, ``min_gpus``, ``min_vram``, ...

``unmet`` answers with the reason a requirement is not met here, phrased the way PyTorch's
own suites phrase hardware skips ("needs 2 GPUs, found 0").
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from torchbridge.errors import ConfigError
from torchbridge.units import format_bytes, parse_bytes

KNOWN = ("device", "min_gpus", "min_vram", "min_compute_capability", "packages")


def validate(conditions: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for unknown keywords or unreadable values."""
    unknown = sorted(set(conditions) - set(KNOWN))
    if unknown:
        raise ConfigError(f"tb.requires: unknown keyword(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(KNOWN)}")
    if "min_vram" in conditions:
        parse_bytes(conditions["min_vram"], "tb.requires: min_vram")
    gpus = conditions.get("min_gpus", 0)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        raise ConfigError(f"tb.requires: min_gpus must be a whole number >= 0, got {gpus!r}")
    capability = conditions.get("min_compute_capability")
    if capability is not None and not (isinstance(capability, tuple | list)
                                       and len(capability) == 2):
        raise ConfigError("tb.requires: min_compute_capability is a (major, minor) pair, "
                          f"got {capability!r}")


def _missing_packages(packages: object) -> list[str]:
    names = [packages] if isinstance(packages, str) else list(packages or [])  # type: ignore
    return [name for name in names if importlib.util.find_spec(name) is None]


def unmet(conditions: Mapping[str, Any], device: str) -> str | None:
    """Why ``conditions`` are not met when running on ``device``; ``None`` when they are."""
    import torch

    from torchbridge.hardware import why_unavailable

    validate(conditions)
    wanted = conditions.get("device")
    if wanted and device.split(":")[0] != str(wanted).split(":")[0]:
        reason = why_unavailable(str(wanted))
        return f"Only runs on {wanted}; this run uses {device}" + \
            (f" ({reason})" if reason else "")
    gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if conditions.get("min_gpus", 0) > gpu_count:
        return f"needs {conditions['min_gpus']} GPUs, found {gpu_count}"
    if "min_vram" in conditions:
        need = parse_bytes(conditions["min_vram"])
        if not device.startswith("cuda") or gpu_count == 0:
            return f"needs {format_bytes(need)} of GPU memory, and {device} is no GPU"
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        if total < need:
            return f"Insufficient cuda memory: needs {format_bytes(need)}, " \
                   f"{device} has {format_bytes(total)}"
    capability = conditions.get("min_compute_capability")
    if capability is not None:
        if not device.startswith("cuda") or gpu_count == 0:
            return f"needs compute capability {tuple(capability)}, and {device} is no GPU"
        have = torch.cuda.get_device_capability(torch.device(device))
        if tuple(have) < tuple(capability):
            return f"needs compute capability {tuple(capability)}, {device} has {have}"
    missing = _missing_packages(conditions.get("packages"))
    if missing:
        return f"needs package(s) {', '.join(missing)}, not installed"
    return None
