"""A named dim shared by several inputs: declared, inferred, resized together, exported as one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchbridge.checks import Status, run
from torchbridge.core.subject import Dim, InputSpec, Subject, parse_dim
from torchbridge.errors import ConfigError
from torchbridge.export.program import dynamic_shapes


def text_inputs(seq: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(0, 10, (2, seq), generator=g),
            "attention_mask": torch.ones(2, seq, dtype=torch.long),
            "labels": torch.zeros(2, dtype=torch.long)}


class MaskedPooler(torch.nn.Module):
    """Mean of embeddings under the mask: fails to broadcast when the mask keeps its length."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        weights = attention_mask.unsqueeze(-1).float()
        return (self.embed(input_ids) * weights).sum(1) / weights.sum(1)


def shapes(inputs: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in inputs.items()}


def test_listed_inputs_are_all_resized() -> None:
    spec = InputSpec(dims={"seq": Dim(input=["input_ids", "attention_mask"], axis=1, max=9)})
    resized = Subject(None, text_inputs(), spec=spec).with_dim("seq", 9)
    assert shapes(resized) == {"input_ids": (2, 9), "attention_mask": (2, 9), "labels": (2,)}


def test_mapping_gives_each_input_its_own_axis() -> None:
    inputs = {"ids": torch.zeros(2, 5), "mask_t": torch.ones(5, 2)}
    spec = InputSpec(dims={"seq": Dim(input={"ids": 1, "mask_t": 0})},
                     batch_dims={"mask_t": 1})
    resized = Subject(None, inputs, spec=spec).with_dim("seq", 3)
    assert shapes(resized) == {"ids": (2, 3), "mask_t": (3, 2)}


def test_dict_inputs_of_the_same_length_share_the_dim_and_the_subject_says_so() -> None:
    subject = Subject(None, text_inputs(), spec={"dims": {"seq": {"input": "input_ids"}}})
    assert subject.spec.dims["seq"].axes == {"input_ids": 1, "attention_mask": 1}
    assert "shared with 'attention_mask'" in subject.notes[0]


def test_a_mapping_with_one_input_opts_out_of_sharing() -> None:
    spec = InputSpec(dims={"seq": Dim(input={"input_ids": 1})})
    subject = Subject(None, text_inputs(), spec=spec)
    assert subject.spec.dims["seq"].axes == {"input_ids": 1}
    assert subject.notes == []


def test_inputs_that_disagree_on_a_shared_dim_are_a_config_error() -> None:
    inputs = text_inputs() | {"attention_mask": torch.ones(2, 4, dtype=torch.long)}
    with pytest.raises(ConfigError, match="different lengths"):
        Subject(None, inputs, spec=InputSpec(dims={"seq": Dim(input=["input_ids",
                                                                    "attention_mask"])}))


def test_a_dim_on_a_missing_input_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="names input 'ids'"):
        Subject(None, text_inputs(), spec=InputSpec(dims={"seq": Dim(input="ids")}))


@pytest.mark.parametrize(("text", "axes", "low", "high"), [
    ("seq=1:1-512", {0: 1}, 1, 512),
    ("seq=0.1", {0: 1}, 1, None),
    ("seq=input_ids:1,attention_mask:1:1-512", {"input_ids": 1, "attention_mask": 1}, 1, 512),
    ("seq=ids:1,mask_t:0:2-", {"ids": 1, "mask_t": 0}, 2, None),
])
def test_parse_dim_reads_one_or_several_inputs(text: str, axes: dict, low: int,
                                               high: int | None) -> None:
    name, dim = parse_dim(text)
    assert (name, dim.axes, dim.min, dim.max) == ("seq", axes, low, high)


@pytest.mark.parametrize("text", ["seq", "seq=", "seq=x:y", "seq=1:9-2", "1x=1"])
def test_parse_dim_rejects_bad_text(text: str) -> None:
    with pytest.raises(ConfigError, match="--dim"):
        parse_dim(text)


def test_export_gives_shared_inputs_one_dim_object() -> None:
    subject = Subject(MaskedPooler(), text_inputs(),
                      spec={"dims": {"seq": {"input": "input_ids", "max": 16}}})
    shapes_spec = dynamic_shapes(subject, dynamic=True)
    assert shapes_spec["input_ids"][1] is shapes_spec["attention_mask"][1]


def test_edge_cases_resize_the_mask_with_the_ids() -> None:
    subject = Subject(MaskedPooler().eval(), text_inputs(),
                      spec={"dims": {"seq": {"input": "input_ids", "min": 1, "max": 12}}})
    result = run("edge_cases", subject, batch_sizes=[1])
    assert result.status is Status.PASSED, result.message
    seq_cases = {c["case"]: c["input_shapes"] for c in result.details["cases"]
                 if c["case"].startswith("seq=")}
    assert seq_cases["seq=12"]["attention_mask"] == [2, 12]
    assert seq_cases["seq=1"]["attention_mask"] == [2, 1]
    assert "shared with 'attention_mask'" in result.message


def test_checklist_file_declares_a_dim_on_several_inputs(tmp_path: Path) -> None:
    from torchbridge.checklist import load_checklist

    path = tmp_path / "torchbridge.toml"
    path.write_text('[model]\nfactory = "models:build"\n[input]\nshapes = [[2, 8], [2, 8]]\n'
                    'dims = { seq = { input = { "0" = 1, "1" = 1 }, max = 64 } }\n'
                    "[checks]\nforward = true\n")
    spec = InputSpec.coerce(load_checklist(path).inputs.spec)
    assert spec.dims["seq"].axes == {0: 1, 1: 1}


def test_a_negative_axis_shares_the_dim_with_inputs_of_the_same_length() -> None:
    subject = Subject(None, text_inputs(), spec=InputSpec(dims={"seq": Dim(input="input_ids",
                                                                           axis=-1)}))
    assert subject.spec.dims["seq"].axes == {"input_ids": -1, "attention_mask": -1}
    assert hash(Dim(input={"a": 1})) == hash(Dim(input={"a": 1}))
