"""Variants of issue 14's attacks, replayed against a real server on 127.0.0.1.

Each test is one attack that broke the server (or a near variant of one that did): the
assertion is what a client must see instead of a wrong 200, a hang or a leak. Models are
tiny; requests that must share one forward pass are queued while the worker is held
inside an earlier pass (see :func:`_as_one_batch`).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from serving_models import FEATURES, POISON, TinyGenerator, mlp, sample
from torch import nn

from torchbridge.serving import ServerConfig
from torchbridge.serving.live import LiveServer

# ---------------------------------------------------------------------- helpers


class Held(nn.Module):
    """Wraps a model; while ``hold`` is clear a forward pass waits inside the worker, so
    requests sent meanwhile queue up and are then served as one batch."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def forward(self, x: torch.Tensor) -> Any:
        self.entered.set()
        self.hold.wait(20)
        return self.inner(x)


def _rows(count: int, seed: int, first: float | None = None) -> list[list[float]]:
    x = torch.randn(count, FEATURES, generator=torch.Generator().manual_seed(seed))
    if first is not None:
        x[0, 0] = first
    return x.tolist()


def _as_one_batch(live: LiveServer, held: Held, bodies: list[Any], path: str = "/predict",
                  blocker_body: Any = None) -> list[httpx.Response]:
    """Post ``bodies`` so that the worker takes them together (they queue while it is
    held inside a forward pass for an extra request, which is answered first); asserts
    that they did share one forward pass."""
    held.hold.clear()
    held.entered.clear()
    with ThreadPoolExecutor(len(bodies) + 1) as pool:
        blocker = pool.submit(live.client.post, "/predict",
                              json=blocker_body or {"inputs": _rows(1, 999)})
        assert held.entered.wait(10)
        futures = [pool.submit(live.client.post, path, json=b) for b in bodies]
        deadline = time.monotonic() + 10
        while live.state.batcher.depth < len(bodies) and time.monotonic() < deadline:
            time.sleep(0.005)
        held.hold.set()
        assert blocker.result().status_code == 200
        responses = [f.result() for f in futures]
    if live.state.unbatched_reason == "":
        assert {r.headers["x-batched-with"] for r in responses if r.status_code == 200} \
            <= {str(len(bodies)), "1"}
    return responses


def _close(got: Any, want: torch.Tensor) -> None:
    torch.testing.assert_close(torch.tensor(got, dtype=want.dtype), want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------- 1: un-batching by coincidence


class CollidingNames(nn.Module):
    """A batch-level output whose name, flattened, is the same as a per-row output's:
    ``{"a.b": summary, "a": {"b": logits}}``, three classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(FEATURES, 3)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        logits = self.proj(x)
        return {"a.b": logits.mean(0), "a": {"b": logits}}


def test_outputs_whose_flat_names_collide_keep_both_and_are_never_split() -> None:
    inner = CollidingNames().eval()
    held = Held(inner)
    with LiveServer(held, sample(1), ServerConfig(max_batch_size=3)) as live:
        bodies = [{"inputs": _rows(1, seed)} for seed in range(3)]
        responses = _as_one_batch(live, held, bodies)
        names = [o["name"] for o in live.client.get("/v2/models/model").json()["outputs"]]
    assert len(set(names)) == 2, names
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        alone = inner(torch.tensor(body["inputs"]))
        _close(response.json()["outputs"]["a.b"], alone["a.b"])


class MatesAtThree(nn.Module):
    """Rows depend on their batch mates only when a batch holds exactly three rows."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out - out.mean(0, keepdim=True) if x.shape[0] == 3 else out


def test_rows_that_depend_on_mates_only_at_three_rows_are_not_batched() -> None:
    inner = MatesAtThree().eval()
    held = Held(inner)
    with LiveServer(held, sample(1), ServerConfig(max_batch_size=4)) as live:
        bodies = [{"inputs": _rows(1, seed)} for seed in range(3)]
        responses = _as_one_batch(live, held, bodies)
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        _close(response.json()["outputs"], inner(torch.tensor(body["inputs"])))


class Recurrent(nn.Module):
    """A one-layer GRU: its final state ``(layers, batch, hidden)`` carries the batch on
    dim 1, and dim 0 is 1 at every batch size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gru = nn.GRU(FEATURES, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.gru(x)
        return out, state


def test_an_output_with_the_batch_on_dim_1_is_split_on_dim_1() -> None:
    inner = Recurrent().eval()
    held = Held(inner)
    with LiveServer(held, torch.randn(1, 3, FEATURES), ServerConfig(max_batch_size=4)) as live:
        bodies = [{"inputs": torch.randn(rows, 3, FEATURES).tolist()} for rows in (2, 1)]
        responses = _as_one_batch(live, held, bodies,
                                  blocker_body={"inputs": torch.randn(1, 3, FEATURES).tolist()})
        assert live.state.unbatched_reason == ""
    assert responses[0].headers["x-batched-with"] == "2"
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        out, state = inner(torch.tensor(body["inputs"]))
        _close(response.json()["outputs"][0], out)
        _close(response.json()["outputs"][1], state)


# ------------------------------------------------------- 2: non-finite values


class Inf(nn.Module):
    """Answers +inf, -inf or NaN (by the first feature: 1, 2, 3) in FP16, FP32 and FP64."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        value = {1.0: float("inf"), 2.0: float("-inf"), 3.0: float("nan")}.get(
            float(x[0, 0]), 0.0)
        out = x[:, :2] * 0 + value
        return {"h": out.half(), "f": out.float(), "d": out.double()}


