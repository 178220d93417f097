"""The markdown summary, the HTML report with its plots, tb-report, and the pytest options."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from reporting_data import GPU_MACHINE, document, latency, memory, result, throughput, write

from torchbridge.cli.report import main as tb_report
from torchbridge.reporting import decide, merge_reports, render_html, render_markdown

REGRESSION = {"baseline_p99_ms": 5.0, "current_p99_ms": 9.0, "change_pct": 80.0,
              "significant": True, "regression": True}


@pytest.fixture
def reports(tmp_path: Path) -> list[Path]:
    cpu = document([
        latency("t.py::clf[tb-latency]", p99_ms=30.0, budget_ms=20.0, status="failed"),
        throughput("t.py::clf[tb-throughput]"),
        memory("t.py::clf[tb-memory]", peak=300 * 2**20, budget=2**30),
        result("t.py::clf[tb-forward]"),
    ])
    gpu = document([latency("t.py::clf[tb-latency]", 9.0, 20.0, baseline=REGRESSION)],
                   machine=GPU_MACHINE)
    return [write(tmp_path / "cpu.json", cpu), write(tmp_path / "gpu.json", gpu)]


def test_markdown_shows_verdict_reasons_failures_budgets_and_baselines(reports: list[Path]
                                                                       ) -> None:
    merged = merge_reports(reports)
    text = render_markdown(merged, decide(merged))
    assert text.startswith("## ❌ TorchBridge gate FAILED: 5 check result(s)")
    assert "- 1 check(s) failed: t.py::clf[tb-latency] @cpu [latency]" in text
    assert "| t.py::clf[tb-latency] @cpu | latency | cpu | cpu | ❌ | latency failed |" in text
    assert "| p99_ms | 30 ms | 20 ms | ❌ |" in text
    assert "| 300 MiB | 1 GiB |" in text  # bytes in binary units
    assert "| 5 ms | 9 ms | +80.0 % | yes | ❌ regression |" in text
    assert "NVIDIA H100" in text  # the jobs table names each machine


def test_markdown_escapes_pipes_in_messages(tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", document([result("t.py::a", status="failed",
                                                       message="a | b")]))
    merged = merge_reports([path])
    assert "a \\| b" in render_markdown(merged, decide(merged))


def test_html_is_self_contained_and_holds_every_kind_of_plot(reports: list[Path]) -> None:
    merged = merge_reports(reports)
    page = render_html(merged, decide(merged))
    for kind in ("latency", "throughput", "memory", "baseline"):
        assert f'<section id="{kind}">' in page
    assert page.count('class="tb-plot tb-plot-line"') == 3  # 2 CDFs + 1 throughput sweep
    assert 'class="tb-plot tb-plot-bar"' in page and 'class="tb-plot tb-plot-baseline"' in page
    assert page.count('class="tb-budget"') >= 4  # budgets drawn on CDFs, sweep and bars
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert "<script" not in page


def test_html_draws_the_cdf_budget_at_its_value(tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", document([latency("t.py::a", 1.4, 1.2, "failed")]))
    merged = merge_reports([path])
    page = render_html(merged, decide(merged))
    rule = re.search(r'class="tb-budget" x1="([0-9.]+)"', page)
    tick = re.search(r'<text x="([0-9.]+)" y="[0-9.]+">1.2</text>', page)  # x-axis tick
    assert rule is not None and tick is not None
    assert float(rule.group(1)) == pytest.approx(float(tick.group(1)), abs=0.2)


def test_tb_report_writes_outputs_and_exits_1_when_the_gate_fails(
        reports: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = tb_report(["merge", *map(str, reports), "-o", str(out / "merged.json"),
                      "--markdown", str(out / "summary.md"), "--html", str(out / "r.html"),
                      "--no-step-summary"])
    assert code == 1
    printed = capsys.readouterr().out
    assert "gate FAILED: 5 check result(s) (4 passed, 1 failed)" in printed
    merged = json.loads((out / "merged.json").read_text())
    assert merged["verdict"]["exit_code"] == 1 and len(merged["results"]) == 5
    assert (out / "summary.md").read_text().startswith("## ❌")
    assert "<svg" in (out / "r.html").read_text()


def test_tb_report_exits_0_and_prints_json_when_the_gate_passes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "r.json", document([result("t.py::a")]))
    assert tb_report(["merge", str(path), "--json", "--no-step-summary"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["passed"] is True and verdict["counts"]["passed"] == 1


def test_tb_report_names_jobs_with_job_equals_path(tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", document([result("t.py::a")]))
    assert tb_report(["merge", f"nightly={path}", "-o", str(tmp_path / "m.json"),
                      "--no-step-summary"]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["results"][0]["job"] == "nightly"


def test_tb_report_appends_the_summary_to_the_github_step_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = write(tmp_path / "step.md", "earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    path = write(tmp_path / "r.json", document([result("t.py::a")]))
    tb_report(["merge", str(path)])
    text = summary.read_text()
    assert text.startswith("earlier step\n## ✅ TorchBridge gate PASSED")


def test_unreadable_report_is_a_usage_error_through_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from torchbridge.cli.main import run_command

    path = write(tmp_path / "r.json", "")
    assert run_command("report", ["merge", str(path)]) == 2
    assert "r.json: the file is empty" in capsys.readouterr().err


SUITE = """
import pytest, torch
import pytest_torchbridge as tb

