"""Right verdicts on real Hugging Face models built from tiny configs (hidden 32, 2 layers).

Text models take dict inputs with ``seq`` declared on ``input_ids`` (the mask and token
types share it); GPT-2, T5 and BART return their KV caches (``DynamicCache`` /
``EncoderDecoderCache``), which are compared tensor by tensor. HF raises on an empty batch
(a reshape with ``-1`` over zero elements), so the text suites declare
``empty_batch="rejects"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

import hf_models as hf

from torchbridge.checks import Status, Subject, run
from torchbridge.checks.base import RunContext

Build = Callable[[], torch.nn.Module]
MAKERS: dict[str, tuple[Build, Callable[[], Any], Any]] = {
    "bert": (hf.bert, hf.text_inputs, hf.TEXT_SPEC),
    "distilbert": (hf.distilbert, lambda: hf.text_inputs(token_types=False), hf.TEXT_SPEC),
    "gpt2": (hf.gpt2, lambda: hf.text_inputs(token_types=False), hf.TEXT_SPEC),
    "t5": (hf.t5, hf.seq2seq_inputs, hf.TEXT_SPEC),
    "bart": (hf.bart, hf.seq2seq_inputs, hf.TEXT_SPEC),
    "resnet": (hf.resnet, hf.image_inputs, None),
    "vit": (hf.vit, hf.image_inputs, None),
    "convnext": (hf.convnext, hf.image_inputs, None),
}
TEXT = ["bert", "distilbert", "gpt2", "t5", "bart"]
WITH_CACHE = ["gpt2", "t5", "bart"]


def subject(name: str, **spec_changes: Any) -> Subject:
    build, inputs, spec = MAKERS[name]
    if spec_changes:
        spec = {"dims": {"seq": {**spec["dims"]["seq"], **spec_changes}}}
    return Subject(build(), inputs(), spec=spec, factory=build)


def compared_paths(result: Any) -> list[str]:
    return [leaf["path"] for leaf in result.details["comparison"]]


@pytest.mark.parametrize("name", list(MAKERS))
def test_deterministic_model_passes_determinism_with_a_fresh_instance(name: str) -> None:
    result = run("determinism", subject(name))
    assert result.status is Status.PASSED, result.message
    assert "and a fresh instance identical (bitwise)" in result.message


@pytest.mark.parametrize("name", WITH_CACHE)
def test_determinism_compares_the_cache_tensors(name: str) -> None:
    paths = compared_paths(run("determinism", subject(name)))
    assert any(".cache." in p and p.endswith(".layers[1].values") for p in paths), paths


@pytest.mark.parametrize("name", TEXT)
def test_text_edge_cases_pass_with_every_seq_input_resized(name: str) -> None:
    result = run("edge_cases", subject(name), empty_batch="rejects")
    assert result.status is Status.PASSED, result.message
    cases = {c["case"]: c for c in result.details["cases"]}
    assert cases["batch invariance"]["ok"]
    for size in (1, hf.MAX_LEN):
        assert cases[f"seq={size}"]["input_shapes"]["attention_mask"] == [2, size]
    if name == "bert":
        assert cases["seq=1"]["input_shapes"]["token_type_ids"] == [2, 1]
    assert "shared with 'attention_mask'" in result.message


@pytest.mark.parametrize(("name", "empty_batch"), [
    ("resnet", "must_work"), ("convnext", "must_work"), ("vit", "rejects")])
def test_vision_edge_cases_pass(name: str, empty_batch: str) -> None:
    result = run("edge_cases", subject(name), empty_batch=empty_batch)
    assert result.status is Status.PASSED, result.message


def test_seq_on_input_ids_alone_fails_where_the_mask_keeps_its_length() -> None:
    result = run("edge_cases", subject("bert", input={"input_ids": 1}),
                 empty_batch="rejects", batch_invariance=False)
    assert result.status is Status.FAILED
    assert f"seq={hf.MAX_LEN}: raised" in result.message
    assert "declare input=['input_ids', 'attention_mask', 'token_type_ids']" in result.message


def test_export_with_seq_on_input_ids_alone_says_to_declare_it_on_the_mask_too() -> None:
    result = run("export", subject("bert", input={"input_ids": 1}), "pt2")
    assert result.status is Status.FAILED
    assert "a dynamic dim is fixed by the model" in result.message
    assert "declare input=['input_ids', 'attention_mask', 'token_type_ids']" in result.message


@pytest.mark.parametrize("name", WITH_CACHE)
def test_safetensors_reload_matches_outputs_with_caches(name: str) -> None:
    result = run("export", subject(name), "safetensors")
    assert result.status is Status.PASSED, result.message
    leaves = result.details["validations"][0]["leaves"]
    assert any(".layers[0].keys" in leaf["path"] for leaf in leaves)


@pytest.mark.parametrize("name", ["resnet", "vit", "convnext"])
def test_vision_model_exports_to_safetensors_and_keeps_its_golden(name: str,
                                                                  tmp_path: Path) -> None:
    assert run("export", subject(name), "safetensors").status is Status.PASSED
    run("accuracy", subject(name), "g.safetensors",
        context=RunContext(golden_dir=tmp_path, update_golden=True))
    result = run("accuracy", subject(name), "g.safetensors",
                 context=RunContext(golden_dir=tmp_path))
    assert result.status is Status.PASSED, result.message


@pytest.mark.parametrize("name", ["gpt2", "t5"])
def test_golden_round_trip_stores_and_checks_cache_tensors(name: str, tmp_path: Path) -> None:
    from safetensors import safe_open

    write = RunContext(golden_dir=tmp_path, update_golden=True)
    run("accuracy", subject(name), "golden.safetensors", context=write)
    with safe_open(str(tmp_path / "golden.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert any(k.endswith(".layers[1].values") for k in keys), keys

    result = run("accuracy", subject(name), "golden.safetensors",
                 context=RunContext(golden_dir=tmp_path))
    assert result.status is Status.PASSED, result.message
    assert result.metrics["outputs"].value == len(keys)


def test_optimize_parity_compares_the_cache_and_passes() -> None:
    from torchbridge.export.common import Tolerances
    from torchbridge.optimize.core import run_level

    result = run_level("quantized", subject("gpt2"), Tolerances())
    assert result.status == "passed", result.message
    paths = [leaf["path"] for leaf in result.parity[0].leaves]
    assert "output.cache.layers[1].values" in paths
    assert list(result.accuracy) == ["top1_agreement[output.logits]"]


def test_graph_export_of_an_output_holding_a_cache_fails_with_the_use_cache_hint() -> None:
    result = run("export", subject("t5"), "pt2")
    assert result.status is Status.FAILED
    assert "returns a EncoderDecoderCache object" in result.message
    assert "use_cache=False" in result.message


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_serving_check_passes_on_text_models_with_dict_inputs(name: str) -> None:
    result = run("serving", subject(name))
    assert result.status is Status.PASSED, result.message
    assert "predict_parity" in result.message and "batched_parity" in result.message


def test_tb_export_dim_on_two_named_inputs_exports_one_symbol(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from torchbridge.cli.main import main as tb

    code = tb(["export", "--model", "hf_models:bert", "--input-shape", "input_ids=2,8",
               "--input-shape", "attention_mask=2,8", "--dtype", "int64",
               "--dim", "seq=input_ids:1,attention_mask:1:1-32", "--format", "pt2",
               "--output-dir", str(tmp_path), "--json"])
    assert code == 0
    (report,) = json.loads(capsys.readouterr().out)["reports"]
    assert "seq max" in [v["label"] for v in report["validations"]]
    ranges = report["details"]["range_constraints"].values()
    assert list(ranges).count("VR[1, 32]") == 1  # one symbol for both inputs


def test_server_accepts_every_seq_input_at_a_length_the_sample_did_not_have() -> None:
    import httpx

    from torchbridge.serving import ServerConfig
    from torchbridge.serving.live import LiveServer

    model, longer = hf.bert(), hf.text_inputs(batch=1, seq=12)
    body = {"inputs": {k: v.tolist() for k, v in longer.items()}}
    mismatched = {"inputs": body["inputs"] | {"attention_mask": [[1] * 10]}}
    with LiveServer(model, hf.text_inputs(), ServerConfig(max_batch_size=4),
                    input_spec=hf.TEXT_SPEC) as live:
        response = httpx.post(f"{live.url}/predict", json=body, timeout=30)
        refused = httpx.post(f"{live.url}/predict", json=mismatched, timeout=30)
    assert refused.status_code == 422
    assert "sharing dim 'seq' must have the same length" in refused.text
    assert response.status_code == 200, response.text
    expected = model(**longer).last_hidden_state
    got = torch.tensor(response.json()["outputs"]["last_hidden_state"])
    torch.testing.assert_close(got, expected.detach(), rtol=1e-4, atol=1e-5)


class OpaqueState:
    """A state object with no flattener and no pytree registration."""


class ReturnsOpaque(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, **inputs: torch.Tensor) -> dict[str, Any]:
        return {"logits": self.inner(**inputs).logits, "state": OpaqueState()}


def test_an_object_that_cannot_be_flattened_fails_with_a_hint_not_equality() -> None:
    model = ReturnsOpaque(hf.gpt2())
    result = run("determinism", Subject(model, hf.text_inputs(token_types=False)))
    assert result.status is Status.FAILED
    assert "output.state: cannot compare a" in result.message
    assert "register_flattener" in result.message


def test_use_cache_false_drops_the_cache_from_the_output() -> None:
    model = hf.gpt2()
    model.config.use_cache = False
    result = run("determinism", Subject(model, hf.text_inputs(token_types=False)))
    assert result.status is Status.PASSED, result.message
    assert compared_paths(result) == ["output.logits"]


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_torchvision_and_timm_models_pass_determinism(package: str) -> None:
    pytest.importorskip(package, reason=f"{package} is not importable here")
    if package == "torchvision":
        import torchvision

        model = torchvision.models.resnet18(num_classes=10).eval()
    else:
        import timm

        model = timm.create_model("resnet10t", num_classes=10).eval()
    result = run("determinism", Subject(model, torch.rand(2, 3, 64, 64)))
    assert result.status is Status.PASSED, result.message


# --------------------------------------------------------------------------- inner sessions

CONFTEST = """
import pytest
import hf_models as hf

