"""Fixtures: ``tb_device``, ``tb_hardware``, ``tb_checks`` and the internal case fixture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_torchbridge.devices import runtime_device, session_devices
from pytest_torchbridge.execution import (
    build_subject,
    conclude,
    record,
    run_context,
)
from pytest_torchbridge.expansion import check_case
from pytest_torchbridge.markers import FIXTURE_KEYWORDS
from pytest_torchbridge.settings import settings


@pytest.fixture
def tb_check_case() -> None:
    """Parametrized by collection with one case per TorchBridge check (``None`` = the body)."""
    return None


@pytest.fixture(scope="session")
def tb_hardware() -> Any:
    """The detected hardware (:class:`torchbridge.hardware.HardwareInfo`)."""
    from torchbridge.hardware import detect

    return detect()


@pytest.fixture
def tb_device(request: pytest.FixtureRequest) -> str:
    """The device this test's checks run on (``"cpu"``, ``"cuda:0"``, ...).

    With several ``--tb-hardware`` devices it is the first; under xdist each worker gets
    its own GPU unless ``--tb-gpu-pinning=off``.
    """
    case = check_case(request.node)
    device = case.device if case is not None else session_devices(request.config)[0]
    return runtime_device(request.config, device)


class TbChecks:
    """The imperative API: one method per check, same arguments as the marker.

    Example::

        def test_fast_enough(tb_checks, model, sample_input):
            result = tb_checks.latency(model, sample_input, p99="20ms")
            assert result.metrics["p99_ms"].value > 0

    A failed check fails the test the same way its marker item would.
    """

    def __init__(self, request: pytest.FixtureRequest, device: str) -> None:
        self._request = request
        self.device = device

    def __getattr__(self, check: str) -> Callable[..., Any]:
        if check.startswith("_"):
            raise AttributeError(check)

        def run(model: Any, sample_input: Any, *args: Any, **kwargs: Any) -> Any:
            return self.run(check, model, sample_input, *args, **kwargs)

        run.__name__ = check
        return run

    def run(self, check: str, model: Any, sample_input: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``check`` on ``model``/``sample_input``; return its ``CheckResult``."""
        from torchbridge.checks import execute, registry

        fixtures = {k: str(kwargs.pop(k)) for k in list(kwargs) if k in FIXTURE_KEYWORDS}
        config = registry.parse_config(check, args, kwargs)
        item = self._request.node
        opts = settings(item.config)
        subject = build_subject(self._request, self.device, fixtures, opts, model, sample_input)
        result = execute(registry.get(check), subject, config, run_context(item, opts))
        record(item, result)
        return conclude(result)


@pytest.fixture
def tb_checks(request: pytest.FixtureRequest, tb_device: str) -> TbChecks:
    """Run TorchBridge checks from inside a test; see :class:`TbChecks`."""
    return TbChecks(request, tb_device)
