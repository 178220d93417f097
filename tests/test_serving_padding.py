"""Padding with a mask, for models that declare it; grouping by shape for the others."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
import torch
from torch import nn

from torchbridge.core.subject import Dim, InputSpec
from torchbridge.errors import ConfigError
from torchbridge.serving import ServerConfig, create_fastapi_server
from torchbridge.serving.live import LiveServer

SPEC = InputSpec(dims={"seq": Dim(input="input_ids", axis=1, min=1, max=16),
                       "mask_seq": Dim(input="attention_mask", axis=1, min=1, max=16)})


class MaskedEncoder(nn.Module):
    """Per-token features and a masked mean; declares padding on ``seq``."""

    serving_padding = {"dim": "seq", "value": 0, "mask": "attention_mask"}

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(32, 4)
        self.batches: list[tuple[int, ...]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        self.entered.set()
        self.hold.wait(10)
        self.batches.append(tuple(input_ids.shape))
        tokens = self.embed(input_ids) * attention_mask[..., None]
        pooled = tokens.sum(1) / attention_mask.sum(1, keepdim=True)
        return {"pooled": pooled, "tokens": tokens}


def _body(length: int) -> dict[str, object]:
    ids = [[(7 * i + 3) % 32 for i in range(length)]]
    return {"inputs": {"input_ids": ids, "attention_mask": [[1] * length]}}


async def _until(condition: object) -> None:
    for _ in range(2000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def _sample() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.ones(1, 4, dtype=torch.long),
            "attention_mask": torch.ones(1, 4, dtype=torch.long)}


def test_requests_of_different_lengths_share_a_padded_batch_with_eager_results() -> None:
    model = MaskedEncoder().eval()
    with LiveServer(model, _sample(), ServerConfig(max_batch_size=8), input_spec=SPEC) as live:

        async def scenario() -> list[httpx.Response]:
            model.hold.clear()
            model.entered.clear()
            async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
                blocker = asyncio.ensure_future(client.post("/predict", json=_body(1)))
                await _until(model.entered.is_set)
                rest = [asyncio.ensure_future(client.post("/predict", json=_body(n)))
                        for n in (2, 5, 3)]
                await _until(lambda: live.state.batcher.depth >= 3)
                model.hold.set()
                return [await blocker, *[await r for r in rest]]

        responses = asyncio.run(scenario())
    assert (3, 5) in model.batches  # three requests, padded to the longest (5 tokens)
    for length, response in zip((1, 2, 5, 3), responses, strict=True):
        body = _body(length)["inputs"]
        expected = MaskedEncoder().eval()(torch.tensor(body["input_ids"]),  # type: ignore[index]
                                          torch.tensor(body["attention_mask"]))  # type: ignore[index]
        outputs = response.json()["outputs"]
        torch.testing.assert_close(torch.tensor(outputs["pooled"]), expected["pooled"].detach())
        # Per-token outputs are cut back to the request's own length.
        assert torch.tensor(outputs["tokens"]).shape == (1, length, 4)


def test_padding_declared_on_an_unknown_dim_is_a_config_error() -> None:
    class Wrong(MaskedEncoder):
        serving_padding = {"dim": "time", "mask": "attention_mask"}

    with pytest.raises(ConfigError, match="'time' is not a dynamic dim"):
        create_fastapi_server(Wrong(), ServerConfig(), sample_input=_sample(), input_spec=SPEC)


def test_padding_naming_a_missing_mask_input_is_a_config_error() -> None:
    class Wrong(MaskedEncoder):
        serving_padding = {"dim": "seq", "mask": "mask"}

    with pytest.raises(ConfigError, match="'mask' is not one of the model's inputs"):
        create_fastapi_server(Wrong(), ServerConfig(), sample_input=_sample(), input_spec=SPEC)
