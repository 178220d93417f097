"""Fixtures for endpoint tests: ``tb_server`` (a live server on loopback) and its config.

Example::

    def test_predict_endpoint(tb_server, sample_input):
        r = tb_server.client.post("/predict", json={"inputs": sample_input.tolist()})
        assert r.status_code == 200

Override ``tb_server_config`` to configure the server (a ``ServerConfig``)::

    @pytest.fixture
    def tb_server_config():
        from torchbridge.serving import ServerConfig
        return ServerConfig(max_batch_size=32, api_keys={"secret-key-1": ("infer", "admin")})
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pytest_torchbridge.execution import optional_fixture, required_fixture
from pytest_torchbridge.settings import settings


@pytest.fixture
def tb_server_config() -> Any:
    """The ``ServerConfig`` for ``tb_server``; ``None`` means the defaults."""
    return None


@pytest.fixture
def tb_server(request: pytest.FixtureRequest, tb_device: str, tb_server_config: Any
              ) -> Iterator[Any]:
    """The TorchBridge server for this test's ``model`` and ``sample_input`` fixtures,
    running on 127.0.0.1 with an ephemeral port and ready (warmed up).

    ``tb_server.client`` is an ``httpx.Client`` with ``base_url`` set, ``tb_server.url``
    the base URL, ``tb_server.state`` the server's queue and metrics. The server is
    stopped gracefully when the test ends.
    """
    pytest.importorskip("fastapi", reason="tb_server needs pip install "
                                          "'pytest-torchbridge[serve]'")
    from dataclasses import replace

    from torchbridge.core.subject import to_device
    from torchbridge.serving.config import ServerConfig
    from torchbridge.serving.live import LiveServer

    opts = settings(request.config)
    model = required_fixture(request, opts.model_fixture, "model", "model_fixture")
    sample = required_fixture(request, opts.input_fixture, "sample input", "input_fixture")
    spec = optional_fixture(request, opts.spec_fixture)
    config = tb_server_config if tb_server_config is not None else ServerConfig()
    if not isinstance(config, ServerConfig):
        pytest.fail(f"tb_server_config must return a ServerConfig or None, got "
                    f"{type(config).__name__}", pytrace=False)
    if config.device != tb_device:
        config = replace(config, device=tb_device)
    with LiveServer(model, to_device(sample, tb_device), config, input_spec=spec) as server:
        yield server
