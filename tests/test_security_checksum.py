"""Checksum files: sha256sum-compatible both ways, multi-file ONNX artifacts, clear
verdicts for missing or tampered files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from torchbridge.cli.checksum import main as checksum_main
from torchbridge.security.checksum import (
    ChecksumError,
    collect_files,
    verify_checksums,
    write_checksums,
)

needs_sha256sum = pytest.mark.skipif(shutil.which("sha256sum") is None,
                                     reason="GNU coreutils sha256sum not installed")


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    root = tmp_path / "exports"
    (root / "sub").mkdir(parents=True)
    (root / "model.safetensors").write_bytes(b"weights" * 100)
    (root / "sub" / "config.json").write_text('{"layers": 2}')
    (root / "odd name\\with slash").write_text("x")
    return root


@needs_sha256sum
def test_sha256sum_verifies_what_we_write(exports: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports.sha256"
    write_checksums([exports], out)
    done = subprocess.run(["sha256sum", "-c", out.name], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == 3


@needs_sha256sum
def test_we_verify_what_sha256sum_writes(exports: Path, tmp_path: Path) -> None:
    names = [str(p.relative_to(tmp_path)) for p in collect_files([exports])]
    text = subprocess.run(["sha256sum", "-b", *names], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout
    lines = text.splitlines()
    assert all(" *" in line for line in lines)  # binary-mode marker
    assert sum(line.startswith("\\") for line in lines) == 1  # the escaped name
    (tmp_path / "theirs.sha256").write_text(text)
    results = verify_checksums(tmp_path / "theirs.sha256")
    assert [r.status for r in results] == ["OK"] * 3


def test_tampered_and_missing_files_get_their_own_status(exports: Path, tmp_path: Path
                                                         ) -> None:
    out = tmp_path / "exports.sha256"
    write_checksums([exports], out)
    (exports / "model.safetensors").write_bytes(b"tampered")
    (exports / "sub" / "config.json").unlink()
    status = {r.path: r.status for r in verify_checksums(out)}
    assert status["exports/model.safetensors"] == "FAILED"
    assert status["exports/sub/config.json"] == "MISSING"
    assert status["exports/odd name\\with slash"] == "OK"


def test_checksum_file_naming_only_missing_files_is_a_clear_failure(tmp_path: Path) -> None:
    out = tmp_path / "x.sha256"
    out.write_text("0" * 64 + "  gone.onnx\nnot a checksum line\n")
    results = verify_checksums(out)
    assert [r.status for r in results] == ["MISSING", "MALFORMED"]
    assert results[0].describe() == "gone.onnx: MISSING"


def test_unreadable_or_empty_checksum_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match="cannot read"):
        verify_checksums(tmp_path / "none.sha256")
    (tmp_path / "empty.sha256").write_text("\n")
    with pytest.raises(ChecksumError, match="no checksum lines"):
        verify_checksums(tmp_path / "empty.sha256")


def test_onnx_file_brings_its_external_data(tmp_path: Path) -> None:
    import onnx
    import torch

    model = torch.nn.Linear(4, 2).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(1, 4),), str(path), dynamo=True)
    proto = onnx.load(str(path))
    onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.weights", size_threshold=0)
    text = write_checksums([path], tmp_path / "m.sha256")
    assert "m.onnx\n" in text and "m.weights\n" in text
    (tmp_path / "m.weights").unlink()
    with pytest.raises(ChecksumError, match=r"m\.weights"):
        write_checksums([path])


def test_cli_create_then_verify_round_trip(exports: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert checksum_main(["create", "exports"]) == 0
    (tmp_path / "exports.sha256").write_text(capsys.readouterr().out)
    assert checksum_main(["verify", "exports.sha256"]) == 0
    assert capsys.readouterr().out.count(": OK") == 3
    (exports / "model.safetensors").write_bytes(b"changed")
    assert checksum_main(["verify", "exports.sha256", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"]
    assert {f["status"] for f in report["files"]} == {"OK", "FAILED"}


def test_cli_create_of_a_missing_path_is_a_usage_error(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from torchbridge.cli.main import main

    assert main(["checksum", "create", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err
