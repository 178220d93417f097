"""Synthetic integer inputs: drawn across the vocabulary each input feeds, or below int_high."""

from __future__ import annotations

import pytest
import torch

from torchbridge.errors import ConfigError
from torchbridge.inputs import embedding_bounds, synthesize_inputs


@pytest.fixture(scope="module")
def tiny_bert() -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=1000, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=64, type_vocab_size=2)
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def test_token_ids_span_the_vocabulary_while_token_types_stay_valid(
        tiny_bert: torch.nn.Module) -> None:
    # BERT's forward(input_ids, attention_mask, token_type_ids): three int64 inputs.
    ids, mask, types = synthesize_inputs([(8, 32)] * 3, ["int64"], model=tiny_bert)
    assert int(ids.max()) > 500  # across the 1000 tokens, not below the 2 token types
    assert int(ids.max()) < 1000
    assert set(types.unique().tolist()) <= {0, 1}
    assert set(mask.unique().tolist()) <= {0, 1}  # feeds no table: smallest table's size


def test_embedding_bounds_name_the_table_each_input_feeds(tiny_bert: torch.nn.Module) -> None:
    ids, mask, types = (torch.zeros(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long),
                        torch.zeros(2, 8, dtype=torch.long))
    inputs = [ids, mask, types]
    assert embedding_bounds(tiny_bert, inputs) == [1000, None, 2]


def test_int_high_per_input_overrides_the_model(tiny_bert: torch.nn.Module) -> None:
    ids, mask, types = synthesize_inputs([(4, 16)] * 3, ["int64"], model=tiny_bert,
                                         int_high=[7, 2, None])
    assert int(ids.max()) < 7
    assert set(mask.unique().tolist()) <= {0, 1}
    assert set(types.unique().tolist()) <= {0, 1}


def test_int_high_of_the_wrong_length_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="2 int_high values for 3 inputs"):
        synthesize_inputs([(2, 4)] * 3, ["int64"], int_high=[5, 6])


def test_without_embeddings_integers_stay_below_the_default_bound() -> None:
    x = synthesize_inputs([(64, 64)], ["int64"], model=torch.nn.Identity())
    assert isinstance(x, torch.Tensor)
    assert int(x.min()) >= 0 and int(x.max()) < 100


def test_named_inputs_are_probed_by_keyword(tiny_bert: torch.nn.Module) -> None:
    from torchbridge.inputs import synthesize_named

    # In an order BERT's forward does not take them positionally: types before ids.
    inputs = synthesize_named(["token_type_ids", "input_ids"], [(4, 16), (4, 16)], ["int64"],
                              model=tiny_bert)
    assert set(inputs["token_type_ids"].unique().tolist()) <= {0, 1}
    assert int(inputs["input_ids"].max()) > 500
