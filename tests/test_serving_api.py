"""The server's HTTP API on a real uvicorn on 127.0.0.1: routes, errors, headers, logs."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from serving_models import FEATURES, POISON, FaultyMLP, TinyGenerator, mlp, sample

from torchbridge.core.subject import Dim, InputSpec
from torchbridge.serving import ServerConfig
from torchbridge.serving.live import LiveServer

ADMIN, INFER = "admin-key-0001", "infer-key-0002"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    config = ServerConfig(max_batch_size=8, api_keys={ADMIN: ("infer", "admin"),
                                                      INFER: ("infer",)},
                          max_body_bytes=64 * 1024, model_version="7")
    with LiveServer(FaultyMLP().eval(), sample(), config,
                    headers={"Authorization": f"Bearer {ADMIN}"}) as live:
        yield live


def test_predict_matches_eager_pytorch(server: LiveServer) -> None:
    x = sample(3)
    response = server.client.post("/predict", json={"inputs": x.tolist()})
    assert response.status_code == 200
    expected = FaultyMLP().eval()(x).detach()
    torch.testing.assert_close(torch.tensor(response.json()["outputs"]), expected)


def test_responses_carry_request_id_and_model_version(server: LiveServer) -> None:
    response = server.client.post("/predict", json={"inputs": sample(1).tolist()},
                                  headers={"X-Request-ID": "trace-abc.1"})
    assert response.headers["x-request-id"] == "trace-abc.1"
    assert response.headers["x-model-version"] == "7"
    assert response.json()["model_version"] == "7"


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b"{not json", 400, "not valid JSON"),
    (b'{"x": 1}', 400, '"inputs"'),
    (b'{"inputs": [[1, 2]]}', 422, "dim 1 must be 8"),
    (b'{"inputs": [1, 2, 3, 4, 5, 6, 7, 8]}', 422, "expected rank 2"),
    (b'{"inputs": [[1], [1, 2]]}', 422, "rectangular"),
    (b'{"inputs": [["a", "b", "c", "d", "e", "f", "g", "h"]]}', 422, "got strings"),
    (b'{"inputs": [[1e300, 0, 0, 0, 0, 0, 0, 0]]}', 422, "out of range for FP32"),
])
def test_malformed_input_gets_4xx_with_json_error(server: LiveServer, body: bytes, status: int,
                                                  fragment: str) -> None:
    response = server.client.post("/predict", content=body,
                                  headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert fragment in response.json()["error"]


def test_too_many_rows_in_one_request_is_422_naming_the_limit(server: LiveServer) -> None:
    response = server.client.post("/predict", json={"inputs": sample(9).tolist()})
    assert response.status_code == 422
    assert "allowed [1, 8]" in response.json()["error"]


def test_oversized_body_is_413_even_without_content_length(server: LiveServer) -> None:
    big = b'{"inputs": [' + b"0," * 40_000 + b"0]}"
    declared = server.client.post("/predict", content=big)
    chunked = server.client.post("/predict", content=iter([big[:1000], big[1000:]]))
    assert declared.status_code == 413
    assert chunked.status_code == 413


def test_model_error_is_500_and_the_server_keeps_serving(server: LiveServer) -> None:
    poisoned = sample(1)
    poisoned[0, 0] = POISON
    response = server.client.post("/predict", json={"inputs": poisoned.tolist()})
    assert response.status_code == 500
    assert "ValueError" in response.json()["error"]
    assert "poisoned" not in response.json()["error"]  # internals stay in the server log
    assert server.client.post("/predict", json={"inputs": sample(1).tolist()}).status_code \
        == 200


def test_missing_or_wrong_key_is_401_and_missing_role_is_403(server: LiveServer) -> None:
    url = server.url
    body = {"inputs": sample(1).tolist()}
    assert httpx.post(f"{url}/predict", json=body).status_code == 401
    assert httpx.post(f"{url}/predict", json=body,
                      headers={"X-API-Key": "not-a-key-123"}).status_code == 401
    assert httpx.get(f"{url}/metrics", headers={"X-API-Key": INFER}).status_code == 403
    assert httpx.get(f"{url}/v2/models/model",
                     headers={"X-API-Key": INFER}).status_code == 403
    assert httpx.post(f"{url}/predict", json=body,
                      headers={"X-API-Key": INFER}).status_code == 200


def test_probes_stay_open_when_auth_is_on(server: LiveServer) -> None:
    for path in ("/health", "/ready", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(server.url + path).status_code == 200, path


def test_metrics_parse_and_count_requests_by_endpoint_and_status(server: LiveServer) -> None:
    server.client.post("/predict", json={"inputs": sample(2).tolist()})
    server.client.post("/predict", content=b"{")
    families = {f.name: f for f in text_string_to_metric_families(
        server.client.get("/metrics").text)}
    totals = {(s.labels["endpoint"], s.labels["status"]): s.value
              for s in families["torchbridge_requests"].samples if s.name.endswith("_total")}
    assert totals[("/predict", "200")] >= 1
    assert totals[("/predict", "400")] >= 1
    for name in ("torchbridge_request_duration_seconds", "torchbridge_queue_duration_seconds",
                 "torchbridge_inference_duration_seconds", "torchbridge_batch_size"):
        assert families[name].type == "histogram", name
    info = families["torchbridge_model_info"].samples[0].labels
    assert info["version"] == "7"


def test_v2_metadata_describes_inputs_and_outputs(server: LiveServer) -> None:
    meta = server.client.get("/v2/models/model").json()
    assert meta["inputs"] == [{"name": "input_0", "datatype": "FP32", "shape": [-1, FEATURES]}]
    assert meta["outputs"] == [{"name": "output_0", "datatype": "FP32", "shape": [-1, 4]}]
    assert server.client.get("/v2/models/other").status_code == 404


def test_v2_infer_follows_the_open_inference_protocol(server: LiveServer) -> None:
    x = sample(2)
    response = server.client.post("/v2/models/model/infer", json={
        "id": "r1", "inputs": [{"name": "input_0", "shape": [2, FEATURES], "datatype": "FP32",
                                "data": x.flatten().tolist()}]})
    body = response.json()
    assert response.status_code == 200
    assert body["id"] == "r1" and body["model_name"] == "model"
    out = body["outputs"][0]
    assert out["shape"] == [2, 4] and out["datatype"] == "FP32"
    expected = FaultyMLP().eval()(x).detach()
    torch.testing.assert_close(torch.tensor(out["data"]).reshape(2, 4), expected)


def test_v2_infer_rejects_wrong_datatype_with_4xx(server: LiveServer) -> None:
    response = server.client.post("/v2/models/model/infer", json={
        "inputs": [{"name": "input_0", "shape": [1, FEATURES], "datatype": "INT64",
                    "data": [0] * FEATURES}]})
    assert response.status_code == 422
    assert "datatype must be FP32" in response.json()["error"]


def test_tritonclient_talks_to_the_v2_routes(server: LiveServer) -> None:
    tritonclient_http = pytest.importorskip("tritonclient.http")
    x = sample(2).numpy()
    client = tritonclient_http.InferenceServerClient(server.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {ADMIN}"}
    assert client.is_server_live(headers=headers)
    assert client.is_model_ready("model", headers=headers)
    assert client.get_model_metadata("model", headers=headers)["inputs"][0]["name"] == "input_0"
    request = tritonclient_http.InferInput("input_0", list(x.shape), "FP32")
    request.set_data_from_numpy(x, binary_data=False)
    wanted = tritonclient_http.InferRequestedOutput("output_0", binary_data=False)
    result = client.infer("model", [request], outputs=[wanted], headers=headers)
    expected = FaultyMLP().eval()(torch.from_numpy(x)).detach().numpy()
    torch.testing.assert_close(torch.from_numpy(result.as_numpy("output_0")),
                               torch.from_numpy(expected))


def test_openapi_describes_predict_with_the_model_signature(server: LiveServer) -> None:
    schema = server.client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    rows = body["schema"]["properties"]["inputs"]
    assert rows["maxItems"] == 8 and rows["items"]["minItems"] == FEATURES


def test_request_log_has_shapes_and_dtypes_but_no_values(
        server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="torchbridge.serving.access")
    x = torch.full((1, FEATURES), 0.123456)
    server.client.post("/predict", json={"inputs": x.tolist()},
                       headers={"X-Request-ID": "log-check-1"})
    records: list[dict[str, object]] = []
    for _ in range(200):  # the line is written just after the response is sent
        records = [r.tb for r in caplog.records
                   if getattr(r, "tb", {}).get("request_id") == "log-check-1"]
        if records:
            break
        threading.Event().wait(0.01)
    assert records[0]["inputs"] == {"input_0": {"shape": [1, FEATURES], "dtype": "float32"}}
    assert records[0]["status"] == 200 and records[0]["model_version"] == "7"
    assert "0.123" not in json.dumps(records[0])
    assert ADMIN not in json.dumps(records[0])  # only a digest of the key


def test_ready_is_503_until_warm_up_finishes() -> None:
    model = FaultyMLP().eval()
    release = threading.Event()
    original = model.forward

    def slow_first(x: torch.Tensor) -> torch.Tensor:
        release.wait(10)
        return original(x)

    model.forward = slow_first  # type: ignore[method-assign]
    live = LiveServer(model, sample(), ServerConfig(), ready_timeout=0.2)
    live._thread.start()
    try:
        with httpx.Client(base_url=live.url) as client:
            assert client.get("/health").status_code == 200
            assert client.get("/ready").status_code == 503
            assert client.get("/v2/health/ready").status_code == 503
            refused = client.post("/predict", json={"inputs": sample(1).tolist()})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            release.set()
            for _ in range(500):
                if client.get("/ready").status_code == 200:
                    break
                threading.Event().wait(0.01)
            assert client.get("/ready").status_code == 200
    finally:
        release.set()
        live._thread.stop()


def test_rate_limit_answers_429_with_retry_after() -> None:
    config = ServerConfig(rate_limit="1/s", rate_burst=2)
    with LiveServer(mlp(), sample(), config) as live:
        codes = [live.client.post("/predict", json={"inputs": sample(1).tolist()})
                 for _ in range(4)]
    assert [r.status_code for r in codes[:2]] == [200, 200]
    assert codes[-1].status_code == 429
    assert int(codes[-1].headers["retry-after"]) >= 1


def test_audit_log_records_which_version_served_which_request(tmp_path: Path) -> None:
    audit = tmp_path / "audit" / "requests.jsonl"
    config = ServerConfig(audit_log=str(audit), model_version="2024-11", weights_sha256="ab" * 32)
    with LiveServer(mlp(), sample(), config) as live:
        live.client.post("/predict", json={"inputs": sample(1).tolist()},
                         headers={"X-Request-ID": "audit-1"})
        live.client.get("/health")
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["request_id"], r["model_version"], r["status"]) for r in lines] == \
        [("audit-1", "2024-11", 200)]
    assert lines[0]["weights_sha256"] == "ab" * 32


def test_inputs_of_different_lengths_are_grouped_not_mixed() -> None:
    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=1)

    spec = InputSpec(dims={"seq": Dim(input=0, axis=1, min=1, max=16)})
    with LiveServer(Pool(), torch.ones(2, 4, 3), ServerConfig(), input_spec=spec) as live:
        short = live.client.post("/predict", json={"inputs": torch.ones(1, 2, 3).tolist()})
        long = live.client.post("/predict", json={"inputs": torch.ones(1, 9, 3).tolist()})
        too_long = live.client.post("/predict", json={"inputs": torch.ones(1, 17, 3).tolist()})
    assert short.json()["outputs"] == [[2.0, 2.0, 2.0]]
    assert long.json()["outputs"] == [[9.0, 9.0, 9.0]]
    assert too_long.status_code == 422 and "allowed [1, 16]" in too_long.json()["error"]


def test_generate_returns_tokens_as_json_and_as_server_sent_events() -> None:
    with LiveServer(TinyGenerator(), torch.tensor([[1, 2]]), ServerConfig()) as live:
        whole = live.client.post("/generate", json={"input_ids": [3, 4], "max_new_tokens": 3})
        with live.client.stream("POST", "/generate", json={
                "input_ids": [[14]], "max_new_tokens": 3, "stream": True}) as streamed:
            events = [line for line in streamed.iter_lines() if line]
        bad = live.client.post("/generate", json={"input_ids": [99]})
    assert whole.json()["tokens"] == [[5, 6, 7]]
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert events[:3] == ['data: {"index":0,"tokens":[15]}', 'data: {"index":1,"tokens":[0]}',
                          'data: {"index":2,"tokens":[1]}']
    assert events[3] == "event: done"
    assert bad.status_code == 422 and "[0, 16)" in bad.json()["error"]


def test_unknown_route_is_a_json_404(server: LiveServer) -> None:
    response = server.client.get("/nope")
    assert response.status_code == 404 and "error" in response.json()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Only runs on cuda")
def test_cuda_server_matches_eager_and_exports_gpu_metrics() -> None:
    model = mlp().cuda()
    x = sample(3)
    with LiveServer(model, x, ServerConfig(device="cuda")) as live:
        response = live.client.post("/predict", json={"inputs": x.tolist()})
        metrics = live.client.get("/metrics").text
    expected = model(x.cuda()).detach().cpu()
    torch.testing.assert_close(torch.tensor(response.json()["outputs"]), expected)
    assert "torchbridge_gpu_memory_used_bytes{" in metrics
    assert "torchbridge_gpu_utilization_ratio{" in metrics


def test_payload_values_are_logged_only_when_the_operator_turns_it_on(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="torchbridge.serving.access")
    with LiveServer(mlp(), sample(), ServerConfig(log_payloads=True)) as live:
        live.client.post("/predict", json={"inputs": [[0.25] * FEATURES]},
                         headers={"X-Request-ID": "payload-1"})
        for _ in range(200):
            records = [r.tb for r in caplog.records
                       if getattr(r, "tb", {}).get("request_id") == "payload-1"]
            if records:
                break
            threading.Event().wait(0.01)
    assert records[0]["inputs"]["input_0"]["values"] == [[0.25] * FEATURES]


class GenerateOnly(torch.nn.Module):
    """A model with ``generate`` but no ``stream``: appends ``last + 1`` tokens."""

    vocab_size = 16

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 4,
                 eos_token_id: int | None = None) -> torch.Tensor:
        last = input_ids[:, -1:]
        new = torch.cat([(last + i + 1) % 16 for i in range(max_new_tokens)], dim=1)
        return torch.cat([input_ids, new], dim=1)


def test_generate_works_for_models_with_only_a_generate_method() -> None:
    with LiveServer(GenerateOnly(), torch.tensor([[1]]), ServerConfig(warmup=False)) as live:
        whole = live.client.post("/generate", json={"input_ids": [[2], [9]],
                                                    "max_new_tokens": 2})
    assert whole.json()["tokens"] == [[3, 4], [10, 11]]


def test_a_stream_past_its_deadline_ends_with_an_error_event() -> None:
    class Slow(TinyGenerator):
        def stream(self, input_ids: torch.Tensor, max_new_tokens: int,
                   eos_token_id: int | None = None) -> Iterator[torch.Tensor]:
            for token in super().stream(input_ids, max_new_tokens, eos_token_id):
                threading.Event().wait(0.05)
                yield token

    with LiveServer(Slow(), torch.tensor([[1]]), ServerConfig(max_new_tokens=200)) as live:
        with live.client.stream("POST", "/generate", headers={"X-Request-Timeout": "0.3"},
                                json={"input_ids": [1], "max_new_tokens": 200,
                                      "stream": True}) as response:
            events = [line for line in response.iter_lines() if line]
        after = live.client.post("/generate", json={"input_ids": [1], "max_new_tokens": 1})
    assert 1 <= sum(e.startswith("data: {\"index\"") for e in events) < 200
    assert "event: error" in events
    assert '"status":504' in events[-1]
    assert after.status_code == 200


def test_integral_json_floats_count_as_integers_and_fractions_are_refused() -> None:
    with LiveServer(TinyGenerator(), torch.tensor([[1, 2]]), ServerConfig()) as live:
        whole = live.client.post("/generate", json={"input_ids": [3.0, 4], "max_new_tokens": 2.0})
        fraction = live.client.post("/generate", json={"input_ids": [3.5]})
        predicted = live.client.post("/predict", json={"inputs": [[1.0, 2.0]]})
        refused = live.client.post("/predict", json={"inputs": [[1.5, 2.0]]})
    assert whole.json()["tokens"] == [[5, 6]]
    assert fraction.status_code == 422
    assert predicted.status_code == 200
    assert refused.status_code == 422 and "expected INT64" in refused.json()["error"]
