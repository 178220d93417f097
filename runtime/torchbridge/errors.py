"""Exceptions shared by the runtime and its front ends."""

from __future__ import annotations


class TorchBridgeError(Exception):
    """Base class of every error TorchBridge raises on purpose."""


class ConfigError(TorchBridgeError, ValueError):
    """A check configuration, budget or option is invalid; the message says what to change."""


class HardwareUnavailable(TorchBridgeError):
    """Requested hardware is absent; the message says why (e.g. torch built without CUDA)."""


class ModelLoadError(TorchBridgeError):
    """A model could not be loaded. Never answered with a substitute model."""


class CheckSkipped(TorchBridgeError):
    """Raised inside a check when it cannot run here; becomes a skipped result with the reason."""


class HardwareSkipped(CheckSkipped):
    """A check cannot run because this machine lacks hardware it needs (an accelerator, a
    second GPU, NVML). The result is marked ``hardware_skip``, which ``--tb-fail-on-skip``
    turns into a failed session: a CI job on the wrong runner must not go green."""
