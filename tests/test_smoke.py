"""tb-smoke against real TorchBridge servers (uvicorn on 127.0.0.1, ephemeral ports)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from torchbridge.cli.smoke import main as tb_smoke
from torchbridge.smoke import WatchConfig, histogram_quantile
from torchbridge.smoke.watch import judge, parse_metrics, window

SAMPLE = {"inputs": [[0.5, -1.0, 2.0, 0.25], [1.0, 0.0, -0.5, 3.0]]}


def linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3).eval()


class Deployment:
    """A real server for one model, and the outputs eager PyTorch gives for SAMPLE."""

    def __init__(self, model: torch.nn.Module, **config: Any) -> None:
        from torchbridge.serving import ServerConfig, ServerThread, create_fastapi_server

        app = create_fastapi_server(model, ServerConfig(max_batch_delay_ms=0, **config),
                                    sample_input=torch.randn(1, 4))
        self.server = ServerThread(app).start()
        self.url = self.server.url
        with torch.inference_mode():
            self.expected = model(torch.tensor(SAMPLE["inputs"])).tolist()
        deadline = time.monotonic() + 30
        while httpx.get(f"{self.url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def current() -> Iterator[Deployment]:
    deployment = Deployment(linear(0))
    yield deployment
    deployment.server.stop()


@pytest.fixture(scope="module")
def other_weights() -> Iterator[Deployment]:
    deployment = Deployment(linear(1))
    yield deployment
    deployment.server.stop()


@pytest.fixture
def files(tmp_path: Path, current: Deployment) -> dict[str, Path]:
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(SAMPLE))
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({"outputs": current.expected}))
    return {"sample": sample, "expected": expected}


def smoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = tb_smoke([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def steps(report: dict[str, Any]) -> dict[str, bool]:
    return {step["name"]: step["passed"] for step in report["steps"]}


def test_smoke_passes_health_ready_prediction_and_latency(
        current: Deployment, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, report = smoke(capsys, "--url", current.url, "--sample", str(files["sample"]),
                         "--expected", str(files["expected"]), "--requests", "5")
    assert code == 0
    assert steps(report) == {"health": True, "ready": True, "predict": True, "latency": True}
    latency = report["steps"][-1]["data"]
    assert latency["n"] == 5 and 0 < latency["p50_ms"] <= latency["p99_ms"]


def test_smoke_fails_when_the_prediction_differs_from_the_expected_outputs(
        current: Deployment, files: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    wrong = [[value + 0.01 for value in row] for row in current.expected]
    files["expected"].write_text(json.dumps(wrong))
    code, report = smoke(capsys, "--url", current.url, "--sample", str(files["sample"]),
                         "--expected", str(files["expected"]), "--requests", "2")
    assert code == 1
    predict = next(s for s in report["steps"] if s["name"] == "predict")
    assert not predict["passed"] and "outputs differ from the expected values" in \
        predict["detail"]


def test_smoke_fails_when_p99_exceeds_the_budget(current: Deployment, files: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, report = smoke(capsys, "--url", current.url, "--sample", str(files["sample"]),
                         "--requests", "3", "--max-p99", "1ns")
    assert code == 1 and steps(report)["latency"] is False
    assert "exceeds the budget" in report["steps"][-1]["detail"]


def test_canary_with_the_same_model_passes_parity(
        current: Deployment, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    canary = Deployment(linear(0))
    try:
        code, report = smoke(capsys, "--url", current.url, "--canary-url", canary.url,
                             "--sample", str(files["sample"]), "--requests", "3",
                             "--max-slowdown", "1000%")
    finally:
        canary.server.stop()
    assert code == 0
    assert steps(report)["canary parity"] is True and steps(report)["canary latency"] is True


def test_canary_with_different_weights_fails_parity(
        current: Deployment, other_weights: Deployment, files: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    code, report = smoke(capsys, "--url", current.url, "--canary-url", other_weights.url,
                         "--sample", str(files["sample"]), "--requests", "2",
                         "--max-slowdown", "1000%")
    assert code == 1
    parity = next(s for s in report["steps"] if s["name"] == "canary parity")
    assert not parity["passed"]
    assert "canary outputs differ from the current deployment's" in parity["detail"]


def test_unreachable_server_fails_the_probes_with_the_reason(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens
    code, report = smoke(capsys, "--url", f"http://127.0.0.1:{port}", "--sample",
                         str(files["sample"]), "--timeout", "2s")
    assert code == 1
    assert "ConnectError" in report["steps"][0]["detail"]


def test_api_key_is_sent_when_the_server_requires_one(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    secured = Deployment(linear(0), api_keys={"s3cret-key-123": ("infer", "admin")})
    try:
        denied, report = smoke(capsys, "--url", secured.url, "--sample", str(files["sample"]))
        allowed, _ = smoke(capsys, "--url", secured.url, "--sample", str(files["sample"]),
                           "--api-key", "s3cret-key-123", "--requests", "2")
    finally:
        secured.server.stop()
    assert denied == 1 and "401" in next(s for s in report["steps"]
                                         if s["name"] == "predict")["detail"]
    assert allowed == 0


def traffic(url: str, body: Any, seconds: float) -> threading.Thread:
    def send() -> None:
        end = time.monotonic() + seconds
        with httpx.Client(base_url=url) as client:
            while time.monotonic() < end:
                client.post("/predict", json=body)
                time.sleep(0.01)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_watch_passes_while_requests_succeed(current: Deployment,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sender = traffic(current.url, SAMPLE, 2.5)
    code, report = smoke(capsys, "--url", current.url, "--watch", "3s", "--interval", "1s",
                         "--min-requests", "3")
    sender.join()
    assert code == 0
    watched = report["steps"][-1]
    assert watched["name"] == "watch" and watched["data"]["requests"] >= 3
    assert watched["data"]["error_rate"] == 0.0 and watched["data"]["p99_s"] > 0


def test_watch_fails_when_the_error_rate_crosses_its_threshold(
        current: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    sender = traffic(current.url, {"inputs": [["not", "numbers"]]}, 2.5)  # each one a 4xx
    code, report = smoke(capsys, "--url", current.url, "--watch", "3s", "--interval", "1s",
                         "--count-4xx", "--min-requests", "3")
    sender.join()
    assert code == 1
    assert "error rate 100.00%" in report["steps"][-1]["detail"]


def test_watch_reads_the_real_servers_histogram_and_counters(current: Deployment) -> None:
    httpx.post(f"{current.url}/predict", json=SAMPLE)
    scrape = parse_metrics(httpx.get(f"{current.url}/metrics").text, WatchConfig(1.0))
    assert scrape.requests.get("200", 0) >= 1
    assert scrape.buckets[float("inf")] >= 1


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    # 100 observations: 50 up to 10 ms, 49 more up to 20 ms, 1 more up to 40 ms
    buckets = {0.01: 50.0, 0.02: 99.0, 0.04: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.02)
    assert histogram_quantile(0.995, buckets) == pytest.approx(0.03)
    assert histogram_quantile(0.99, {0.01: 0.0, float("inf"): 0.0}) is None


def test_watch_judges_p99_only_with_enough_requests() -> None:
    from torchbridge.smoke.watch import Scrape

    config = WatchConfig(1.0, max_p99_s=0.015, min_requests=10)
    before = Scrape({"200": 100.0}, {0.01: 100.0, 0.02: 100.0, float("inf"): 100.0})
    slow = Scrape({"200": 120.0}, {0.01: 100.0, 0.02: 120.0, float("inf"): 120.0})
    few = Scrape({"200": 105.0}, {0.01: 100.0, 0.02: 105.0, float("inf"): 105.0})
    assert "p99 19.9 ms over 20 requests exceeds 15 ms" in str(judge(window(before, slow,
                                                                            config), config))
    assert judge(window(before, few, config), config) is None


def test_smoke_without_sample_or_watch_is_a_usage_error(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    with pytest.raises(SystemExit) as exit_info:
        tb_smoke(["--url", "http://127.0.0.1:9"])
    assert exit_info.value.code == 2
    assert "give --sample" in capsys.readouterr().err


def test_wait_ready_gives_up_after_its_duration_naming_the_last_answer(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, report = smoke(capsys, "--url", f"http://127.0.0.1:{port}", "--sample",
                         str(files["sample"]), "--wait-ready", "1s", "--timeout", "1s")
    assert code == 1
    assert [s["name"] for s in report["steps"]] == ["wait ready"]
    assert "not ready after 1 s; last: GET" in report["steps"][0]["detail"]


def test_wait_ready_passes_at_once_for_a_ready_server(
        current: Deployment, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, report = smoke(capsys, "--url", current.url, "--sample", str(files["sample"]),
                         "--wait-ready", "30s", "--requests", "2")
    assert code == 0 and report["steps"][0]["name"] == "wait ready"


def test_metrics_without_the_latency_histogram_are_refused_with_the_reason() -> None:
    from torchbridge.smoke import RequestFailed

    with pytest.raises(RequestFailed, match="no histogram 'torchbridge_request_duration"):
        parse_metrics("# TYPE up gauge\nup 1\n", WatchConfig(1.0))


def test_a_fresh_server_without_inference_traffic_can_be_watched() -> None:
    fresh = Deployment(linear(0))
    try:
        scrape = parse_metrics(httpx.get(f"{fresh.url}/metrics").text, WatchConfig(1.0))
    finally:
        fresh.server.stop()
    assert scrape.buckets == {} and sum(scrape.requests.values()) == 0


def test_watch_without_enough_traffic_is_not_exercised_and_fails(
        current: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = smoke(capsys, "--url", current.url, "--watch", "1s", "--interval", "0.5s",
                         "--min-requests", "1000")
    assert code == 1
    watched = report["steps"][-1]
    assert watched["name"] == "watch" and watched["exercised"] is False
    assert "fewer than 1000 requests, so no threshold was applied" in watched["detail"]
