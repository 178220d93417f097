"""Checklist files: collected into the same items as markers, validated with file:line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from torchbridge.checklist import ChecklistError, load_checklist
from torchbridge.checklist.locate import line_of
from torchbridge.cli.check import main as tb_check

MODELS = """
import torch

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()

class NaNs(torch.nn.Module):
    def forward(self, x):
        return x * float("nan")

def broken():
    return NaNs()
"""

CHECKLIST = """\
name = "clf"

[model]
factory = "models:build"

[input]
shape = [2, 4]

[checks]
forward = true
determinism = { runs = 2 }
"""

MARKERS = """
import pytest, torch
import pytest_torchbridge as tb
from models import build

@pytest.fixture
def model():
    return build()

@pytest.fixture
def sample_input():
    return torch.randn(2, 4)

@tb.forward
@tb.determinism(runs=2)
def test_clf(model, sample_input):
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(models=MODELS)
    return pytester


def write_checklist(pytester: pytest.Pytester, text: str, name: str = "torchbridge.toml"
                    ) -> Path:
    path = pytester.path / name
    path.write_text(textwrap.dedent(text))
    return path


def check_ids(lines: list[str]) -> set[str]:
    return {line[line.index("[") + 1:-1] for line in lines if "[tb-" in line}


def test_checklist_file_gives_the_same_items_as_the_markers(project: pytest.Pytester) -> None:
    write_checklist(project, CHECKLIST)
    project.makepyfile(test_markers=MARKERS)
    result = project.runpytest("--collect-only", "-q")
    from_file = [line for line in result.outlines if line.startswith("torchbridge.toml::")]
    from_markers = [line for line in result.outlines if line.startswith("test_markers.py::")]
    assert from_file == ["torchbridge.toml::clf[tb-forward]",
                         "torchbridge.toml::clf[tb-determinism]"]
    assert check_ids(from_file) == check_ids(from_markers) == {"tb-forward", "tb-determinism"}


def test_checklist_items_run_and_carry_the_check_marks(project: pytest.Pytester) -> None:
    write_checklist(project, CHECKLIST)
    result = project.runpytest("-m", "tb_determinism", "-v", "--tb-json=report.json")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*torchbridge.toml::clf[[]tb-determinism[]] PASSED*"])
    report = json.loads((project.path / "report.json").read_text())
    assert [(r["test_id"], r["status"]) for r in report["results"]] == [
        ("torchbridge.toml::clf[tb-determinism]", "passed")]


def test_a_failing_check_fails_its_item_with_the_checks_message(project: pytest.Pytester
                                                                 ) -> None:
    write_checklist(project, CHECKLIST.replace("models:build", "models:broken"))
    result = project.runpytest("-k", "tb-forward")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*forward [[]cpu[]]: non-finite outputs*"])


def test_a_model_that_cannot_load_fails_its_items_naming_the_file(project: pytest.Pytester
                                                                  ) -> None:
    write_checklist(project, CHECKLIST.replace("models:build", "models:nothing_here"))
    result = project.runpytest("-k", "tb-forward")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*torchbridge.toml:10: *has no callable 'nothing_here'*"])


def test_checks_given_twice_become_numbered_items(project: pytest.Pytester) -> None:
    text = CHECKLIST.replace("forward = true", "forward = [{}, { allow_training_mode = true }]")
    write_checklist(project, text)
    result = project.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["torchbridge.toml::clf[[]tb-forward[]]",
                                 "torchbridge.toml::clf[[]tb-forward-2[]]"])


