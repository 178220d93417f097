"""A small HTTP client for the smoke test: API key, timeouts, and errors that say what
failed (connection refused, timeout, a non-2xx answer with its body)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from torchbridge.errors import TorchBridgeError


class RequestFailed(TorchBridgeError):
    """A request could not be made or was answered with an error status."""


class Client:
    """``httpx.Client`` bound to one deployment's base URL."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 10.0,
                 headers: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s,
                                  headers={**auth, **(headers or {})})

    def get(self, path: str) -> httpx.Response:
        try:
            return self._http.get(path)
        except httpx.HTTPError as exc:
            raise RequestFailed(f"GET {self.url}{path}: {type(exc).__name__}: {exc}") from None

    def post_json(self, path: str, body: Any) -> Any:
        """POST ``body`` as JSON; the decoded response, or :class:`RequestFailed`."""
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise RequestFailed(f"POST {self.url}{path}: {type(exc).__name__}: {exc}") \
                from None
        if response.status_code != 200:
            raise RequestFailed(f"POST {self.url}{path} answered {response.status_code}: "
                                f"{response.text[:300]}")
        try:
            return response.json()
        except ValueError:
            raise RequestFailed(f"POST {self.url}{path}: the answer is not JSON: "
                                f"{response.text[:200]!r}") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
