"""Error responses and access control: JSON error bodies, API keys with roles, rate limits.

Every error is ``{"error": "..."}`` with a status a client can act on: 400/422 bad input,
401 missing or wrong key, 403 key without the role, 413 body too large, 429 rate limit,
503 overload or not ready (both with Retry-After), 504 deadline, 500 model failure.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

import orjson
from starlette.responses import Response


class ApiError(Exception):
    """An HTTP error with a JSON body ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class OutputInvalid(ApiError):
    """The model's output cannot be answered truthfully: a non-finite number, a batch output
    whose row count differs from the request's. A 500 naming the output; ``reason`` labels
    the ``torchbridge_inference_failures`` counter (``non_finite``, ``row_count``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(500, message)
        self.reason = reason


class ModelFault(Exception):
    """The model raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, ``GeneratorExit`` or a custom one): contained as a failed request
    so that it cannot end the worker thread."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"the model raised {type(exc).__name__}")
        self.reason = type(exc).__name__


def failure_reason(exc: BaseException) -> str:
    """The label of a failed request for answers, logs and the failures counter: the
    ``reason`` of the server's own exceptions (``non_finite``, ``row_count``, the type a
    contained ``SystemExit`` had, ...), otherwise the exception's type name. A model's own
    exception may carry a ``reason`` attribute too (``UnicodeDecodeError`` does), which can
    quote inputs and is unbounded as a metric label, so it is never used."""
    if "OutOfMemory" in type(exc).__name__:
        return "oom"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason and \
            type(exc).__module__.startswith("torchbridge.serving."):
        return reason
    return type(exc).__name__


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def error_response(exc: Exception) -> Response:
    """The JSON error response for an :class:`ApiError` or an ``InvalidInput``."""
    if isinstance(exc, ApiError):
        return Response(error_body(exc.message), status_code=exc.status,
                        media_type="application/json", headers=exc.headers)
    status = getattr(exc, "status", 422)
    return Response(error_body(str(exc)), status_code=status, media_type="application/json")


def overloaded(message: str, retry_after: float = 1.0) -> ApiError:
    return ApiError(503, message, {"Retry-After": str(max(1, math.ceil(retry_after)))})


class KeyRing:
    """API keys and their roles, checked in constant time.

    Every stored key is compared (``hmac.compare_digest`` on sha256 digests of equal
    length), so the time taken does not reveal how much of a guess matched nor which key
    it resembled. The keys themselves are never logged; :meth:`key_id` gives a short
    digest for logs and audit records.
    """

    def __init__(self, keys: Mapping[str, tuple[str, ...]]) -> None:
        self._entries = [(hashlib.sha256(k.encode()).digest(), frozenset(roles))
                         for k, roles in keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def roles(self, presented: str | None) -> frozenset[str] | None:
        """The roles of ``presented``, or ``None`` when it matches no key."""
        if presented is None:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found: frozenset[str] | None = None
        for stored, roles in self._entries:
            if hmac.compare_digest(stored, digest):
                found = roles
        return found

    @staticmethod
    def key_id(presented: str) -> str:
        return hashlib.sha256(presented.encode()).hexdigest()[:12]


def presented_key(headers: Mapping[bytes, bytes]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    value = headers.get(b"authorization")
    if value is not None:
        scheme, _, token = value.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    value = headers.get(b"x-api-key")
    return value.decode("latin-1").strip() if value else None


class RateLimiter:
    """A token bucket per identity (API key digest or client address).

    ``rate`` tokens per second refill up to ``burst``; each request takes one. Buckets of
    identities not seen for a while are evicted so the table stays bounded.
    """

    def __init__(self, rate: float, burst: float, max_identities: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self._max = max_identities
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, identity: str, now: float | None = None) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(identity, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[identity] = (tokens, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return wait
