"""Running the app: ``run_server`` (blocking, with graceful SIGTERM) and ``ServerThread``.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets requests already received
finish (up to the grace period), then runs the app's shutdown, which finishes every queued
request before the batching worker ends. No request that got in is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Any

from torchbridge.errors import ConfigError
from torchbridge.serving.logging import configure_json_logging

log = logging.getLogger("torchbridge.serving")


class WorkerDied(RuntimeError):
    """The server stopped because its inference worker died; the process must exit
    non-zero so that an orchestrator restarts it."""


def _uvicorn_config(app: Any, host: str, port: int, ssl_certfile: str | None,
                    ssl_keyfile: str | None, grace_period_s: float | None,
                    log_level: str) -> Any:
    """uvicorn's settings for ``app``, with the limits of its ``ServerConfig``: the guarded
    protocol (header deadline, connection limit, JSON 400s), forwarded headers believed
    only from ``trusted_proxies``."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serving needs uvicorn: pip install 'pytest-torchbridge[serve]'") \
            from None
    state = getattr(getattr(app, "state", None), "tb", None)
    config = state.config if state is not None else None
    if grace_period_s is None:
        grace_period_s = config.grace_period_s if config is not None else 30.0
    read_timeout = config.read_timeout_s if config is not None else 10.0
    connections = config.max_connections if config is not None else 1024
    proxies = list(config.trusted_proxies) if config is not None else []
    return uvicorn.Config(
        app, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=int(max(1, round(grace_period_s))), lifespan="on",
        http=_protocol(read_timeout, connections),
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default, which lets any local
        # client rotate its address past the rate limit.
        proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None,
        timeout_keep_alive=max(1, min(5, int(read_timeout))),
        # Our middleware writes one structured line per request; uvicorn's would repeat it.
        access_log=False, log_level=log_level, log_config=None, server_header=False)


def _protocol(read_timeout_s: float, max_connections: int) -> Any:
    try:
        from torchbridge.serving.protocol import guarded
    except ImportError:  # no httptools: uvicorn's h11 protocol, without these limits
        log.warning("httptools is not installed: request header deadline and connection "
                    "limit are off (pip install httptools)")
        return "h11"
    return guarded(read_timeout_s, max_connections)


def tune_process(torch_threads: int | None = None, switch_interval_s: float = 2e-4) -> None:
    """Process-wide settings for a dedicated server process.

    * PyTorch's intra-op pool gets one core fewer than the machine has, so the event loop
      keeps a core: with every core in the pool, OpenMP's spinning threads starve the loop
      and a batch that takes 0.3 ms alone takes tens of milliseconds.
    * The GIL switch interval drops from 5 ms to 0.2 ms: the event loop and the batching
      worker hand the GIL back and forth once per batch, and at 5 ms each hand-over can
      cost a whole interval while the loop is busy.

    Called by :func:`run_server` and ``tb-serve``; not by :func:`create_fastapi_server`,
    so embedding the app in another process changes nothing there. An operator's
    ``OMP_NUM_THREADS`` wins over the default.
    """
    import torch

    if torch_threads is None and not os.environ.get("OMP_NUM_THREADS"):
        torch_threads = max(1, (os.cpu_count() or 2) - 1)
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    sys.setswitchinterval(switch_interval_s)


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000,
               ssl_certfile: str | None = None, ssl_keyfile: str | None = None, *,
               grace_period_s: float | None = None, log_level: str = "info",
               torch_threads: int | None = None, tune: bool = True) -> None:
    """Serve ``app`` with uvicorn until SIGTERM/SIGINT, then shut down gracefully.

    Binds 127.0.0.1 unless ``host`` says otherwise (``0.0.0.0`` in a container, behind
    API keys). With ``ssl_certfile`` and ``ssl_keyfile`` it serves HTTPS only. Logs go
    to stderr as JSON lines. ``tune`` applies :func:`tune_process` (``torch_threads``
    defaults to one fewer than the CPU count).
    """
    import uvicorn

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("TLS needs both ssl_certfile and ssl_keyfile")
    configure_json_logging()
    if tune:
        tune_process(torch_threads)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: the server is reachable from other machines; keep API keys "
                    "on", host)
    server = uvicorn.Server(_uvicorn_config(app, host, port, ssl_certfile, ssl_keyfile,
                                            grace_period_s, log_level))
    state = getattr(getattr(app, "state", None), "tb", None)
    fatal: list[str] = []
    if state is not None:
        def stop(reason: str) -> None:  # from the worker thread; uvicorn polls the flag
            fatal.append(reason)
            log.critical("%s; shutting down so that the process can be restarted", reason)
            server.should_exit = True

        state.on_fatal = stop
    server.run()
    if fatal:
        raise WorkerDied(fatal[0])


class ServerThread:
    """The real uvicorn server on 127.0.0.1 and an ephemeral port, in a background thread.

    For tests and checks in one process::

        with ServerThread(app) as server:
            httpx.get(server.url + "/health")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                 grace_period_s: float | None = 5.0, startup_timeout: float = 30.0) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        scheme = "https" if ssl_certfile else "http"
        self.url = f"{scheme}://{host}:{self.port}"
        self._server = uvicorn.Server(_uvicorn_config(app, host, self.port, ssl_certfile,
                                                      ssl_keyfile, grace_period_s, "warning"))
        self._startup_timeout = startup_timeout
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="tb-server", daemon=True)

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {self._error!r}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop: in-flight and queued requests finish first."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
