"""validate_production_readiness: the registry's checks behind one function call."""

from __future__ import annotations

import pytest
import torch

from torchbridge.checks import Status
from torchbridge.deployment import ReadinessReport, validate_production_readiness
from torchbridge.errors import ConfigError, HardwareUnavailable


def test_default_requirements_pass_for_a_sound_model(mlp, mlp_input) -> None:
    report = validate_production_readiness(mlp, mlp_input)
    assert isinstance(report, ReadinessReport)
    assert report.passed
    assert [r.check for r in report.checks] == ["forward", "determinism", "edge_cases"]
    assert all(r.status is Status.PASSED for r in report.checks)


def test_summary_gives_the_verdict_and_one_line_per_check(mlp_input) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Dropout(0.5))
    report = validate_production_readiness(model, mlp_input)
    assert not report.passed
    lines = report.summary().splitlines()
    assert lines[0] == "Production readiness of Sequential on cpu: NOT READY (3 failed)"
    assert lines[1].startswith("  [FAIL ] forward") and "training mode" in lines[1]
    assert lines[2].startswith("  [FAIL ] determinism") and "not deterministic" in lines[2]
    assert lines[3].startswith("  [FAIL ] edge_cases") and "batch invariance" in lines[3]
    assert [r.check for r in report.failures] == ["forward", "determinism", "edge_cases"]


def test_requirements_configure_checks_like_marker_keywords(mlp, mlp_input, tmp_path) -> None:
    report = validate_production_readiness(
        mlp, mlp_input, {"determinism": {"runs": 5}, "accuracy": {"golden": "g.safetensors"}},
        golden_dir=tmp_path, update_golden=True)
    assert report.result("determinism").metrics["runs"].value == 5
    assert report.result("accuracy").message.startswith("golden written to")
    again = validate_production_readiness(mlp, mlp_input, ["accuracy"], golden_dir=tmp_path)
    assert again.result("accuracy").status is Status.FAILED  # a list means default keywords
    ok = validate_production_readiness(mlp, mlp_input, {"accuracy": {"golden": "g.safetensors"}},
                                       golden_dir=tmp_path)
    assert ok.passed, ok.summary()


def test_skips_are_reported_and_only_fail_when_asked(mlp, mlp_input) -> None:
    report = validate_production_readiness(mlp, mlp_input, {"cpu_fallback": {}})
    assert report.passed and report.counts["skipped"] == 1
    strict = validate_production_readiness(mlp, mlp_input, {"cpu_fallback": {}},
                                           fail_on_skip=True)
    assert not strict.passed


def test_a_raising_model_is_an_error_result_not_an_exception(mlp_input) -> None:
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    report = validate_production_readiness(Broken(), mlp_input, ["forward"])
    assert report.result("forward").status is Status.ERROR
    assert "RuntimeError: boom" in report.summary()


@pytest.mark.parametrize("requirements, fragment", [
    ({"determinsm": {}}, "unknown check 'determinsm'"),
    ({"determinism": {"runz": 3}}, "unknown keyword(s) 'runz'"),
    ({"determinism": 3}, "must be a dict of the check's keywords"),
    ("determinism", "got the string"),
])
def test_bad_requirements_raise_before_anything_runs(mlp, mlp_input, requirements, fragment
                                                     ) -> None:
    with pytest.raises(ConfigError) as info:
        validate_production_readiness(mlp, mlp_input, requirements)
    assert fragment in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="describes a machine without a GPU")
def test_absent_device_is_an_error_saying_why(mlp, mlp_input) -> None:
    with pytest.raises(HardwareUnavailable, match="CUDA"):
        validate_production_readiness(mlp, mlp_input, device="cuda")


def test_the_callers_random_state_is_left_alone(mlp, mlp_input) -> None:
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    validate_production_readiness(mlp, mlp_input)
    assert torch.equal(torch.rand(3), expected)


def test_report_is_json_ready(mlp, mlp_input) -> None:
    import json

    data = validate_production_readiness(mlp, mlp_input, ["forward"]).to_dict()
    assert json.loads(json.dumps(data))["checks"][0]["status"] == "passed"
