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

from pytest_torchbridge.markers import CheckMarker, requires

forward = CheckMarker("forward")
determinism = CheckMarker("determinism")
accuracy = CheckMarker("accuracy")
edge_cases = CheckMarker("edge_cases")
cpu_fallback = CheckMarker("cpu_fallback")
multi_gpu = CheckMarker("multi_gpu")
latency = CheckMarker("latency")
throughput = CheckMarker("throughput")
memory = CheckMarker("memory")
gpu_utilization = CheckMarker("gpu_utilization")
export = CheckMarker("export")
serving = CheckMarker("serving")
security = CheckMarker("security")


def check(name: str) -> CheckMarker:
    """Marker for a check registered by a third-party package: ``@tb.check("my_check")(...)``."""
    return CheckMarker(name)


__all__ = [
    "accuracy", "check", "cpu_fallback", "determinism", "edge_cases", "export", "forward",
    "gpu_utilization", "latency", "memory", "multi_gpu", "requires", "security", "serving",
    "throughput",
]
