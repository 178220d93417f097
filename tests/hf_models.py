"""Tiny Hugging Face models built from configs (hidden size 32, 2 layers, vocabulary 100),
with seeded sample inputs and input specs, for tests on real transformer code.

No weights are downloaded: every model is a fresh, seeded initialisation of its config.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import transformers
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertModel,
    ConvNextConfig,
    ConvNextForImageClassification,
    DistilBertConfig,
    DistilBertModel,
    GPT2Config,
    GPT2LMHeadModel,
    ResNetConfig,
    ResNetForImageClassification,
    T5Config,
    T5ForConditionalGeneration,
    ViTConfig,
    ViTForImageClassification,
)

# transformers imports each model's module lazily, on first use. Importing them here, when
# the test module loads, keeps that first import out of pytester's inner sessions, which
# unload the modules they imported and would leave the lazy importer half-initialised.
transformers.logging.set_verbosity_error()

# The same for torch.export and the ONNX exporter: they import much of torch (the prims
# operator registry, the compile caches) on first use, and an inner session that unloads
# those modules makes the outer session import them again and register their operators and
# cache artifact types twice (RuntimeError / "already registered", or an abort in native
# code). One tiny export when this module loads keeps that first import out of the inner
# sessions.
def _warm_up_exporters() -> None:
    tiny = torch.nn.Linear(2, 2).eval()
    sample = (torch.zeros(1, 2),)
    torch.export.export(tiny, sample)
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny, sample, dynamo=True, verbose=False)


_warm_up_exporters()

VOCAB = 100
MAX_LEN = 32
SEQ = 8


def _seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    torch.manual_seed(0)
    return build().eval()


def bert() -> torch.nn.Module:
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=MAX_LEN)
    return _seeded(lambda: BertModel(config))


def distilbert() -> torch.nn.Module:
    config = DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2,
                                           hidden_dim=64, max_position_embeddings=MAX_LEN)
    return _seeded(lambda: DistilBertModel(config))


def gpt2() -> torch.nn.Module:
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2,
                                     n_positions=MAX_LEN, bos_token_id=0, eos_token_id=0)
    return _seeded(lambda: GPT2LMHeadModel(config))


def t5() -> torch.nn.Module:
    config = T5Config(vocab_size=VOCAB, d_model=32, d_ff=64, d_kv=16, num_layers=2,
                                   num_heads=2, decoder_start_token_id=0, pad_token_id=0,
                                   eos_token_id=1)
    return _seeded(lambda: T5ForConditionalGeneration(config))


def bart() -> torch.nn.Module:
    config = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2,
                                     decoder_layers=2, encoder_attention_heads=2,
                                     decoder_attention_heads=2, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, max_position_embeddings=MAX_LEN,
                                     pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                     decoder_start_token_id=2, forced_eos_token_id=None)
    return _seeded(lambda: BartForConditionalGeneration(config))


def resnet() -> torch.nn.Module:
    config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                       num_labels=3)
    return _seeded(lambda: ResNetForImageClassification(config))


def vit() -> torch.nn.Module:
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, image_size=32, patch_size=8,
                                    num_labels=3)
    return _seeded(lambda: ViTForImageClassification(config))


def convnext() -> torch.nn.Module:
    config = ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1],
                                         num_labels=3)
    return _seeded(lambda: ConvNextForImageClassification(config))


def _ids(batch: int, seq: int, seed: int) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def text_inputs(batch: int = 2, seq: int = SEQ, token_types: bool = True) -> dict[str, Any]:
    """``input_ids``, an ``attention_mask`` whose last row is padded, and ``token_type_ids``."""
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq // 2:] = 0
    inputs = {"input_ids": _ids(batch, seq, 1), "attention_mask": mask}
    if token_types:
        inputs["token_type_ids"] = torch.zeros(batch, seq, dtype=torch.long)
    return inputs


def seq2seq_inputs(batch: int = 2, seq: int = SEQ, target: int = 5) -> dict[str, Any]:
    """Encoder ids and mask, and decoder ids of another length (so ``seq`` is not shared)."""
    return text_inputs(batch, seq, token_types=False) | {
        "decoder_input_ids": _ids(batch, target, 2)}


def image_inputs(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(3))


#: the input spec of every text model here: ``seq`` on ``input_ids`` (the other inputs of
#: the same length share it by default)
TEXT_SPEC = {"dims": {"seq": {"input": "input_ids", "axis": 1, "min": 1, "max": MAX_LEN}}}
