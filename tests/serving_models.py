"""Small real models for the serving tests: plain, faulty, slow, counting, generative."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import torch
from torch import nn

FEATURES = 8
POISON = 1000.0  # a row whose first feature is this makes FaultyMLP raise


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def sample(rows: int = 4) -> torch.Tensor:
    return torch.randn(rows, FEATURES, generator=torch.Generator().manual_seed(1))


class FaultyMLP(nn.Module):
    """Raises on any batch holding a poison row, like a model that crashes on odd input."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0] == POISON).any()):
            raise ValueError("poisoned row")
        return self.inner(x)


class CountingMLP(nn.Module):
    """Counts rows it computed; ``hold`` (an Event) can keep a forward pass waiting."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.inner = mlp()
        self.rows = 0
        self.calls = 0
        self.delay_s = delay_s
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        self.hold.wait(30)
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.rows += int(x.shape[0])
            self.calls += 1
        return self.inner(x)


class TinyGenerator(nn.Module):
    """A deterministic toy LM over 16 tokens: next token = (last token + 1) mod 16."""

    vocab_size = 16

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(self.vocab_size, 4)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot((input_ids + 1) % self.vocab_size,
                                     self.vocab_size).float()

    def stream(self, input_ids: torch.Tensor, max_new_tokens: int,
               eos_token_id: int | None = None) -> Iterator[torch.Tensor]:
        tokens = input_ids
        for _ in range(max_new_tokens):
            next_token = self(tokens)[:, -1].argmax(-1)
            yield next_token
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            if eos_token_id is not None and bool((next_token == eos_token_id).all()):
                return
