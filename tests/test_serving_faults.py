"""Model faults: BaseException contained, a dead worker reported and the process ended,
redacted exception logs, overflowing shapes and token ids, context length, and token
latency metrics. Real uvicorn servers on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from serving_models import (
    FEATURES,
    POISON,
    ExitingGenerator,
    ExitingMLP,
    LeakyErrorMLP,
    ShortContextGenerator,
    TinyGenerator,
    mlp,
    sample,
)

from torchbridge.serving import ServerConfig
from torchbridge.serving.live import LiveServer
from torchbridge.serving.token_latency import measure_token_latency

SECRET = 31337.25  # an input value that must not reach the log unless payloads are on


def _row(first: float) -> list[list[float]]:
    x = sample(1)
    x[0, 0] = first
    return x.tolist()


# ------------------------------------------------------------------ 5: BaseException
def test_a_model_raising_system_exit_fails_that_request_and_the_server_keeps_serving() -> None:
    with LiveServer(ExitingMLP().eval(), sample(1), ServerConfig(max_batch_size=4)) as live:
        failed = live.client.post("/predict", json={"inputs": _row(POISON)})
        after = live.client.post("/predict", json={"inputs": _row(0.5)})
        health = live.client.get("/health")
        assert live.state.batcher.alive
    assert failed.status_code == 500 and "SystemExit" in failed.json()["error"]
    assert after.status_code == 200 and health.status_code == 200


def test_a_generator_raising_system_exit_gets_a_500_and_the_server_keeps_serving() -> None:
    with LiveServer(ExitingGenerator(), None, ServerConfig()) as live:
        failed = live.client.post("/generate", json={"input_ids": [1, 2]})
        health = live.client.get("/health")
    assert failed.status_code == 500 and "SystemExit" in failed.json()["error"]
    assert health.status_code == 200


class _Exploding:
    """Metrics hooks that fail inside the worker loop itself (not inside the model)."""

    def on_batch(self, *args: Any) -> None:
        raise RuntimeError("bookkeeping broke")


def test_a_dead_worker_fails_requests_fast_and_liveness_and_readiness_say_so() -> None:
    with LiveServer(mlp(), sample(1), ServerConfig(max_batch_size=2)) as live:
        live.state.batcher._hooks = _Exploding()
        first = live.client.post("/predict", json={"inputs": _row(0.1)})
        for _ in range(200):
            if live.state.failed:
                break
            time.sleep(0.01)
        later = live.client.post("/predict", json={"inputs": _row(0.2)})
        probes = {path: live.client.get(path).status_code
                  for path in ("/health", "/ready", "/v2/health/live", "/v2/health/ready")}
    assert first.status_code == 503 and "worker died" in first.json()["error"]
    assert later.status_code == 503
    assert probes == dict.fromkeys(probes, 503)


DYING_SERVER = textwrap.dedent("""
    import sys, torch
    from torchbridge.serving import ServerConfig, create_fastapi_server, run_server
    from torchbridge.serving.app import serving_state

    class Exploding:
        def on_batch(self, *args):
            raise RuntimeError("bookkeeping broke")

    torch.manual_seed(0)
    app = create_fastapi_server(torch.nn.Linear(8, 4).eval(), ServerConfig(grace_period_s=2),
                                sample_input=torch.zeros(1, 8))
    state = serving_state(app)
    original = state.start
    async def start():
        await original()
        while not state.ready:
            import asyncio
            await asyncio.sleep(0.01)
        state.batcher._hooks = Exploding()
    state.start = start
    run_server(app, port=int(sys.argv[1]), log_level="warning")
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_process_exits_non_zero_when_its_worker_dies(tmp_path: Path) -> None:
    script = tmp_path / "dying.py"
    script.write_text(DYING_SERVER)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        response = httpx.post(url + "/predict", json={"inputs": [[0.0] * FEATURES]}, timeout=10)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert response.status_code == 503
    assert code != 0
    assert b"inference worker died" in proc.stderr.read()  # type: ignore[union-attr]