@pytest.fixture
def model():
    return hf.{name}()

@pytest.fixture
def model_factory():
    return hf.{name}

@pytest.fixture
def sample_input():
    return hf.{inputs}

@pytest.fixture
def input_spec():
    return hf.TEXT_SPEC
"""

SUITE = """
import pytest_torchbridge as tb

@tb.forward
@tb.determinism
@tb.accuracy(golden="goldens/{name}.safetensors")
@tb.edge_cases(empty_batch="rejects")
@tb.export("safetensors")
def test_{name}_ready(model, sample_input):
    assert model(**sample_input).logits.shape[0] == 2
"""


@pytest.mark.parametrize(("name", "inputs"), [("gpt2", "text_inputs(token_types=False)"),
                                              ("t5", "seq2seq_inputs()")])
def test_suite_with_every_correctness_marker_passes_on_a_model_with_a_cache(
        pytester: pytest.Pytester, name: str, inputs: str) -> None:
    pytester.makeconftest(CONFTEST.format(name=name, inputs=inputs))
    pytester.makepyfile(**{f"test_{name}": SUITE.format(name=name)})
    pytester.runpytest("-q", "--tb-update-golden").assert_outcomes(passed=6)
    pytester.runpytest("-q", "--tb-json=report.json").assert_outcomes(passed=6)
    report = json.loads((pytester.path / "report.json").read_text())
    messages = {r["check"]: r["message"] for r in report["results"]}
    assert messages["accuracy"].startswith(f"matches golden goldens/{name}.safetensors")
    assert "seq=1, seq=32, batch invariance" in messages["edge_cases"]


def _guide_block(first_line: str) -> str:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "user-guide.md").read_text()
    return guide.split(f"```python\n{first_line}\n", 1)[1].split("```", 1)[0]


def test_the_user_guides_suite_passes_on_bert_with_onnx_sharing_one_seq_dim(
        pytester: pytest.Pytester) -> None:
    pytest.importorskip("onnxscript")
    pytester.makeconftest(CONFTEST.format(name="bert", inputs="text_inputs()"))
    pytester.makepyfile(test_encoder_ready=_guide_block("# test_encoder_ready.py"))
    pytester.runpytest("-q", "--tb-update-golden", "-k", "accuracy").assert_outcomes(
        passed=1, deselected=5)
    pytester.runpytest("-q", "--tb-json=report.json").assert_outcomes(passed=6)
    report = json.loads((pytester.path / "report.json").read_text())
    onnx = next(r for r in report["results"] if r["test_id"].endswith("[tb-export-onnx]"))
    assert {"seq min", "seq max"} <= {v["label"] for v in onnx["details"]["validations"]}
    graph_inputs = onnx["details"]["details"]["inputs"]
    assert graph_inputs["input_ids"][1] == graph_inputs["attention_mask"][1] == "seq"
    assert "shared with 'attention_mask', 'token_type_ids'" in onnx["message"]
