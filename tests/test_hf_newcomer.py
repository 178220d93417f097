"""Cases found trying TorchBridge as a newcomer on more Hugging Face models built from tiny
configs (CLIP, Llama): each test is a wrong verdict or an unclear result that was fixed.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

import hf_models as hf
import transformers
from transformers import CLIPConfig, CLIPModel, LlamaConfig, LlamaForCausalLM

from torchbridge.checks import Status, Subject, run
from torchbridge.checks._latency_sizing import Sizing, inconclusive_reason
from torchbridge.core.subject import InputSpec, resolve_dims

transformers.logging.set_verbosity_error()

VOCAB = 100
SEQ_SPEC = InputSpec.coerce(
    {"dims": {"seq": {"input": "input_ids", "axis": 1, "min": 1, "max": 32}}})


def clip() -> torch.nn.Module:
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "intermediate_size": 64,
                     "max_position_embeddings": 32},
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 64, "image_size": 32, "patch_size": 8},
        projection_dim=16)
    return CLIPModel(config).eval()


def clip_inputs(seq: int = 8) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(3, VOCAB, (2, seq), generator=generator),
            "attention_mask": torch.ones(2, seq, dtype=torch.long),
            "pixel_values": torch.rand(2, 3, 32, 32, generator=generator)}


def llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=64, max_position_embeddings=32))
    model.config.use_cache = False  # torch.export cannot return a DynamicCache
    return model.eval()


def test_an_image_input_does_not_join_seq_because_its_channels_match_by_chance() -> None:
    # ids of length 3 beside (B, 3, H, W) pixels: axis 1 matches, but only by chance
    spec, notes = resolve_dims(SEQ_SPEC, clip_inputs(seq=3))
    assert spec.dims["seq"].axes == {"input_ids": 1, "attention_mask": 1}
    assert any("not shared with 'pixel_values'" in note for note in notes)


def test_clip_with_seq_as_long_as_its_channels_passes_edge_cases() -> None:
    result = run("edge_cases", Subject(clip(), clip_inputs(seq=3), spec=SEQ_SPEC),
                 empty_batch="rejects")
    assert result.status is Status.PASSED, result.message


def test_clip_pairwise_logits_pass_batch_invariance_on_their_own_entry() -> None:
    result = run("edge_cases", Subject(clip(), clip_inputs(), spec=SEQ_SPEC),
                 empty_batch="rejects")
    assert result.status is Status.PASSED, result.message
    assert "output.logits_per_image (axis 1)" in result.message


class LeakyScores(torch.nn.Module):
    """(B, B) scores whose own entry [i, i] depends on the batch (centred over it)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        embeds = self.proj(x)
        centred = embeds - embeds.mean(0, keepdim=True)
        return {"scores": embeds @ centred.T}


def test_a_pairwise_output_whose_own_entry_leaks_across_the_batch_still_fails() -> None:
    torch.manual_seed(0)
    result = run("edge_cases", Subject(LeakyScores().eval(), torch.randn(4, 4)))
    assert result.status is Status.FAILED
    assert "output.scores" in result.message


def test_an_inconclusive_latency_never_suggests_the_max_time_that_fell_short() -> None:
    # 12 samples kept in 1 s (slow first calls) although the median call took 0.7 ms
    reason = inconclusive_reason(SimpleNamespace(p=0.99, name="p99"), 0.95,
                                 Sizing(1.0, False, 299, 694e-6), kept=12)
    assert 'max_time="32s" would do' in reason
    assert "83.3 ms per kept sample" in reason


def test_llama_exports_to_pt2_and_loads_through_the_safe_loader() -> None:
    subject = Subject(llama(), {"input_ids": torch.randint(3, VOCAB, (2, 8)),
                                "attention_mask": torch.ones(2, 8, dtype=torch.long)},
                      spec=SEQ_SPEC)
    result = run("export", subject, "pt2")
    assert result.status is Status.PASSED, result.message


