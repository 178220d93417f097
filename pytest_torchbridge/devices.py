"""Which devices this session's checks run on, resolved once and validated at start-up."""

from __future__ import annotations

import pytest

from pytest_torchbridge.settings import settings

DEVICES_KEY = pytest.StashKey[list[str]]()


def validate_at_startup(config: pytest.Config) -> None:
    """An explicitly requested device that is absent is a usage error, never a green run."""
    opts = settings(config)
    if opts.hardware_explicit:
        session_devices(config)


def session_devices(config: pytest.Config) -> list[str]:
    if DEVICES_KEY not in config.stash:
        from torchbridge.errors import HardwareUnavailable
        from torchbridge.hardware import resolve_devices

        try:
            config.stash[DEVICES_KEY] = resolve_devices(settings(config).hardware)
        except HardwareUnavailable as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[DEVICES_KEY]


def worker_index(config: pytest.Config) -> int | None:
    workerinput = getattr(config, "workerinput", None)
    if not workerinput:
        return None
    return int(str(workerinput["workerid"]).lstrip("gw") or 0)


def runtime_device(config: pytest.Config, device: str) -> str:
    """The concrete device for one item: under xdist, ``cuda`` is pinned per worker."""
    index = worker_index(config)
    if index is None or not settings(config).gpu_pinning:
        return device
    from torchbridge.hardware import pin_worker

    return pin_worker(device, index)
