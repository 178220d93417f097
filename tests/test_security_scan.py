"""Pickle scanning and safe loading against the generated corpus (see security_corpus)."""

from __future__ import annotations

import io
import logging
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from security_corpus import Reduce, write_benign, write_malicious, write_nested_zip

from torchbridge.errors import ModelLoadError
from torchbridge.security.limits import ScanLimits
from torchbridge.security.pickles import python3_name, scan_pickle_stream
from torchbridge.security.safe_load import (
    UnsafeModelError,
    load_checkpoint,
    load_safetensors,
    load_state_dict,
)
from torchbridge.security.scan import scan_file, scan_path
from torchbridge.security.verdict import Verdict

# Where modelscan 0.8.8 says "clean" for a malicious file:
MODELSCAN_GAPS = {
    # it reads only the pickle after the magic number of a legacy (non-zip) torch.save
    # file, so it misses the payload in the main pickle; we read all five;
    "os_system_legacy.pth",
    # torch.save writes protocol 2, where pickle spells subprocess by its Python 2 name
    # (commands.Popen); modelscan's denylist lacks it, Python still imports subprocess.
    "subprocess_popen.pt",
}


@pytest.fixture(scope="module")
def malicious(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_malicious(tmp_path_factory.mktemp("malicious"))


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_benign(tmp_path_factory.mktemp("benign"))


def test_every_malicious_file_is_unsafe_with_the_global_named(malicious: dict[str, Path]
                                                              ) -> None:
    expected = {"os_system": "posix.system", "builtins_eval": "builtins.eval",
                "builtins_exec": "builtins.exec", "subprocess_popen": "subprocess.Popen",
                "runpy_run_code": "runpy._run_code", "webbrowser_open": "webbrowser.open",
                "getattr_chain": "builtins.getattr", "stack_global_memo": "builtins.getattr",
                "operator_attrgetter": "operator.attrgetter", "nested": "posix.system",
                "os_system_legacy": "posix.system"}
    for name, path in malicious.items():
        verdict = scan_file(path)
        assert verdict.verdict is Verdict.UNSAFE, (name, verdict.reasons)
        assert expected[path.stem] in verdict.dangerous_globals, (name, verdict)


def test_every_benign_checkpoint_is_safe(benign: dict[str, Path]) -> None:
    for name, path in benign.items():
        verdict = scan_file(path)
        assert verdict.verdict is Verdict.SAFE, (name, verdict.reasons)
        assert not verdict.secrets and not verdict.code_globals


def test_pickle_nested_in_a_zip_inside_a_zip_is_found(tmp_path: Path) -> None:
    verdict = scan_file(write_nested_zip(tmp_path / "bundle.zip"))
    assert verdict.dangerous_globals == ["posix.system"]
    assert any("bundle.zip:inner.zip:payload.pkl" in r for r in verdict.reasons)


def test_verdicts_agree_with_modelscan(malicious: dict[str, Path],
                                       benign: dict[str, Path]) -> None:
    from modelscan.modelscan import ModelScan

    logging.getLogger("modelscan").setLevel(logging.CRITICAL)
    for name, path in {**malicious, **benign}.items():
        report = ModelScan().scan(path)
        modelscan_clean = report["summary"]["total_issues"] == 0 and not report["errors"]
        ours_clean = not scan_file(path).failed(strict=True)
        if name in MODELSCAN_GAPS:
            assert modelscan_clean and not ours_clean, name  # remove from gaps once fixed
        else:
            assert modelscan_clean == ours_clean, (name, report["summary"], report["errors"])


def test_modelscan_cli_exit_codes_match_ours(malicious: dict[str, Path],
                                             benign: dict[str, Path], tmp_path: Path) -> None:
    bad = malicious["os_system.pt"]
    good = benign["mlp.pt"]
    cli = [sys.executable, "-m", "modelscan.cli", "scan", "-p"]
    assert subprocess.run([*cli, str(bad)], capture_output=True).returncode == 1
    assert subprocess.run([*cli, str(good)], capture_output=True).returncode == 0
    assert scan_file(bad).failed() and not scan_file(good).failed()


def test_refusal_lists_what_torch_get_unsafe_globals_lists(malicious: dict[str, Path]) -> None:
    # torch's lister handles protocol-2 data.pkl only (as torch.save writes it).
    checked = 0
    for name, path in malicious.items():
        if not name.endswith(".pt") or name.startswith("stack_global"):
            continue
        with pytest.raises(UnsafeModelError) as info:
            load_checkpoint(path)
        torch_says = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        # torch reports Python 2 spellings (commands.Popen) as written; we report the
        # module Python 3 would import (subprocess.Popen).
        assert info.value.globals == sorted(map(python3_name, torch_says)), name
        assert all(python3_name(g) in str(info.value) for g in torch_says)
        checked += 1
    assert checked == 8


def test_safe_load_never_unpickles_a_refused_file(malicious: dict[str, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load reached for a malicious file")

    monkeypatch.setattr(torch, "load", forbidden)
    for path in malicious.values():
        with pytest.raises(UnsafeModelError):
            load_checkpoint(path, allow_code=True)  # even the explicit flag refuses these


class Config:
    """A user class a whole checkpoint may carry."""

    def __init__(self, width: int) -> None:
        self.width = width


def test_checkpoint_with_user_class_needs_explicit_trust(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    # Allowlist verdict (issue 12.3): a class off the allowlist, from a module nobody
    # trusted, is unsafe (the scanner cannot tell it from a gadget without importing it).
    path = tmp_path / "ckpt.pt"
    torch.save({"config": Config(4), "w": torch.ones(2)}, path)
    name = f"{__name__}.Config"
    with pytest.raises(UnsafeModelError, match="--allow-global") as info:
        load_checkpoint(path)
    assert info.value.globals == [name]
    assert scan_file(path).verdict is Verdict.UNSAFE
    with pytest.raises(UnsafeModelError):
        load_checkpoint(path, allow_code=True)  # the flag never lets an unknown call in

    assert scan_file(path, allowed_globals=[name]).verdict is Verdict.SAFE
    assert load_checkpoint(path, allowed_globals=[Config])["config"].width == 4
    # Trusting the module's classes makes them ``code``: rebuilt only with allow_code.
    assert scan_file(path, allowed_globals=[f"{__name__}.*"]).verdict is Verdict.CODE
    with caplog.at_level(logging.WARNING, logger="torchbridge.security"):
        loaded = load_checkpoint(path, allow_code=True, allowed_globals=[f"{__name__}.*"])
    assert loaded["config"].width == 4
    assert "allow_code=True" in caplog.text and "Config" in caplog.text


def test_benign_checkpoints_load_and_match(benign: dict[str, Path]) -> None:
    from security_corpus import example_models

    for name, model in example_models().items():
        for suffix in (".pt", ".safetensors"):
            state = load_state_dict(benign[name + suffix])
            reference = model.state_dict()
            shared = set(state) & set(reference)
            assert shared and all(torch.equal(state[k], reference[k]) for k in shared)
    optimizer = load_checkpoint(benign["optimizer.pt"])
    assert set(optimizer) == {"state", "param_groups"}
    assert load_checkpoint(benign["training.ckpt"])["epoch"] == 3
    assert len(load_state_dict(benign["mlp_legacy.pth"])) > 0


def _raw_bomb(path: Path, size: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("archive/data.pkl", "w", force_zip64=True) as member:
        block = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            member.write(block)


def test_zip_bomb_is_invalid_without_being_inflated(tmp_path: Path) -> None:
    # issue 12.5: crossing a limit is an ``invalid`` verdict naming the limit
    bomb = tmp_path / "bomb.pt"
    _raw_bomb(bomb, 300 << 20)
    assert bomb.stat().st_size < 1 << 20
    verdict = scan_file(bomb)
    assert verdict.verdict is Verdict.INVALID
    assert "zip bomb" in " ".join(verdict.reasons)


def test_inline_bytes_claiming_a_terabyte_are_skipped_not_allocated(tmp_path: Path) -> None:
    path = tmp_path / "huge.pkl"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"\0" * 4096)
    verdict = scan_file(path)
    assert verdict.verdict is Verdict.INVALID and "truncated" in verdict.reasons[0]


def test_pickle_longer_than_the_read_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.pkl"
    path.write_bytes(pickle.dumps(list(range(2000))))
    verdict = scan_file(path, limits=ScanLimits(max_pickle_bytes=1024))
    assert verdict.verdict is Verdict.INVALID and "max_pickle_bytes" in verdict.reasons[0]


def test_deeply_nested_archives_are_refused(tmp_path: Path) -> None:
    payload = pickle.dumps({"a": 1})
    for _ in range(5):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("inner.zip" if payload[:2] == b"PK" else "x.pkl", payload)
        payload = buffer.getvalue()
    path = tmp_path / "deep.zip"
    path.write_bytes(payload)
    verdict = scan_file(path)
    assert verdict.verdict is Verdict.INVALID and "max_depth" in " ".join(verdict.reasons)


@pytest.mark.parametrize("cut", [1, 40, 400])
def test_truncated_checkpoint_is_invalid(benign: dict[str, Path], tmp_path: Path,
                                         cut: int) -> None:
    for name in ("mlp_legacy.pth", "mlp.pt"):
        path = tmp_path / name
        path.write_bytes(benign[name].read_bytes()[:cut])
        verdict = scan_file(path)
        assert verdict.verdict is Verdict.INVALID, (name, verdict.reasons)
        with pytest.raises(UnsafeModelError, match="cannot be read safely"):
            load_checkpoint(path)


def test_truncated_pickle_keeps_the_globals_seen_before_the_cut(tmp_path: Path) -> None:
    data = pickle.dumps(Reduce(os.system, "true"))
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[:-3])
    verdict = scan_file(path)
    assert verdict.verdict is Verdict.UNSAFE and verdict.dangerous_globals == ["posix.system"]


def test_not_a_model_is_reported_not_failed(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "weights.pt").write_text("this is not a checkpoint")
    verdicts = {Path(v.path).name: v for v in scan_path(tmp_path)}
    assert verdicts["notes.txt"].verdict is Verdict.NOT_A_MODEL
    assert not verdicts["notes.txt"].failed()
    assert verdicts["weights.pt"].verdict is Verdict.INVALID
    with pytest.raises(UnsafeModelError, match="cannot be read safely"):
        load_checkpoint(tmp_path / "weights.pt")


def test_missing_path_is_one_invalid_verdict(tmp_path: Path) -> None:
    [verdict] = scan_path(tmp_path / "nope.pt")
    assert verdict.verdict is Verdict.INVALID and "no such file" in verdict.reasons[0]


def test_truncated_safetensors_is_refused_with_the_reason(benign: dict[str, Path],
                                                          tmp_path: Path) -> None:
    data = benign["mlp.safetensors"].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    verdict = scan_file(path)
    assert verdict.verdict is Verdict.INVALID and "truncated" in verdict.reasons[0]
    with pytest.raises(ModelLoadError, match="truncated"):
        load_safetensors(path)


def test_oversized_safetensors_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    verdict = scan_file(path)
    assert verdict.verdict is Verdict.INVALID and "limit" in verdict.reasons[0]


def test_scanner_reports_strings_but_never_executes(tmp_path: Path) -> None:
    found = scan_pickle_stream(io.BytesIO(pickle.dumps({"key": "value", "n": 1})))
    assert found.globals == [] and {"key", "value"} <= set(found.strings)
    assert found.pickles == 1 and found.error is None


def test_cli_model_loading_is_gated_by_the_scan(malicious: dict[str, Path]) -> None:
    from torchbridge.loading import load_model

    for name in ("os_system.pt", "os_system_legacy.pth"):
        with pytest.raises(ModelLoadError, match=r"posix\.system"):
            load_model(str(malicious[name]), allow_pickle=True)


def test_picklescan_alone_would_miss_the_nested_archive(malicious: dict[str, Path]) -> None:
    # Why we walk archives ourselves: picklescan scans only the pickle-looking members
    # of a zip, so a zip inside a zip goes unread. Everything else it flags too.
    from picklescan.scanner import scan_file_path

    logging.getLogger("picklescan").setLevel(logging.CRITICAL)
    missed = {name for name, path in malicious.items()
              if scan_file_path(str(path)).infected_files == 0}
    assert missed == {"nested.zip"}
    assert scan_file(malicious["nested.zip"]).verdict is Verdict.UNSAFE


def test_mutated_checkpoints_always_get_a_verdict(benign: dict[str, Path],
                                                  tmp_path: Path) -> None:
    # Flipped bytes and cuts anywhere in a zip or legacy checkpoint: a verdict, never an
    # exception, and never "safe" for a file whose pickle was damaged into a global.
    import random

    rng = random.Random(0)
    for name in ("mlp_legacy.pth", "tied.pt"):
        original = benign[name].read_bytes()[:4096]
        for trial in range(80):
            data = bytearray(original)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path = tmp_path / f"{trial}{Path(name).suffix}"
            path.write_bytes(bytes(data[: rng.randint(1, len(data))]))
            verdict = scan_file(path)
            assert verdict.verdict in set(Verdict), verdict
            assert not (verdict.verdict is Verdict.SAFE and verdict.dangerous_globals)
