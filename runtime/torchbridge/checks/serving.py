"""``serving``: the serving checklist against the real server on loopback.

Starts the TorchBridge server (uvicorn in a thread, 127.0.0.1, ephemeral port) with the
model under test and verifies, each as a listed sub-check: liveness and readiness (the
smoke test's probes), ``/metrics`` parses as Prometheus text, ``/predict`` matches eager
PyTorch (one request, single-row requests the server ran as one batch, and — for a model
that declares ``serving_padding`` — requests of mixed lengths in one padded batch),
malformed input gets a 4xx and never a 5xx, an oversized body gets 413, API keys and
roles are enforced, a request's deadline is enforced (504, and the expired request is
dropped before compute), a full queue answers 503 with Retry-After while every queued
request still completes, and the server still answers afterwards.

Sub-checks are :class:`~torchbridge.smoke.result.Step` records, the type the post-deployment
smoke test reports. A sub-check that could not run (no batch formed, a dim with one
length) is reported as *not exercised* and fails the item: it is never listed as passed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torchbridge.checks._serving_parity import (
    Gate,
    ParityTolerance,
    batched_parity,
    like,
    padded_lengths,
    padded_parity,
    padding_of,
    resized,
    rows_counter,
    served_form,
    until,
)
from torchbridge.checks._serving_parity import body as request_body
from torchbridge.checks._serving_tokens import NAME as TOKENS
from torchbridge.checks._serving_tokens import generates, token_latency
from torchbridge.checks._tolerances import tolerance_option
from torchbridge.checks.base import Check, CheckConfig, RunContext
from torchbridge.checks.options import count, flag, option, optional
from torchbridge.checks.registry import register
from torchbridge.core.compare import compare_outputs
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.signal import SIGNAL_FLOOR, no_signal_note, silent_outputs
from torchbridge.core.subject import Subject
from torchbridge.core.variants import distinct_rows
from torchbridge.errors import CheckSkipped, ConfigError
from torchbridge.smoke.result import Step
from torchbridge.units import parse_bytes, parse_duration

_HINT = "pip install 'pytest-torchbridge[serve]'"


@dataclass(frozen=True)
class ServingConfig(CheckConfig):
    """Server settings to check with, and which sub-checks to run.

    ``timeout`` is the server's request timeout; ``deadline_probe`` the shorter deadline
    the timeout sub-check asks for. ``auth`` runs the server with generated API keys and
    checks 401/403; ``overload`` fills the queue (``max_queue_size``) and expects 503.
    ``concurrent_requests`` single-row requests (at most ``max_batch_size``) are served as
    one batch for batched parity; a sample with fewer rows is grown with changed copies.
    For models with ``stream``/``generate``, ``token_requests`` streamed generations of
    ``max_new_tokens`` tokens measure TTFT and inter-token latency (p50/p99 metrics),
    gated by ``ttft_p99``/``itl_p99`` when given.
    """

    max_batch_size: int = option(8, count)
    max_batch_delay_ms: float = 2.0
    max_queue_size: int = option(16, count)
    timeout: float = option("30s", parse_duration)
    deadline_probe: float = option("300ms", parse_duration)
    max_body: int = option("1MiB", parse_bytes)
    rtol: float | None = option(None, tolerance_option)
    atol: float | None = option(None, tolerance_option)
    auth: bool = option(True, flag)
    overload: bool = option(True, flag)
    concurrent_requests: int = option(8, count)
    ttft_p99: float | None = option(None, optional(parse_duration))
    itl_p99: float | None = option(None, optional(parse_duration))
    token_requests: int = option(8, count)
    max_new_tokens: int = option(8, count)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.deadline_probe >= self.timeout:
            raise ConfigError("deadline_probe must be shorter than timeout")
        if float(self.max_batch_delay_ms) < 0:
            raise ConfigError("max_batch_delay_ms must be >= 0")


@dataclass
class _Report:
    steps: list[Step] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.steps.append(Step(name, bool(ok), detail))

    def run(self, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = fn()
        except Exception as exc:  # a sub-check that crashes is a failed sub-check
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.add(name, ok, detail)

    def step(self, name: str, fn: Callable[[], Step]) -> None:
        try:
            self.steps.append(fn())
        except Exception as exc:  # a sub-check that crashes is a failed sub-check
            self.add(name, False, f"{type(exc).__name__}: {exc}")


@register
class ServingCheck(Check[ServingConfig]):
    name = "serving"
    family = "serving"
    summary = ("The model served over HTTP: health, readiness, metrics, parity with eager, "
               "error codes, deadlines, overload, auth.")

    def run(self, subject: Subject, config: ServingConfig, context: RunContext) -> CheckResult:
        try:
            import httpx  # noqa: F401
            from prometheus_client.parser import text_string_to_metric_families  # noqa: F401

            from torchbridge.serving.config import ServerConfig
            from torchbridge.serving.live import LiveServer
        except ImportError as exc:
            raise CheckSkipped(f"serving needs {exc.name}: {_HINT}") from None
        model, inputs = subject.placed()
        gate = Gate(model, rows_counter(subject))
        admin, infer_only = secrets.token_hex(16), secrets.token_hex(16)
        keys = {admin: ("infer", "admin"), infer_only: ("infer",)} if config.auth else None
        server_config = ServerConfig(
            max_batch_size=max(config.max_batch_size, subject.batch_size),
            max_batch_delay_ms=config.max_batch_delay_ms, max_queue_size=config.max_queue_size,
            timeout_seconds=config.timeout, max_body_bytes=config.max_body, api_keys=keys,
            device=subject.device, grace_period_s=5.0)
        headers = {"Authorization": f"Bearer {admin}"} if config.auth else {}
        report = _Report()
        start = time.perf_counter()
        try:
            server = LiveServer(gate, inputs, server_config, input_spec=subject.spec,
                                headers=headers).start()
        except RuntimeError as exc:
            return CheckResult(self.name, Status.FAILED, f"server did not start: {exc}",
                               subject.device)
        report.add("readiness", True, f"ready after {time.perf_counter() - start:.2f} s")
        try:
            _probes(server, admin if config.auth else None, report)
            _parity(server, gate, subject, model, config, report)
            _bad_requests(server, config, report)
            if config.auth:
                _auth(server, admin, infer_only, report)
            _deadline_and_overload(server, gate, inputs, config, report)
            if generates(model):
                report.step(TOKENS, lambda: token_latency(
                    server, subject, requests=config.token_requests,
                    max_new_tokens=config.max_new_tokens, ttft_p99=config.ttft_p99,
                    itl_p99=config.itl_p99))
            report.run("survives", lambda: _survives(server, inputs))
        finally:
            gate.open.set()
            server.stop()
        return _result(self.name, subject.device, report)


def _probes(server: Any, api_key: str | None, report: _Report) -> None:
    """Liveness and readiness as the smoke test probes them, then the v2 probe and
    ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    from torchbridge.smoke.client import Client
    from torchbridge.smoke.probe import check_probes

    with Client(server.url, api_key) as smoke_client:
        report.steps += check_probes(smoke_client)
    client = server.client
    report.run("v2_ready", lambda: _status(client.get("/v2/health/ready"), 200))

    def metrics() -> tuple[bool, str]:
        response = client.get("/metrics")
        if response.status_code != 200:
            return False, f"/metrics answered {response.status_code}"
        names = {f.name for f in text_string_to_metric_families(response.text)}
        wanted = {"torchbridge_request_duration_seconds", "torchbridge_batch_size",
                  "torchbridge_queue_depth", "torchbridge_model_info"}
        missing = sorted(wanted - names)
        return not missing, (f"missing families {missing}" if missing
                             else f"{len(names)} metric families parsed")

    report.run("metrics", metrics)


