"""The TorchBridge model server: FastAPI on uvicorn with dynamic batching.

Example::

    from torchbridge.serving import ServerConfig, create_fastapi_server, run_server

    app = create_fastapi_server(model, ServerConfig(max_batch_size=32, max_batch_delay_ms=2,
                                                    timeout_seconds=30,
                                                    api_keys_file="keys.txt"),
                                sample_input=torch.randn(1, 256))
    run_server(app, host="127.0.0.1", port=8000)

Importing this package needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client,
orjson): ``pip install 'pytest-torchbridge[serve]'``.
"""

from __future__ import annotations

from torchbridge.serving.app import create_fastapi_server, serving_state
from torchbridge.serving.config import ServerConfig
from torchbridge.serving.server import ServerThread, run_server

__all__ = ["ServerConfig", "ServerThread", "create_fastapi_server", "run_server",
           "serving_state"]
