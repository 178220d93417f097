"""The post-deployment smoke test: health, readiness, one prediction compared with the
expected outputs, latency over N requests, and a canary compared with the current
deployment on the same requests (parity and latency)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from torchbridge.measure.stats import summarize
from torchbridge.smoke.client import Client, RequestFailed
from torchbridge.smoke.result import SmokeReport, Step
from torchbridge.smoke.trees import compare_trees, outputs_of


@dataclass(frozen=True)
class SmokeConfig:
    """What to send and what to expect.

    ``sample`` is the JSON body posted to ``endpoint`` (``{"inputs": [[...]]}`` for a
    TorchBridge server); ``expected`` the expected response outputs (the ``outputs`` of
    a response, or a whole response body). ``max_p99_s`` gates the latency over
    ``requests`` requests; ``max_slowdown`` gates a canary's p99 against the current
    deployment's (0.2 = at most 20 % slower).
    """

    url: str
    sample: Any = None
    expected: Any = None
    endpoint: str = "/predict"
    rtol: float = 1e-4
    atol: float = 1e-5
    requests: int = 20
    max_p99_s: float | None = None
    canary_url: str | None = None
    max_slowdown: float = 0.2
    api_key: str | None = None
    timeout_s: float = 10.0
    wait_ready_s: float = 0.0
    extra_headers: dict[str, str] = field(default_factory=dict)


def wait_ready(client: Client, seconds: float, poll_s: float = 0.5) -> Step:
    """Poll ``/ready`` until it answers 200 or ``seconds`` pass (a fresh rollout warms up)."""
    start = time.monotonic()
    last = "no answer yet"
    while True:
        try:
            response = client.get("/ready")
            if response.status_code == 200:
                return Step("wait ready", True,
                            f"ready after {time.monotonic() - start:.1f} s")
            last = f"/ready answered {response.status_code}: {response.text[:200]}"
        except RequestFailed as exc:
            last = str(exc)
        if time.monotonic() - start >= seconds:
            return Step("wait ready", False, f"not ready after {seconds:g} s; last: {last}")
        time.sleep(poll_s)


def check_probes(client: Client, label: str = "") -> list[Step]:
    """``/health`` must answer 200 (alive) and ``/ready`` 200 (loaded and warmed up)."""
    steps = []
    for path, meaning in (("/health", "alive"), ("/ready", "ready")):
        name = f"{label}{path.strip('/')}"
        try:
            response = client.get(path)
        except RequestFailed as exc:
            steps.append(Step(name, False, str(exc)))
            continue
        ok = response.status_code == 200
        detail = f"{path} answered {response.status_code}" + ("" if ok else
                                                               f": {response.text[:200]}")
        steps.append(Step(name, ok, detail if not ok else f"{meaning} ({path} 200)"))
    return steps


def check_prediction(client: Client, config: SmokeConfig) -> tuple[Step, Any]:
    """One prediction; compared with ``config.expected`` when given."""
    try:
        body = client.post_json(config.endpoint, config.sample)
    except RequestFailed as exc:
        return Step("predict", False, str(exc)), None
    if config.expected is None:
        return Step("predict", True, f"POST {config.endpoint} answered 200 (no expected "
                                     "outputs given, so values were not compared)"), body
    comparison = compare_trees(outputs_of(body), outputs_of(config.expected),
                               config.rtol, config.atol)
    if comparison.ok:
        return Step("predict", True, f"outputs match the expected values (max abs diff "
                                     f"{comparison.max_abs:.3g}, rtol={config.rtol}, "
                                     f"atol={config.atol})",
                    {"max_abs": comparison.max_abs}), body
    return Step("predict", False, f"outputs differ from the expected values: "
                                  f"{comparison.describe()}", {"comparison": comparison.to_dict()}
                ), body


def measure_latency(client: Client, config: SmokeConfig) -> list[float]:
    """Seconds per request over ``config.requests`` sequential requests."""
    samples = []
    for _ in range(config.requests):
        start = time.perf_counter()
        client.post_json(config.endpoint, config.sample)
        samples.append(time.perf_counter() - start)
    return samples


def _percentiles(samples: list[float]) -> dict[str, float]:
    summary = summarize(samples)
    return {"p50_ms": summary.percentiles["p50"] * 1e3, "p99_ms": summary.percentiles["p99"]
            * 1e3, "n": float(summary.n)}


def check_latency(client: Client, config: SmokeConfig, label: str = "") -> tuple[Step, Any]:
    try:
        samples = measure_latency(client, config)
    except RequestFailed as exc:
        return Step(f"{label}latency", False, str(exc)), None
    stats = _percentiles(samples)
    text = f"p50 {stats['p50_ms']:.3g} ms, p99 {stats['p99_ms']:.3g} ms over " \
           f"{len(samples)} requests"
    if config.max_p99_s is not None and stats["p99_ms"] > config.max_p99_s * 1e3:
        return Step(f"{label}latency", False, f"{text}; p99 exceeds the budget "
                                              f"{config.max_p99_s * 1e3:.3g} ms", stats), stats
    return Step(f"{label}latency", True, text, stats), stats


def check_canary(current: Client, canary: Client, config: SmokeConfig,
                 current_body: Any, current_stats: dict[str, float] | None) -> list[Step]:
    """The canary answers the same request with the same outputs, and is not slower than
    the current deployment by more than ``config.max_slowdown``."""
    steps = check_probes(canary, "canary ")
    try:
        canary_body = canary.post_json(config.endpoint, config.sample)
    except RequestFailed as exc:
        return [*steps, Step("canary parity", False, str(exc))]
    if current_body is not None:
        comparison = compare_trees(outputs_of(canary_body), outputs_of(current_body),
                                   config.rtol, config.atol)
        steps.append(Step("canary parity", comparison.ok,
                          "canary outputs match the current deployment's" if comparison.ok
                          else f"canary outputs differ from the current deployment's: "
                               f"{comparison.describe()}",
                          {"comparison": comparison.to_dict()}))
    step, canary_stats = check_latency(canary, config, "canary ")
    steps.append(step)
    if current_stats and canary_stats:
        ratio = canary_stats["p99_ms"] / max(current_stats["p99_ms"], 1e-9)
        ok = ratio <= 1 + config.max_slowdown
        steps.append(Step("canary latency", ok,
                          f"canary p99 {canary_stats['p99_ms']:.3g} ms vs current "
                          f"{current_stats['p99_ms']:.3g} ms ({(ratio - 1) * 100:+.1f} %, "
                          f"allowed +{config.max_slowdown * 100:.0f} %)",
                          {"ratio": ratio}))
    return steps


def run_smoke(config: SmokeConfig) -> SmokeReport:
    """Run every smoke step against ``config.url`` (and the canary, when given)."""
    report = SmokeReport(config.url)
    with Client(config.url, config.api_key, config.timeout_s, config.extra_headers) as client:
        if config.wait_ready_s > 0:
            step = wait_ready(client, config.wait_ready_s)
            report.steps.append(step)
            if not step.passed:
                return report
        report.steps += check_probes(client)
        if config.sample is None:
            return report
        step, body = check_prediction(client, config)
        report.steps.append(step)
        step, stats = check_latency(client, config)
        report.steps.append(step)
        if config.canary_url:
            with Client(config.canary_url, config.api_key, config.timeout_s,
                        config.extra_headers) as canary:
                report.steps += check_canary(client, canary, config, body, stats)
    return report
