"""Exports are proven: each format is loaded back and compared with eager PyTorch."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from torchbridge.checks import Subject
from torchbridge.errors import CheckSkipped
from torchbridge.export import ExportFailed, ExportOptions, ExportReport, export_model


class SeqPool(torch.nn.Module):
    """(batch, seq, 8) → (batch, 4): needs a dynamic batch *and* a dynamic seq dim."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 16)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.proj(x)).mean(dim=1))


class Scan(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cummax(x, dim=1).values


class WithCummax(torch.nn.Module):
    """Uses an operator the ONNX exporter cannot translate, inside a named submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.scan = Scan()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scan(self.lin(x))


class Branchy(torch.nn.Module):
    """Branches on a tensor value: torch.export cannot capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if y.sum() > 0:
            return y * 2
        return y


class BatchSizeBranch(torch.nn.Module):
    """Branches on the batch size: a trace bakes in the branch taken at export time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 2:
            return x * 2
        return x + 1


class ScaleIfRaw(torch.nn.Module):
    """Rescales raw pixel values: a data-dependent branch the tracer freezes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.max() > 1:
            x = x / 255
        return x * 2


class NeedsTwoTokens(torch.nn.Module):
    """Raises in eager PyTorch for sequences shorter than 2 (the reference fails)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < 2:
            raise ValueError("needs two tokens or more")
        return x[:, 1:] - x[:, :-1]


#: Labels of the validation points with fresh inputs, in plan order.
FRESH = ["fresh: rows scaled and shuffled", "fresh: uniform noise in [0, 1)"]


class TiedLM(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(20, 8)
        self.out = torch.nn.Linear(8, 20, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids))


def seeded(cls: type[torch.nn.Module]) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def seq_subject() -> Subject:
    # Sample batch 1 on purpose: the export must grow it to 2 to keep the batch dynamic.
    x = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(1))
    spec = {"dims": {"seq": {"input": 0, "axis": 1, "min": 1, "max": 64}}, "max_batch": 16}
    return Subject(seeded(SeqPool), x, spec=spec, factory=lambda: seeded(SeqPool))


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    path = tmp_path_factory.mktemp("onnx") / "seq.onnx"
    return export_model(seq_subject(), "onnx", path)


#: (batch, seq) of the plan: export batch, its two fresh inputs, batch 1, odd, max, seq ends.
PLAN = [(2, 6), (2, 6), (2, 6), (1, 6), (3, 6), (16, 6), (2, 1), (2, 64)]


def validated_sizes(report: ExportReport) -> list[tuple[int, int]]:
    return [(v.sizes["batch"], v.sizes["seq"]) for v in report.validations]


def test_onnx_matches_eager_at_batch_1_odd_and_max_and_seq_ends(
        onnx_export: ExportReport) -> None:
    assert onnx_export.ok, onnx_export.summary()
    assert validated_sizes(onnx_export) == PLAN
    assert onnx_export.max_abs_error < 1e-5
    assert all(v.leaves and v.leaves[0]["total"] > 0 for v in onnx_export.validations)


def test_onnx_graph_has_named_dynamic_batch_and_seq_dims(onnx_export: ExportReport) -> None:
    assert list(onnx_export.details["inputs"].values()) == [["batch", "seq", 8]]
    assert list(onnx_export.details["outputs"].values()) == [["batch", 4]]
    assert onnx_export.details["exporter"] == "dynamo"


def test_onnx_is_one_file_with_a_sha256sum_compatible_checksum(
        onnx_export: ExportReport) -> None:
    assert onnx_export.files == [onnx_export.path]
    assert onnx_export.checksum_file is not None
    check = subprocess.run(["sha256sum", "-c", onnx_export.checksum_file.name],
                           cwd=onnx_export.checksum_file.parent, capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "seq.onnx: OK"


def test_unsupported_onnx_operator_names_the_operator_and_its_module(tmp_path: Path) -> None:
    subject = Subject(seeded(WithCummax), torch.randn(3, 4))
    with pytest.raises(ExportFailed) as excinfo:
        export_model(subject, "onnx", tmp_path / "m.onnx")
    message = str(excinfo.value)
    assert "operator aten.cummax.default" in message
    assert "used in scan (Scan)" in message
    assert "test_export.py" in message


def test_data_dependent_control_flow_fails_with_the_source_line(tmp_path: Path) -> None:
    subject = Subject(seeded(Branchy), torch.randn(3, 4))
    with pytest.raises(ExportFailed, match=r"data-dependent control flow at .*test_export\.py"):
        export_model(subject, "pt2", tmp_path / "m.pt2")


def test_a_model_that_fixes_the_batch_cannot_be_exported_dynamically(tmp_path: Path) -> None:
    subject = Subject(BatchSizeBranch(), torch.randn(4, 3))
    with pytest.raises(ExportFailed, match="dynamic dim is fixed by the model"):
        export_model(subject, "pt2", tmp_path / "m.pt2")


def test_static_export_is_validated_at_its_own_batch_only(tmp_path: Path) -> None:
    subject = Subject(BatchSizeBranch(), torch.randn(4, 3))
    report = export_model(subject, "pt2", tmp_path / "m.pt2", ExportOptions(dynamic=False))
    assert report.ok, report.summary()
    assert [v.sizes["batch"] for v in report.validations] == [4, 4, 4]
    assert [v.label for v in report.validations][1:] == FRESH


def test_pt2_round_trip_matches_eager_with_dynamic_dims(tmp_path: Path) -> None:
    report = export_model(seq_subject(), "pt2", tmp_path / "seq.pt2")
    assert report.ok, report.summary()
    assert validated_sizes(report) == PLAN
    assert report.checksum_file is not None and report.checksum_file.is_file()


def test_torchscript_trace_that_bakes_in_the_batch_fails_naming_the_line(
        tmp_path: Path) -> None:
    with pytest.raises(ExportFailed, match=r"the trace may be incorrect: .*test_export\.py:\d+ "
                                           r"`if x\.shape\[0\] > 2:`"):
        export_model(Subject(BatchSizeBranch(), torch.randn(4, 3)), "torchscript",
                     tmp_path / "m.ts.pt")
    assert not (tmp_path / "m.ts.pt").exists()


def test_torchscript_trace_allowed_to_warn_still_fails_validation_at_batch_1(
        tmp_path: Path) -> None:
    report = export_model(Subject(BatchSizeBranch(), torch.randn(4, 3)), "torchscript",
                          tmp_path / "m.ts.pt", ExportOptions(allow_tracer_warnings=True))
    assert not report.ok
    failing = [v.label for v in report.validations if not v.ok]
    assert failing == ["batch 1"]
    assert "would pass with" in report.summary()


def test_traced_value_branch_fails_naming_the_line_although_the_sample_matches(
        tmp_path: Path) -> None:
    # Traced on a sample whose max is above 1, the trace divides by 255 for every input.
    subject = Subject(seeded(ScaleIfRaw), torch.randn(4, 3) * 10)
    with pytest.raises(ExportFailed, match=r"test_export\.py:\d+ `if x\.max\(\) > 1:`"):
        export_model(subject, "torchscript", tmp_path / "m.ts.pt")


def test_legacy_onnx_trace_of_a_value_branch_fails_on_fresh_inputs(tmp_path: Path) -> None:
    subject = Subject(seeded(ScaleIfRaw), torch.randn(4, 3) * 10)
    report = export_model(subject, "onnx", tmp_path / "m.onnx",
                          ExportOptions(exporter="legacy"))
    assert not report.ok
    assert [v.label for v in report.validations if not v.ok] == [
        "fresh: uniform noise in [0, 1)"]
    assert re.search(r"the tracer warned the trace may be incorrect at .*test_export\.py:\d+ "
                     r"`if x\.max\(\) > 1:`", report.summary())


def test_fresh_inputs_catch_the_value_branch_when_tracer_warnings_are_allowed(
        tmp_path: Path) -> None:
    subject = Subject(seeded(ScaleIfRaw), torch.randn(4, 3) * 10)
    report = export_model(subject, "torchscript", tmp_path / "m.ts.pt",
                          ExportOptions(allow_tracer_warnings=True))
    assert not report.ok
    assert report.validations[0].ok  # copies of the traced sample match
    assert "fresh: uniform noise in [0, 1)" in [v.label for v in report.validations
                                                 if not v.ok]


def test_eager_reference_raising_is_a_failed_point_that_says_so(tmp_path: Path) -> None:
    subject = Subject(seeded(NeedsTwoTokens), torch.randn(2, 4, 8),
                      spec={"dims": {"seq": {"input": 0, "axis": 1, "min": 1, "max": 8}}})
    report = export_model(subject, "torchscript", tmp_path / "m.ts.pt",
                          ExportOptions(method="script"))
    assert not report.ok
    bad = [v for v in report.validations if not v.ok]
    assert [v.sizes["seq"] for v in bad] == [1]
    assert bad[0].message.startswith("the eager reference raised: ValueError: needs two")
    assert "seq=1" in report.summary()


def test_torchscript_script_keeps_the_branch_and_passes(tmp_path: Path) -> None:
    report = export_model(Subject(BatchSizeBranch(), torch.randn(4, 3)), "torchscript",
                          tmp_path / "m.ts.pt", ExportOptions(method="script"))
    assert report.ok, report.summary()
    assert report.details["method"] == "script"


def test_torchscript_deprecation_warnings_stay_inside(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = export_model(seq_subject(), "torchscript", tmp_path / "m.ts.pt")
    assert report.ok, report.summary()


def test_safetensors_keeps_tied_weights_once_and_writes_metadata(tmp_path: Path) -> None:
    ids = torch.randint(0, 20, (2, 5), generator=torch.Generator().manual_seed(0))
    subject = Subject(seeded(TiedLM), ids, factory=lambda: seeded(TiedLM))
    report = export_model(subject, "safetensors", tmp_path / "lm.safetensors")
    assert report.ok, report.summary()
    assert report.details["shared_tensors"] == [["embed.weight", "out.weight"]]
    with safe_open(str(tmp_path / "lm.safetensors"), framework="pt") as handle:
        assert len(list(handle.keys())) == 1
        meta = handle.metadata()
    assert meta["framework"] == "pytorch"
    assert meta["torch_version"] == torch.__version__
    assert meta["model_class"].endswith("TiedLM")
    assert '"sample_shapes": {"0": {"shape": [2, 5], "dtype": "int64"}}' in meta["input_spec"]


def test_safetensors_reload_into_a_model_without_factory_uses_a_deep_copy(
        tmp_path: Path) -> None:
    report = export_model(Subject(seeded(SeqPool), torch.randn(2, 3, 8)), "safetensors",
                          tmp_path / "m.safetensors")
    assert report.ok, report.summary()
    assert report.details["reloaded_into"] == "deepcopy"


def test_safetensors_fails_when_the_factory_builds_another_architecture(
        tmp_path: Path) -> None:
    subject = Subject(seeded(SeqPool), torch.randn(2, 3, 8), factory=lambda: seeded(TiedLM))
    with pytest.raises(ExportFailed, match=r"reloading m\.safetensors into a fresh TiedLM"):
        export_model(subject, "safetensors", tmp_path / "m.safetensors")


def test_legacy_onnx_exporter_is_used_only_when_asked(tmp_path: Path) -> None:
    subject = Subject(seeded(SeqPool), torch.randn(2, 3, 8), spec={"max_batch": 8})
    report = export_model(subject, "onnx", tmp_path / "m.onnx",
                          ExportOptions(exporter="legacy", opset=17))
    assert report.ok, report.summary()
    assert report.details["exporter"] == "legacy"
    assert report.details["opset"] == 17
    assert list(report.details["inputs"].values()) == [["batch", 3, 8]]


def test_batch_sizes_override_the_validation_plan(tmp_path: Path) -> None:
    report = export_model(seq_subject(), "pt2", tmp_path / "m.pt2",
                          ExportOptions(batch_sizes=(5, 7)))
    assert [v.sizes["batch"] for v in report.validations[3:5]] == [5, 7]


def test_missing_onnxscript_is_a_skip_with_the_install_hint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(CheckSkipped, match=r"onnxscript.*pytest-torchbridge\[onnx\]"):
        export_model(seq_subject(), "onnx", tmp_path / "m.onnx")


def test_large_models_keep_external_data_covered_by_the_checksum(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchbridge.export import onnx as onnx_export

    monkeypatch.setattr(onnx_export, "SINGLE_FILE_LIMIT", 0)  # treat the model as > 2 GB
    subject = Subject(seeded(SeqPool), torch.randn(2, 3, 8))
    report = export_model(subject, "onnx", tmp_path / "big.onnx", ExportOptions(dynamic=False))
    assert report.ok, report.summary()
    assert [f.name for f in report.files] == ["big.onnx", "big.onnx.data"]
    assert report.checksum_file is not None
    listed = [line.split("  ")[1] for line in report.checksum_file.read_text().splitlines()]
    assert listed == ["big.onnx", "big.onnx.data"]


def tiny_t5_subject() -> Subject:
    transformers = pytest.importorskip("transformers")
    config = transformers.T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                   num_decoder_layers=1, num_heads=2, use_cache=False)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(config).eval()
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    return Subject(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                           "decoder_input_ids": ids[:, :4]})


def test_t5_conversion_error_names_the_module_the_line_and_the_legacy_exporter(
        tmp_path: Path) -> None:
    with pytest.raises(ExportFailed) as excinfo:
        export_model(tiny_t5_subject(), "onnx", tmp_path / "t5.onnx",
                     ExportOptions(dynamic=False))
    message = str(excinfo.value)
    assert "operator aten.view.default in encoder.block.0.layer.0.SelfAttention " \
           "(T5Attention) at " in message
    assert re.search(r"modeling_t5\.py:\d+ `attn_output = attn_output\.reshape", message)
    assert 'exporter="legacy"' in message


def test_t5_exports_with_the_legacy_onnx_exporter(tmp_path: Path) -> None:
    report = export_model(tiny_t5_subject(), "onnx", tmp_path / "t5.onnx",
                          ExportOptions(dynamic=False, exporter="legacy"))
    assert report.ok, report.summary()


def test_an_export_matching_outputs_without_signal_says_so(tmp_path: Path) -> None:
    def zero_head() -> torch.nn.Module:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)).eval()
        torch.nn.init.zeros_(model[1].weight)
        torch.nn.init.zeros_(model[1].bias)
        return model

    report = export_model(Subject(zero_head(), torch.randn(2, 4), factory=zero_head),
                          "safetensors", tmp_path / "m.safetensors")
    assert report.ok
    assert "warning: no signal in output (eager outputs all within 1e-06 of 0)" \
        in report.summary()
