"""``serving``: the serving checklist against the real server on loopback.

Starts the TorchBridge server (uvicorn in a thread, 127.0.0.1, ephemeral port) with the
model under test and verifies, each as a listed sub-check: liveness and readiness,
``/metrics`` parses as Prometheus text, ``/predict`` matches eager PyTorch (one request
and concurrent single-row requests that get batched), malformed input gets a 4xx and
never a 5xx, an oversized body gets 413, API keys and roles are enforced, a request's
deadline is enforced (504, and the expired request is dropped before compute), a full
queue answers 503 with Retry-After while every queued request still completes, and the
server still answers afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from torchbridge.checks.base import Check, CheckConfig, RunContext
from torchbridge.checks.registry import register
from torchbridge.core.compare import compare_outputs
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import Subject, named_inputs
from torchbridge.errors import CheckSkipped, ConfigError
from torchbridge.units import parse_bytes, parse_duration

_HINT = "pip install 'pytest-torchbridge[serve]'"


@dataclass(frozen=True)
class ServingConfig(CheckConfig):
    """Server settings to check with, and which sub-checks to run.

    ``timeout`` is the server's request timeout; ``deadline_probe`` the shorter deadline
    the timeout sub-check asks for. ``auth`` runs the server with generated API keys and
    checks 401/403; ``overload`` fills the queue (``max_queue_size``) and expects 503.
    """

    max_batch_size: int = 8
    max_batch_delay_ms: float = 2.0
    max_queue_size: int = 16
    timeout: Any = "30s"
    deadline_probe: Any = "300ms"
    max_body: Any = "1MiB"
    rtol: float | None = None
    atol: float | None = None
    auth: bool = True
    overload: bool = True
    concurrent_requests: int = 8

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue_size", "concurrent_requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "timeout", parse_duration(self.timeout, "timeout"))
        object.__setattr__(self, "deadline_probe",
                           parse_duration(self.deadline_probe, "deadline_probe"))
        object.__setattr__(self, "max_body", parse_bytes(self.max_body, "max_body"))
        if self.deadline_probe >= self.timeout:
            raise ConfigError("deadline_probe must be shorter than timeout")
        if float(self.max_batch_delay_ms) < 0:
            raise ConfigError("max_batch_delay_ms must be >= 0")


class _Gate:
    """Wraps the model so the check can hold the worker inside a forward pass."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.open.wait(60.0)
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


