"""pytest-torchbridge: production-readiness checks for PyTorch models as pytest markers.

Example::

    import pytest_torchbridge as tb

    @tb.determinism
    @tb.latency(p99="20ms")
    @tb.export("onnx", dynamic=True)
    def test_classifier(model, sample_input):
        assert model(sample_input).shape[-1] == 10

Each marker becomes its own test item (``test_classifier[tb-latency]``); the body runs once
in ``test_classifier[body]``. Importing this module imports neither torch nor the runtime.
"""

from __future__ import annotations

from pytest_torchbridge.markers import BUILTIN_CHECKS, CheckMarker, requires

#: one decorator per built-in check (``tb.latency``), made from the one list of their names
_MARKERS = {name: CheckMarker(name) for name in BUILTIN_CHECKS}


def __getattr__(name: str) -> CheckMarker:
    """``tb.<check>`` for every built-in check: ``tb.determinism``, ``tb.latency``, ..."""
    try:
        return _MARKERS[name]
    except KeyError:
        raise AttributeError(f"module 'pytest_torchbridge' has no attribute {name!r}; "
                             f"checks: {', '.join(BUILTIN_CHECKS)}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *BUILTIN_CHECKS])


def check(name: str) -> CheckMarker:
    """Marker for a check registered by a third-party package: ``@tb.check("my_check")(...)``."""
    return CheckMarker(name)


__all__ = ["check", "requires", *BUILTIN_CHECKS]
