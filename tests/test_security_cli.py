"""tb-scan: a verdict per file, exit 1 when anything is unsafe, JSON for machines."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from security_corpus import Reduce

from torchbridge.cli.scan import main as scan_main


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    root = tmp_path / "exports"
    root.mkdir()
    torch.save(torch.nn.Linear(2, 2).state_dict(), root / "good.pt")
    (root / "evil.pkl").write_bytes(pickle.dumps(Reduce(os.system, "true")))
    (root / "README.md").write_text("# exports")
    return root


def test_scan_exits_1_and_names_the_unsafe_file(mixed: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert scan_main([str(mixed), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    verdicts = {Path(f["path"]).name: f for f in report["files"]}
    assert report["ok"] is False
    assert verdicts["evil.pkl"]["verdict"] == "unsafe"
    assert verdicts["evil.pkl"]["dangerous_globals"] == ["posix.system"]
    assert verdicts["good.pt"]["verdict"] == "safe"
    assert verdicts["README.md"]["verdict"] == "not-a-model"


def test_scan_exits_0_when_everything_is_safe(mixed: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (mixed / "evil.pkl").unlink()
    assert scan_main([str(mixed / "good.pt"), str(mixed)]) == 0
    out = capsys.readouterr().out
    assert "good.pt" in out and "safe" in out and "0 failed" in out


def test_pickled_whole_module_fails_only_with_strict(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    assert scan_main([str(path)]) == 0
    assert "code" in capsys.readouterr().out
    assert scan_main([str(path), "--strict"]) == 1
    assert scan_main([str(path), "--strict", "--allow-global",
                      "torch.nn.modules.linear.Linear"]) == 0


def test_secrets_in_a_file_fail_the_scan_without_printing_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save_file

    token = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi"
    save_file({"w": torch.zeros(1)}, str(tmp_path / "m.safetensors"), metadata={"t": token})
    assert scan_main([str(tmp_path), "--json"]) == 1
    out = capsys.readouterr().out
    assert token not in out and "huggingface-token" in out
    assert scan_main([str(tmp_path), "--no-secrets"]) == 0


def test_tb_scan_entry_point_runs_as_a_program(mixed: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "torchbridge.cli.main", "scan", str(mixed),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["ok"] is False


def test_scan_without_paths_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        scan_main([])
    assert info.value.code == 2
