"""No wrong 200s: batch-level outputs, non-finite numbers, row counts, objects in outputs.

Every test runs a real uvicorn server on 127.0.0.1 with an ephemeral port; the property
test at the end sends random concurrent mixes and compares every 200 with the request
served alone.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_models import (
    FEATURES,
    NAN_TRIGGER,
    POISON,
    CenteredMLP,
    ComplexMLP,
    CumulativeMLP,
    NanMLP,
    RowDroppingMLP,
    SummaryMLP,
    mlp,
    sample,
)

from torchbridge.core.subject import Dim, InputSpec
from torchbridge.serving import ServerConfig
from torchbridge.serving.live import LiveServer


def _rows(count: int, seed: int = 0, first: float | None = None) -> list[list[float]]:
    x = torch.randn(count, FEATURES, generator=torch.Generator().manual_seed(seed))
    if first is not None:
        x[0, 0] = first
    return x.tolist()


def _concurrently(live: LiveServer, path: str, bodies: list[Any]) -> list[httpx.Response]:
    async def send() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(base_url=live.url, timeout=30.0, limits=limits) as client:
            return list(await asyncio.gather(*(client.post(path, json=b) for b in bodies)))

    return asyncio.run(send())


def _failures(live: LiveServer, reason: str) -> float:
    value = live.state.metrics.registry.get_sample_value(
        "torchbridge_inference_failures_total", {"reason": reason})
    return value or 0.0


# ------------------------------------------------------------------ 1: batch-level outputs
def test_a_batch_level_output_is_never_split_between_requests() -> None:
    model = SummaryMLP().eval()
    with LiveServer(model, sample(1), ServerConfig(max_batch_size=8)) as live:
        assert "summary" in live.state.unbatched_reason
        bodies = [{"inputs": _rows(1, seed)} for seed in range(24)]
        responses = _concurrently(live, "/predict", bodies)
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200
        assert response.headers["x-batched-with"] == "1"
        alone = model(torch.tensor(body["inputs"]))
        torch.testing.assert_close(torch.tensor(response.json()["outputs"]["summary"]),
                                   alone["summary"])


@pytest.mark.parametrize("build", [CenteredMLP, CumulativeMLP])
def test_rows_that_depend_on_their_batch_mates_are_served_one_request_at_a_time(
        build: type[torch.nn.Module]) -> None:
    model = build().eval()
    zeros = torch.zeros(1, FEATURES)  # as tb-serve's --input-shape makes it
    with LiveServer(model, zeros, ServerConfig(max_batch_size=4)) as live:
        assert "batch mates" in live.state.unbatched_reason
        bodies = [{"inputs": _rows(2, seed)} for seed in range(12)]
        responses = _concurrently(live, "/predict", bodies)
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200
        torch.testing.assert_close(torch.tensor(response.json()["outputs"]),
                                   model(torch.tensor(body["inputs"])))


def test_a_model_whose_outputs_all_carry_the_batch_is_served_batched() -> None:
    with LiveServer(mlp(), sample(1), ServerConfig(max_batch_size=8,
                                                   max_batch_delay_ms=20)) as live:
        assert live.state.unbatched_reason == ""
        responses = _concurrently(live, "/predict",
                                  [{"inputs": _rows(1, s)} for s in range(16)])
    assert all(r.status_code == 200 for r in responses)
    assert max(int(r.headers["x-batched-with"]) for r in responses) > 1


# ------------------------------------------------------------------ 2: non-finite outputs
def test_a_nan_output_is_a_500_naming_output_and_position_and_is_counted() -> None:
    with LiveServer(NanMLP().eval(), sample(1), ServerConfig(max_batch_size=4)) as live:
        response = live.client.post("/predict",
                                    json={"inputs": _rows(2, 3) + _rows(1, 4, NAN_TRIGGER)})
        fine = live.client.post("/predict", json={"inputs": _rows(2, 5)})
        counted = _failures(live, "non_finite")
    assert response.status_code == 500
    error = response.json()["error"]
    assert "'output_0'" in error and "[2, 2]" in error and "nan" in error
    assert "null" not in response.text
    assert fine.status_code == 200
    assert counted == 1


def test_a_nan_in_v2_json_data_is_a_500_but_binary_outputs_carry_it() -> None:
    with LiveServer(NanMLP().eval(), sample(1), ServerConfig(max_batch_size=4)) as live:
        data = _rows(1, 1, NAN_TRIGGER)[0]
        entry = {"name": "input_0", "shape": [1, FEATURES], "datatype": "FP32", "data": data}
        as_json = live.client.post("/v2/models/model/infer", json={"inputs": [entry]})
        as_binary = live.client.post("/v2/models/model/infer", json={
            "inputs": [entry], "parameters": {"binary_data_output": True}})
    assert as_json.status_code == 500 and "non-finite" in as_json.json()["error"]
    assert as_binary.status_code == 200
    header = int(as_binary.headers["inference-header-content-length"])
    values = torch.frombuffer(bytearray(as_binary.content[header:]), dtype=torch.float32)
    assert math.isnan(float(values[2]))


# ------------------------------------------------------------------ 3: row counts
def test_a_lone_request_answered_with_too_few_rows_is_a_500_naming_the_output() -> None:
    with LiveServer(RowDroppingMLP().eval(), sample(1), ServerConfig(max_batch_size=4)) as live:
        short = live.client.post("/predict", json={"inputs": _rows(2, 1, POISON)})
        fine = live.client.post("/predict", json={"inputs": _rows(2, 2)})
        counted = _failures(live, "row_count")
    assert short.status_code == 500
    assert "'output_0' has 1 row(s) for 2 input row(s)" in short.json()["error"]
    assert fine.status_code == 200 and counted == 1


class FirstRowOnly(torch.nn.Module):
    """Always answers one row, whatever the request held."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[:1]