@pytest.mark.parametrize(("edit", "message"), [
    (("determinism = { runs = 2 }", "determinism = { runs = 2, rnus = 3 }"),
     "torchbridge.toml:11: checks.determinism.rnus: tb.determinism: unknown keyword(s) 'rnus'"),
    (("[model]", "[modle]"), "torchbridge.toml:3: modle: unknown key 'modle'"),
    (("forward = true", "forwrd = true"), "torchbridge.toml:10: checks.forwrd: unknown check"),
    (("shape = [2, 4]", "shape = [2, -4]"), "torchbridge.toml:7: input.shape: expected a list"),
])
def test_bad_checklist_is_a_collection_error_with_file_and_line(
        project: pytest.Pytester, edit: tuple[str, str], message: str) -> None:
    write_checklist(project, CHECKLIST.replace(*edit))
    result = project.runpytest("-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert any(message in line for line in result.outlines), result.outlines


def test_bad_budget_unit_points_at_the_line_of_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "torchbridge.toml"
    path.write_text(CHECKLIST + "\n[checks.latency]\nbatch_size = 1\np99 = '5 parsecs'\n")
    with pytest.raises(ChecklistError, match=r"torchbridge.toml:15: checks\.latency\.p99: "
                                             r"tb\.latency: .*parsecs"):
        load_checklist(path)


def test_file_wide_tolerances_reach_checks_that_take_them(tmp_path: Path) -> None:
    path = tmp_path / "torchbridge.toml"
    path.write_text(CHECKLIST + "\n[tolerances]\nrtol = 0.01\natol = 0.001\n")
    checklist = load_checklist(path)
    determinism = next(e for e in checklist.checks if e.check == "determinism")
    forward = next(e for e in checklist.checks if e.check == "forward")
    assert (determinism.config.rtol, determinism.config.atol) == (0.01, 0.001)
    assert not hasattr(forward.config, "rtol")


def test_pyproject_section_is_collected_when_enabled(project: pytest.Pytester) -> None:
    body = CHECKLIST.replace("[model]", "[tool.torchbridge.model]").replace(
        "[input]", "[tool.torchbridge.input]").replace("[checks]", "[tool.torchbridge.checks]")
    body = body.replace('name = "clf"', '[tool.torchbridge]\nname = "clf"')
    write_checklist(project, body, "pyproject.toml")
    project.makepyfile(test_other="def test_x(): pass")
    assert "pyproject.toml::clf" not in project.runpytest("--collect-only", "-q").stdout.str()
    result = project.runpytest("test_other.py", "--tb-checklist-pyproject", "-q")
    result.assert_outcomes(passed=3)
    named = project.runpytest("pyproject.toml", "--tb-checklist-pyproject", "-q")
    named.assert_outcomes(passed=2)  # named on the command line: collected once, not twice


def test_pyproject_errors_point_at_lines_inside_tool_torchbridge(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n\n[tool.torchbridge.model]\nfactory = "m:b"\n'
                    '[tool.torchbridge.input]\nshape = [1, 2]\n[tool.torchbridge.checks]\n'
                    'determinism = { runs = 0 }\n')
    with pytest.raises(ChecklistError, match=r"pyproject.toml:9: checks\.determinism"):
        load_checklist(path)


def test_line_of_finds_dotted_keys_inline_tables_and_arrays_of_tables() -> None:
    text = textwrap.dedent("""\
        [checks]
        latency = { p99 = "5ms" }
        a.b = 1
        [[checks.export]]
        format = "onnx"
        [[checks.export]]
        format = "torchscript"
    """)
    assert line_of(text, ["checks", "latency", "p99"]) == 2
    assert line_of(text, ["checks", "a", "b"]) == 3
    assert line_of(text, ["checks", "export", 1, "format"]) == 7
    assert line_of(text, ["nothing"]) is None


def test_tb_check_passes_pytest_options_and_exits_1_when_a_check_fails(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    write_checklist(project, CHECKLIST.replace("models:build", "models:broken"))
    monkeypatch.chdir(project.path)
    code = tb_check(["-q", "-p", "no:cacheprovider", "-k", "forward", "--tb-json=out.json"])
    assert code == 1
    results = json.loads((project.path / "out.json").read_text())["results"]
    assert [(r["check"], r["status"]) for r in results] == [("forward", "failed")]


def test_tb_check_reports_a_bad_file_before_starting_pytest(
        project: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    from torchbridge.cli.main import run_command

    path = write_checklist(project, CHECKLIST.replace("[checks]", "[chekcs]"))
    assert run_command("check", [str(path)]) == 2
    assert "torchbridge.toml:9: chekcs: unknown key 'chekcs'" in capsys.readouterr().err


def test_tb_check_without_a_checklist_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert tb_check([]) == 2
    assert "no torchbridge.toml here" in capsys.readouterr().err


def test_performance_checks_from_a_file_take_the_exclusive_lock_like_markers(
        project: pytest.Pytester) -> None:
    write_checklist(project, CHECKLIST + 'latency = { p99 = "10s", batch_size = 1 }\n')
    project.makeconftest("""
        from pytest_torchbridge.performance import is_exclusive

        def pytest_collection_modifyitems(items):
            for item in items:
                print("EXCLUSIVE", item.name, is_exclusive(item))
    """)
    result = project.runpytest("--collect-only", "-q", "-s")
    result.stdout.fnmatch_lines(["EXCLUSIVE clf[[]tb-forward[]] False",
                                 "EXCLUSIVE clf[[]tb-determinism[]] False",
                                 "EXCLUSIVE clf[[]tb-latency[]] True"])


def test_the_user_guide_example_checklist_is_valid(tmp_path: Path) -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "user-guide.md").read_text()
    example = guide.split("```toml\n# torchbridge.toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "torchbridge.toml"
    path.write_text(example)
    checklist = load_checklist(path)
    assert [e.check for e in checklist.checks] == [
        "forward", "determinism", "edge_cases", "latency", "memory", "export", "export"]
    assert checklist.inputs.spec["dims"]["seq"]["max"] == 512


def test_checklist_items_run_under_xdist_and_reach_the_controllers_reports(
        project: pytest.Pytester) -> None:
    write_checklist(project, CHECKLIST)
    result = project.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider",
                                          "--tb-json=report.json", "--tb-markdown=summary.md")
    result.assert_outcomes(passed=2)
    report = json.loads((project.path / "report.json").read_text())
    assert sorted(r["test_id"] for r in report["results"]) == [
        "torchbridge.toml::clf[tb-determinism]", "torchbridge.toml::clf[tb-forward]"]
    assert "gate PASSED: 2 check result(s)" in (project.path / "summary.md").read_text()