@dataclass
class _Report:
    subchecks: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.subchecks.append({"name": name, "ok": bool(ok), "detail": detail})

    def run(self, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = fn()
        except Exception as exc:  # a sub-check that crashes is a failed sub-check
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.add(name, ok, detail)


@register
class ServingCheck(Check[ServingConfig]):
    name = "serving"
    config_type = ServingConfig
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
        gate = _Gate(model)
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
            _probes(server, report)
            _parity(server, subject, model, inputs, config, report)
            _bad_requests(server, config, report)
            if config.auth:
                _auth(server, admin, infer_only, report)
            _deadline_and_overload(server, gate, inputs, config, report)
            report.run("survives", lambda: _survives(server, inputs))
        finally:
            gate.open.set()
            server.stop()
        return _result(self.name, subject.device, report)


def _body(inputs: Any) -> dict[str, Any]:
    pairs = named_inputs(inputs)
    if len(pairs) == 1:
        return {"inputs": pairs[0][1].detach().cpu().tolist()}
    return {"inputs": {k if isinstance(k, str) else f"input_{k}": v.detach().cpu().tolist()
                       for k, v in pairs}}


def _probes(server: Any, report: _Report) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client = server.client
    report.run("health", lambda: _status(client.get("/health"), 200))
    report.run("ready", lambda: _status(client.get("/ready"), 200))
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


def _like(expected: Any, value: Any) -> Any:
    """The JSON output rebuilt in the structure of the eager output, as tensors."""
    if isinstance(expected, torch.Tensor):
        return torch.tensor(value, dtype=expected.dtype)
    if isinstance(expected, Mapping):
        return {k: _like(v, value[str(k)]) for k, v in expected.items()}
    if hasattr(expected, "_fields"):
        return {k: _like(getattr(expected, k), value[k]) for k in expected._fields}
    if isinstance(expected, list | tuple):
        return type(expected)(_like(e, v) for e, v in zip(expected, value, strict=True))
    return value


def _cpu(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, Mapping):
        return {k: _cpu(v) for k, v in tree.items()}
    if hasattr(tree, "_fields"):
        return {k: _cpu(getattr(tree, k)) for k in tree._fields}
    if isinstance(tree, list | tuple):
        return type(tree)(_cpu(v) for v in tree)
    return tree


def _parity(server: Any, subject: Subject, model: Any, inputs: Any, config: ServingConfig,
            report: _Report) -> None:
    expected = _cpu(subject.run(inputs, model=model))

    def whole() -> tuple[bool, str]:
        response = server.client.post("/predict", json=_body(inputs))
        if response.status_code != 200:
            return False, f"/predict answered {response.status_code}: {response.text[:200]}"
        actual = _like(expected, response.json()["outputs"])
        comparison = compare_outputs(actual, expected, rtol=config.rtol, atol=config.atol)
        return comparison.ok, _agreement(comparison)

    report.run("predict_parity", whole)
    rows = subject.batch_size
    if rows < 2:
        return
    report.run("batched_parity", lambda: _batched_parity(server, subject, model, config, rows))


#: Rounds of concurrent requests tried until the server groups at least two of them.
BATCHING_ROUNDS = 3


def _batched_parity(server: Any, subject: Subject, model: Any, config: ServingConfig,
                    rows: int) -> tuple[bool, str]:
    """Send single-row requests at once and compare each answer with eager PyTorch.

    Only rows that the server ran together with others can show a batch dependency, so a
    round in which every request ran alone does not count; after ``BATCHING_ROUNDS`` such
    rounds the step fails as not exercised rather than passing untested."""
    count = min(rows, config.concurrent_requests)
    bodies = [_body(subject.row(i)) for i in range(count)]
    for _ in range(BATCHING_ROUNDS):
        batches, grouped_rows = _batch_counts(server.state)
        responses = asyncio.run(_post_all(server, "/predict", bodies))
        batches_after, rows_after = _batch_counts(server.state)
        failures = []
        for index, response in enumerate(responses):
            if response.status_code != 200:
                failures.append(f"row {index}: {response.status_code}")
                continue
            want = _cpu(subject.run(subject.row(index), model=model))
            comparison = compare_outputs(_like(want, response.json()["outputs"]), want,
                                         rtol=config.rtol, atol=config.atol)
            if not comparison.ok:
                failures.append(f"row {index}: {comparison.describe()}")
        if failures:
            return False, "; ".join(failures)
        ran = int(batches_after - batches)
        if rows_after - grouped_rows > ran:  # some batch held two rows or more
            return True, (f"{count} concurrent single-row requests, served in {ran} "
                          f"batch{'es' if ran != 1 else ''}, matched eager outputs")
    return False, (f"the server ran each of {count} concurrent request(s) alone in "
                   f"{BATCHING_ROUNDS} rounds (concurrent_requests="
                   f"{config.concurrent_requests}, max_batch_delay_ms="
                   f"{config.max_batch_delay_ms:g}), so batched parity was not exercised")


def _batch_counts(state: Any) -> tuple[float, float]:
    """(batches run, rows run) so far, from the server's batch-size histogram."""
    registry = state.metrics.registry
    return (registry.get_sample_value("torchbridge_batch_size_count") or 0.0,
            registry.get_sample_value("torchbridge_batch_size_sum") or 0.0)


async def _post_all(server: Any, path: str, bodies: list[Any],
                    headers: Mapping[str, str] | None = None) -> list[Any]:
    import httpx

    async with httpx.AsyncClient(base_url=server.url, headers=server.client.headers,
                                 timeout=30.0) as client:
        return list(await asyncio.gather(*(client.post(path, json=b, headers=headers)
                                           for b in bodies)))


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


def _deadline_and_overload(server: Any, gate: _Gate, inputs: Any, config: ServingConfig,
                           report: _Report) -> None:
    """Hold the worker in a forward pass, then probe the deadline and the queue limit."""
    state = server.state
    body = _body(inputs)
    dropped_before = _dropped(state)

    async def scenario() -> None:
        import httpx

        gate.open.clear()
        gate.entered.clear()
        async with httpx.AsyncClient(base_url=server.url, headers=server.client.headers,
                                     timeout=60.0) as client:
            blocker = asyncio.ensure_future(client.post("/predict", json=body))
            await _until(lambda: gate.entered.is_set())
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
            await _until(lambda: state.batcher.depth >= config.max_queue_size)
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


async def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not reach the expected state in time")
        await asyncio.sleep(0.005)


def _dropped(state: Any) -> float:
    total = 0.0
    for family in state.metrics.dropped.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total


def _survives(server: Any, inputs: Any) -> tuple[bool, str]:
    health = server.client.get("/health")
    predict = server.client.post("/predict", json=_body(inputs))
    ok = health.status_code == 200 and predict.status_code == 200
    return ok, f"after all probes: /health {health.status_code}, /predict {predict.status_code}"


def _result(name: str, device: str, report: _Report) -> CheckResult:
    failed = [s for s in report.subchecks if not s["ok"]]
    result = CheckResult(name, Status.FAILED if failed else Status.PASSED, "", device,
                         details={"subchecks": report.subchecks})
    result.metric("subchecks", len(report.subchecks), "1")
    result.metric("subchecks_failed", len(failed), "1")
    result.message = ("; ".join(f"{s['name']}: {s['detail']}" for s in failed) if failed
                      else f"all {len(report.subchecks)} serving sub-checks passed: "
                           + ", ".join(s["name"] for s in report.subchecks))
    return result