@pytest.mark.parametrize("trigger", [1.0, 2.0, 3.0])
def test_every_json_encoding_refuses_non_finite_values_and_binary_carries_them(
        trigger: float) -> None:
    with LiveServer(Inf(), torch.zeros(1, FEATURES), ServerConfig(max_batch_size=2)) as live:
        row = [[trigger] + [0.0] * (FEATURES - 1)]
        predict = live.client.post("/predict", json={"inputs": row})
        entry = {"name": "input_0", "shape": [1, FEATURES], "datatype": "FP32",
                 "data": row[0]}
        replies = {name: live.client.post("/v2/models/model/infer", json={
            "inputs": [entry], "outputs": [{"name": name}]}) for name in ("h", "f", "d")}
        binary = live.client.post("/v2/models/model/infer", json={
            "inputs": [entry], "parameters": {"binary_data_output": True}})
    assert predict.status_code == 500 and "non-finite" in predict.json()["error"]
    for name, reply in replies.items():
        assert reply.status_code == 500, (name, reply.text)
        assert f"'{name}'" in reply.json()["error"]
    assert binary.status_code == 200
    header = int(binary.headers["inference-header-content-length"])
    half = np.frombuffer(binary.content[header:header + 4], dtype="<f2")
    assert np.array_equal(half, np.full(2, {1.0: np.inf, 2.0: -np.inf, 3.0: np.nan}[trigger],
                                        dtype=np.float16), equal_nan=True)


# ------------------------------------------------------- 3: row counts


class WrongRows(nn.Module):
    """Answers twice the rows for a POISON row, none for a row whose first feature is -POISON."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if bool((x[:, 0] == POISON).any()):
            return torch.cat([out, out])
        if bool((x[:, 0] == -POISON).any()):
            return out[:0]
        return out


@pytest.mark.parametrize("first", [POISON, -POISON])
def test_a_lone_request_answered_with_more_or_no_rows_is_a_500(first: float) -> None:
    with LiveServer(WrongRows().eval(), sample(1), ServerConfig(max_batch_size=4)) as live:
        response = live.client.post("/predict", json={"inputs": _rows(1, 1, first)})
    assert response.status_code == 500 and "row(s)" in response.json()["error"]


# ------------------------------------------------------- 5: BaseExceptions


class _Custom(BaseException):
    pass


class Raising(nn.Module):
    """Raises by the first feature: 1 StopIteration, 2 KeyboardInterrupt, 3 GeneratorExit,
    4 a custom BaseException."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = {1.0: StopIteration, 2.0: KeyboardInterrupt, 3.0: GeneratorExit,
                4.0: _Custom}.get(float(x[0, 0]))
        if kind is not None:
            raise kind("row")
        return self.inner(x)


@pytest.fixture(scope="module")
def raising() -> Iterator[LiveServer]:
    config = ServerConfig(max_batch_size=4, timeout_seconds=5)
    with LiveServer(Raising().eval(), sample(1) + 10, config) as live:
        yield live


@pytest.mark.parametrize("kind", [1.0, 2.0, 3.0, 4.0])
def test_a_model_raising_any_base_exception_gets_a_prompt_500_and_serving_goes_on(
        raising: LiveServer, kind: float) -> None:
    start = time.monotonic()
    response = raising.client.post("/predict", json={"inputs": _rows(1, 0, kind)})
    assert response.status_code == 500, response.text
    assert time.monotonic() - start < 3
    assert raising.client.post("/predict", json={"inputs": _rows(1, 1)}).status_code == 200
    assert raising.client.get("/health").status_code == 200


class _Reasoned(ValueError):
    def __init__(self, secret: str) -> None:
        super().__init__("bad row")
        self.reason = secret


class ReasonLeak(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0] == POISON).any()):
            raise _Reasoned(f"row {x[0, 1].item():.6f}")
        return self.inner(x)


def test_a_model_exceptions_attributes_reach_neither_the_answer_nor_metric_labels() -> None:
    with LiveServer(ReasonLeak().eval(), sample(1), ServerConfig(max_batch_size=2)) as live:
        rows = _rows(1, 5, POISON)
        response = live.client.post("/predict", json={"inputs": rows})
        metrics = live.state.metrics.render().decode()
    secret = f"{rows[0][1]:.6f}"
    assert response.status_code == 500
    assert secret not in response.text and secret not in metrics
    assert 'reason="_Reasoned"' in metrics


