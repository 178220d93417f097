"""The plugin turns each tb marker into its own item, next to the body's item."""

from __future__ import annotations

import pytest
from inner_suites import LINEAR_CONFTEST

CONFTEST = LINEAR_CONFTEST


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_each_marker_becomes_an_item_beside_the_body(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.forward
        def test_clf(model, sample_input):
            assert model(sample_input).shape == (2, 3)
    """)
    result = suite.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_clf[[]body[]]", "*test_clf[[]tb-forward[]]"])


def test_user_parametrize_combines_with_checks(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest
        import pytest_torchbridge as tb

        @tb.forward
        @pytest.mark.parametrize("k", [1, 2])
        def test_clf(model, k):
            pass
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=4)


def test_marker_expression_selects_exactly_the_check_items(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.forward
        def test_clf(model):
            pass

        def test_other():
            pass
    """)
    result = suite.runpytest("-q", "-m", "tb_forward")
    result.assert_outcomes(passed=1, deselected=2)


def test_unknown_marker_keyword_is_a_collection_error_naming_test_and_keyword(
        suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.forward(allow_trainig_mode=True)
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    result.stdout.fnmatch_lines(["*test_clf*tb.forward*unknown keyword*allow_trainig_mode*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_missing_model_fixture_says_how_to_provide_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest_torchbridge as tb

        @tb.forward
        def test_clf():
            pass
    """)
    result = pytester.runpytest("-q")
    result.stdout.fnmatch_lines(["*fixture named 'model'*conftest.py*model_fixture*"])
    result.assert_outcomes(passed=1, failed=1)


def test_marker_keywords_name_other_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest, torch
        import pytest_torchbridge as tb

        @pytest.fixture
        def clf():
            return torch.nn.Linear(4, 2).eval()

        @pytest.fixture
        def clf_input():
            return torch.randn(3, 4)

        @tb.forward(model_fixture="clf", input_fixture="clf_input")
        def test_clf():
            pass
    """)
    pytester.runpytest("-q").assert_outcomes(passed=2)


def test_absent_hardware_is_a_usage_error_at_startup(suite: pytest.Pytester) -> None:
    suite.makepyfile("def test_a(): pass")
    result = suite.runpytest("--tb-hardware=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tb-hardware=cuda*CUDA*"])


def test_results_reach_junit_as_properties(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.forward
        def test_clf(model):
            pass
    """)
    suite.runpytest("--junitxml=out.xml").assert_outcomes(passed=2)
    xml = (suite.path / "out.xml").read_text()
    assert '<property name="tb.check" value="forward"' in xml
    assert '<property name="tb.device" value="cpu"' in xml


def test_junit_properties_are_identical_under_xdist(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.forward
        def test_clf(model):
            pass
    """)
    suite.runpytest_subprocess("--junitxml=serial.xml").assert_outcomes(passed=2)
    suite.runpytest_subprocess("-n", "2", "--junitxml=xdist.xml").assert_outcomes(passed=2)

    def props(name: str) -> list[str]:
        import re
        return sorted(re.findall(r"<property [^>]*>", (suite.path / name).read_text()))

    assert props("serial.xml") == props("xdist.xml")
    assert props("serial.xml")


def test_tb_checks_fixture_runs_a_check_and_fails_the_test_the_same_way(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import torch

        def test_nan(tb_checks):
            model = torch.nn.Identity()
            tb_checks.forward(model, torch.tensor([1.0, float("nan")]))
    """)
    result = pytester.runpytest("-q")
    result.stdout.fnmatch_lines(["*non-finite outputs: output (1 NaN, 0 Inf of 2)*"])
    result.assert_outcomes(failed=1)


def test_bad_requires_keyword_is_a_collection_error_at_the_decorator(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest_torchbridge as tb

        @tb.requires(device="cuda", min_vrm="8GiB")
        def test_big():
            pass
    """)
    result = pytester.runpytest("-q")
    result.stdout.fnmatch_lines(["*tb.requires: unknown keyword(s) 'min_vrm'*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
