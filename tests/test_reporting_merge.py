"""Merging reports of several jobs, and the gate that decides from the merged result."""

from __future__ import annotations

from pathlib import Path

import pytest
from reporting_data import GPU_MACHINE, document, latency, result, write

from torchbridge.reporting import GatePolicy, ReportError, decide, merge_reports


def test_merge_labels_every_result_with_its_job_and_machine(tmp_path: Path) -> None:
    cpu = write(tmp_path / "cpu.json", document([result("t.py::a[tb-forward]")]))
    gpu = write(tmp_path / "gpu.json", document([result("t.py::b[tb-forward]", device="cuda")],
                                                machine=GPU_MACHINE))
    merged = merge_reports([cpu, gpu])
    assert [(r["key"], r["job"]) for r in merged.results] == [
        ("t.py::a[tb-forward]", "cpu"), ("t.py::b[tb-forward]", "gpu")]
    assert "NVIDIA H100" in merged.results[1]["machine"]
    assert merged.summary["passed"] == 2


def test_reports_from_different_machines_warn_and_keep_both(tmp_path: Path) -> None:
    cpu = write(tmp_path / "cpu.json", document([result("t.py::a")]))
    gpu = write(tmp_path / "gpu.json", document([result("t.py::b")], machine=GPU_MACHINE))
    merged = merge_reports([cpu, gpu])
    assert len(merged.machines) == 2
    assert any("2 machines" in w and "NVIDIA H100" in w for w in merged.warnings)
    assert len(merged.results) == 2


def test_same_test_ids_in_two_reports_are_kept_and_disambiguated_by_job(tmp_path: Path
                                                                         ) -> None:
    first = write(tmp_path / "gw0.json", document([result("t.py::a[tb-forward]")]))
    second = write(tmp_path / "gw1.json", document([result("t.py::a[tb-forward]",
                                                           status="failed")]))
    merged = merge_reports([first, second])
    assert sorted(r["key"] for r in merged.results) == [
        "t.py::a[tb-forward] @gw0", "t.py::a[tb-forward] @gw1"]
    assert any("appear in more than one report" in w and "gw0, gw1" in w
               for w in merged.warnings)
    assert merged.summary == {"passed": 1, "failed": 1, "skipped": 0, "error": 0}


def test_two_files_with_the_same_name_get_distinct_jobs(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "gpu").mkdir()
    a = write(tmp_path / "cpu" / "report.json", document([result("t.py::a")]))
    b = write(tmp_path / "gpu" / "report.json", document([result("t.py::b")]))
    assert [s.job for s in merge_reports([a, b]).sources] == ["cpu/report", "gpu/report"]


def test_older_schema_is_read_with_defaults_and_a_warning(tmp_path: Path) -> None:
    old = write(tmp_path / "old.json", [{"check": "forward", "status": "PASSED",
                                         "nodeid": "t.py::a"}])
    merged = merge_reports([old])
    only = merged.results[0]
    assert (only["status"], only["test_id"], only["metrics"], only["device"]) == \
        ("passed", "t.py::a", {}, "cpu")
    assert any("schema 0, older than the current 1" in w for w in merged.warnings)


def test_newer_schema_warns_that_torchbridge_should_be_upgraded(tmp_path: Path) -> None:
    new = write(tmp_path / "new.json", document([result("t.py::a")], schema_version=99))
    assert any("newer than this torchbridge" in w for w in merge_reports([new]).warnings)


def test_entries_that_are_not_results_are_dropped_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", document([result("t.py::a"), {"oops": 1}]))
    merged = merge_reports([path])
    assert len(merged.results) == 1
    assert any("result 1: not a check result" in w for w in merged.warnings)


def test_an_unknown_status_counts_as_an_error_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", document([{**result("t.py::a"), "status": "flaky"}]))
    merged = merge_reports([path])
    assert merged.summary["error"] == 1
    assert any("result 0: unknown status 'flaky'" in w and "counted as error" in w
               for w in merged.warnings)


def test_fields_a_newer_writer_added_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "r.json", document([{**result("t.py::a"), "energy_j": 3.5}]))
    assert merge_reports([path]).results[0]["energy_j"] == 3.5