def test_the_server_names_pairwise_outputs_instead_of_promising_a_500() -> None:
    np = pytest.importorskip("numpy")
    from torchbridge.serving.runner import learn_layout

    layout = learn_layout([{"logits_per_image": np.ones((1, 1)), "embeds": np.ones((1, 4))}],
                          {4: {"logits_per_image": np.ones((4, 4)), "embeds": np.ones((4, 4))}})
    assert not layout.batched
    assert "logits_per_image pair(s) every row" in layout.reason
    assert "answer 500" not in layout.reason
    assert layout.batch["logits_per_image"] == 0  # its row count is still checked


def test_tracing_a_model_that_returns_a_cache_says_to_switch_the_cache_off() -> None:
    model = llama()
    model.config.use_cache = True
    subject = Subject(model, {"input_ids": torch.randint(3, VOCAB, (2, 8))})
    result = run("export", subject, "torchscript")
    assert result.status is Status.FAILED
    assert "from_pretrained(..., use_cache=False)" in result.message
    assert "method='script'" not in result.message


def test_tracing_clip_says_which_formats_take_its_nested_output() -> None:
    result = run("export", Subject(clip(), clip_inputs()), "torchscript")
    assert result.status is Status.FAILED
    assert "cannot return a CLIPOutput object: export to pt2 or onnx" in result.message


def test_a_model_factory_returning_the_model_itself_is_not_a_fresh_instance() -> None:
    model = llama()
    inputs = {"input_ids": torch.randint(3, VOCAB, (2, 8))}
    result = run("determinism", Subject(model, inputs, factory=lambda: model))
    assert result.status is Status.FAILED
    assert "model_factory returned the model under test itself" in result.message


def test_a_model_factory_building_the_model_again_is_a_fresh_instance() -> None:
    result = run("determinism", Subject(llama(), {"input_ids": torch.randint(3, VOCAB, (2, 8))},
                                        factory=llama))
    assert result.status is Status.PASSED, result.message
    assert "and a fresh instance identical" in result.message


def test_inputs_that_disagree_on_the_batch_size_are_a_config_error_with_the_fix() -> None:
    inputs = {"input_ids": torch.randint(3, VOCAB, (2, 8)),
              "position_ids": torch.arange(8)[None]}  # broadcast over the batch
    result = run("edge_cases", Subject(llama(), inputs, spec=SEQ_SPEC), empty_batch="rejects")
    assert result.status is Status.ERROR
    assert "batch_dims={'position_ids': None}" in result.message
    spec = InputSpec(dims=SEQ_SPEC.dims, batch_dims={"position_ids": None})
    fixed = run("edge_cases", Subject(llama(), inputs, spec=spec), empty_batch="rejects")
    assert fixed.status is Status.PASSED, fixed.message


def test_aten_bitwise_operators_are_operators_but_their_dunder_attributes_are_not() -> None:
    from torchbridge.security.pt2_program import target_problem

    assert target_problem("torch.ops.aten.__and__.Tensor") is None
    assert target_problem("torch.ops.aten.__and__.__globals__") is not None
    assert target_problem("torch.ops.aten.__class__") is not None


def llama_with_attention_dropout() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=64, max_position_embeddings=32,
        attention_dropout=0.5, use_cache=False))


def test_a_model_left_in_train_mode_with_functional_dropout_fails_forward() -> None:
    # transformers' attention drops out functionally: no nn.Dropout module to spot
    model = llama_with_attention_dropout().train()
    result = run("forward", Subject(model, {"input_ids": torch.randint(3, VOCAB, (2, 8))}))
    assert result.status is Status.FAILED
    assert "model.eval() changes its outputs" in result.message
    assert model.training  # the check restored the mode it found