def _status(response: Any, want: int) -> tuple[bool, str]:
    ok = response.status_code == want
    return ok, f"{response.request.method} {response.request.url.path} -> " \
               f"{response.status_code}" + ("" if ok else f" (expected {want})")


def _parity(server: Any, gate: Gate, subject: Subject, model: Any, config: ServingConfig,
            report: _Report) -> None:
    """One whole-sample request, single-row requests in one batch, and (for a model that
    declares ``serving_padding``) mixed lengths in one padded batch, against eager."""
    tol = ParityTolerance(config.rtol, config.atol)
    # One batch must hold them, and the queue must hold them while the worker is held.
    count = min(config.concurrent_requests, max(config.max_batch_size, subject.batch_size),
                config.max_queue_size)
    grown = dataclasses.replace(subject, inputs=distinct_rows(subject.inputs, subject.spec,
                                                               max(2, subject.batch_size)))

    def whole() -> tuple[bool, str]:
        try:
            expected, dropped = served_form(grown.run(model=model))
        except Exception as exc:
            return False, (f"the eager reference raised on the {grown.batch_size}-row sample: "
                           f"{type(exc).__name__}: {exc}")
        response = server.client.post("/predict", json=request_body(grown.inputs))
        if response.status_code != 200:
            return False, f"/predict answered {response.status_code}: {response.text[:200]}"
        actual = like(expected, response.json()["outputs"])
        comparison = compare_outputs(actual, expected, rtol=config.rtol, atol=config.atol)
        left_out = (f"; not served, so not compared (not tensors): {', '.join(dropped)}"
                    if dropped else "")
        silent.extend(silent_outputs(expected))
        return comparison.ok, _agreement(comparison) + left_out + no_signal_note(expected)

    silent: list[str] = []
    report.run("predict_parity", whole)
    report.steps[-1].data["no_signal"] = silent
    if subject.spec.dims:
        report.run("dim_parity", lambda: _dim_parity(server, subject, model, config))
    report.step("batched_parity",
                lambda: batched_parity(server, gate, subject, model, count, tol))
    declared = padding_of(model)
    if declared is not None:
        report.step("padded_parity",
                    lambda: padded_parity(server, gate, subject, model, declared, tol,
                                          limit=count))


