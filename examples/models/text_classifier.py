"""A small transformer text classifier over token ids, with padding taken from the ids."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

PAD_ID = 0
CLS_ID = 1
VOCAB = 1000
MAX_LEN = 512


class TextClassifier(nn.Module):
    """Input token ids ``(batch, seq)`` (``0`` is padding), output logits ``(batch, classes)``.

    Padding positions are masked out of attention and of the mean pooling, so a padded
    sequence classifies the same as the unpadded one.
    """

    def __init__(self, vocab: int = VOCAB, d_model: int = 64, heads: int = 4,
                 layers: int = 2, classes: int = 4, max_len: int = MAX_LEN) -> None:
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(vocab, d_model, padding_idx=PAD_ID)
        self.position = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=4 * d_model,
                                           dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.max_len:
            raise ValueError(f"sequence of {input_ids.shape[1]} tokens exceeds {self.max_len}")
        padding = input_ids == PAD_ID
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.embed(input_ids) + self.position(positions)
        hidden = self.encoder(hidden, src_key_padding_mask=padding)
        keep = (~padding).unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.head(pooled)


def build_text_classifier(seed: int = 0) -> TextClassifier:
    """The classifier with the weights ``seed`` gives, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TextClassifier().eval()


def sample_text(batch: int = 4, seq: int = 32) -> torch.Tensor:
    """Deterministic token ids: a ``CLS`` token, random words, then padding of varied length."""
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(2, VOCAB, (batch, seq), generator=generator)
    ids[:, 0] = CLS_ID
    for row in range(batch):
        length = seq - (row * 5) % (seq // 2)
        ids[row, length:] = PAD_ID
    return ids


def text_input_spec() -> dict[str, Any]:
    """Batch on axis 0; the ``seq`` dim (axis 1) runs from 1 to ``MAX_LEN`` tokens."""
    return {"dims": {"seq": {"input": 0, "axis": 1, "min": 1, "max": MAX_LEN}},
            "max_batch": 32}
