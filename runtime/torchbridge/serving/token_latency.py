"""Time to first token and inter-token latency of ``/generate``, measured as a client sees it.

For the ``@tb.serving`` check on language models (and for anyone timing a live server)::

    from torchbridge.serving.token_latency import measure_token_latency

    latency = measure_token_latency(server.client, [[1, 2, 3]], max_new_tokens=16, requests=8)
    latency.metrics()   # {"ttft_p50_ms": ..., "ttft_p99_ms": ..., "itl_p50_ms": ..., ...}

Each request streams server-sent events (``"stream": true``); the time to first token runs
from sending the request to the first ``data:`` event, the inter-token latency between two
successive ``data:`` events of one request. Requests run one after another, so the numbers
are those of an unloaded server. The server also exports both as histograms on
``/metrics`` (``torchbridge_generate_time_to_first_token_seconds``,
``torchbridge_generate_inter_token_seconds``), measured from the request's arrival.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torchbridge.measure.stats import percentile


class StreamFailed(RuntimeError):
    """``/generate`` did not stream tokens: a non-200 answer or an ``error`` event."""


@dataclass
class TokenLatency:
    """Samples in seconds: one time to first token per request, and every gap between two
    successive tokens of a request."""

    ttft_s: list[float] = field(default_factory=list)
    inter_token_s: list[float] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """p50/p99 in milliseconds: ``ttft_p50_ms``, ``ttft_p99_ms``, ``itl_p50_ms``,
        ``itl_p99_ms`` (the inter-token pair is absent when every request produced one
        token)."""
        out: dict[str, float] = {}
        for label, samples in (("ttft", self.ttft_s), ("itl", self.inter_token_s)):
            if samples:
                ordered = sorted(samples)
                out[f"{label}_p50_ms"] = percentile(ordered, 0.50) * 1000.0
                out[f"{label}_p99_ms"] = percentile(ordered, 0.99) * 1000.0
        return out


def measure_token_latency(client: Any, input_ids: Sequence[Sequence[int]] | Sequence[int],
                          max_new_tokens: int = 16, requests: int = 8,
                          headers: Mapping[str, str] | None = None) -> TokenLatency:
    """Stream ``requests`` generations from ``client`` (an ``httpx.Client`` whose
    ``base_url`` is the server) and time their tokens.

    Raises :class:`StreamFailed` when the server answers other than 200 or streams an
    ``error`` event, and ``ValueError`` for ``requests < 1``.
    """
    if requests < 1:
        raise ValueError("requests must be at least 1")
    result = TokenLatency()
    body = {"input_ids": list(input_ids), "max_new_tokens": max_new_tokens, "stream": True}
    for _ in range(requests):
        _one(client, body, dict(headers or {}), result)
    return result


def _one(client: Any, body: dict[str, Any], headers: dict[str, str],
         result: TokenLatency) -> None:
    start = time.perf_counter()
    last: float | None = None
    event = "message"
    with client.stream("POST", "/generate", json=body, headers=headers) as response:
        if response.status_code != 200:
            response.read()
            raise StreamFailed(f"/generate answered {response.status_code}: "
                               f"{response.text[:200]}")
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                if event == "error":
                    raise StreamFailed(f"/generate streamed an error: {line[5:].strip()}")
                if event == "message":
                    now = time.perf_counter()
                    if last is None:
                        result.ttft_s.append(now - start)
                    else:
                        result.inter_token_s.append(now - last)
                    last = now
            elif not line:
                event = "message"


__all__ = ["StreamFailed", "TokenLatency", "measure_token_latency"]