def test_a_model_that_always_answers_one_row_gets_500_for_multi_row_requests() -> None:
    with LiveServer(FirstRowOnly().eval(), sample(1), ServerConfig(max_batch_size=4)) as live:
        assert "keep(s) one row at any batch size" in live.state.unbatched_reason
        two = live.client.post("/predict", json={"inputs": _rows(2)})
        one = live.client.post("/predict", json={"inputs": _rows(1)})
    assert two.status_code == 500
    assert "'output_0' has 1 row(s) for 2 input row(s)" in two.json()["error"]
    assert one.status_code == 200


# ------------------------------------------------------------------ 4: objects in outputs
def test_gpt2_with_its_default_cache_is_ready_and_serves_logits_and_cache_tensors() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32,
                                     n_positions=16, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with LiveServer(model, ids, ServerConfig(max_batch_size=2)) as live:
        assert live.client.get("/ready").status_code == 200
        response = live.client.post("/predict", json={"inputs": [[5, 6, 7, 8]]})
    assert response.status_code == 200
    outputs = response.json()["outputs"]
    expected = model(torch.tensor([[5, 6, 7, 8]]))
    torch.testing.assert_close(torch.tensor(outputs["logits"]), expected.logits,
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(outputs["cache"]["layers"][0]["keys"]),
                               expected.cache.layers[0].keys, rtol=1e-4, atol=1e-5)


class _Handle:
    """An object no encoder knows."""


