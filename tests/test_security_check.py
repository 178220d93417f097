"""The ``security`` check: marker, tb_checks fixture and the audit function behind them."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from inner_suites import LINEAR_CONFTEST
from security_corpus import Reduce, TiedLM

from torchbridge.security.audit import audit
from torchbridge.security.checksum import write_checksums

CONFTEST = LINEAR_CONFTEST

TEST = """
import pytest_torchbridge as tb

@tb.security(artifacts=["model.safetensors", "model.onnx"], checksum="model.sha256")
def test_artifacts_are_safe(model):
    pass
"""


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()


@pytest.fixture(scope="module")
def onnx_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    torch.onnx.export(_model(), (torch.randn(2, 4),), str(path), dynamo=True,
                      external_data=False)
    return path.read_bytes()


def _write_artifacts(root: Path, onnx_bytes: bytes) -> None:
    from safetensors.torch import save_model

    save_model(_model(), str(root / "model.safetensors"))
    (root / "model.onnx").write_bytes(onnx_bytes)
    write_checksums([root / "model.safetensors", root / "model.onnx"], root / "model.sha256")


@pytest.fixture
def suite(pytester: pytest.Pytester, onnx_bytes: bytes) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    _write_artifacts(pytester.path, onnx_bytes)
    return pytester


def test_marker_passes_for_safe_artifacts_with_verified_checksums(suite: pytest.Pytester
                                                                  ) -> None:
    suite.makepyfile(TEST)
    result = suite.runpytest("-q", "-p", "no:xdist", "-rA")
    result.assert_outcomes(passed=2)


def test_marker_fails_when_an_artifact_changed_after_its_checksum(suite: pytest.Pytester
                                                                  ) -> None:
    from safetensors.torch import save_file

    save_file({"0.weight": torch.ones(3, 4), "0.bias": torch.ones(3)},
              str(suite.path / "model.safetensors"))
    suite.makepyfile(TEST)
    result = suite.runpytest("-q", "-p", "no:xdist")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*model.safetensors: FAILED*"])


def test_marker_fails_on_a_secret_in_the_live_model(suite: pytest.Pytester) -> None:
    suite.makeconftest(CONFTEST + """
@pytest.fixture
def leaky(model):
    model.hub_token = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh"
    return model
""")
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.security(model_fixture="leaky")
        def test_no_secrets(leaky):
            pass
    """)
    result = suite.runpytest("-q", "-p", "no:xdist")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*huggingface-token at model.hub_token*"])
    assert "AbCdEfGhIjKl" not in result.stdout.str()


def test_bad_marker_arguments_are_collection_errors(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.security(artifacts=5)
        def test_x(model):
            pass
    """)
    result = suite.runpytest("-q", "-p", "no:xdist")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*artifacts must be a path or a list of paths*"])


def test_tb_checks_fixture_runs_the_same_check(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        def test_imperative(tb_checks, model, sample_input):
            result = tb_checks.security(model, sample_input, artifacts=["model.safetensors"])
            assert result.metrics["roundtrip_tensors"].value == 2
    """)
    suite.runpytest("-q", "-p", "no:xdist").assert_outcomes(passed=1)


def test_audit_refuses_a_malicious_artifact_with_the_global_named(tmp_path: Path) -> None:
    (tmp_path / "weights.pkl").write_bytes(pickle.dumps(Reduce(os.system, "true")))
    report = audit(_model(), ["weights.pkl"], base_dir=tmp_path)
    assert not report.ok and "posix.system" in report.problems[0]


def test_audit_requires_every_artifact_in_the_checksum_file(tmp_path: Path,
                                                            onnx_bytes: bytes) -> None:
    _write_artifacts(tmp_path, onnx_bytes)
    write_checksums([tmp_path / "model.onnx"], tmp_path / "model.sha256")
    report = audit(_model(), ["model.safetensors", "model.onnx"], checksum="model.sha256",
                   base_dir=tmp_path)
    assert report.problems == ["model.safetensors is not listed in model.sha256; regenerate "
                               "it (tb-checksum create ... -o model.sha256)"]


def test_audit_reports_a_missing_artifact_and_checksum_file(tmp_path: Path) -> None:
    report = audit(_model(), ["gone.safetensors"], checksum="gone.sha256", base_dir=tmp_path)
    assert any("gone.safetensors not found" in p for p in report.problems)
    assert any("cannot read checksum file" in p for p in report.problems)


def test_tied_weights_round_trip_through_safetensors() -> None:
    torch.manual_seed(0)
    model = TiedLM()
    report = audit(model, fresh_model=TiedLM())
    assert report.ok, report.problems
    assert report.roundtrip_tensors == 2  # embed.weight and the tied head.weight


def test_round_trip_failure_names_the_mismatch() -> None:
    report = audit(_model(), fresh_model=torch.nn.Sequential(torch.nn.Linear(4, 5)))
    assert not report.ok and "round-trip" in report.problems[0]