# ------------------------------------------------------- generate


class BadGenerator(TinyGenerator):
    """``mode`` picks the fault: one token for every prompt, an endless stream, a token
    beyond the vocabulary, a float token, ``generate`` that drops the prompt."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def stream(self, input_ids: torch.Tensor, max_new_tokens: int,
               eos_token_id: int | None = None) -> Iterator[torch.Tensor]:
        rows = input_ids.shape[0]
        while True:
            if self.mode == "short":
                yield torch.tensor([1])
            elif self.mode == "vocab":
                yield torch.full((rows,), 10**30 if rows > 1 else 99)
            elif self.mode == "float":
                yield torch.full((rows,), float("nan"))
            else:
                yield torch.ones(rows, dtype=torch.long)


@pytest.mark.parametrize("mode", ["short", "vocab", "float"])
def test_generated_tokens_that_do_not_fit_the_request_are_a_500(mode: str) -> None:
    with LiveServer(BadGenerator(mode), torch.tensor([[1, 2]]), ServerConfig()) as live:
        plain = live.client.post("/generate", json={"input_ids": [[1, 2], [3, 4]],
                                                    "max_new_tokens": 3})
        streamed = live.client.post("/generate", json={"input_ids": [[1, 2], [3, 4]],
                                                       "max_new_tokens": 3, "stream": True})
    assert plain.status_code == 500, plain.text
    assert "event: error" in streamed.text and "event: done" not in streamed.text


def test_a_stream_that_ignores_max_new_tokens_is_cut_at_it() -> None:
    with LiveServer(BadGenerator("endless"), torch.tensor([[1, 2]]), ServerConfig()) as live:
        response = live.client.post("/generate", json={"input_ids": [1, 2],
                                                       "max_new_tokens": 3},
                                    headers={"X-Request-Timeout": "3"})
    assert response.status_code == 200, response.text
    assert response.json()["tokens"] == [[1, 1, 1]]


class PromptDropper(nn.Module):
    """``generate`` that returns only the new tokens (not the prompt first)."""

    vocab_size = 16

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids.float()

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int,
                 eos_token_id: int | None = None) -> torch.Tensor:
        return torch.full((input_ids.shape[0], max_new_tokens), 5)


def test_generate_that_does_not_return_the_prompt_first_is_a_500() -> None:
    with LiveServer(PromptDropper(), torch.tensor([[1, 2]]), ServerConfig()) as live:
        response = live.client.post("/generate", json={"input_ids": [1, 2, 3],
                                                       "max_new_tokens": 2})
    assert response.status_code == 500 and "prompt" in response.json()["error"]


@pytest.mark.parametrize("extra", [{"temperature": 0.7}, {"top_k": 5}, {"do_sample": True}])
def test_generate_refuses_parameters_it_would_silently_ignore(extra: dict[str, Any]) -> None:
    with LiveServer(TinyGenerator(), torch.tensor([[1, 2]]), ServerConfig()) as live:
        response = live.client.post("/generate", json={"input_ids": [1, 2], **extra})
    assert response.status_code == 422 and next(iter(extra)) in response.json()["error"]


# ------------------------------------------------------- v2 and binary data


class Unsigned(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"u16": x.to(torch.uint16), "u32": x.to(torch.uint32), "u64": x.to(torch.uint64)}


def test_unsigned_outputs_carry_their_v2_datatype_in_json_and_binary() -> None:
    sample_ints = torch.tensor([[1, 2, 3]], dtype=torch.int32)
    with LiveServer(Unsigned(), sample_ints, ServerConfig(max_batch_size=2)) as live:
        entry = {"name": "input_0", "shape": [1, 3], "datatype": "INT32", "data": [7, 8, 9]}
        as_json = live.client.post("/v2/models/model/infer", json={"inputs": [entry]})
        as_binary = live.client.post("/v2/models/model/infer", json={
            "inputs": [entry], "parameters": {"binary_data_output": True}})
    assert as_json.status_code == 200
    kinds = {o["name"]: o["datatype"] for o in as_json.json()["outputs"]}
    assert kinds == {"u16": "UINT16", "u32": "UINT32", "u64": "UINT64"}
    header = int(as_binary.headers["inference-header-content-length"])
    head = json.loads(as_binary.content[:header])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 6
    assert np.frombuffer(as_binary.content[header:header + 6], "<u2").tolist() == [7, 8, 9]


class BoolCount(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(-1)  # how many are true


def test_binary_bool_bytes_other_than_0_and_1_are_true_not_raw_bytes() -> None:
    with LiveServer(BoolCount(), torch.ones(1, 3, dtype=torch.bool),
                    ServerConfig(max_batch_size=2)) as live:
        head = json.dumps({"inputs": [{"name": "input_0", "shape": [1, 3], "datatype": "BOOL",
                                       "parameters": {"binary_data_size": 3}}]}).encode()
        response = live.client.post("/v2/models/model/infer", content=head + b"\x02\x00\xff",
                                    headers={"Inference-Header-Content-Length": str(len(head)),
                                             "Content-Type": "application/octet-stream"})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert response.json()["outputs"][0]["data"] == [2]


@pytest.fixture(scope="module")
def keyless() -> Iterator[LiveServer]:
    with LiveServer(mlp(), sample(1), ServerConfig(max_batch_size=2, read_timeout_s=1.0)) as live:
        yield live


def test_v2_inputs_named_twice_are_refused(keyless: LiveServer) -> None:
    entry = {"name": "input_0", "shape": [1, FEATURES], "datatype": "FP32",
             "data": _rows(1, 0)[0]}
    response = keyless.client.post("/v2/models/model/infer", json={"inputs": [entry, entry]})
    assert response.status_code == 400 and "more than once" in response.json()["error"]


@pytest.mark.parametrize("value", ["-1", "1e3", "99999", "abc", "0x10", "1_0"])
def test_a_bad_inference_header_content_length_is_a_400(keyless: LiveServer,
                                                          value: str) -> None:
    body = json.dumps({"inputs": [{"name": "input_0", "shape": [1, FEATURES],
                                   "datatype": "FP32", "data": _rows(1, 0)[0]}]}).encode()
    response = keyless.client.post("/v2/models/model/infer", content=body,
                                   headers={"Inference-Header-Content-Length": value,
                                            "Content-Type": "application/json"})
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("kind", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_content_types_with_parameters_or_capitals_pass(keyless: LiveServer,
                                                             kind: str) -> None:
    response = keyless.client.post("/predict", content=json.dumps({"inputs": _rows(1, 0)}),
                                   headers={"Content-Type": kind})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("kind", ["text/plain; charset=application/json", "application/jsonx",
                                  "multipart/form-data; boundary=x", ""])
def test_types_a_page_can_post_are_415_however_spelled(keyless: LiveServer, kind: str) -> None:
    headers = {"Content-Type": kind} if kind else {}
    response = keyless.client.post("/predict", content=json.dumps({"inputs": _rows(1, 0)}),
                                   headers=headers)
    assert response.status_code == 415, response.text


@pytest.mark.parametrize("host", ["localhost.evil.com", "127.0.0.1.nip.io", "evil.com:80",
                                  "[::2]", "localhost:80@evil.com", "0x7f000001"])
def test_rebinding_host_names_are_400(keyless: LiveServer, host: str) -> None:
    response = keyless.client.get("/v2/models/model", headers={"Host": host})
    assert response.status_code == 400, host


def test_a_websocket_handshake_is_refused_before_any_route(keyless: LiveServer) -> None:
    port = int(keyless.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /predict HTTP/1.1\r\nHost: evil.com\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        head = sock.recv(4096)
    assert not head.startswith(b"HTTP/1.1 101"), head[:200]


# ------------------------------------------------------- routes with keys


@pytest.fixture(scope="module")
def keyed() -> Iterator[LiveServer]:
    config = ServerConfig(max_batch_size=2, api_keys={"admin-key-0001": ("admin", "infer")})
    with LiveServer(mlp(), sample(1), config) as live:
        yield live


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/predict/"), ("POST", "/PREDICT"), ("POST", "/pre%64ict"),
    ("POST", "//predict"), ("POST", "/v2/models/model/infer/"), ("POST", "/v2/models/x/infer"),
    ("POST", "/v2/models/model/versions/1/infer"), ("HEAD", "/metrics"), ("GET", "/v2"),
    ("OPTIONS", "/predict"), ("GET", "/v2/models/model"), ("GET", "/metrics/"),
    ("GET", "/v2/models/model/versions/1"), ("POST", "/generate")])
def test_nothing_but_probes_and_docs_answers_without_a_key(keyed: LiveServer, method: str,
                                                           path: str) -> None:
    body = json.dumps({"inputs": _rows(1, 0)}).encode()
    response = keyed.client.request(method, path, content=body,
                                    headers={"Content-Type": "application/json"})
    assert response.status_code == 401, (path, response.status_code)


# ------------------------------------------------------- faults in the fallback path


class Reusing(nn.Module):
    """Writes every answer into one buffer it reuses (as static-buffer models do) and
    raises on a POISON row."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()
        self.buffer = torch.zeros(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0] == POISON).any()):
            raise ValueError("poisoned row")
        out = self.buffer[: x.shape[0]]
        out.copy_(self.inner(x))
        return out


