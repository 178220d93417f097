"""``--watch``: poll a deployment's ``/metrics`` for a while and fail as soon as its error
rate or its p99 latency, computed from the server's own counters and histograms since
the watch began, crosses a threshold — the checklist's "monitor metrics for 15-30
minutes" step as a command that can gate a rollout.

Statistics are deltas between the first scrape and the latest, so traffic before the
watch (or the watch's own scrapes) does not count. The p99 is interpolated inside the
histogram bucket the way Prometheus' ``histogram_quantile`` does it. Probe and metrics
endpoints are left out of both numbers.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torchbridge.smoke.client import Client, RequestFailed
from torchbridge.smoke.result import SmokeReport, Step

#: metric names of the TorchBridge server (torchbridge.serving.metrics)
LATENCY_METRIC = "torchbridge_request_duration_seconds"
REQUESTS_METRIC = "torchbridge_requests"
IGNORED_ENDPOINTS = frozenset({"/health", "/ready", "/metrics", "/v2/health/live",
                               "/v2/health/ready", "/v2/models/{name}/ready"})


@dataclass(frozen=True)
class WatchConfig:
    """How long and how often to poll, and the thresholds that fail the watch."""

    duration_s: float
    interval_s: float = 30.0
    max_error_rate: float = 0.01
    max_p99_s: float | None = None
    min_requests: int = 10
    error_statuses: tuple[str, ...] = ("5",)
    latency_metric: str = LATENCY_METRIC
    requests_metric: str = REQUESTS_METRIC


@dataclass
class Scrape:
    """Cumulative counts from one scrape: requests by status, latency buckets by bound."""

    requests: dict[str, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    """Traffic between two scrapes."""

    requests: float
    errors: float
    p99_s: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def _counts(text: str, config: WatchConfig) -> tuple[Scrape, set[str]]:
    from prometheus_client.parser import text_string_to_metric_families

    scrape = Scrape()
    requests: dict[str, float] = defaultdict(float)
    buckets: dict[float, float] = defaultdict(float)
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            if sample.labels.get("endpoint") in IGNORED_ENDPOINTS:
                continue
            if sample.name == f"{config.requests_metric}_total":
                requests[sample.labels.get("status", "")] += sample.value
            elif sample.name == f"{config.latency_metric}_bucket":
                buckets[float(sample.labels["le"])] += sample.value
    scrape.requests, scrape.buckets = dict(requests), dict(buckets)
    return scrape, names


def parse_metrics(text: str, config: WatchConfig) -> Scrape:
    """Request counts by status and summed latency buckets from Prometheus text.

    A server that has not answered an inference request yet has the histogram without
    samples for it; a server without the histogram at all is not one we can watch."""
    scrape, names = _counts(text, config)
    if config.latency_metric not in names:
        raise RequestFailed(f"/metrics has no histogram {config.latency_metric!r}; is this a "
                            "TorchBridge server? Name the histogram with --latency-metric")
    return scrape


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``buckets`` (upper bound → count), interpolated
    linearly inside its bucket; ``None`` without observations. A quantile in the ``+Inf``
    bucket answers the largest finite bound, as Prometheus does."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / \
                (count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_bound


def window(first: Scrape, last: Scrape, config: WatchConfig) -> Window:
    """Traffic, errors and p99 between two scrapes."""
    delta = {status: last.requests.get(status, 0.0) - first.requests.get(status, 0.0)
             for status in last.requests}
    requests = sum(delta.values())
    errors = sum(n for status, n in delta.items() if status.startswith(config.error_statuses))
    buckets = {bound: last.buckets.get(bound, 0.0) - first.buckets.get(bound, 0.0)
               for bound in last.buckets}
    return Window(requests, errors, histogram_quantile(0.99, buckets))


def judge(current: Window, config: WatchConfig) -> str | None:
    """Why the window crosses a threshold, or ``None``."""
    if current.requests < config.min_requests:
        return None
    if current.error_rate > config.max_error_rate:
        return (f"error rate {current.error_rate:.2%} ({current.errors:.0f} of "
                f"{current.requests:.0f} requests) exceeds {config.max_error_rate:.2%}")
    if config.max_p99_s is not None and current.p99_s is not None and \
            current.p99_s > config.max_p99_s:
        return (f"p99 {current.p99_s * 1e3:.3g} ms over {current.requests:.0f} requests "
                f"exceeds {config.max_p99_s * 1e3:.3g} ms")
    return None


def _describe(current: Window) -> str:
    p99 = f"{current.p99_s * 1e3:.3g} ms" if current.p99_s is not None else "n/a"
    return (f"{current.requests:.0f} requests, error rate {current.error_rate:.2%}, "
            f"p99 {p99}")


def watch(url: str, config: WatchConfig, api_key: str | None = None,
          on_poll: Callable[[float, Window], None] | None = None,
          sleep: Callable[[float], Any] = time.sleep) -> SmokeReport:
    """Poll ``url``/metrics every ``interval_s`` for ``duration_s``; fail at the first
    window whose error rate or p99 crosses its threshold."""
    report = SmokeReport(url)
    start = time.monotonic()
    with Client(url, api_key) as client:
        try:
            first = last = _scrape(client, config)
        except RequestFailed as exc:
            report.steps.append(Step("watch", False, str(exc)))
            return report
        polls = 0
        while time.monotonic() - start < config.duration_s:
            sleep(min(config.interval_s, max(0.0, config.duration_s -
                                             (time.monotonic() - start))))
            try:
                last = _scrape(client, config)
            except RequestFailed as exc:
                report.steps.append(Step("watch", False, f"after {polls} poll(s): {exc}"))
                return report
            polls += 1
            current = window(first, last, config)
            if on_poll is not None:
                on_poll(time.monotonic() - start, current)
            reason = judge(current, config)
            if reason:
                report.steps.append(Step("watch", False, f"after "
                                         f"{time.monotonic() - start:.0f} s: {reason}",
                                         _data(current)))
                return report
    final = window(first, last, config)
    text = f"{config.duration_s:.0f} s, {polls} poll(s): {_describe(final)}"
    if final.requests < config.min_requests:  # thresholds never applied: not a pass
        step = Step.not_exercised("watch", f"{text}: fewer than {config.min_requests} "
                                           "requests, so no threshold was applied; send "
                                           "traffic or lower --min-requests")
        step.data = _data(final)
        report.steps.append(step)
        return report
    report.steps.append(Step("watch", True, text, _data(final)))
    return report


def _scrape(client: Client, config: WatchConfig) -> Scrape:
    response = client.get("/metrics")
    if response.status_code != 200:
        raise RequestFailed(f"GET {client.url}/metrics answered {response.status_code}: "
                            f"{response.text[:200]}")
    return parse_metrics(response.text, config)


def _data(current: Window) -> dict[str, Any]:
    return {"requests": current.requests, "errors": current.errors,
            "error_rate": current.error_rate, "p99_s": current.p99_s}
