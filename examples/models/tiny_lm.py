"""A tiny decoder-only language model over bytes, with greedy generation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

VOCAB = 256  # one token per byte: encode/decode need no tokenizer files
MAX_LEN = 128


class TinyLM(nn.Module):
    """Causal transformer: ``forward(input_ids (batch, seq)) -> logits (batch, seq, 256)``.

    ``generate`` extends prompts greedily; ``stream`` yields the new tokens one step at a
    time (for servers that stream tokens as they are produced).
    """

    def __init__(self, d_model: int = 64, heads: int = 4, layers: int = 2,
                 max_len: int = MAX_LEN) -> None:
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(VOCAB, d_model)
        self.position = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=4 * d_model,
                                           dropout=0.1, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, VOCAB, bias=False)
        self.lm_head.weight = self.embed.weight  # tied, as in GPT-2

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        if seq > self.max_len:
            raise ValueError(f"sequence of {seq} tokens exceeds the context of {self.max_len}")
        positions = torch.arange(seq, device=input_ids.device)
        hidden = self.embed(input_ids) + self.position(positions)
        causal = nn.Transformer.generate_square_subsequent_mask(seq, device=input_ids.device,
                                                                dtype=hidden.dtype)
        hidden = self.blocks(hidden, mask=causal, is_causal=True)
        return self.lm_head(self.norm(hidden))

    @torch.inference_mode()
    def stream(self, input_ids: torch.Tensor, max_new_tokens: int,
               eos_token_id: int | None = None) -> Iterator[torch.Tensor]:
        """Yield the next token of every sequence, ``(batch,)``, one greedy step at a time.

        Stops after ``max_new_tokens`` or when every sequence has produced ``eos_token_id``;
        the context is cut to the last ``max_len`` tokens.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        tokens = input_ids
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            logits = self(tokens[:, -self.max_len:])
            next_token = logits[:, -1].argmax(-1)
            yield next_token
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            if eos_token_id is not None:
                done |= next_token == eos_token_id
                if bool(done.all()):
                    return

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 16,
                 eos_token_id: int | None = None) -> torch.Tensor:
        """Greedy continuation: the prompt followed by up to ``max_new_tokens`` new tokens."""
        new = list(self.stream(input_ids, max_new_tokens, eos_token_id))
        if not new:
            return input_ids
        return torch.cat([input_ids, torch.stack(new, dim=1)], dim=1)


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as token ids, shape ``(1, len)``."""
    return torch.tensor([list(text.encode("utf-8"))], dtype=torch.long)


def decode(ids: torch.Tensor) -> str:
    """Token ids (one sequence) back to text; invalid UTF-8 becomes U+FFFD."""
    return bytes(int(i) for i in ids.flatten().tolist()).decode("utf-8", errors="replace")


def build_tiny_lm(seed: int = 0) -> TinyLM:
    """The language model with the weights ``seed`` gives, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyLM().eval()


def sample_lm(batch: int = 2, seq: int = 16) -> torch.Tensor:
    """Deterministic prompts of ``seq`` byte tokens."""
    return torch.randint(32, 127, (batch, seq), generator=torch.Generator().manual_seed(4))


def lm_input_spec() -> dict[str, Any]:
    """Batch on axis 0; the ``seq`` dim (axis 1) runs from 1 to the context length."""
    return {"dims": {"seq": {"input": 0, "axis": 1, "min": 1, "max": MAX_LEN}},
            "max_batch": 16}
