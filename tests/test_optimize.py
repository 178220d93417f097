"""Optimization levels prove parity with the original and refuse to ship what fails it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from torchbridge.checks import Subject
from torchbridge.cli.main import main as tb
from torchbridge.errors import ConfigError
from torchbridge.optimize import LevelResult, optimize, save_artifact
from torchbridge.optimize import levels as lv
from torchbridge.optimize.core import _choose, eager_call

FAST = 0.05  # timing budget per level: these tests check behaviour, not speed

MODELS = '''
import torch

def build_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 4)).eval()
'''


def conv_bn() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten())
    norm = model[1]
    assert isinstance(norm, torch.nn.BatchNorm2d)
    norm.running_mean.uniform_(-0.5, 0.5)
    norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


class Guarded(torch.nn.Module):
    """Python control flow on a shape: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = conv_bn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 3:
            raise ValueError("expected RGB")
        return self.body(x)


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 4)).eval()


def image() -> torch.Tensor:
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_inference_level_folds_batch_norm_and_keeps_parity() -> None:
    report = optimize(Subject(conv_bn(), image()), "inference", seconds=FAST)
    result = report.chosen
    assert result is not None and result.passed, report.summary()
    assert result.transformed is not None
    assert lv.count_batch_norms(result.transformed.module) == 0
    assert "folded 1 batch norm" in result.notes[0]
    assert [v.label for v in result.parity] == ["sample batch", "batch 1"]
    assert result.speedup is not None and result.speedup > 0


def test_inference_level_folds_sequential_pairs_when_fx_cannot_trace() -> None:
    result = optimize(Subject(Guarded().eval(), image()), "inference", seconds=FAST).chosen
    assert result is not None and result.passed
    assert "torch.fx tracing failed" in result.notes[0]
    assert "folded 1 batch norm(s) in nn.Sequential pairs" in result.notes[1]


def test_quantized_level_reports_its_looser_accuracy() -> None:
    result = optimize(Subject(mlp(), torch.randn(16, 8)), "quantized", seconds=FAST).chosen
    assert result is not None and result.passed, result and result.message
    assert "int8 by design" in result.tolerance
    assert result.max_abs_error > 0  # int8 changes numerics; a zero would mean no-op
    assert result.accuracy["top1_agreement[output]"] >= 0.9


def test_quantized_level_is_skipped_without_layers_to_quantize() -> None:
    result = optimize(Subject(conv_bn(), image()), "quantized", seconds=FAST).chosen
    assert result is not None
    assert result.status == "skipped"
    assert "no Linear/LSTM/GRU layer" in result.message