class WithHandle(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> dict[str, object]:
        return {"scores": self.inner(x), "handle": _Handle()}


def test_objects_that_are_not_tensors_are_dropped_and_named_at_start_up(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="torchbridge.serving")
    with LiveServer(WithHandle().eval(), sample(1), ServerConfig(max_batch_size=2)) as live:
        response = live.client.post("/predict", json={"inputs": _rows(1)})
    assert response.status_code == 200 and set(response.json()["outputs"]) == {"scores"}
    assert any("handle (_Handle)" in r.getMessage() for r in caplog.records)


def test_a_model_whose_outputs_cannot_be_encoded_never_turns_ready() -> None:
    with pytest.raises(RuntimeError, match=r"warm-up failed.*'output_0' \(complex64\)"):
        LiveServer(ComplexMLP().eval(), sample(1), ServerConfig(max_batch_size=2),
                   ready_timeout=20).start()


class SometimesComplex(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out.to(torch.complex64) if bool((x[:, 0] == POISON).any()) else out


def test_an_answer_that_cannot_be_encoded_says_so_rather_than_blaming_inference() -> None:
    with LiveServer(SometimesComplex().eval(), sample(1), ServerConfig(max_batch_size=2)) as live:
        response = live.client.post("/predict", json={"inputs": _rows(1, 0, POISON)})
        counted = _failures(live, "encode")
    assert response.status_code == 500
    assert "output could not be encoded" in response.json()["error"] and counted == 1


# ------------------------------------------------------------------ property test
class Tokens(torch.nn.Module):
    """Per-token and pooled outputs over a dynamic length; raises on a POISON token and
    answers NaN for a NAN_TRIGGER token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if bool((x == POISON).any()):
            raise ValueError("poisoned token")
        tokens = self.proj(x)
        tokens = torch.where((x[..., :1] == NAN_TRIGGER), float("nan"), tokens)
        return {"tokens": tokens, "pooled": tokens.mean(1)}


@pytest.fixture(scope="module")
def tokens_server() -> Iterator[LiveServer]:
    spec = InputSpec(dims={"seq": Dim(input=0, axis=1, min=1, max=6)})
    config = ServerConfig(max_batch_size=6, max_batch_delay_ms=5)
    with LiveServer(Tokens().eval(), torch.randn(1, 3, 4), config, input_spec=spec) as live:
        yield live


REQUEST = st.tuples(st.integers(1, 3), st.integers(1, 6),
                    st.sampled_from(["ok", "ok", "ok", "poison", "nan", "bad_dim"]),
                    st.integers(0, 10_000))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(REQUEST, min_size=2, max_size=10))
def test_every_200_equals_the_request_served_alone(tokens_server: LiveServer,
                                                   mix: list[tuple[int, int, str, int]]) -> None:
    model = Tokens().eval()
    bodies = []
    for rows, length, kind, seed in mix:
        x = torch.randn(rows, length, 4 if kind != "bad_dim" else 5,
                        generator=torch.Generator().manual_seed(seed))
        if kind == "poison":
            x[-1, 0, 0] = POISON
        elif kind == "nan":
            x[0, -1, 0] = NAN_TRIGGER
        bodies.append(x)
    responses = _concurrently(tokens_server, "/predict", [{"inputs": x.tolist()} for x in bodies])
    for (_, _, kind, _), x, response in zip(mix, bodies, responses, strict=True):
        if kind != "ok":
            assert response.status_code in (422, 500), (kind, response.text)
            continue
        assert response.status_code == 200, response.text
        alone = model(x)
        outputs = response.json()["outputs"]
        for name in ("tokens", "pooled"):
            torch.testing.assert_close(torch.tensor(outputs[name]), alone[name],
                                       rtol=1e-4, atol=1e-5)


class Pair(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b  # broadcasts a 1-row b over a: a wrong answer, not an error


def test_inputs_with_different_row_counts_are_422_not_broadcast() -> None:
    sample_pair = (torch.zeros(1, 4), torch.zeros(1, 4))
    with LiveServer(Pair(), sample_pair, ServerConfig(max_batch_size=4)) as live:
        response = live.client.post("/predict", json={"inputs": {
            "input_0": [[1.0] * 4, [2.0] * 4], "input_1": [[3.0] * 4]}})
    assert response.status_code == 422 and "same number of rows" in response.json()["error"]
