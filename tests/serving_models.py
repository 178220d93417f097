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


NAN_TRIGGER = 7777.0  # a row whose first feature is this makes NanMLP answer NaN there


class SummaryMLP(nn.Module):
    """Per-row logits plus a batch-level summary, as in the issue: ``summary`` is the mean
    over the batch, so it must never be split between requests."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.inner(x)
        return {"logits": logits, "summary": logits.mean(0)}


class CenteredMLP(nn.Module):
    """Rows depend on their batch mates (centred on the batch mean): right shape, wrong
    values when batched."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out - out.mean(0, keepdim=True)


class NanMLP(nn.Module):
    """NaN in column 2 of a row whose first feature is NAN_TRIGGER."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x).clone()
        out[x[:, 0] == NAN_TRIGGER, 2] = float("nan")
        return out


class RowDroppingMLP(nn.Module):
    """Loses the last row of a batch that holds a POISON row: the wrong row count."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out[:-1] if bool((x[:, 0] == POISON).any()) else out


class ExitingMLP(nn.Module):
    """Calls ``sys.exit`` on a POISON row, as a model wrapper that gives up might."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0] == POISON).any()):
            raise SystemExit(3)
        return self.inner(x)


class LeakyErrorMLP(nn.Module):
    """Raises an error whose message quotes the input, as many libraries' errors do."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0] == POISON).any()):
            raise ValueError(f"cannot handle row {x[0].tolist()}")
        return self.inner(x)


class ComplexMLP(nn.Module):
    """Answers complex numbers, which no response encoding can carry."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).to(torch.complex64)


class ShortContextGenerator(TinyGenerator):
    """TinyGenerator whose context holds 8 positions (as a config's n_positions says)."""

    max_position_embeddings = 8


class ExitingGenerator(TinyGenerator):
    """A generator whose stream raises SystemExit at its first step."""

    def stream(self, input_ids: torch.Tensor, max_new_tokens: int,
               eos_token_id: int | None = None) -> Iterator[torch.Tensor]:
        raise SystemExit(4)
        yield input_ids  # pragma: no cover - makes this a generator


class CumulativeMLP(nn.Module):
    """Row i depends on the rows before it (a running sum over the batch): row 0 looks
    right alone and batched; the others do not."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).cumsum(0)