def test_a_batch_re_run_request_by_request_answers_each_its_own_values() -> None:
    inner = Reusing().eval()
    held = Held(inner)
    with LiveServer(held, sample(1), ServerConfig(max_batch_size=4)) as live:
        bodies = [{"inputs": _rows(1, 1)}, {"inputs": _rows(1, 2)},
                  {"inputs": _rows(1, 3, POISON)}]
        responses = _as_one_batch(live, held, bodies)
        assert live.state.batcher.fallbacks == 1
    assert responses[2].status_code == 500
    for body, response in zip(bodies[:2], responses[:2], strict=True):
        assert response.status_code == 200
        _close(response.json()["outputs"], inner.inner(torch.tensor(body["inputs"])))


# ------------------------------------------------------- logs


def test_a_failed_batch_logs_no_input_values(caplog: pytest.LogCaptureFixture) -> None:
    from serving_models import LeakyErrorMLP

    caplog.set_level(logging.DEBUG, logger="torchbridge")
    with LiveServer(LeakyErrorMLP().eval(), sample(1), ServerConfig(max_batch_size=2)) as live:
        rows = _rows(1, 7, POISON)
        assert live.client.post("/predict", json={"inputs": rows}).status_code == 500
    secret = repr(rows[0][1])[:8]
    text = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert secret not in text


