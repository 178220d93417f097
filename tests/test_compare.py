"""Output comparison: per-leaf errors, minimum passing tolerances, pytree structure."""

import math

import torch

from torchbridge.core.compare import compare_outputs, default_tolerance, nonfinite_outputs


def test_equal_outputs_match() -> None:
    assert compare_outputs(torch.ones(3), torch.ones(3)).ok


def test_mismatch_reports_the_tolerance_that_would_pass() -> None:
    leaf = compare_outputs(torch.tensor([1.0, 2.2]), torch.tensor([1.0, 2.0])).leaves[0]
    assert not leaf.ok
    assert leaf.max_abs == pytest_approx(0.2)
    assert compare_outputs(torch.tensor([1.0, 2.2]), torch.tensor([1.0, 2.0]),
                           atol=leaf.min_atol * 1.001).ok
    assert compare_outputs(torch.tensor([1.0, 2.2]), torch.tensor([1.0, 2.0]),
                           rtol=leaf.min_rtol * 1.001).ok


def pytest_approx(value: float) -> object:
    import pytest

    return pytest.approx(value, rel=1e-5)


def test_difference_against_zero_needs_atol_and_says_so() -> None:
    leaf = compare_outputs(torch.tensor([0.5]), torch.tensor([0.0])).leaves[0]
    assert math.isinf(leaf.max_rel)
    assert math.isinf(leaf.min_rtol)
    assert "atol>=0.5" in leaf.describe()


def test_nested_outputs_are_compared_leaf_by_leaf_and_named() -> None:
    actual = {"logits": torch.zeros(2), "hidden": (torch.ones(1), torch.ones(1))}
    expected = {"logits": torch.zeros(2), "hidden": (torch.ones(1), torch.full((1,), 2.0))}
    result = compare_outputs(actual, expected)
    assert [leaf.path for leaf in result.leaves if not leaf.ok] == ["output.hidden[1]"]


def test_per_output_tolerance_overrides_apply_by_suffix() -> None:
    actual = {"logits": torch.tensor([1.01]), "probs": torch.tensor([0.5])}
    expected = {"logits": torch.tensor([1.0]), "probs": torch.tensor([0.5])}
    assert not compare_outputs(actual, expected).ok
    assert compare_outputs(actual, expected, per_output={"logits": (0.0, 0.02)}).ok


def test_structure_and_shape_differences_are_failures_with_reasons() -> None:
    assert "structure differs" in compare_outputs((torch.ones(1),), torch.ones(1)).describe()
    assert "shape" in compare_outputs(torch.ones(2), torch.ones(3)).describe()


def test_nan_in_the_same_place_matches_but_not_elsewhere() -> None:
    nan = float("nan")
    assert compare_outputs(torch.tensor([nan, 1.0]), torch.tensor([nan, 1.0])).ok
    assert not compare_outputs(torch.tensor([nan, 1.0]), torch.tensor([0.0, 1.0])).ok


def test_bitwise_rejects_the_smallest_difference() -> None:
    a = torch.tensor([1.0])
    b = torch.nextafter(a, torch.tensor([2.0]))
    assert compare_outputs(a, b).ok
    assert not compare_outputs(a, b, bitwise=True).ok


def test_default_tolerances_follow_torch_testing() -> None:
    assert default_tolerance(torch.float16) == (1e-3, 1e-5)
    assert default_tolerance(torch.int64) == (0.0, 0.0)


def test_nonfinite_outputs_name_the_output_and_count() -> None:
    found = nonfinite_outputs({"a": torch.tensor([float("inf"), 0.0])})
    assert found == ["output.a (0 NaN, 1 Inf of 2)"]