def test_a_model_in_train_mode_that_eval_does_not_change_passes_forward_saying_so() -> None:
    model = llama().train()
    result = run("forward", Subject(model, {"input_ids": torch.randint(3, VOCAB, (2, 8))}))
    assert result.status is Status.PASSED, result.message
    assert "model.eval() gives the same outputs" in result.message


class ShortPositions(torch.nn.Module):
    """Token + position embeddings with a table of 16 positions: fails beyond length 16."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = torch.nn.Embedding(VOCAB, 8)
        self.positions = torch.nn.Embedding(16, 8)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        where = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.tokens(input_ids) + self.positions(where)
        return (hidden * attention_mask[..., None]).sum(1)


def test_serving_sends_each_declared_dims_ends_and_fails_where_the_model_breaks() -> None:
    pytest.importorskip("fastapi")
    torch.manual_seed(0)
    inputs = {"input_ids": torch.randint(3, VOCAB, (2, 8)),
              "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    result = run("serving", Subject(ShortPositions().eval(), inputs, spec=SEQ_SPEC))
    assert result.status is Status.FAILED
    assert "dim_parity: seq=32: the eager reference raised IndexError" in result.message


def test_a_synthesized_attention_mask_is_a_mask_not_random_ids() -> None:
    from torchbridge.inputs import synthesize_inputs

    ids, mask = synthesize_inputs([(2, 8), (2, 8)], ["int64", "int64"], model=llama())
    assert int(ids.max()) >= 2  # ids still span the vocabulary
    assert torch.equal(mask, torch.ones(2, 8, dtype=torch.int64))


def test_the_cache_hint_names_a_switch_that_works_for_t5() -> None:
    model = hf.t5()
    model.config.use_cache = False  # T5's decoder keeps its own config copy: no effect
    result = run("export", Subject(model, hf.seq2seq_inputs()), "pt2")
    assert result.status is Status.FAILED
    assert "from_pretrained(..., use_cache=False)" in result.message
    config = transformers.T5Config(**{**hf.t5().config.to_dict(), "use_cache": False})
    built_off: Any = transformers.T5ForConditionalGeneration(config).eval()
    assert built_off(**hf.seq2seq_inputs()).past_key_values is None


def test_a_dim_longer_than_the_models_positions_fails_naming_the_config_limit() -> None:
    spec = InputSpec.coerce(
        {"dims": {"seq": {"input": "input_ids", "axis": 1, "min": 1, "max": 512}}})
    result = run("edge_cases", Subject(hf.gpt2(), hf.text_inputs(token_types=False), spec=spec),
                 empty_batch="rejects")
    assert result.status is Status.FAILED
    assert "config.max_position_embeddings is 32, shorter than 512" in result.message


def test_a_static_export_says_its_dims_were_fixed_not_resized() -> None:
    subject = Subject(llama(), {"input_ids": torch.randint(3, VOCAB, (2, 8)),
                                "attention_mask": torch.ones(2, 8, dtype=torch.long)},
                      spec=SEQ_SPEC)
    result = run("export", subject, "pt2", dynamic=False)
    assert result.status is Status.PASSED, result.message
    assert "batch, seq fixed at the export sizes, and only those sizes validated" in result.message
    assert "resized together" not in result.message


def test_a_safetensors_export_does_not_claim_to_resize_shared_inputs() -> None:
    subject = Subject(llama(), {"input_ids": torch.randint(3, VOCAB, (2, 8)),
                                "attention_mask": torch.ones(2, 8, dtype=torch.long)},
                      spec=SEQ_SPEC)
    result = run("export", subject, "safetensors")
    assert result.status is Status.PASSED, result.message
    assert "resized together" not in result.message


def test_serving_an_encoder_decoder_does_not_offer_a_generate_it_cannot_serve() -> None:
    pytest.importorskip("fastapi")
    result = run("serving", Subject(hf.t5(), hf.seq2seq_inputs(), spec=hf.TEXT_SPEC))
    assert result.status is Status.PASSED, result.message
    assert "token_latency" not in result.message