# ------------------------------------------------------- padding by shape coincidence

PADDED_SPEC = {"dims": {"seq": {"input": ["input_ids", "attention_mask"], "axis": 1,
                                "min": 1, "max": 8}}}


class MaskedPool(nn.Module):
    """Per-token features and a masked mean over 4 features: ``pooled`` is ``(batch, 4)``,
    so a padded batch whose longest request has 4 tokens has 4 on ``pooled``'s axis 1 too."""

    serving_padding = {"dim": "seq", "value": 0, "mask": "attention_mask"}

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(32, 4)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        tokens = self.embed(input_ids) * attention_mask[..., None]
        pooled = tokens.sum(1) / attention_mask.sum(1, keepdim=True)
        return {"pooled": pooled, "tokens": tokens}


class HeldPair(Held):
    serving_padding = MaskedPool.serving_padding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        self.entered.set()
        self.hold.wait(20)
        return self.inner(input_ids, attention_mask)


def _ids(length: int) -> dict[str, Any]:
    return {"inputs": {"input_ids": [[(5 * i + 1) % 32 for i in range(length)]],
                       "attention_mask": [[1] * length]}}


def test_an_output_whose_size_equals_the_padded_length_is_not_cut() -> None:
    inner = MaskedPool().eval()
    held = HeldPair(inner)
    sample_pair = {"input_ids": torch.ones(1, 3, dtype=torch.long),
                   "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    with LiveServer(held, sample_pair, ServerConfig(max_batch_size=4),
                    input_spec=PADDED_SPEC) as live:
        bodies = [_ids(4), _ids(2)]
        responses = _as_one_batch(live, held, bodies, blocker_body=_ids(3))
    assert responses[1].headers["x-batched-with"] == "2"
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        alone = inner(**{k: torch.tensor(v) for k, v in body["inputs"].items()})
        for name in ("pooled", "tokens"):
            _close(response.json()["outputs"][name], alone[name])


# ------------------------------------------------------- objects and keys in outputs


class IntAndStrKeys(nn.Module):
    """``{0: logits, "0": summary}``: two outputs whose keys are the same as strings."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> dict[Any, torch.Tensor]:
        logits = self.inner(x)
        return {0: logits, "0": logits.sum(1)}


def test_output_keys_that_collide_as_strings_keep_the_server_not_ready() -> None:
    with pytest.raises(RuntimeError, match=r"warm-up failed.*'0'"):
        LiveServer(IntAndStrKeys().eval(), sample(1), ServerConfig(max_batch_size=2),
                   ready_timeout=20).start()


@pytest.mark.parametrize("kind", [KeyboardInterrupt, GeneratorExit, _Custom])
def test_a_base_exception_in_warm_up_keeps_the_server_alive_but_not_ready(
        kind: type[BaseException]) -> None:
    class Always(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise kind("warm-up")

    live = LiveServer(Always(), sample(1), ServerConfig(max_batch_size=2), ready_timeout=20)
    with pytest.raises(RuntimeError, match=kind.__name__):
        live.start()


# ------------------------------------------------------- slow and greedy clients


def _port(live: LiveServer) -> int:
    return int(live.url.rsplit(":", 1)[1])


def _read_until_closed(sock: socket.socket, limit_s: float) -> bytes:
    sock.settimeout(limit_s)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def test_slow_headers_of_a_second_keep_alive_request_are_cut(keyless: LiveServer) -> None:
    body = json.dumps({"inputs": _rows(1, 0)}).encode()
    first = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % len(body)) + body
    with socket.create_connection(("127.0.0.1", _port(keyless)), timeout=5) as sock:
        sock.sendall(first)
        time.sleep(0.3)  # the first answer arrives; the connection stays open
        start = time.monotonic()
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            for _ in range(100):  # 5 s of one byte per 50 ms
                sock.sendall(b"a")
                time.sleep(0.05)
        except OSError:
            pass  # closed by the server, as it should
        raw = _read_until_closed(sock, 5)
    assert raw.count(b"HTTP/1.1 ") >= 1 and time.monotonic() - start < 6
    assert b"408" in raw.split(b"HTTP/1.1 ")[-1][:4]


def test_a_slow_body_on_a_route_that_does_not_read_it_does_not_hold_the_connection(
        keyless: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", _port(keyless)), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
        start = time.monotonic()
        closed = False
        while time.monotonic() - start < 5:
            try:
                sock.sendall(b"x")
            except OSError:
                closed = True
                break
            time.sleep(0.05)
        raw = _read_until_closed(sock, 1)
    assert closed or raw.endswith(b"}") or b"408" in raw, raw[-200:]
    assert time.monotonic() - start < 6


def test_headers_larger_than_the_limit_are_a_json_431_before_they_are_all_read(
        keyless: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", _port(keyless)), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        try:
            while sent < 8 * 2**20:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass
        raw = _read_until_closed(sock, 2)
    assert sent < 8 * 2**20, "the server read 8 MiB of headers"
    assert raw.startswith(b"HTTP/1.1 431") and b'{"error"' in raw


# ------------------------------------------------------- more output structures


class TupleSummary(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.inner(x)
        return logits, logits.mean(0), logits.sum()  # per row, (4,) batch-level, scalar


class WithTable(nn.Module):
    """A per-row output beside a constant table of ``max_batch_size`` (3) rows."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()
        self.table = torch.arange(12.0).reshape(3, 4)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        logits = self.inner(x)
        return {"rows": {"logits": logits}, "table": self.table + logits.mean()}


