"""The accuracy check: golden files (write, compare, mismatch) and reference models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchbridge.checks import RunContext, Status, Subject, run
from torchbridge.errors import ConfigError


class TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.body(x)
        return {"logits": hidden[:, :4], "score": hidden[:, 4:].sum(-1)}


@pytest.fixture
def heads() -> torch.nn.Module:
    torch.manual_seed(0)
    return TwoHeads().eval()


def check(subject: Subject, tmp_path: Path, update: bool = False, **kw) -> object:
    return run("accuracy", subject, context=RunContext(golden_dir=tmp_path,
                                                       update_golden=update), **kw)


def test_missing_golden_fails_and_says_how_to_create_it(heads, mlp_input, tmp_path) -> None:
    result = check(Subject(heads, mlp_input), tmp_path, golden="goldens/heads.safetensors")
    assert result.status is Status.FAILED
    assert "pytest --tb-update-golden" in result.message
    assert not (tmp_path / "goldens").exists()


def test_update_writes_a_golden_that_then_matches(heads, mlp_input, tmp_path) -> None:
    written = check(Subject(heads, mlp_input), tmp_path, update=True,
                    golden="goldens/heads.safetensors")
    golden = tmp_path / "goldens" / "heads.safetensors"
    assert written.status is Status.PASSED
    assert written.message == f"golden written to {golden}"
    again = check(Subject(heads, mlp_input), tmp_path, golden="goldens/heads.safetensors")
    assert again.status is Status.PASSED, again.message
    assert again.metrics["outputs"].value == 2


def test_golden_keys_are_output_paths_with_metadata(heads, mlp_input, tmp_path) -> None:
    from safetensors import safe_open

    check(Subject(heads, mlp_input), tmp_path, update=True, golden="g.safetensors")
    with safe_open(str(tmp_path / "g.safetensors"), framework="pt") as handle:
        assert sorted(handle.keys()) == ["output.logits", "output.score"]
        metadata = handle.metadata()
    assert metadata["torch_version"] == torch.__version__
    assert metadata["input_shapes"] == '{"0": [4, 8]}'


def test_drifted_model_fails_naming_output_error_tolerance_and_minimum(heads, mlp_input,
                                                                        tmp_path) -> None:
    check(Subject(heads, mlp_input), tmp_path, update=True, golden="g.safetensors")
    with torch.no_grad():
        heads.body.bias[4] += 0.01  # moves only the score head
    result = check(Subject(heads, mlp_input), tmp_path, golden="g.safetensors")
    assert result.status is Status.FAILED
    message = result.message
    assert "output.score:" in message and "output.logits" not in message
    assert "max abs 0.01" in message and "rtol=1.3e-06, atol=1e-05" in message
    assert "would pass with atol>=" in message
    assert result.metrics["max_abs_error"].value == pytest.approx(0.01, rel=1e-3)


def test_per_output_tolerance_overrides_by_name(heads, mlp_input, tmp_path) -> None:
    check(Subject(heads, mlp_input), tmp_path, update=True, golden="g.safetensors")
    with torch.no_grad():
        heads.body.bias[4] += 0.01
    result = check(Subject(heads, mlp_input), tmp_path, golden="g.safetensors",
                   per_output={"score": (0.0, 0.02)})
    assert result.status is Status.PASSED, result.message


def test_golden_with_other_outputs_is_a_clear_failure(heads, mlp_input, tmp_path) -> None:
    torch.manual_seed(0)
    check(Subject(torch.nn.Linear(8, 3).eval(), mlp_input), tmp_path, update=True,
          golden="g.safetensors")
    result = check(Subject(heads, mlp_input), tmp_path, golden="g.safetensors")
    assert result.status is Status.FAILED
    assert "in the golden but not produced by the model: ['output']" in result.message
    assert "not in the golden: ['output.logits', 'output.score']" in result.message
    assert "--tb-update-golden" in result.message


def test_golden_with_other_shapes_names_them_and_the_recorded_input(heads, mlp_input,
                                                                    tmp_path) -> None:
    check(Subject(heads, mlp_input), tmp_path, update=True, golden="g.safetensors")
    result = check(Subject(heads, mlp_input[:2]), tmp_path, golden="g.safetensors")
    assert result.status is Status.FAILED
    assert "output.logits has shape (2, 4), golden (4, 4)" in result.message
    assert "recorded for input shapes {'0': [4, 8]}" in result.message


def test_reference_model_comparison(heads, mlp_input) -> None:
    def reference(x: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = x @ heads.body.weight.T + heads.body.bias
        return {"logits": hidden[:, :4], "score": hidden[:, 4:].sum(-1)}

    assert run("accuracy", Subject(heads, mlp_input, reference=reference),
               rtol=1e-5, atol=1e-6).passed


def test_wrong_reference_fails(heads, mlp_input) -> None:
    def reference(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v + 0.5 for k, v in heads(x).items()}

    result = run("accuracy", Subject(heads, mlp_input, reference=reference))
    assert result.status is Status.FAILED
    assert result.message.startswith("against the reference: output.logits:")


def test_nothing_to_compare_with_says_what_to_give(heads, mlp_input) -> None:
    result = run("accuracy", Subject(heads, mlp_input))
    assert result.status is Status.FAILED
    assert "golden=" in result.message and "reference_fixture=" in result.message


@pytest.mark.parametrize("kwargs, fragment", [
    ({"rtol": -1e-3}, "rtol must be a finite number >= 0"),
    ({"atol": float("nan")}, "atol must be a finite number >= 0"),
    ({"per_output": {"logits": (1e-3,)}}, "per_output['logits'] must be a pair"),
    ({"per_output": {"logits": (1e-3, float("inf"))}}, "atol must be a finite number"),
    ({"golden": ""}, "golden must be a file path"),
])
def test_impossible_tolerances_are_config_errors(heads, mlp_input, kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=r"tb\.accuracy") as info:
        run("accuracy", Subject(heads, mlp_input), **kwargs)
    assert fragment in str(info.value)


def test_unreadable_golden_is_a_failure_saying_how_to_rewrite_it(heads, mlp_input,
                                                                 tmp_path) -> None:
    (tmp_path / "g.safetensors").write_bytes(b"not a safetensors file")
    result = check(Subject(heads, mlp_input), tmp_path, golden="g.safetensors")
    assert result.status is Status.FAILED
    assert "is not a readable safetensors file" in result.message
    assert "--tb-update-golden" in result.message
