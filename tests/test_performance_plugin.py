"""Performance markers in real inner pytest sessions: gating, messages, reports, baselines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = """
import os, time
import pytest, torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        delay = float(os.environ.get("TB_TEST_DELAY", "0"))
        if delay:
            time.sleep(delay)
        return self.fc(x)

@pytest.fixture
def model():
    torch.manual_seed(0)
    return Net().eval()

@pytest.fixture
def sample_input():
    return torch.randn(2, 8)
"""

# A clear pass stops at 299 samples, milliseconds here; the generous cap and one thread only
# matter on a machine so loaded that calls take milliseconds each.
FAST = 'max_time="10s", threads=1'


@pytest.fixture(autouse=True, scope="module")
def _fake_tensor_machinery_imported() -> None:
    """Import what FakeTensorMode pulls in (torch._inductor registers custom ops) once, in
    the outer process: pytester's in-process runs drop modules imported inside them, and a
    second import would register those ops twice."""
    import torch

    from torchbridge.measure.estimate import estimate_memory

    estimate_memory(torch.nn.Linear(2, 2), 1, torch.zeros(1, 2))


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_latency_passes_when_p99_is_far_below_budget(suite: pytest.Pytester) -> None:
    suite.makepyfile(f"""
        import pytest_torchbridge as tb

        @tb.latency(p99="1s", {FAST})
        def test_clf(model):
            pass
    """)
    suite.runpytest("-q").assert_outcomes(passed=2)


def test_latency_fails_when_p99_exceeds_budget_with_n_bounds_and_setting(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(f"""
        import pytest_torchbridge as tb

        @tb.latency(p99="1ns", batch_size=1, {FAST})
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([
        r".*latency \[cpu\]: p99 .* > budget 1 ns \(n=\d+, 95 % bounds .*, cpu, 1 thread, "
        r"batch 1\)"])


def test_budget_too_close_to_call_fails_as_inconclusive(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.latency(p99="1s", max_samples=50)
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*inconclusive, a pass needs 299 kept samples at 95 % for "
                                 "p99 and 50 were kept: max_samples=50 stopped the run; raise "
                                 "it to 299 or more*"])


def test_too_short_max_time_says_the_samples_a_pass_needs_and_the_max_time_that_would_do(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TB_TEST_DELAY", "0.02")  # ~20 ms a call: ~25 calls in 0.5 s
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.latency(p99="10s", max_time="0.5s")
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r".*inconclusive, a pass needs 299 kept samples at 95 % for "
                                  r"p99 and \d+ were kept in max_time=500 ms; "
                                  r'max_time="\d+s" would do at .* a call'])