@pytest.fixture
def model():
    return torch.nn.Linear(4, 2).eval()

@pytest.fixture
def sample_input():
    return torch.randn(3, 4)

@tb.forward
def test_clf(model, sample_input):
    pass
"""


def test_pytest_options_write_summary_and_html_from_the_session(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "step.md"))
    pytester.makepyfile(SUITE)
    outcome = pytester.runpytest("--tb-markdown=out/summary.md", "--tb-html=out/report.html")
    outcome.assert_outcomes(passed=2)
    outcome.stdout.fnmatch_lines(["TorchBridge: wrote *summary.md", "*wrote *report.html"])
    summary = (pytester.path / "out" / "summary.md").read_text()
    assert "gate PASSED: 1 check result(s) (1 passed)" in summary
    assert (pytester.path / "step.md").read_text() == summary + "\n"
    assert "test_clf[tb-forward]" in (pytester.path / "out" / "report.html").read_text()


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (bash scripts/setup-system.sh)")
def test_chromium_renders_the_html_report_with_its_plots(reports: list[Path],
                                                         tmp_path: Path) -> None:
    merged = merge_reports(reports)
    page = write(tmp_path / "report.html", render_html(merged, decide(merged)))
    dom = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90, check=True)
    rendered = dom.stdout
    assert rendered.count("<svg") == 5  # 2 CDFs, 1 sweep, 1 memory, 1 baseline chart
    assert rendered.count("<polyline") == 3 and '<rect class="tb-bar"' in rendered
    assert "gate FAILED" in rendered


def test_openmetrics_output_parses_and_holds_gate_counts_and_metrics(
        reports: list[Path], tmp_path: Path) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    path = tmp_path / "metrics.txt"
    assert tb_report(["merge", *map(str, reports), "--openmetrics", str(path),
                      "--no-step-summary"]) == 1
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert families["torchbridge_gate_passed"].samples[0].value == 0
    by_status = {s.labels["status"]: s.value for s in families["torchbridge_results"].samples}
    assert by_status == {"passed": 4, "failed": 1, "skipped": 0, "error": 0}
    p99 = {(s.labels["job"], s.labels["test"]): s.value
           for s in families["torchbridge_latency_p99_ms"].samples}
    assert p99 == {("cpu", "t.py::clf[tb-latency] @cpu"): 30.0,
                   ("gpu", "t.py::clf[tb-latency] @gpu"): 9.0}


def test_baseline_comparisons_as_the_performance_checks_store_them(tmp_path: Path) -> None:
    stored = {"path": "base.json", "found": True, "comparisons": [
        {"statistic": "p50", "old": 2.0e6, "new": 1.5e6, "change": -0.25,
         "significant": True, "verdict": "improvement"},
        {"statistic": "p99", "old": 4.0e6, "new": 6.0e6, "change": 0.5,
         "significant": True, "verdict": "regression"}]}
    path = write(tmp_path / "r.json", document([
        latency("t.py::a[tb-latency]", 6.0, 20.0, status="failed", baseline=stored)]))
    merged = merge_reports([path])
    verdict = decide(merged)
    assert verdict.regressions == 1
    text = render_markdown(merged, verdict)
    assert "| p50 | 2 ms | 1.5 ms | -25.0 % | yes | ok |" in text
    assert "| p99 | 4 ms | 6 ms | +50.0 % | yes | ❌ regression |" in text
    page = render_html(merged, verdict)
    assert page.count('class="tb-plot tb-plot-baseline"') == 1


def test_session_summary_says_when_no_torchbridge_item_ran(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    pytester.runpytest("--tb-markdown=summary.md").assert_outcomes(passed=1)
    summary = (pytester.path / "summary.md").read_text()
    assert "this session produced no TorchBridge results" in summary


def test_html_escapes_test_ids_and_messages(tmp_path: Path) -> None:
    hostile = 't.py::a[<script>alert(1)</script>]'
    path = write(tmp_path / "r.json", document([
        latency(hostile, 1.0, 2.0, status="failed") | {"message": "<img src=x onerror=y>"}]))
    merged = merge_reports([path])
    page = render_html(merged, decide(merged))
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
