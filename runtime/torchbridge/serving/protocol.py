"""uvicorn's HTTP protocol with the limits a model server needs before any route runs.

uvicorn (0.54) bounds neither the time a client takes to send its request headers nor the
number of open connections, and answers the requests it cannot parse with ``text/plain``.
:class:`GuardedHttpToolsProtocol` (the ``httptools`` protocol, uvicorn's fastest) adds:

* a header deadline: from the connection's first byte (or the start of a pipelined or
  keep-alive request) to the end of its headers, ``read_timeout_s``; past it the client
  gets a JSON 408 and the connection is closed (the body's deadline is the middleware's);
* a connection limit: past ``max_connections`` open connections, a new one gets a JSON 503
  with ``Retry-After`` and is closed at once;
* a header size limit: a request line plus headers over :data:`MAX_HEADER_BYTES` get a
  JSON 431 and the connection is closed (httptools buffers headers without a bound);
* JSON bodies (``{"error": ...}``) for uvicorn's own 400 (unparsable request, e.g.
  ``Content-Length: 1e20`` or bytes not allowed in a header).

All of this happens before authentication. The settings come from the app's
``ServerConfig``; :func:`torchbridge.serving.server.uvicorn_config` installs the class.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}
#: most bytes a request line plus headers may take (nginx's default buffers hold 32 KiB);
#: httptools itself has no limit, so without one a client streams headers into memory
MAX_HEADER_BYTES = 64 * 1024


def json_error_bytes(status: int, message: str, extra: tuple[bytes, ...] = ()) -> bytes:
    """A complete HTTP/1.1 response with a JSON error body that closes the connection."""
    body = orjson.dumps({"error": message})
    head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n", *extra, b"\r\n"]
    return b"".join(head) + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring. Limits: class attributes set by :func:`guarded`."""

    read_timeout_s: float = 10.0
    max_connections: int = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = False
        self._messages = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(json_error_bytes(
                503, f"too many open connections (limit {self.max_connections})",
                (b"retry-after: 1\r\n",)))
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.read_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(json_error_bytes(
                408, f"request headers not received within {self.read_timeout_s:g} s"))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        # A keep-alive connection's next request starts its own header deadline.
        if self.cycle is None or self.cycle.response_complete:
            self._arm()
        # A chunk read wholly inside one request's headers counts in full (httptools
        # buffers a header value until it ends, so the callbacks alone would not see it).
        inside, message = self._in_headers, self._messages
        try:
            super().data_received(data)
        except Exception as exc:  # an unparsable request, whatever raised
            # uvicorn catches httptools' own errors; one that escapes (a re-imported
            # httptools whose error classes differ, as pytester's module snapshots make)
            # would otherwise close the connection with no answer at all.
            if not self.transport.is_closing():
                self.send_400_response(f"Invalid HTTP request received ({type(exc).__name__})")
            return
        if inside and self._in_headers and message == self._messages:
            self._header_bytes += len(data)
        # Request line and headers past the limit (a body does not count, a pipelined
        # request's headers do): refuse now.
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._disarm()
            self.transport.write(json_error_bytes(
                431, f"request line and headers exceed {MAX_HEADER_BYTES} bytes"))
            self.transport.close()

    def on_message_begin(self) -> None:
        # Every request, a pipelined one too, gets its header deadline and byte count.
        super().on_message_begin()
        self._header_bytes = 0
        self._in_headers = True
        self._messages += 1
        self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle keep-alive is uvicorn's timeout_keep_alive

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(json_error_bytes(400, msg))
        self.transport.close()


def guarded(read_timeout_s: float, max_connections: int) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with these limits (one class per server configuration)."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"read_timeout_s": read_timeout_s, "max_connections": max_connections})