def test_cuda_budget_on_a_cpu_run_is_measured_not_gated(suite: pytest.Pytester) -> None:
    suite.makepyfile(f"""
        import pytest_torchbridge as tb

        @tb.latency(p99={{"cuda": "1ns"}}, {FAST})
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q", "-rA")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(("args", "complaint"), [
    ('p99="5 parsecs"', "unknown time unit 'parsecs'"),
    ("p99=-3", "must be a positive"),
    ("batch_size=0", "batch_size must be a whole number >= 1"),
    ("confidence=1.5", "confidence must be a number strictly between"),
    ('host_filter="yes"', "host_filter must be True or False"),
])
def test_bad_latency_arguments_are_collection_errors(suite: pytest.Pytester, args: str,
                                                      complaint: str) -> None:
    suite.makepyfile(f"""
        import pytest_torchbridge as tb

        @tb.latency({args})
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*test_clf*tb.latency*{complaint}*"])


def test_batch_size_the_model_rejects_is_a_clear_failure(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest, torch

        class Fixed(torch.nn.Module):
            def forward(self, x):
                if x.shape[0] != 2:
                    raise ValueError(f"this model takes batches of 2, got {x.shape[0]}")
                return x

        @pytest.fixture
        def model():
            return Fixed()

        @pytest.fixture
        def sample_input():
            return torch.randn(2, 8)
    """)
    pytester.makepyfile("""
        import pytest_torchbridge as tb

        @tb.throughput(batch_sizes=[2, 8], max_time="0.1s")
        def test_clf(model):
            pass
    """)
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*the model rejects batch size 8: ValueError: this model "
                                 "takes batches of 2, got 8*"])


def test_out_of_memory_mid_sweep_reports_the_largest_batch_that_fits(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest, torch

        class Hungry(torch.nn.Module):
            def forward(self, x):
                if x.shape[0] > 4:  # asks the allocator for ~2**60 bytes: a real OOM
                    torch.empty(2**60, dtype=torch.uint8)
                return x * 2

        @pytest.fixture
        def model():
            return Hungry()

        @pytest.fixture
        def sample_input():
            return torch.randn(1, 8)
    """)
    pytester.makepyfile("""
        import pytest_torchbridge as tb

        @tb.throughput(stress=True, batch_sizes=[1, 4, 16, 64], max_time="0.1s")
        def test_stress(model):
            pass

        @tb.throughput(batch_sizes=[1, 16], max_time="0.1s")
        def test_plain(model):
            pass
    """)
    result = pytester.runpytest("-q", "--tb-json=report.json")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*out of memory at batch size 16*use stress=True*"])
    report = json.loads((pytester.path / "report.json").read_text())
    stress = next(r for r in report["results"] if "test_stress" in r["test_id"])
    assert stress["details"]["largest_batch_that_fits"] == 4
    assert [row["batch_size"] for row in stress["details"]["by_batch"]] == [1, 4]
    assert set(stress["metrics"]) >= {"samples_per_s", "samples_per_s_bs1", "samples_per_s_bs4"}


def test_memory_fails_over_budget_and_reports_estimate(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.memory(peak="100B")
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q", "--tb-json=report.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*memory [[]cpu[]]: peak * > budget 100 B*estimate*"])
    report = json.loads((suite.path / "report.json").read_text())
    memory = report["results"][0]
    assert {"peak_bytes", "estimate_bytes", "free_bytes"} <= set(memory["metrics"])
    assert memory["details"]["method"] == "cpu-allocator"


def test_gpu_utilization_skips_with_reason_on_cpu(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.gpu_utilization(min_percent=50)
        def test_clf(model):
            pass
    """)
    result = suite.runpytest("-q", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs a CUDA device; this run uses cpu*"])


def test_latency_result_carries_the_contracted_metrics_and_details(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(f"""
        import pytest_torchbridge as tb

        @tb.latency(p50="1s", p99="1s", {FAST})
        def test_clf(model):
            pass
    """)
    suite.runpytest("-q", "--tb-json=report.json").assert_outcomes(passed=2)
    result = json.loads((suite.path / "report.json").read_text())["results"][0]
    assert set(result["metrics"]) == {"p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms",
                                      "min_ms", "max_ms", "std_ms", "samples"}
    assert set(result["budgets"]) == {"p50_ms", "p99_ms"}
    details = result["details"]
    assert len(details["samples_ns"]) == result["metrics"]["samples"]["value"]
    assert all(isinstance(s, int) for s in details["samples_ns"])
    assert details["decision"] == "pass" and details["stopped_early"] is True
    assert set(details["ci_ms"]) == {"p50", "p90", "p95", "p99"}
    assert {"batch_size", "threads", "confidence", "clock", "torch_version"} <= set(details)
    assert details["host_interference"]["probes"] > 0


def test_latency_says_when_the_machine_slowed_down_during_the_run(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import time
        import torch
        import pytest_torchbridge as tb

        class Stepping(torch.nn.Module):
            calls = 0

            def forward(self, x):
                Stepping.calls += 1
                time.sleep(0.0002 if Stepping.calls < 250 else 0.002)
                return x

        @tb.latency(max_samples=400, threads=1)
        def test_step(model):
            pass

        import pytest

        @pytest.fixture
        def model():
            return Stepping()

        @pytest.fixture
        def sample_input():
            return torch.zeros(1)
    """)
    pytester.runpytest("-q", "--tb-json=report.json").assert_outcomes(passed=2)
    latency = json.loads((pytester.path / "report.json").read_text())["results"][0]
    assert "unsteady machine: the median moved" in latency["message"]
    assert latency["details"]["median_drift"] > 1.0


def test_latency_names_the_calls_it_set_aside_as_slowed_by_the_host(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import time
        import pytest
        import torch
        import pytest_torchbridge as tb
        from torchbridge.measure import interference

        class Host(torch.nn.Module):
            calls = 0

            def forward(self, x):
                Host.calls += 1
                end = time.perf_counter() + (0.0009 if 200 <= Host.calls <= 230 else 0.0003)
                while time.perf_counter() < end:
                    pass
                return x

        @pytest.fixture
        def model(monkeypatch):
            # The host slows down during calls 200-230: the probe copy slows with it.
            real = interference.probe
            monkeypatch.setattr(interference, "probe",
                                lambda: real() * (3 if 200 <= Host.calls <= 230 else 1))
            monkeypatch.setattr(interference, "BUSY", 0.0)  # preemption must not decide
            return Host()

        @pytest.fixture
        def sample_input():
            return torch.zeros(1)

        @tb.latency(max_samples=400, threads=1)
        def test_host(model):
            pass
    """)
    pytester.runpytest("-q", "--tb-json=report.json").assert_outcomes(passed=2)
    latency = json.loads((pytester.path / "report.json").read_text())["results"][0]
    aside = latency["details"]["host_interference"]
    assert aside["set_aside"] >= 30
    assert f"{aside['set_aside']} calls" in latency["message"]
    assert "set aside: the host slowed the machine" in latency["message"]
    assert sum(ns >= 850_000 for ns in aside["set_aside_ns"]) >= 29


def test_benchmark_json_is_readable_by_pytest_benchmark_compare(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(f"""
        import pytest_torchbridge as tb

        @tb.latency(p99="1s", {FAST})
        def test_clf(model):
            pass
    """)
    suite.runpytest("-q", "--tb-benchmark-json=bench.json",
                    "--tb-github-benchmark-json=gh.json").assert_outcomes(passed=2)
    bench = json.loads((suite.path / "bench.json").read_text())
    entry = bench["benchmarks"][0]
    assert entry["stats"]["rounds"] == len(entry["stats"]["data"])
    assert entry["stats"]["p99"] >= entry["stats"]["median"]
    assert bench["machine_info"]["torchbridge"]["torch_version"]
    assert set(bench["commit_info"]) >= {"id", "time", "author_time", "dirty", "project",
                                         "branch"}
    compare = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare",
                              str(suite.path / "bench.json"), "--columns=min,median,max"],
                             capture_output=True, text=True, timeout=120)
    assert compare.returncode == 0, compare.stderr
    assert "test_clf[tb-latency]" in compare.stdout
    github = json.loads((suite.path / "gh.json").read_text())
    assert {e["unit"] for e in github} == {"ms"}
    assert {e["name"].split()[-1] for e in github} == {"p50", "p99"}


def test_baseline_fails_a_significant_regression_and_passes_noise(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    def _run_with_delay(suite: pytest.Pytester, delay: str, *args: str) -> pytest.RunResult:
        monkeypatch.setenv("TB_TEST_DELAY", delay)
        return suite.runpytest("-q", *args)

    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.latency(max_samples=60, max_time="2s")
        def test_clf(model):
            pass
    """)
    base = str(suite.path / "base.json")
    _run_with_delay(suite, "0.001", f"--tb-save-baseline={base}").assert_outcomes(passed=2)
    saved = json.loads(Path(base).read_text())
    assert [r["check"] for r in saved["results"]] == ["latency"]

    # sleeping 1 ms is steady to a few percent, far inside a 50 % threshold
    same = _run_with_delay(suite, "0.001", f"--tb-baseline={base}", "-rA",
                           "--tb-regression-threshold=50%")
    same.assert_outcomes(passed=2)
    same.stdout.no_fnmatch_line("*regression against baseline*")

    slower = _run_with_delay(suite, "0.004", f"--tb-baseline={base}",
                             "--tb-regression-threshold=50%")
    slower.assert_outcomes(passed=1, failed=1)
    slower.stdout.fnmatch_lines(["*regression against baseline*p50*+*%*regression*"])


def test_a_p50_budget_does_not_make_the_baseline_message_list_p50_twice(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.latency(p50="1s", max_samples=60, max_time="2s")
        def test_clf(model):
            pass
    """)
    base = str(suite.path / "base.json")
    monkeypatch.setenv("TB_TEST_DELAY", "0.001")
    suite.runpytest("-q", f"--tb-save-baseline={base}").assert_outcomes(passed=2)
    monkeypatch.setenv("TB_TEST_DELAY", "0.004")
    slower = suite.runpytest("-q", f"--tb-baseline={base}", "--tb-regression-threshold=50%")
    slower.assert_outcomes(passed=1, failed=1)
    line = next(x for x in slower.stdout.lines if "regression against baseline" in x)
    assert line.count("p50 ") == 1, line


def test_missing_baseline_file_is_a_usage_error(suite: pytest.Pytester) -> None:
    suite.makepyfile("def test_a(): pass")
    result = suite.runpytest("--tb-baseline=nope.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*nope.json*no such file*--tb-save-baseline*"])


def test_performance_items_never_overlap_other_tests_under_xdist(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    root = suite.path / "logs"
    root.mkdir()
    monkeypatch.setenv("TB_TEST_LOG_DIR", str(root))
    suite.makeconftest(CONFTEST + """
import json, pathlib, time

@pytest.fixture
def stamped_model():
    log = pathlib.Path(os.environ["TB_TEST_LOG_DIR"]) / "calls.log"

    class Stamped(torch.nn.Module):
        def forward(self, x):
            with open(log, "a") as fh:
                fh.write(f"{time.time()}\\n")
            time.sleep(0.001)
            return x
    return Stamped()
""")
    # The measured test comes first: xdist hands items out round-robin, so without the
    # lock its measurement would run while the other worker sleeps through test_sleeper.
    suite.makepyfile("""
        import json, os, pathlib, time
        import pytest
        import pytest_torchbridge as tb

        @tb.latency(model_fixture="stamped_model", max_time="0.5s")
        def test_measured():
            pass

        @pytest.mark.parametrize("i", range(6))
        def test_sleeper(i):
            start = time.time()
            time.sleep(0.2)
            log = pathlib.Path(os.environ["TB_TEST_LOG_DIR"]) / f"sleep{i}.json"
            log.write_text(json.dumps([start, time.time()]))
    """)
    result = suite.runpytest_subprocess("-n", "2", "-p", "xdist",
                                        "--tb-benchmark-json=bench.json")
    result.assert_outcomes(passed=8)
    bench = json.loads((suite.path / "bench.json").read_text())  # written by the controller
    assert [b["name"] for b in bench["benchmarks"]] == ["test_measured[tb-latency]"]
    calls = [float(x) for x in (root / "calls.log").read_text().split()]
    spans = [json.loads(p.read_text()) for p in root.glob("sleep*.json")]
    assert len(spans) == 6 and len(calls) > 10
    overlapping = [c for c in calls for start, end in spans if start <= c <= end]
    assert overlapping == []


def test_throughput_baseline_fails_a_significant_slowdown(
        suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.makepyfile("""
        import pytest_torchbridge as tb

        @tb.throughput(batch_sizes=[2], max_time="0.3s")
        def test_clf(model):
            pass
    """)
    base = str(suite.path / "base.json")
    monkeypatch.setenv("TB_TEST_DELAY", "0.001")
    suite.runpytest("-q", f"--tb-save-baseline={base}").assert_outcomes(passed=2)
    monkeypatch.setenv("TB_TEST_DELAY", "0.004")
    slower = suite.runpytest("-q", f"--tb-baseline={base}", "--tb-regression-threshold=20%")
    slower.assert_outcomes(passed=1, failed=1)
    slower.stdout.fnmatch_lines(["*regression against baseline*samples/s*threshold 20 %*"])


def test_unreadable_regression_threshold_is_a_usage_error(suite: pytest.Pytester) -> None:
    suite.makepyfile("def test_a(): pass")
    result = suite.runpytest("--tb-regression-threshold=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tb-regression-threshold*'lots'*10%*"])


def test_tb_checks_latency_gates_inside_a_test_body(suite: pytest.Pytester) -> None:
    suite.makepyfile("""
        def test_fast(tb_checks, model, sample_input):
            result = tb_checks.latency(model, sample_input, p99="1s", max_time="10s",
                                       threads=1)
            assert result.details["decision"] == "pass"

        def test_slow(tb_checks, model, sample_input):
            tb_checks.latency(model, sample_input, p99="1ns", max_time="0.3s")
    """)
    result = suite.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*latency [[]cpu[]]: p99 * > budget 1 ns*"])


def test_the_report_header_shows_the_effective_settings(suite: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TB_HARDWARE", "cpu")
    suite.makepyfile("def test_nothing():\n    pass\n")
    result = suite.runpytest("--co", "--tb-seed=7", "--tb-json=r.json",
                             "--tb-regression-threshold=5%", "--tb-fail-on-skip")
    result.stdout.fnmatch_lines(["torchbridge: hardware=cpu, seed=7, json=r.json, "
                                 "fail-on-skip"])