def _dim_parity(server: Any, subject: Subject, model: Any, config: ServingConfig
                ) -> tuple[bool, str]:
    """One single-row request at each end of every declared dynamic dim (every input it
    lives on resized), against eager: the server accepts the dim's whole range, and the
    other sub-checks only send the sample's length."""
    row = dataclasses.replace(subject, inputs=subject.row(0))
    checked: list[str] = []
    for name, dim in subject.spec.dims.items():
        lengths = padded_lengths(row, name, cap=1024)
        for size in sorted({lengths[0], lengths[-1]} - {row.dim_size(name)}):
            label = f"{name}={size}"
            inputs = resized(row.inputs, dim.axes, size)
            try:
                expected, _ = served_form(row.run(inputs, model=model))
            except Exception as exc:
                return False, (f"{label}: the eager reference raised {type(exc).__name__}: "
                               f"{exc}; narrow the dim's declared range to what the model "
                               "takes")
            response = server.client.post("/predict", json=request_body(inputs))
            if response.status_code != 200:
                return False, (f"{label}: /predict answered {response.status_code}: "
                               f"{response.text[:200]}")
            comparison = compare_outputs(like(expected, response.json()["outputs"]), expected,
                                         rtol=config.rtol, atol=config.atol)
            if not comparison.ok:
                return False, f"{label}: {comparison.describe()}"
            checked.append(label)
    if not checked:
        return True, "every declared dim's range is the sample's length only"
    return True, f"served outputs match eager PyTorch at {', '.join(checked)}"


def _agreement(comparison: Any) -> str:
    if not comparison.ok:
        return str(comparison.describe())
    return (f"served outputs match eager PyTorch (max abs error {comparison.max_abs:.3g}, "
            f"max rel error {comparison.max_rel:.3g})")


