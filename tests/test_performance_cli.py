"""tb-benchmark and tb-profile on real models given as path/to/file.py:factory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from torchbridge.cli.main import run_command

MODELS = """
import torch

def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 4)).eval()

class Hungry(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] > 4:  # asks the allocator for ~2**60 bytes: a real out-of-memory
            torch.empty(2**60, dtype=torch.uint8)
        return x * 2

def hungry():
    return Hungry()
"""


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def test_benchmark_quick_json_reports_percentiles_and_throughput(
        models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_command("benchmark", ["--model", f"{models}:mlp", "--input-shape", "2,16",
                                     "--quick", "--json", "--threads", "1"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    row = report["by_batch"][0]
    assert row["batch_size"] == 2 and report["threads"] == 1
    assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert row["samples_per_s"] > 0 and row["samples"] > 0
    drift = row["median_drift"]  # None below 200 samples
    assert drift is None or drift >= 0.0


def test_benchmark_keep_host_noise_sets_no_call_aside(
        models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_command("benchmark", ["--model", f"{models}:mlp", "--input-shape", "2,16",
                                     "--quick", "--json", "--keep-host-noise"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["by_batch"][0]["set_aside"] == 0


def test_benchmark_stress_stops_at_the_first_oom_and_names_the_largest_batch(
        models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_command("benchmark", ["--model", f"{models}:hungry", "--input-shape", "1,8",
                                     "--stress", "--batch-sizes", "1,4,8,16", "--quick",
                                     "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["batch_size"] for r in report["by_batch"]] == [1, 4]
    assert report["largest_batch_that_fits"] == 4
    assert report["stopped"] == "out of memory at batch size 8"


def test_benchmark_table_is_printed_without_json(models: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command("benchmark", ["--model", f"{models}:mlp", "--input-shape", "1,16",
                                     "--quick"]) == 0
    out = capsys.readouterr().out
    assert "p99 ms" in out and "samples/s" in out and "drift" in out


def test_piped_stress_table_keeps_every_p99_bound_whole(
        models: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # piped, as in a CI log: rich would cut at 80
    assert run_command("benchmark", ["--model", f"{models}:mlp", "--input-shape", "1,16",
                                     "--stress", "--batch-sizes", "1,2", "--quick"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "│" in line]
    assert "…" not in "".join(rows)
    assert len(rows) >= 2 and all(re.search(r"\d\.\d{3}-\d+\.\d{3}|n too small|>= ", row)
                                  for row in rows[-2:])


def test_benchmark_input_the_model_rejects_is_a_usage_error(
        models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_command("benchmark", ["--model", f"{models}:mlp", "--input-shape", "1,15",
                                     "--quick"])
    assert code == 2
    err = capsys.readouterr().err
    assert "the model rejects batch size 1" in err and "--input-shape" in err


def test_benchmark_bad_batch_sizes_are_a_usage_error(models: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = run_command("benchmark", ["--model", f"{models}:mlp", "--input-shape", "1,16",
                                     "--batch-sizes", "1,zero"])
    assert code == 2
    assert "--batch-sizes '1,zero'" in capsys.readouterr().err


def test_profile_summary_json_lists_operators_and_writes_a_chrome_trace(
        models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "trace.json"
    code = run_command("profile", ["--model", f"{models}:mlp", "--input-shape", "2,16",
                                   "--mode", "summary", "--json", "--trace", str(trace),
                                   "--steps", "2"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    names = {row["name"] for row in report["rows"]}
    assert "aten::addmm" in names
    assert json.loads(trace.read_text())["traceEvents"]


def test_profile_memory_mode_reports_allocations(models: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = run_command("profile", ["--model", f"{models}:mlp", "--input-shape", "8,16",
                                   "--mode", "memory", "--json", "--steps", "1"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert max(row["self_cpu_memory_bytes"] for row in rows) > 0


def test_profile_on_absent_cuda_is_a_usage_error(models: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = run_command("profile", ["--model", f"{models}:mlp", "--input-shape", "2,16",
                                   "--device", "cuda"])
    assert code == 2
    assert "--device cuda" in capsys.readouterr().err
