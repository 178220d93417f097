"""``--tb-baseline-ref``: real inner pytest sessions in a temporary git repository whose
base commit and working tree hold different versions of a tiny model module."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

MODEL = """
import torch

REPEATS = {repeats}

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(192, 192) / 14)

    def forward(self, x):
        for _ in range(REPEATS):
            x = torch.tanh(x @ self.weight)
        return x
"""

CONFTEST = """
import pytest, torch
from tinymodel import Net

@pytest.fixture
def model():
    torch.manual_seed(0)
    return Net().eval()

@pytest.fixture
def sample_input():
    return torch.randn(16, 192)
"""

BROKEN_CONFTEST = """
import pytest

@pytest.fixture
def model():
    raise RuntimeError("weights file missing at this commit")

@pytest.fixture
def sample_input():
    raise RuntimeError("never reached")
"""

TEST = """
import pytest_torchbridge as tb

@tb.latency(max_time="0.3s", threads=1)
def test_clf(model):
    pass
"""

SECOND_TEST = """

@tb.latency(max_time="0.3s", threads=1)
def test_added_later(model):
    pass
"""

THROUGHPUT_TEST = """

@tb.throughput(max_time="0.3s", threads=1)
def test_rate(model):
    pass
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def repo(pytester: pytest.Pytester) -> pytest.Pytester:
    """A git repository whose branch ``base`` holds the model with one matmul."""
    pytester.makepyfile(tinymodel=MODEL.format(repeats=1))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_model=TEST)
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    git(pytester.path, "branch", "base")
    return pytester


def results_of(pytester: pytest.Pytester) -> dict[str, dict[str, object]]:
    report = json.loads((pytester.path / "report.json").read_text())
    return {r["test_id"]: r for r in report["results"]}


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-q", "--tb-baseline-ref=base",
                              "--tb-json=report.json", *args)


def test_unchanged_code_passes_with_the_ratio_in_the_message_and_no_worktree_left(
        repo: pytest.Pytester) -> None:
    run(repo).assert_outcomes(passed=2)
    assert git(repo.path, "worktree", "list").count("\n") == 0  # the main tree only
    result = results_of(repo)["test_model.py::test_clf[tb-latency]"]
    assert "against base (95 % bounds" in str(result["message"])
    assert "interleaved pairs" in str(result["message"])
    metrics = result["metrics"]
    assert isinstance(metrics, dict) and metrics["baseline_pairs"]["value"] >= 6


def test_a_much_slower_model_is_a_regression_in_the_message_and_every_report(
        repo: pytest.Pytester) -> None:
    repo.makepyfile(tinymodel=MODEL.format(repeats=4))  # ~4x the work of the base
    result = run(repo, "--tb-markdown=summary.md", "--tb-benchmark-json=bench.json",
                 "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r".*regression: p50 \+\d+\.\d % against base \(95 % bounds "
                                  r"\+\d+\.\d…\+\d+\.\d %, \d+ interleaved pairs\).*"])
    summary = (repo.path / "summary.md").read_text()
    assert "### Against the base, interleaved" in summary and "❌ regression" in summary
    bench = json.loads((repo.path / "bench.json").read_text())["benchmarks"][0]["extra_info"]
    assert bench["baseline_ref"] == "base" and bench["baseline_ratio"] > 1.5
    assert 'name="tb.latency.baseline_ratio"' in (repo.path / "junit.xml").read_text()


def test_a_src_layout_package_is_imported_from_each_tree(pytester: pytest.Pytester) -> None:
    """If the base worker imported the working tree's package, 4x the work would read as
    unchanged; a regression shows it built the model from the base's own src/."""
    package = pytester.mkdir("src") / "tinypkg"
    package.mkdir()
    (package / "__init__.py").write_text(MODEL.format(repeats=1))
    pytester.makeconftest(CONFTEST.replace("from tinymodel import", "from tinypkg import"))
    pytester.makepyfile(test_model=TEST)
    pytester.makeini("[pytest]\npythonpath = src\n")
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "base")
    git(pytester.path, "branch", "base")
    (package / "__init__.py").write_text(MODEL.format(repeats=4))
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*regression: p50 +* % against base*"])


def test_an_item_absent_at_the_ref_is_reported_not_compared(repo: pytest.Pytester) -> None:
    (repo.path / "test_model.py").write_text(TEST + SECOND_TEST)
    run(repo).assert_outcomes(passed=4)
    result = results_of(repo)["test_model.py::test_added_later[tb-latency]"]
    assert "not compared against base: no such test item at base" in str(result["message"])
    assert "baseline_ratio" not in result["metrics"]  # type: ignore[operator]


def test_a_fixture_failing_at_the_ref_is_reported_not_compared_with_its_error(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tinymodel=MODEL.format(repeats=1))
    pytester.makeconftest(BROKEN_CONFTEST)
    pytester.makepyfile(test_model=TEST)
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", ".")
    git(pytester.path, "commit", "-q", "-m", "broken base")
    git(pytester.path, "branch", "base")
    pytester.makeconftest(CONFTEST)
    run(pytester).assert_outcomes(passed=2)
    message = str(results_of(pytester)["test_model.py::test_clf[tb-latency]"]["message"])
    assert "not compared against base: the item failed in setup at base" in message
    assert "weights file missing at this commit" in message


def test_an_unknown_ref_is_a_usage_error(repo: pytest.Pytester) -> None:
    result = repo.runpytest("--tb-baseline-ref=no-such-branch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tb-baseline-ref: git rev-parse*failed*"])


def test_the_header_names_the_ref_and_its_commit(repo: pytest.Pytester) -> None:
    sha = git(repo.path, "rev-parse", "base")
    result = repo.runpytest("--tb-baseline-ref=base", "--co")
    result.stdout.fnmatch_lines(["torchbridge: *baseline-ref=base, regression-threshold=10%*",
                                 f"torchbridge: base base at {sha[:12]}, worktree *"])


def test_under_xdist_a_throughput_item_is_compared_by_time_per_batch(
        repo: pytest.Pytester) -> None:
    (repo.path / "test_model.py").write_text(TEST.split("@tb")[0] + THROUGHPUT_TEST)
    git(repo.path, "commit", "-q", "-am", "throughput item")
    git(repo.path, "branch", "-f", "base")
    result = repo.runpytest_subprocess("-q", "-n", "2", "--tb-baseline-ref=base",
                                       "--tb-json=report.json")
    result.assert_outcomes(passed=2)
    rate = results_of(repo)["test_model.py::test_rate[tb-throughput]"]
    assert "baseline_ratio" in rate["metrics"]  # type: ignore[operator]
    assert "time per batch" in str(rate["message"]) and "against base" in str(rate["message"])
