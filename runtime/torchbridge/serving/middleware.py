"""The ASGI layer in front of every route: request ids, access control, limits, metrics, logs.

A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which costs a task and a
stream per request). For each request it

* assigns the request id (the client's ``X-Request-ID`` if sane) and adds ``X-Request-ID``
  and ``X-Model-Version`` to the response;
* checks, before anything else, the ``Host`` header (400; keyless servers only, unless
  ``allowed_hosts`` is set), then the API key and the role the route needs from the one
  route table, :mod:`torchbridge.serving.routes` (401 / 403; unknown paths need ``admin``),
  the per-key rate limit (429 with Retry-After), a declared ``Content-Length`` over the
  limit (413) and, on keyless servers, a POST body type a web page cannot send (415);
* bounds the time to receive the request body (``read_timeout_s``, within the request's
  deadline): 408, and the connection is closed;
* turns an unhandled exception into a JSON 500 so the server keeps serving;
* records request metrics, one structured log line, and an audit record for inference.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from torchbridge.serving.errors import ApiError, error_body, error_response, presented_key
from torchbridge.serving.logging import access_log, log_exception, request_id
from torchbridge.serving.routes import INFERENCE_ENDPOINTS, classify
from torchbridge.serving.schemas import InvalidInput

if TYPE_CHECKING:
    from torchbridge.serving.state import ServingState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("torchbridge.serving")

#: the v2 binary tensor data extension's header: a web page cannot send it without a
#: CORS preflight, which this server never grants
BINARY_HEADER = b"inference-header-content-length"


class RequestInfo:
    """What a route tells the middleware about a request, for logs and the audit record."""

    __slots__ = ("deadline", "endpoint", "inputs", "key_id", "note", "request_id", "rows",
                 "start")

    def __init__(self, rid: str, endpoint: str, start: float) -> None:
        self.request_id = rid
        self.endpoint = endpoint
        self.start = start
        self.deadline = math.inf
        self.inputs: Any = None
        self.rows = 0
        self.key_id: str | None = None
        self.note: str | None = None


class FastHandler:
    """An inference endpoint served straight from the middleware (see ``fast_routes``)."""

    __slots__ = ("endpoint", "params")

    def __init__(self, endpoint: Callable[..., Awaitable[Any]], params: dict[str, str]) -> None:
        self.endpoint = endpoint
        self.params = params


class ServingMiddleware:
    """See the module docstring. ``state`` holds the config, keys, limiter and metrics.

    ``fast_routes`` maps (method, path) of the inference endpoints to their handlers,
    which the middleware calls directly: the same functions FastAPI routes to (and
    documents), minus the routing table, exception middleware and exit stacks, which cost
    as much per request as the rest of the request path together.
    """

    def __init__(self, app: ASGIApp, state: ServingState,
                 fast_routes: Mapping[tuple[str, str], FastHandler] | None = None) -> None:
        self.app = app
        self.state = state
        self.fast = fast_routes if fast_routes is not None else {}
        self._version = state.config.model_version.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        start = time.monotonic()
        headers = dict(scope["headers"])
        endpoint, role = classify(scope["path"])
        rid = request_id(headers.get(b"x-request-id"))
        info = RequestInfo(rid, endpoint, start)
        scope["tb"] = info
        status = [0]
        extra = [(b"x-request-id", rid.encode()), (b"x-model-version", self._version)]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        state.metrics.in_progress.inc()
        try:
            refusal = self._admit(scope, headers, role, info)
            fast = self.fast.get((scope["method"], scope["path"]))
            if refusal is None and scope["method"] in ("POST", "PUT", "PATCH"):
                receive = self._bounded(receive, start)
            if refusal is not None:
                await respond(send_with_headers, refusal)
            elif fast is not None:
                await self._direct(fast, scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            log_exception(log, f"unhandled error in {scope['path']} (request {rid})", exc,
                          state.config.log_payloads)
            if status[0] == 0:
                await respond(send_with_headers, ApiError(500, f"internal error; request id "
                                                               f"{rid}"))
        finally:
            state.metrics.in_progress.dec()
            self._record(scope, info, status[0] or 500, time.monotonic() - start)

    async def _direct(self, fast: FastHandler, scope: Scope, receive: Receive, send: Send
                      ) -> None:
        try:
            response = await fast.endpoint(Request(scope, receive), **fast.params)
        except (ApiError, InvalidInput) as exc:
            response = error_response(exc)
        await response(scope, receive, send)

    def _bounded(self, receive: Receive, start: float) -> Receive:
        """``receive`` that raises ApiError 408 when the body has not arrived in
        ``read_timeout_s`` (nor by the request's deadline); later calls (waiting for a
        disconnect) are not bounded."""
        config = self.state.config
        deadline = start + min(config.read_timeout_s, config.timeout_seconds)
        done = False

        async def bounded() -> Message:
            nonlocal done
            if done:
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise ApiError(408, f"request body not received within "
                                    f"{min(config.read_timeout_s, config.timeout_seconds):g} s",
                               {"Connection": "close"}) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        # The server's request cycle, for the batcher's cheap "has the client gone?"
        bounded.cycle = getattr(receive, "__self__", None)  # type: ignore[attr-defined]
        return bounded

    def _admit(self, scope: Scope, headers: dict[bytes, bytes], role: str | None,
               info: RequestInfo) -> ApiError | None:
        state = self.state
        config = state.config
        keyless = not state.keys.enabled
        if (keyless or config.allowed_hosts is not None) and \
                not config.host_allowed(headers.get(b"host")):
            return ApiError(400, "the Host header does not name this server (set "
                                 "allowed_hosts to serve other names)")
        identity = None
        if role is not None and state.keys.enabled:
            key = presented_key(headers)
            if key is None:
                return ApiError(401, "missing API key: send 'Authorization: Bearer <key>' or "
                                     "'X-API-Key: <key>'", {"WWW-Authenticate": "Bearer"})
            roles = state.keys.roles(key)
            if roles is None:
                return ApiError(401, "invalid API key", {"WWW-Authenticate": "Bearer"})
            info.key_id = identity = state.keys.key_id(key)
            if role not in roles:
                return ApiError(403, f"this API key lacks the {role!r} role")
        if role == "infer" and state.limiter is not None:
            client = scope.get("client")
            who = identity or (client[0] if client else "anonymous")
            wait = state.limiter.take(who)
            if wait > 0:
                return ApiError(429, f"rate limit of {state.limiter.rate:g} requests/s "
                                     "exceeded", {"Retry-After": str(max(1, math.ceil(wait)))})
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return ApiError(400, "Content-Length is not a number")
            if size > state.config.max_body_bytes:
                return ApiError(413, f"body of {size} bytes exceeds the limit of "
                                     f"{state.config.max_body_bytes} bytes")
        if scope["method"] == "POST":
            return _body_type_refusal(headers, keyless)
        return None

    def _record(self, scope: Scope, info: RequestInfo, status: int, seconds: float) -> None:
        state = self.state
        state.metrics.observe_request(info.endpoint, status, seconds)
        if access_log.isEnabledFor(logging.INFO):
            record: dict[str, Any] = {
                "request_id": info.request_id, "method": scope["method"],
                "endpoint": info.endpoint, "status": status,
                "latency_ms": round(seconds * 1000.0, 3),
                "model": state.config.model_name, "model_version": state.config.model_version}
            if info.inputs is not None:
                record["inputs"] = info.inputs() if callable(info.inputs) else info.inputs
            if info.key_id is not None:
                record["key_id"] = info.key_id
            if info.note:
                record["note"] = info.note
            access_log.info("request", extra={"tb": record})
        if state.audit is not None and info.endpoint in INFERENCE_ENDPOINTS:
            state.audit.write({
                "request_id": info.request_id, "endpoint": info.endpoint, "status": status,
                "model": state.config.model_name, "model_version": state.config.model_version,
                "weights_sha256": state.config.weights_sha256, "key_id": info.key_id,
                "rows": info.rows})


def _body_type_refusal(headers: dict[bytes, bytes], keyless: bool) -> ApiError | None:
    """415 for a compressed body, and on keyless servers for any body type a web page can
    send without a CORS preflight (text/plain, forms, multipart, or none at all)."""
    encoding = headers.get(b"content-encoding", b"identity").strip().lower()
    if encoding != b"identity":
        return ApiError(415, f"Content-Encoding {encoding.decode('latin-1')!r} is not "
                             "supported; send the body uncompressed")
    if not keyless or BINARY_HEADER in headers:
        return None
    kind = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
    if kind == b"application/json":
        return None
    return ApiError(415, "send Content-Type: application/json (or a v2 binary request with "
                         "Inference-Header-Content-Length; tritonclient does either with "
                         "binary_data=True, its default); without API keys other body "
                         "types are refused so that web pages cannot post to the server")


async def respond(send: Send, error: ApiError) -> None:
    """Send ``error`` as a complete JSON response."""
    body = error_body(error.message)
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