def _bad_requests(server: Any, config: ServingConfig, report: _Report) -> None:
    client = server.client

    def malformed() -> tuple[bool, str]:
        cases = {"not JSON": b"{not json", "no inputs key": b'{"x": 1}',
                 "wrong rank": b'{"inputs": 1.5}', "ragged rows": b'{"inputs": [[1], [1, 2]]}',
                 "strings": b'{"inputs": [["a"]]}'}
        bad = []
        for label, body in cases.items():
            response = client.post("/predict", content=body,
                                   headers={"Content-Type": "application/json"})
            if not 400 <= response.status_code < 500:
                bad.append(f"{label} -> {response.status_code}")
        return not bad, "; ".join(bad) or f"{len(cases)} malformed bodies got 4xx"

    def oversized() -> tuple[bool, str]:
        body = b'{"inputs": [' + b"0," * (config.max_body // 2) + b"0]}"
        return _status(client.post("/predict", content=body,
                                   headers={"Content-Type": "application/json"}), 413)

    report.run("malformed_4xx", malformed)
    report.run("oversized_413", oversized)


def _auth(server: Any, admin: str, infer_only: str, report: _Report) -> None:
    import httpx

    def enforced() -> tuple[bool, str]:
        with httpx.Client(base_url=server.url, timeout=10.0) as anonymous:
            checks = [
                (anonymous.get("/metrics"), 401, "no key"),
                (anonymous.get("/metrics", headers={"Authorization": "Bearer wrong-key-000"}),
                 401, "wrong key"),
                (anonymous.get("/metrics", headers={"X-API-Key": infer_only}), 403,
                 "key without admin role"),
                (anonymous.get("/metrics", headers={"X-API-Key": admin}), 200, "admin key"),
                (anonymous.get("/health"), 200, "probes open"),
            ]
        bad = [f"{label}: {r.status_code} (expected {want})" for r, want, label in checks
               if r.status_code != want]
        return not bad, "; ".join(bad) or "401 without/with a wrong key, 403 without the role"

    report.run("auth", enforced)


def _deadline_and_overload(server: Any, gate: Gate, inputs: Any, config: ServingConfig,
                           report: _Report) -> None:
    """Hold the worker in a forward pass, then probe the deadline and the queue limit."""
    state = server.state
    body = request_body(inputs)
    dropped_before = _dropped(state)

    async def scenario() -> None:
        import httpx

        gate.open.clear()
        gate.entered.clear()
        async with httpx.AsyncClient(base_url=server.url, headers=server.client.headers,
                                     timeout=60.0) as client:
            blocker = asyncio.ensure_future(client.post("/predict", json=body))
            await until(lambda: gate.entered.is_set())
            start = time.perf_counter()
            late = await client.post("/predict", json=body, headers={
                "X-Request-Timeout": f"{config.deadline_probe:g}"})
            waited = time.perf_counter() - start
            ok = late.status_code == 504 and waited < config.deadline_probe + 5.0
            report.add("deadline_504", ok, f"deadline {config.deadline_probe:g} s -> "
                                           f"{late.status_code} after {waited:.2f} s")
            if not config.overload:
                gate.open.set()
                await blocker
                return
            queued = [asyncio.ensure_future(client.post("/predict", json=body))
                      for _ in range(config.max_queue_size)]
            await until(lambda: state.batcher.depth >= config.max_queue_size)
            extra = await client.post("/predict", json=body)
            retry = extra.headers.get("retry-after")
            report.add("overload_503", extra.status_code == 503 and retry is not None,
                       f"request past a full queue of {config.max_queue_size} -> "
                       f"{extra.status_code}, Retry-After {retry}")
            gate.open.set()
            results = await asyncio.gather(blocker, *queued)
            lost = [r.status_code for r in results if r.status_code != 200]
            report.add("queued_complete", not lost,
                       f"{len(results) - len(lost)}/{len(results)} queued requests answered 200"
                       + (f"; others {lost}" if lost else ""))

    try:
        asyncio.run(scenario())
    except Exception as exc:
        report.add("deadline_and_overload", False, f"{type(exc).__name__}: {exc}")
        gate.open.set()
        return
    dropped = _dropped(state) - dropped_before
    report.add("expired_dropped", dropped >= 1,
               f"{dropped:g} expired request(s) dropped before compute")


def _dropped(state: Any) -> float:
    total = 0.0
    for family in state.metrics.dropped.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total


def _survives(server: Any, inputs: Any) -> tuple[bool, str]:
    health = server.client.get("/health")
    predict = server.client.post("/predict", json=request_body(inputs))
    ok = health.status_code == 200 and predict.status_code == 200
    return ok, f"after all probes: /health {health.status_code}, /predict {predict.status_code}"


def _result(name: str, device: str, report: _Report) -> CheckResult:
    """Passed only when every sub-check ran and passed; the message names each failed and
    each not exercised sub-check, or lists the passed ones."""
    failed = [s for s in report.steps if s.exercised and not s.passed]
    unexercised = [s for s in report.steps if not s.exercised]
    status = Status.FAILED if failed or unexercised else Status.PASSED
    result = CheckResult(name, status, "", device, details={
        "subchecks": [dataclasses.asdict(s) | {"status": s.status} for s in report.steps]})
    result.metric("subchecks", len(report.steps), "1")
    result.metric("subchecks_failed", len(failed), "1")
    result.metric("subchecks_not_exercised", len(unexercised), "1")
    for step in report.steps:
        if step.name == TOKENS:
            for key, value in step.data.items():
                result.metric(key, value, "ms")
    parts = [f"{s.name}: {s.detail}" for s in failed]
    parts += [f"{s.name}: not exercised: {s.detail}" for s in unexercised]
    result.message = "; ".join(parts) if parts else (
        f"all {len(report.steps)} serving sub-checks passed: "
        + ", ".join(s.name for s in report.steps))
    silent = [p for s in report.steps for p in s.data.get("no_signal", [])]
    if silent and not parts:  # parity on outputs without signal proves little: say so
        result.message += (f"; warning: no signal in {', '.join(silent[:3])} (every value "
                           f"within {SIGNAL_FLOOR:g} of 0), so parity with eager cannot fail")
    return result