# ------------------------------------------------------------------ 7: redaction
def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as written (tracebacks included) and its structured fields."""
    return caplog.text + "\n".join(json.dumps(getattr(r, "tb", {}), default=str)
                                   for r in caplog.records)


@pytest.mark.parametrize("payloads", [False, True])
def test_exception_messages_reach_the_log_only_with_log_payloads(
        caplog: pytest.LogCaptureFixture, payloads: bool) -> None:
    caplog.set_level(logging.INFO, logger="torchbridge.serving")
    config = ServerConfig(max_batch_size=2, log_payloads=payloads)
    with LiveServer(LeakyErrorMLP().eval(), sample(1), config) as live:
        row = _row(POISON)
        row[0][1] = SECRET
        response = live.client.post("/predict", json={"inputs": row})
    text = _log_text(caplog)
    assert response.status_code == 500 and str(SECRET) not in response.text
    assert "ValueError" in text and "Traceback" in text
    assert (str(SECRET) in text) is payloads


# ------------------------------------------------------------------ 8: overflow, context
@pytest.mark.parametrize("shape", [[2**32, 2**32], [3, 6148914691236517206], [2**70]])
def test_v2_shapes_that_overflow_are_422(shape: list[int]) -> None:
    with LiveServer(mlp(), sample(1), ServerConfig(max_batch_size=2)) as live:
        response = live.client.post("/v2/models/model/infer", json={"inputs": [
            {"name": "input_0", "shape": shape, "datatype": "FP32", "data": []}]})
    assert response.status_code == 422, response.text


def test_generate_refuses_token_ids_beyond_the_vocabulary_with_422() -> None:
    with LiveServer(TinyGenerator(), None, ServerConfig()) as live:
        response = live.client.post("/generate", json={"input_ids": [1, 2],
                                                       "eos_token_id": 10**30})
    assert response.status_code == 422 and "eos_token_id" in response.json()["error"]


class _NoVocabulary(TinyGenerator):
    """A generator that does not say its vocabulary (no attribute, no embedding)."""

    vocab_size = None  # type: ignore[assignment]

    def __init__(self) -> None:
        torch.nn.Module.__init__(self)


def test_generate_refuses_token_ids_beyond_int64_when_the_vocabulary_is_unknown() -> None:
    with LiveServer(_NoVocabulary(), None, ServerConfig()) as live:
        response = live.client.post("/generate", json={"input_ids": [1, 10**30]})
    assert response.status_code == 422 and "input_ids" in response.json()["error"]


def test_generate_past_the_models_positions_is_422() -> None:
    with LiveServer(ShortContextGenerator(), None, ServerConfig()) as live:
        long = live.client.post("/generate", json={"input_ids": [1, 2, 3, 4],
                                                   "max_new_tokens": 5})
        fits = live.client.post("/generate", json={"input_ids": [1, 2, 3, 4],
                                                   "max_new_tokens": 4})
    assert long.status_code == 422 and "8 positions" in long.json()["error"]
    assert fits.status_code == 200


class _Broken(TinyGenerator):
    def stream(self, input_ids: Any, max_new_tokens: int, eos_token_id: Any = None) -> Any:
        raise IndexError("index out of range in self")
        yield  # pragma: no cover


def test_a_real_500_in_generate_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="torchbridge.serving")
    with LiveServer(_Broken(), None, ServerConfig()) as live:
        response = live.client.post("/generate", json={"input_ids": [1, 2]})
    assert response.status_code == 500
    text = _log_text(caplog)
    assert "generation failed" in text and "Traceback" in text and "IndexError" in text


# ------------------------------------------------------------------ 14: token latency
def test_generate_exports_time_to_first_token_and_inter_token_histograms() -> None:
    with LiveServer(TinyGenerator(), None, ServerConfig()) as live:
        streamed = measure_token_latency(live.client, [[1, 2, 3]], max_new_tokens=5,
                                         requests=3)
        registry = live.state.metrics.registry
        ttft = registry.get_sample_value(
            "torchbridge_generate_time_to_first_token_seconds_count")
        gaps = registry.get_sample_value("torchbridge_generate_inter_token_seconds_count")
        exposed = live.client.get("/metrics").text
    assert ttft == 3 and gaps == 3 * 4
    assert "torchbridge_generate_inter_token_seconds_bucket" in exposed
    assert len(streamed.ttft_s) == 3 and len(streamed.inter_token_s) == 12
    assert set(streamed.metrics()) == {"ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms"}