@pytest.mark.parametrize("build", [TupleSummary, WithTable])
def test_batch_level_outputs_of_any_structure_answer_each_request_its_own(
        build: type[nn.Module]) -> None:
    inner = build().eval()
    held = Held(inner)
    with LiveServer(held, sample(1), ServerConfig(max_batch_size=3)) as live:
        assert live.state.unbatched_reason
        bodies = [{"inputs": _rows(1, seed)} for seed in range(3)]
        responses = _as_one_batch(live, held, bodies)
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        alone = inner(torch.tensor(body["inputs"]))
        got = response.json()["outputs"]
        if isinstance(alone, tuple):
            for index, value in enumerate(alone):
                _close(got[index], value)
        else:
            _close(got["table"], alone["table"])
            _close(got["rows"]["logits"], alone["rows"]["logits"])


class _Blob:
    pass


class ObjectsInOutput(nn.Module):
    """An encoder-decoder cache, None, a string, an unknown object and a dataclass tree."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        from transformers import DynamicCache, EncoderDecoderCache

        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        keys = x[:, None, :, None].expand(-1, 2, -1, 3).contiguous()
        cache.self_attention_cache.update(keys, keys, 0)
        cache.cross_attention_cache.update(keys, keys, 0)
        return {"logits": self.inner(x), "cache": cache, "none": None, "label": "ok",
                "blob": _Blob()}


def test_an_encoder_decoder_cache_and_other_objects_follow_the_documented_rule() -> None:
    pytest.importorskip("transformers")
    model = ObjectsInOutput().eval()
    with LiveServer(model, sample(1), ServerConfig(max_batch_size=2)) as live:
        rows = _rows(2, 3)
        response = live.client.post("/predict", json={"inputs": rows})
        names = [o["name"] for o in live.client.get("/v2/models/model").json()["outputs"]]
    assert response.status_code == 200, response.text
    got = response.json()["outputs"]
    assert set(got) == {"logits", "cache", "none", "label"}  # the unknown object dropped
    assert got["none"] is None and got["label"] == "ok"
    keys = torch.tensor(rows)[:, None, :, None].expand(-1, 2, -1, 3)
    _close(got["cache"]["self_attention_cache"]["layers"][0]["keys"], keys)
    assert "cache.cross_attention_cache.layers[0].values" in names


class StopInGenerate(nn.Module):
    vocab_size = 16

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids.float()

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int,
                 eos_token_id: int | None = None) -> torch.Tensor:
        return next(iter(()))  # StopIteration escapes


def test_stop_iteration_from_generate_is_a_prompt_500() -> None:
    with LiveServer(StopInGenerate(), torch.tensor([[1, 2]]),
                    ServerConfig(timeout_seconds=5)) as live:
        start = time.monotonic()
        response = live.client.post("/generate", json={"input_ids": [1, 2]})
    assert response.status_code == 500 and time.monotonic() - start < 3


class Ints(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("value", [9.223372036854776e18, -9.3e18, 1.8446744073709552e19])
def test_a_float_just_past_int64_is_refused_not_wrapped(value: float) -> None:
    with LiveServer(Ints(), torch.zeros(1, 2, dtype=torch.long),
                    ServerConfig(max_batch_size=2)) as live:
        response = live.client.post("/predict", json={"inputs": [[value, 1]]})
    assert response.status_code == 422, response.text


class Pair(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"sum": a + b, "diff": a - b}


def test_tritonclient_mixing_binary_and_json_inputs_and_outputs() -> None:
    http = pytest.importorskip("tritonclient.http")
    pair = (torch.zeros(1, 3), torch.zeros(1, 3))
    with LiveServer(Pair(), pair, ServerConfig(max_batch_size=4)) as live:
        client = http.InferenceServerClient(live.url.removeprefix("http://"))
        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        b = np.full((2, 3), 0.5, dtype=np.float32)
        first = http.InferInput("input_0", [2, 3], "FP32")
        first.set_data_from_numpy(a)  # binary
        second = http.InferInput("input_1", [2, 3], "FP32")
        second.set_data_from_numpy(b, binary_data=False)
        outputs = [http.InferRequestedOutput("sum"),
                   http.InferRequestedOutput("diff", binary_data=False)]
        result = client.infer("model", [first, second], outputs=outputs)
    np.testing.assert_allclose(result.as_numpy("sum"), a + b)
    np.testing.assert_allclose(result.as_numpy("diff"), a - b)


def test_an_output_asked_in_json_stays_json_under_binary_data_output(
        keyless: LiveServer) -> None:
    entry = {"name": "input_0", "shape": [1, FEATURES], "datatype": "FP32",
             "data": _rows(1, 0)[0]}
    response = keyless.client.post("/v2/models/model/infer", json={
        "inputs": [entry], "outputs": [{"name": "output_0", "parameters": {"binary_data": False}}],
        "parameters": {"binary_data_output": True}})
    assert response.status_code == 200 and len(response.json()["outputs"][0]["data"]) == 4


def test_huge_headers_of_a_pipelined_request_are_refused_while_the_first_runs() -> None:
    inner = mlp()
    held = Held(inner)
    with LiveServer(held, sample(1), ServerConfig(max_batch_size=2)) as live:
        body = json.dumps({"inputs": _rows(1, 0)}).encode()
        first = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        held.hold.clear()
        with socket.create_connection(("127.0.0.1", _port(live)), timeout=5) as sock:
            sock.sendall(first + body + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            assert held.entered.wait(10)
            sent = 0
            try:
                while sent < 8 * 2**20:
                    sock.sendall(b"a" * 65536)
                    sent += 65536
            except OSError:
                pass
            held.hold.set()
            raw = _read_until_closed(sock, 2)
    assert sent < 8 * 2**20, "the server read 8 MiB of a pipelined request's headers"
    assert b"431" in raw


def test_the_open_ready_route_does_not_echo_a_warm_up_error_message() -> None:
    from torchbridge.serving import create_fastapi_server
    from torchbridge.serving.server import ServerThread

    class Secretive(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError(f"cannot load /srv/secret-weights for {x[0, 0].item():.5f}")

    config = ServerConfig(max_batch_size=2, api_keys={"admin-key-0001": ("admin", "infer")})
    app = create_fastapi_server(Secretive(), config, sample_input=sample(1))
    with ServerThread(app) as thread, httpx.Client(base_url=thread.url) as client:
        deadline = time.monotonic() + 20
        while "warm-up failed" not in (body := client.get("/ready").text) and \
                time.monotonic() < deadline:
            time.sleep(0.02)
    assert "warm-up failed (RuntimeError)" in body
    assert "secret" not in body and f"{sample(1)[0, 0].item():.5f}" not in body


class ExitOnClose(TinyGenerator):
    """A stream whose clean-up raises SystemExit when the server closes it."""

    def stream(self, input_ids: torch.Tensor, max_new_tokens: int,
               eos_token_id: int | None = None) -> Iterator[torch.Tensor]:
        try:
            while True:
                yield torch.ones(input_ids.shape[0], dtype=torch.long)
        finally:
            raise SystemExit(5)


def test_a_stream_raising_system_exit_when_closed_leaves_generation_working() -> None:
    with LiveServer(ExitOnClose(), torch.tensor([[1, 2]]), ServerConfig()) as live:
        answers = [live.client.post("/generate", json={"input_ids": [1, 2],
                                                       "max_new_tokens": 2})
                   for _ in range(3)]
        assert live.client.get("/health").status_code == 200
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[-1].json()["tokens"] == [[1, 1]]


class Labelled(nn.Module):
    """Logits per row plus one string label per row (a list, not a tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        logits = self.inner(x)
        return {"logits": logits, "labels": [f"class {int(i)}" for i in logits.argmax(1)],
                "model": "mlp"}


def test_per_row_strings_are_never_handed_to_other_requests() -> None:
    inner = Labelled().eval()
    held = Held(inner)
    with LiveServer(held, sample(1), ServerConfig(max_batch_size=3)) as live:
        bodies = [{"inputs": _rows(1, seed)} for seed in range(3)]
        responses = _as_one_batch(live, held, bodies)
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        alone = inner(torch.tensor(body["inputs"]))
        assert response.json()["outputs"]["labels"] == alone["labels"]
        assert response.json()["outputs"]["model"] == "mlp"


# ------------------------------------------------------- absurd parameters (held)


@pytest.mark.parametrize(("shape", "data", "datatype"), [
    ([-1, FEATURES], [0.0] * FEATURES, "FP32"),
    ([2**62, 2**62], [], "FP32"),
    ([3, 6148914691236517206], [0.0] * 3, "FP32"),
    ([1, FEATURES], [0.0] * (FEATURES - 1), "FP32"),
    ([1, FEATURES], [0.0] * FEATURES, "FP64"),
    ([1, FEATURES], ["a"] * FEATURES, "BYTES"),
    ("1,8", [0.0] * FEATURES, "FP32"),
    ([1.0, FEATURES], [0.0] * FEATURES, "FP32"),
    ([True, FEATURES], [0.0] * FEATURES, "FP32"),
    ([0, FEATURES], [], "FP32"),
])
def test_v2_shapes_and_datatypes_that_do_not_fit_are_4xx(
        keyless: LiveServer, shape: Any, data: list[Any], datatype: str) -> None:
    response = keyless.client.post("/v2/models/model/infer", json={"inputs": [
        {"name": "input_0", "shape": shape, "datatype": datatype, "data": data}]})
    assert response.status_code in (400, 422), response.text


@pytest.fixture(scope="module")
def generator() -> Iterator[LiveServer]:
    with LiveServer(TinyGenerator(), torch.tensor([[1, 2]]), ServerConfig()) as live:
        yield live


@pytest.mark.parametrize("body", [
    {"input_ids": [1], "max_new_tokens": 10**9}, {"input_ids": [1], "max_new_tokens": -1},
    {"input_ids": [1], "max_new_tokens": 2.5}, {"input_ids": [1], "max_new_tokens": True},
    {"input_ids": [1], "eos_token_id": 10**30}, {"input_ids": [1], "eos_token_id": -1},
    {"input_ids": [1], "eos_token_id": [1, 2]}, {"input_ids": []}, {"input_ids": [[]]},
    {"input_ids": [[1], [1, 2]]}, {"input_ids": [1e30]}, {"input_ids": [[[1]]]},
    {"input_ids": [1], "stream": "yes"}, {"input_ids": "hello"}, {},
])
def test_generate_refuses_absurd_parameters_with_422(generator: LiveServer,
                                                     body: dict[str, Any]) -> None:
    response = generator.client.post("/generate", json=body)
    assert response.status_code == 422, (body, response.text)


class Verdict(nn.Module):
    """One string for the whole batch, from its first row: right for a request alone."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        logits = self.inner(x)
        return {"logits": logits, "verdict": "high" if float(x[0, 0]) > 0 else "low"}


def test_a_string_output_that_matches_at_warm_up_by_chance_is_not_batched() -> None:
    inner = Verdict().eval()
    held = Held(inner)
    with LiveServer(held, sample(1).abs(), ServerConfig(max_batch_size=3)) as live:
        assert "strings" in live.state.unbatched_reason
        bodies = [{"inputs": [[abs(v) if i else v for i, v in enumerate(row)]
                              for row in _rows(1, seed)]} for seed in range(3)]
        bodies[1]["inputs"][0][0] = -1.0
        responses = _as_one_batch(live, held, bodies)
    for body, response in zip(bodies, responses, strict=True):
        assert response.json()["outputs"]["verdict"] == \
            inner(torch.tensor(body["inputs"]))["verdict"]


def test_a_warm_up_failure_is_logged_without_its_message(
        caplog: pytest.LogCaptureFixture) -> None:
    class Quoting(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError(f"bad sample value {x[0, 0].item():.6f}")

    caplog.set_level(logging.DEBUG, logger="torchbridge")
    with pytest.raises(RuntimeError, match="warm-up failed"):
        LiveServer(Quoting(), sample(1), ServerConfig(max_batch_size=2), ready_timeout=20).start()
    text = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "warm-up failed" in text and f"{sample(1)[0, 0].item():.6f}" not in text


def test_a_worker_hung_in_a_forward_pass_is_not_live() -> None:
    inner = mlp()
    held = Held(inner)
    with LiveServer(held, sample(1), ServerConfig(max_batch_size=2, timeout_seconds=1)) as live:
        live.state.stuck_after_s = 0.5  # 10 s at least by default
        held.hold.clear()
        held.entered.clear()
        stuck = live.client.post("/predict", json={"inputs": _rows(1, 0)})
        assert held.entered.wait(5) and stuck.status_code == 504
        time.sleep(0.6)
        probes = {p: live.client.get(p).status_code
                  for p in ("/health", "/ready", "/v2/health/live", "/v2/health/ready")}
        message = live.client.get("/health").json()["error"]
        held.hold.set()
        time.sleep(0.2)
        after = live.client.get("/health").status_code
    assert probes == dict.fromkeys(probes, 503) and "stuck" in message
    assert after == 200
