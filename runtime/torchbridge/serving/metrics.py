"""Prometheus metrics of one server, in its own registry.

Names follow the conventions people already query (BentoML's ``*_request_duration_seconds``
histogram and ``*_request_in_progress``; Triton's queue duration, pending request count and
GPU utilisation), under the ``torchbridge_`` prefix. Histograms, not averages, so p50/p95/p99
and 4xx/5xx rates can be computed in PromQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from torchbridge.serving.errors import failure_reason

log = logging.getLogger("torchbridge.serving")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """Every metric the server exports; ``render()`` gives the text exposition format."""

    def __init__(self, model_name: str, model_version: str, weights_sha256: str,
                 queue_depth: Any, device: str = "cpu") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.request_duration = Histogram(
            "torchbridge_request_duration_seconds", "Time from request to response, by endpoint",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=reg)
        self.queue_duration = Histogram(
            "torchbridge_queue_duration_seconds", "Time a request waited in the batching queue",
            buckets=LATENCY_BUCKETS, registry=reg)
        self.inference_duration = Histogram(
            "torchbridge_inference_duration_seconds", "Time of one batched forward pass",
            buckets=LATENCY_BUCKETS, registry=reg)
        self.batch_size = Histogram(
            "torchbridge_batch_size", "Rows per executed batch", buckets=BATCH_BUCKETS,
            registry=reg)
        self.requests = Counter(
            "torchbridge_requests", "Requests answered, by endpoint and HTTP status",
            ["endpoint", "status"], registry=reg)
        self.dropped = Counter(
            "torchbridge_requests_dropped", "Requests dropped before compute, by reason",
            ["reason"], registry=reg)
        self.inference_failures = Counter(
            "torchbridge_inference_failures", "Forward passes that raised, by exception type",
            ["reason"], registry=reg)
        self.batch_fallbacks = Counter(
            "torchbridge_batch_fallbacks", "Batches that raised and were re-run one request "
            "at a time (their requests did not run batched)", registry=reg)
        self.time_to_first_token = Histogram(
            "torchbridge_generate_time_to_first_token_seconds",
            "Time from a /generate request's arrival to its first token",
            buckets=LATENCY_BUCKETS, registry=reg)
        self.inter_token = Histogram(
            "torchbridge_generate_inter_token_seconds",
            "Time between two successive tokens of one /generate request",
            buckets=LATENCY_BUCKETS, registry=reg)
        self.in_progress = Gauge(
            "torchbridge_request_in_progress", "Requests being handled now", registry=reg)
        self.queue_depth = Gauge(
            "torchbridge_queue_depth", "Requests waiting in the batching queue (pending)",
            registry=reg)
        self.queue_depth.set_function(queue_depth)
        Info("torchbridge_model", "The model being served", registry=reg).info(
            {"name": model_name, "version": model_version, "sha256": weights_sha256 or "",
             "device": device})
        reg.register(GpuCollector())
        self._request_children: dict[tuple[str, str], Any] = {}
        self._duration_children: dict[str, Any] = {}

    # Hot path: label lookups are cached, so each request costs a few dict hits.
    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, str(status))
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(*key)
        child.inc()
        duration = self._duration_children.get(endpoint)
        if duration is None:
            duration = self._duration_children[endpoint] = \
                self.request_duration.labels(endpoint)
        duration.observe(seconds)

    def on_batch(self, rows: int, queued: Sequence[float], inference_s: float) -> None:
        """One forward pass of ``rows`` rows (a batch re-run request by request counts as
        one pass per request)."""
        self.batch_size.observe(rows)
        self.inference_duration.observe(inference_s)
        self.on_queued(queued)

    def on_queued(self, queued: Sequence[float]) -> None:
        for seconds in queued:
            self.queue_duration.observe(seconds)

    def on_fallback(self, requests: int) -> None:
        self.batch_fallbacks.inc()

    def on_drop(self, reason: str) -> None:
        self.dropped.labels(reason).inc()

    def on_failure(self, exc: BaseException) -> None:
        self.inference_failures.labels(failure_reason(exc)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class GpuCollector(Collector):
    """GPU utilisation and memory from NVML at scrape time; nothing when NVML is absent."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._tried = False

    def _init(self) -> Any:
        if not self._tried:
            self._tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception as exc:  # no driver, no GPU, or no nvidia-ml-py: not an error
                log.debug("NVML unavailable, GPU metrics off: %s", exc)
        return self._nvml

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        nvml = self._init()
        if nvml is None:
            return
        util = GaugeMetricFamily("torchbridge_gpu_utilization_ratio",
                                 "GPU busy fraction over the last sample period", labels=["gpu"])
        used = GaugeMetricFamily("torchbridge_gpu_memory_used_bytes", "GPU memory in use",
                                 labels=["gpu"])
        total = GaugeMetricFamily("torchbridge_gpu_memory_total_bytes", "GPU memory in total",
                                  labels=["gpu"])
        errors = CounterMetricFamily("torchbridge_gpu_nvml_errors", "NVML queries that failed")
        failures = 0
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception:
                failures += 1
                continue
            util.add_metric([str(index)], rates.gpu / 100.0)
            used.add_metric([str(index)], float(memory.used))
            total.add_metric([str(index)], float(memory.total))
        errors.add_metric([], failures)
        yield from (util, used, total, errors)
