"""The correctness checks through real inner pytest sessions: goldens, hardware skips,
seeds, fixture scopes, a raising check, -k and xdist."""

from __future__ import annotations

import re

import pytest
from inner_suites import LINEAR_CONFTEST

CONFTEST = LINEAR_CONFTEST


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def properties(xml: str, testcase: str) -> dict[str, str]:
    """The <property> elements of one <testcase> in a JUnit XML file."""
    block = re.search(rf'<testcase [^>]*name="{re.escape(testcase)}".*?</testcase>', xml,
                      re.S)
    assert block, f"no testcase {testcase} in {xml}"
    return dict(re.findall(r'<property name="([^"]+)" value="([^"]*)"', block.group(0)))


def test_golden_workflow_create_then_compare_then_catch_drift(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_clf="""
        import pytest_torchbridge as tb

        @tb.accuracy(golden="goldens/clf.safetensors")
        def test_clf(model):
            pass
    """)
    first = suite.runpytest("-q")
    first.assert_outcomes(passed=1, failed=1)
    first.stdout.fnmatch_lines(["*clf.safetensors does not exist*pytest --tb-update-golden*"])

    suite.runpytest("-q", "--tb-update-golden").assert_outcomes(passed=2)
    assert (suite.path / "goldens" / "clf.safetensors").is_file()
    suite.runpytest("-q").assert_outcomes(passed=2)

    suite.makeconftest(CONFTEST.replace("manual_seed(0)", "manual_seed(5)"))
    drifted = suite.runpytest("-q")
    drifted.assert_outcomes(passed=1, failed=1)
    drifted.stdout.fnmatch_lines(["*accuracy [[]cpu[]]: against golden goldens/clf.safetensors:"
                                  " output: */6 elements differ; max abs*would pass with*"])


def test_reference_fixture_keyword_names_the_reference(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest, torch
        import pytest_torchbridge as tb

        @pytest.fixture
        def reference(model):
            layer = model[0]
            return lambda x: x @ layer.weight.T + layer.bias

        @tb.accuracy(reference_fixture="reference", atol=1e-6, rtol=1e-6)
        def test_clf(model):
            pass
    """)
    suite.runpytest("-q").assert_outcomes(passed=2)


def test_hardware_skip_reasons_land_in_junit(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.requires(min_gpus=2)
        def test_sharded(model):
            pass

        @tb.multi_gpu
        def test_replicas(model):
            pass
    """)
    suite.runpytest("--junitxml=out.xml").assert_outcomes(passed=1, skipped=2)
    xml = (suite.path / "out.xml").read_text()
    assert re.search(r'name="test_sharded".*?<skipped [^>]*message="tb.requires: needs 2 GPUs, '
                     r'found 0"', xml, re.S)
    assert re.search(r'name="test_replicas\[tb-multi-gpu\]".*?<skipped [^>]*'
                     r'message="multi_gpu \[cpu\]: needs 2 GPUs, found 0"', xml, re.S)


