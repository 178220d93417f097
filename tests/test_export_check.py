"""``@tb.export`` as users write it: one item per format, proven, and quiet under ``-W error``."""

from __future__ import annotations

import pytest
from inner_suites import MLP_CONFTEST

CONFTEST = MLP_CONFTEST + """
@pytest.fixture
def input_spec():
    return {"max_batch": 32}
"""


@pytest.fixture(scope="module", autouse=True)
def exporters_loaded(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Load the exporters' modules in this process first. In-process pytester sessions drop
    the modules they imported afterwards, and torch's operator libraries cannot register
    twice in one process, so the second inner session would fail to re-import them."""
    import torch

    from torchbridge.checks import Subject
    from torchbridge.export import FORMATS, ExportOptions, artifact_path, export_model

    folder = tmp_path_factory.mktemp("warm")
    subject = Subject(torch.nn.Linear(2, 2).eval(), torch.randn(2, 2))
    for fmt in FORMATS:
        export_model(subject, fmt, artifact_path(folder, "warm", fmt),
                     ExportOptions(dynamic=False))


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_every_format_passes_as_its_own_item_under_w_error(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.export("onnx", dynamic=True)
        @tb.export("torchscript", method="trace")
        @tb.export("safetensors")
        @tb.export("pt2")
        def test_clf(model, sample_input):
            assert model(sample_input).shape == (4, 4)
    """)
    # The ignore is for in-process pytester only: the outer session imported the plugin
    # already, which pytest reports as a warning about assertion rewriting.
    result = suite.runpytest("-W", "error", "-W", "ignore::pytest.PytestAssertRewriteWarning",
                             "-v", "--junitxml=out.xml")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*test_clf?tb-export-onnx? PASSED*",
                                 "*test_clf?tb-export-torchscript? PASSED*",
                                 "*test_clf?tb-export-safetensors? PASSED*",
                                 "*test_clf?tb-export-pt2? PASSED*"])
    xml = (suite.path / "out.xml").read_text()
    for metric in ("max_abs_error", "export_s", "file_bytes", "validation_runs"):
        assert f'name="tb.export.{metric}"' in xml
    # batch 4, its two fresh inputs, batch 1, an odd batch and max_batch 32
    assert 'name="tb.export.validation_runs" value="6.0"' in xml


def test_unknown_format_is_a_collection_error_naming_the_choices(
        suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.export("tflite")
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    result.stdout.fnmatch_lines(["*test_clf*tb.export*format must be one of onnx, torchscript,"
                                 " safetensors, pt2*'tflite'*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_option_of_another_format_is_a_collection_error(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.export("torchscript", opset=17)
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    result.stdout.fnmatch_lines(["*opset applies to format 'onnx' only, not 'torchscript'*"])


def test_failed_export_item_names_the_unsupported_operator(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest, torch
        import pytest_torchbridge as tb

        class Running(torch.nn.Module):
            def forward(self, x):
                return torch.cummax(x, dim=1).values

        @pytest.fixture
        def model():
            return torch.nn.Sequential(torch.nn.Linear(4, 4), Running()).eval()

        @pytest.fixture
        def sample_input():
            return torch.randn(3, 4)

        @tb.export("onnx")
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*export [[]cpu[]]: operator aten.cummax.default used in 1 "
                                 "(Running)*has no ONNX translation*"])


def test_model_left_in_training_mode_fails_before_exporting(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest, torch
        import pytest_torchbridge as tb

        @pytest.fixture
        def model():
            return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5))

        @tb.export("pt2")
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*training mode (1 (Dropout))*model.eval()*"])


def test_tb_checks_fixture_runs_an_export_imperatively(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        def test_export(tb_checks, model, sample_input):
            result = tb_checks.export(model, sample_input, "pt2", batch_sizes=[1, 5])
            runs = result.details["validations"]
            # the export batch, its two fresh inputs, then the batch sizes asked for
            assert [r["sizes"]["batch"] for r in runs] == [4, 4, 4, 1, 5]
            assert result.metrics["max_abs_error"].value < 1e-5
    """)
    suite.runpytest("-q").assert_outcomes(passed=1)


def test_traced_data_dependent_branch_fails_naming_the_line(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest, torch
        import pytest_torchbridge as tb

        class Rescale(torch.nn.Module):
            def forward(self, x):
                if x.max() > 1:
                    x = x / 255
                return x * 2

        @pytest.fixture
        def model():
            return Rescale().eval()

        @pytest.fixture
        def sample_input():
            return torch.randn(3, 4) * 10

        @tb.export("torchscript", method="trace")
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q", "-W", "error",
                             "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*export [[]cpu[]]: the trace may be incorrect*"
                                 "test_traced_data_dependent_branch_fails_naming_the_line.py:6 "
                                 "`if x.max() > 1:`*allow_tracer_warnings=True*"])


def test_allow_tracer_warnings_is_for_torchscript_only(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.export("onnx", allow_tracer_warnings=True)
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*allow_tracer_warnings applies to format 'torchscript' "
                                 "only*"])


def test_eager_reference_raising_is_a_failure_naming_the_point() -> None:
    import torch

    from torchbridge.checks import Status, Subject, run

    class NeedsTwoTokens(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[1] < 2:
                raise ValueError("needs two tokens or more")
            return x[:, 1:] - x[:, :-1]

    subject = Subject(NeedsTwoTokens().eval(), torch.randn(2, 4, 8),
                      spec={"dims": {"seq": {"input": 0, "axis": 1, "min": 1, "max": 8}}})
    result = run("export", subject, format="torchscript", method="script")
    assert result.status is Status.FAILED
    assert "seq min (batch=2, seq=1): the eager reference raised: ValueError: needs two " \
           "tokens or more" in result.message
