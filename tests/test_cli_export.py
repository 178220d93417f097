"""``tb-export`` from the command line: artifacts, JSON, and exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_model

from torchbridge.cli.main import main as tb

MODELS = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 16)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.proj(x)).mean(dim=1))

class Running(torch.nn.Module):
    def forward(self, x):
        return torch.cummax(x, dim=1).values

def build():
    torch.manual_seed(0)
    return Net().eval()

def build_running():
    return torch.nn.Sequential(torch.nn.Linear(4, 4), Running()).eval()

class ByBatch(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] > 2:  # a trace keeps the branch of its batch: wrong at batch 1
            return x * 2
        return x * 3

def build_by_batch():
    return ByBatch().eval()
'''


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


@pytest.fixture
def weights(models: Path, tmp_path: Path) -> Path:
    from torchbridge.loading import load_model

    model = load_model(f"{models}:build").model
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(0.5)
    path = tmp_path / "net.safetensors"
    save_model(model, str(path))
    return path


def test_all_formats_export_validate_and_report_json(
        models: Path, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exports"
    code = tb(["export", "--model", f"{models}:build", "--weights", str(weights),
               "--input-shape", "4,6,8", "--format", "all", "--validate", "--dynamic-axes",
               "--dim", "seq=1:1-32", "--max-batch", "16", "--output-dir", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["ok"] is True
    assert report["sha256"].keys() == {"net.safetensors"}
    assert [r["format"] for r in report["reports"]] == ["onnx", "torchscript", "safetensors",
                                                        "pt2"]
    onnx = report["reports"][0]
    assert [v["sizes"] for v in onnx["validations"]] == [  # export batch, 2 fresh inputs, ...
        {"batch": 4, "seq": 6}, {"batch": 4, "seq": 6}, {"batch": 4, "seq": 6},
        {"batch": 1, "seq": 6}, {"batch": 3, "seq": 6},
        {"batch": 16, "seq": 6}, {"batch": 4, "seq": 1}, {"batch": 4, "seq": 32}]
    assert sorted(p.name for p in out.iterdir()) == [
        "build.onnx", "build.onnx.sha256", "build.pt2", "build.pt2.sha256",
        "build.safetensors", "build.safetensors.sha256", "build.ts.pt", "build.ts.pt.sha256"]


def test_output_names_the_single_artifact(models: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "deep" / "clf.pt2"
    code = tb(["export", "--model", f"{models}:build", "--input-shape", "2,3,8",
               "--format", "pt2", "--output", str(target)])
    assert code == 0
    assert target.is_file()
    assert (tmp_path / "deep" / "clf.pt2.sha256").is_file()
    assert "pt2" in capsys.readouterr().out


def test_export_failure_exits_1_naming_the_operator(models: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = tb(["export", "--model", f"{models}:build_running", "--input-shape", "3,4",
               "--format", "onnx", "--output-dir", str(tmp_path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert "operator aten.cummax.default used in 1 (Running)" in report["reports"][0]["error"]


def test_a_failed_export_leaves_no_artifact_and_no_checksum(
        models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "by_batch.ts.pt"  # an earlier run's artifact: not this model's
    stale.write_bytes(b"old")
    stale.with_name(stale.name + ".sha256").write_text("0" * 64 + "  by_batch.ts.pt\n")
    code = tb(["export", "--model", f"{models}:build_by_batch", "--input-shape", "3,4",
               "--format", "torchscript", "--output-dir", str(tmp_path), "--json"])
    report = json.loads(capsys.readouterr().out)["reports"][0]
    assert code == 1 and not report["ok"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("by_batch")) == []
    assert str(stale) in report["details"]["removed"]


def test_nonexistent_model_path_exits_2(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = tb(["export", "--model", str(tmp_path / "nope.pt2"), "--input-shape", "2,8"])
    assert code == 2
    assert "no such file" in capsys.readouterr().err


def test_corrupt_onnx_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x0a\xff\xff\xff not onnx")
    code = tb(["export", "--model", str(tmp_path / "bad.onnx"), "--input-shape", "2,8"])
    assert code == 2
    assert "not a readable ONNX model" in capsys.readouterr().err


def test_truncated_safetensors_weights_exit_2(models: Path, weights: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    weights.write_bytes(weights.read_bytes()[:-64])
    code = tb(["export", "--model", f"{models}:build", "--weights", str(weights),
               "--input-shape", "2,3,8"])
    assert code == 2
    assert "not a valid safetensors file" in capsys.readouterr().err


def test_input_shape_that_does_not_fit_the_model_exits_2(
        models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = tb(["export", "--model", f"{models}:build", "--input-shape", "2,3,5"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not accept inputs of (2, 3, 5) float32" in err
    assert "--input-shape" in err


def test_output_with_several_formats_is_a_usage_error(
        models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = tb(["export", "--model", f"{models}:build", "--input-shape", "2,3,8",
               "--format", "all", "--output", "x.onnx"])
    assert code == 2
    assert "--output-dir" in capsys.readouterr().err


def test_bad_dim_spelling_is_a_usage_error(models: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = tb(["export", "--model", f"{models}:build", "--input-shape", "2,3,8",
               "--dim", "seq:1"])
    assert code == 2
    assert "NAME=[INPUT:]AXIS[,[INPUT:]AXIS...][:MIN-MAX]" in capsys.readouterr().err


def test_absent_device_exits_2_before_loading(models: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    code = tb(["export", "--model", f"{models}:build", "--input-shape", "2,3,8",
               "--device", "cuda"])
    assert code == 2
    assert "--device cuda" in capsys.readouterr().err