def test_fail_on_skip_turns_a_hardware_skip_into_a_failed_session(suite: pytest.Pytester
                                                                   ) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.requires(device="cuda")
        def test_on_gpu(model):
            pass

        def test_plain():
            pass
    """)
    assert suite.runpytest("-q").ret == pytest.ExitCode.OK
    strict = suite.runpytest("-q", "--tb-fail-on-skip")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*skipped for hardware reasons*--tb-fail-on-skip*"])


def test_fail_on_skip_counts_hardware_skips_by_their_marker_not_their_text(
        suite: pytest.Pytester) -> None:
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("two GPUs here: multi_gpu runs instead of skipping")
    suite.makepyfile("""
        import pytest
        import pytest_torchbridge as tb

        @tb.multi_gpu
        def test_replicas(model):
            pass

        def test_plain_skip():
            pytest.skip("tb.requires: a plain skip that only reads like a hardware one")
    """)
    strict = suite.runpytest("-q", "--tb-fail-on-skip", "--junitxml=out.xml")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*1 item(s) skipped for hardware reasons*"])
    xml = (suite.path / "out.xml").read_text()
    assert properties(xml, "test_replicas[tb-multi-gpu]")["tb.skip"] == "hardware"


def test_a_check_that_raises_errors_its_item_with_traceback_and_the_session_goes_on(
        suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import torch
        import pytest_torchbridge as tb

        class Broken(torch.nn.Module):
            def forward(self, x):
                raise RuntimeError("kernel exploded")

        def test_before():
            pass

        @tb.determinism(model_fixture="broken")
        def test_broken():
            pass

        def test_after():
            pass

        import pytest

        @pytest.fixture
        def broken():
            return Broken()
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "*determinism [[]cpu[]] raised RuntimeError: kernel exploded*",
        "*Traceback (most recent call last)*",
        "*in forward*",
    ])


def test_checks_work_with_module_and_session_scoped_fixtures(pytester: pytest.Pytester
                                                             ) -> None:
    pytester.makeconftest("""
        import pytest, torch

        BUILT = []

        @pytest.fixture(scope="session")
        def model():
            BUILT.append(1)
            torch.manual_seed(0)
            return torch.nn.Linear(4, 3).eval()

        @pytest.fixture(scope="module")
        def sample_input():
            return torch.randn(3, 4)
    """)
    pytester.makepyfile(test_a="""
        import pytest_torchbridge as tb

        @tb.forward
        @tb.determinism
        @tb.edge_cases
        def test_clf(model, sample_input):
            assert model(sample_input).shape == (3, 3)

        def test_zz_model_built_once():
            import conftest
            assert len(conftest.BUILT) == 1
    """)
    pytester.runpytest("-q").assert_outcomes(passed=5)


def test_k_selects_check_items_by_name(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.forward
        @tb.determinism
        @tb.edge_cases
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-v", "-k", "determinism or edge")
    result.assert_outcomes(passed=2, deselected=2)
    result.stdout.fnmatch_lines(["*test_clf[[]tb-determinism[]] PASSED*",
                                 "*test_clf[[]tb-edge-cases[]] PASSED*"])


def test_impossible_tolerance_is_a_collection_error_naming_test_and_argument(
        suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.accuracy(golden="g.safetensors", atol=-1e-4)
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*test_clf*tb.accuracy: atol must be a finite number >= 0,"
                                 " got -0.0001*"])


def test_tb_checks_fixture_takes_the_marker_keywords_and_fails_the_same_way(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import torch

        class RefusesEmpty(torch.nn.Module):
            def forward(self, x):
                if x.shape[0] == 0:
                    raise ValueError("empty batch")
                return x * 2

        def test_rejects_empty(tb_checks):
            result = tb_checks.edge_cases(RefusesEmpty(), torch.ones(3, 2),
                                          empty_batch="rejects")
            assert result.metrics["failed_cases"].value == 0

        def test_dropout_left_on(tb_checks):
            tb_checks.determinism(torch.nn.Dropout(0.5).train(), torch.ones(4, 4))
    """)
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*determinism [[]cpu[]]: not deterministic (bitwise): "
                                 "run 2 of 3 vs run 1 differs*"])


NOISY_MODEL = """
import pytest, torch

class Noisy(torch.nn.Module):
    def forward(self, x):
        return x + torch.rand_like(x)  # what a run draws depends on the item's seed

@pytest.fixture
def model():
    return Noisy()

@pytest.fixture
def sample_input():
    return torch.zeros(4)
"""


def test_item_seeds_do_not_depend_on_order_or_xdist(pytester: pytest.Pytester) -> None:
    # determinism's max_abs_error on a noisy model is a function of the seed torch got.
    pytester.makeconftest(NOISY_MODEL)
    pytester.makepyfile(test_seeds="""
        import pytest_torchbridge as tb

        @tb.determinism(atol=1.0)
        def test_a(model):
            pass

        @tb.determinism(atol=1.0)
        def test_b(model):
            pass
    """)

    def draws(run, *args: str) -> dict[str, str]:
        run("-p", "no:cacheprovider", "--junitxml=out.xml", "-m", "tb", *args)
        xml = (pytester.path / "out.xml").read_text()
        return {name: properties(xml, name)["tb.determinism.max_abs_error"]
                for name in ("test_a[tb-determinism]", "test_b[tb-determinism]")
                if f'name="{name}"' in xml}

    serial = draws(pytester.runpytest)
    assert len(set(serial.values())) == 2, "different items draw different numbers"
    only_b = draws(pytester.runpytest, "-k", "test_b")
    assert only_b == {"test_b[tb-determinism]": serial["test_b[tb-determinism]"]}
    # Unrelated heavy plugins are kept out of the workers: they only cost start-up time.
    assert draws(pytester.runpytest_subprocess, "-n", "2", "-p", "no:schemathesis",
                 "-p", "no:hypothesispytest") == serial
