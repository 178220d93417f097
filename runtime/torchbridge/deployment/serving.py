"""The production checklist's spelling of the server API.

``from torchbridge.deployment.serving import ServerConfig, create_fastapi_server, run_server``
is the same as importing them from :mod:`torchbridge.serving`.
"""

from __future__ import annotations

from torchbridge.serving import ServerConfig, ServerThread, create_fastapi_server, run_server

__all__ = ["ServerConfig", "ServerThread", "create_fastapi_server", "run_server"]
