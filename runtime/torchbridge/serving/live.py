"""A live server for tests and checks: the real app on real uvicorn, on loopback.

Example::

    with LiveServer(model, sample_input=x) as server:
        r = server.client.post("/predict", json={"inputs": x.tolist()})
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from torchbridge.core.subject import InputSpec
from torchbridge.serving.app import create_fastapi_server, serving_state
from torchbridge.serving.config import ServerConfig
from torchbridge.serving.server import ServerThread
from torchbridge.serving.state import ServingState


class LiveServer:
    """Build the app, serve it on 127.0.0.1 with an ephemeral port, wait until ready.

    ``client`` is an ``httpx.Client`` with ``base_url`` set; ``url`` the base URL;
    ``state`` the server's :class:`ServingState` (queue, metrics) for white-box checks.
    """

    def __init__(self, model: Any, sample_input: Any = None, config: ServerConfig | None = None,
                 *, input_spec: InputSpec | Mapping[str, Any] | None = None,
                 ready_timeout: float = 60.0,
                 headers: Mapping[str, str] | None = None, verify: Any = True) -> None:
        self.config = config or ServerConfig()
        self.app = create_fastapi_server(model, self.config, sample_input=sample_input,
                                         input_spec=input_spec)
        self.state: ServingState = serving_state(self.app)
        self._thread = ServerThread(self.app, ssl_certfile=self.config.ssl_certfile,
                                    ssl_keyfile=self.config.ssl_keyfile,
                                    grace_period_s=self.config.grace_period_s)
        self.url = self._thread.url
        self._ready_timeout = ready_timeout
        self._headers = dict(headers or {})
        self._verify = verify
        self.client: Any = None

    def start(self) -> LiveServer:
        import httpx

        self._thread.start()
        self.client = httpx.Client(base_url=self.url, headers=self._headers, timeout=30.0,
                                   verify=self._verify)
        deadline = time.monotonic() + self._ready_timeout
        while not self.state.ready:
            if time.monotonic() > deadline or "failed" in self.state.not_ready_reason \
                    or self.state.failed:
                reason = self.state.not_ready_reason
                self.stop()
                raise RuntimeError(f"server did not become ready: {reason}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self._thread.stop()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