def test_compile_level_is_skipped_with_the_reason_without_a_compiler(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    result = optimize(Subject(mlp(), torch.randn(4, 8)), "compile", seconds=FAST).chosen
    assert result is not None
    assert result.status == "skipped"
    assert "needs a C++ compiler" in result.message


@pytest.mark.skipif(lv.compiler_missing() is not None, reason="no C++ compiler here")
def test_compile_level_matches_the_original() -> None:
    result = optimize(Subject(mlp(), torch.randn(4, 8)), "compile", seconds=FAST).chosen
    assert result is not None and result.passed, result and result.message
    assert result.max_abs_error < 1e-5


def _timed(level: str, status: str, speedup: float,
           model: torch.nn.Module | None = None) -> LevelResult:
    model = model or mlp()  # called the way eager is, so that only the model differs
    return LevelResult(level, status, eager_ms=1.0, level_ms=1.0 / speedup,
                       transformed=lv.Transformed(level, model, eager_call(model)))


class Repeated(torch.nn.Module):
    """The MLP run ``times`` times: the eager model a much faster level beats."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.body, self.times = mlp(), times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.times - 1):
            self.body(x)
        return self.body(x)


def test_production_picks_the_fastest_level_that_passes_parity() -> None:
    chosen = _choose([_timed("inference", "passed", 1.2),
                      _timed("compile", "passed", 2.0, Repeated(1)),
                      _timed("quantized", "failed", 5.0)],
                     Subject(Repeated(6), torch.randn(2, 8)), 1.0, seconds=FAST, threads=1)
    assert chosen.level == "compile"
    assert chosen.paired["verdict"] == "improvement"


def test_production_keeps_eager_when_the_interleaved_comparison_finds_no_gain() -> None:
    chosen = _choose([_timed("compile", "passed", 2.0)], Subject(mlp(), torch.randn(2, 8)),
                     1.0, seconds=FAST, threads=1)  # the same model: timed 2x by chance
    assert chosen.level == "eager"
    assert "interleaved: time per call" in chosen.message


def test_production_keeps_eager_when_no_level_is_faster() -> None:
    chosen = _choose([_timed("inference", "passed", 0.9), _timed("quantized", "failed", 5.0)],
                     Subject(mlp(), torch.randn(2, 8)), 1.0)
    assert chosen.level == "eager"
    assert chosen.passed
    assert "not clearly faster" in chosen.message


def test_production_keeps_eager_when_the_gain_is_within_timer_noise() -> None:
    chosen = _choose([_timed("inference", "passed", 1.05)], Subject(mlp(), torch.randn(2, 8)),
                     1.0)
    assert chosen.level == "eager"
    assert "needs 1.10x" in chosen.message


def test_artifact_failing_parity_is_refused_unless_forced(tmp_path: Path) -> None:
    from torchbridge.export.common import Tolerances

    subject = Subject(mlp(), torch.randn(16, 8))
    result = optimize(subject, "quantized", seconds=FAST,
                      tolerances=Tolerances(rtol=0.0, atol=1e-9)).chosen
    assert result is not None and result.status == "failed"
    with pytest.raises(ConfigError, match="--force"):
        save_artifact(result, subject, tmp_path / "q.pt2")
    saved = save_artifact(result, subject, tmp_path / "q.pt2", force=True)
    assert saved.kind == "torchscript"  # torch.export cannot capture int8 packed params
    assert saved.path.name == "q.ts.pt"
    assert "wrote TorchScript instead" in saved.note


def test_inference_artifact_is_a_pt2_that_reloads(tmp_path: Path) -> None:
    subject = Subject(conv_bn(), image())
    result = optimize(subject, "inference", seconds=FAST).chosen
    assert result is not None
    saved = save_artifact(result, subject, tmp_path / "m.pt2")
    assert saved.kind == "pt2"
    reloaded = torch.export.load(str(saved.path)).module()
    torch.testing.assert_close(reloaded(image()[:1]), conv_bn()(image()[:1]),
                               rtol=1e-4, atol=1e-5)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def test_cli_writes_the_artifact_and_reports_json(models: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "opt.pt2"
    code = tb(["optimize", "--model", f"{models}:build_mlp", "--input-shape", "8,8",
               "--level", "inference", "--seconds", "0.05", "--output", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["chosen"] == "inference"
    assert report["artifact"]["kind"] == "pt2"
    assert out.is_file()
    assert (tmp_path / "opt.pt2.sha256").is_file()


def test_cli_exits_1_and_writes_nothing_when_parity_fails(
        models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q.pt2"
    code = tb(["optimize", "--model", f"{models}:build_mlp", "--input-shape", "8,8",
               "--level", "quantized", "--rtol", "0", "--atol", "1e-9", "--seconds", "0.05",
               "--output", str(out)])
    assert code == 1
    assert not out.exists()
    assert not (tmp_path / "q.ts.pt").exists()
    assert "pass --force" in capsys.readouterr().out


def test_cli_input_shape_that_does_not_fit_exits_2(
        models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = tb(["optimize", "--model", f"{models}:build_mlp", "--input-shape", "8,9"])
    assert code == 2
    assert "--input-shape" in capsys.readouterr().err
