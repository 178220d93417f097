"""``tb-benchmark --model A --compare-with B``: two real models timed interleaved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchbridge.cli.main import run_command

MODELS = """
import torch

class Net(torch.nn.Module):
    def __init__(self, repeats):
        super().__init__()
        torch.manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(128, 128) / 12)
        self.repeats = repeats

    def forward(self, x):
        for _ in range(self.repeats):
            x = torch.tanh(x @ self.weight)
        return x

def fast():
    return Net(1).eval()

def slow():
    return Net(4).eval()
"""


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "ab_cli_models.py"  # a name no other test module imports
    path.write_text(MODELS)
    return path


def compare(models: Path, head: str, base: str, *extra: str) -> int:
    return run_command("benchmark", ["--model", f"{models}:{head}", "--compare-with",
                                     f"{models}:{base}", "--input-shape", "8,128", "--quick",
                                     "--threads", "1", *extra])


def test_a_model_much_slower_than_the_other_exits_1_with_the_ratio(
        models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare(models, "slow", "fast") == 1
    out = capsys.readouterr().out
    assert f"against {models}:fast (95 % bounds" in out and out.rstrip().endswith("regression")


def test_a_faster_model_passes_and_json_carries_the_comparison(
        models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare(models, "fast", "slow", "--json") == 0
    report = json.loads(capsys.readouterr().out)["compare"]
    assert report["verdict"] == "improvement" and report["ratio"] < 0.75
    assert report["pairs"] >= 30 and report["against"] == f"{models}:slow"


def test_an_unreadable_threshold_is_a_usage_error(models: Path) -> None:
    assert compare(models, "fast", "fast", "--regression-threshold", "lots") == 2