def test_empty_report_says_what_probably_happened(tmp_path: Path) -> None:
    path = write(tmp_path / "cpu.json", document([]))
    merged = merge_reports([path])
    assert any("holds no results" in w and "cpu.json" in w for w in merged.warnings)


@pytest.mark.parametrize(("content", "message"), [
    ("", "the file is empty"),
    ("{\"results\": [", r"not JSON \(line 1"),
    ("{\"foo\": 1}", "not a TorchBridge report"),
])
def test_unreadable_report_is_an_error_naming_the_file(tmp_path: Path, content: str,
                                                       message: str) -> None:
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(ReportError, match=message) as info:
        merge_reports([path])
    assert "bad.json" in str(info.value)


def test_missing_report_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"gone\.json: cannot read"):
        merge_reports([tmp_path / "gone.json"])


def test_a_merged_report_can_be_merged_again_keeping_jobs(tmp_path: Path) -> None:
    from torchbridge.reporting import Outputs, publish

    cpu = write(tmp_path / "cpu.json", document([result("t.py::a")]))
    gpu = write(tmp_path / "gpu.json", document([result("t.py::b")], machine=GPU_MACHINE))
    publish(merge_reports([cpu, gpu]), Outputs(json=tmp_path / "merged.json",
                                               step_summary=False))
    again = merge_reports([tmp_path / "merged.json"])
    assert [r["job"] for r in again.results] == ["cpu", "gpu"]
    assert len(again.machines) == 2


def test_gate_passes_when_every_check_passed(tmp_path: Path) -> None:
    merged = merge_reports([write(tmp_path / "r.json", document([result("t.py::a")]))])
    verdict = decide(merged)
    assert verdict.passed and verdict.exit_code == 0 and verdict.reasons == []


def test_gate_fails_naming_failed_and_errored_checks(tmp_path: Path) -> None:
    merged = merge_reports([write(tmp_path / "r.json", document([
        result("t.py::a", status="failed"), result("t.py::b", status="error")]))])
    verdict = decide(merged)
    assert verdict.exit_code == 1
    assert verdict.reasons == ["1 check(s) failed: t.py::a [forward]",
                               "1 check(s) errored: t.py::b [forward]"]


def test_gate_fails_on_a_significant_regression_unless_allowed(tmp_path: Path) -> None:
    regressed = latency("t.py::a[tb-latency]", 9.0, 20.0, baseline={
        "baseline_p99_ms": 5.0, "current_p99_ms": 9.0, "change_pct": 80.0,
        "significant": True, "regression": True})
    merged = merge_reports([write(tmp_path / "r.json", document([regressed]))])
    assert decide(merged).exit_code == 1
    assert "regression" in decide(merged).reasons[0]
    assert decide(merged, GatePolicy(fail_on_regression=False)).passed


def test_skipped_checks_fail_the_gate_only_when_asked(tmp_path: Path) -> None:
    merged = merge_reports([write(tmp_path / "r.json", document([
        result("t.py::a"), result("t.py::b", status="skipped")]))])
    assert decide(merged).passed
    assert not decide(merged, GatePolicy(fail_on_skip=True)).passed


def test_gate_fails_when_nothing_was_checked_unless_allowed(tmp_path: Path) -> None:
    merged = merge_reports([write(tmp_path / "r.json", document([]))])
    verdict = decide(merged)
    assert not verdict.passed
    assert "nothing was checked" in verdict.reasons[0]
    assert decide(merged, GatePolicy(allow_empty=True)).passed


def test_gate_fails_when_every_check_was_skipped_unless_allowed(tmp_path: Path) -> None:
    merged = merge_reports([write(tmp_path / "r.json", document([
        result("t.py::a", status="skipped"), result("t.py::b", status="skipped")]))])
    verdict = decide(merged)
    assert not verdict.passed
    assert verdict.reasons == ["every one of the 2 check result(s) was skipped: nothing was "
                               "checked, so nothing can pass (allow this with --allow-empty)"]
    assert decide(merged, GatePolicy(allow_empty=True)).passed
