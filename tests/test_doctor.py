"""tb-doctor: diagnostics, exit codes (0 ok, 1 failure, 2 warnings), JSON and JUnit XML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from torchbridge.cli.doctor import main as doctor_main
from torchbridge.doctor import Diagnostic, Health, checks, exit_code, run_diagnostics
from torchbridge.hardware import GPUInfo, HardwareInfo


def _hw(gpus: int = 0, nvml: int = 0, cuda: str | None = "12.8") -> HardwareInfo:
    def gpu(i: int) -> GPUInfo:
        return GPUInfo(i, "NVIDIA H100 80GB HBM3", 80 << 30, 79 << 30, (9, 0),
                       f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd")
    return HardwareInfo(cpu_count=16, torch_threads=16, platform="linux",
                        torch_version="2.13.0", cuda_available=gpus > 0, cuda_version=cuda,
                        hip_version=None, driver_version="570.1", mps_available=False,
                        xpu_available=False, gpus=[gpu(i) for i in range(gpus)],
                        nvml_gpus=[gpu(i) for i in range(nvml)])


def test_exit_code_is_0_ok_1_failure_2_warnings_only() -> None:
    def diag(status: Health) -> Diagnostic:
        return Diagnostic("x", "y", status, "")
    assert exit_code([diag(Health.OK), diag(Health.SKIP)]) == 0
    assert exit_code([diag(Health.OK), diag(Health.WARN)]) == 2
    assert exit_code([diag(Health.WARN), diag(Health.FAIL)]) == 1


def test_cpu_machine_reports_gpu_checks_as_skipped_with_reasons(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only report")
    found = {d.name: d for d in run_diagnostics(tmp_path, gpu_smoke=True)}
    for name in ("python", "torch", "onnxruntime", "determinism", "threads", "extras",
                 "report_dir", "host_memory"):
        assert name in found
    for name in ("cuda_runtime", "gpu_visibility", "cudnn", "gpu_smoke"):
        assert found[name].status is Health.SKIP and found[name].summary
    assert found["determinism"].status is Health.OK


def test_torch_and_nvml_disagreeing_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    [diag] = checks.check_gpu_agreement(_hw(gpus=0, nvml=2))
    assert diag.status is Health.FAIL and "torch sees none" in diag.summary


def test_gpus_hidden_on_purpose_are_skipped_not_failed(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    [diag] = checks.check_gpu_agreement(_hw(gpus=0, nvml=2))
    assert diag.status is Health.SKIP and "hides all 2" in diag.summary
    [runtime] = checks.check_accelerator_runtime(_hw(gpus=0, nvml=2))
    assert runtime.status is Health.SKIP


def test_torch_and_nvml_agreeing_by_uuid_is_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    [diag] = checks.check_gpu_agreement(_hw(gpus=2, nvml=2))
    assert diag.status is Health.OK and "agree on 2" in diag.summary


def test_cuda_visible_devices_explains_a_smaller_torch_view(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    [diag] = checks.check_gpu_agreement(_hw(gpus=1, nvml=2))
    assert diag.status is Health.OK
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    [diag] = checks.check_gpu_agreement(_hw(gpus=1, nvml=2))
    assert diag.status is Health.WARN and "CUDA_VISIBLE_DEVICES" in diag.fix


@pytest.mark.parametrize(("cc", "arch", "ok"), [
    ((9, 0), ["sm_80", "sm_90"], True),
    ((8, 6), ["sm_80", "sm_90"], True),      # same major, newer minor runs sm_80 code
    ((12, 0), ["sm_80", "sm_90"], False),    # no kernels for a newer GPU
    ((12, 0), ["sm_90", "compute_90"], True),  # PTX is JIT-compiled
    ((7, 0), ["sm_80", "sm_90"], False),
])
def test_build_arch_list_must_cover_the_gpu(cc: tuple[int, int], arch: list[str],
                                            ok: bool) -> None:
    assert checks._arch_supported(*cc, arch) is ok


def test_unwritable_report_dir_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    [diag] = checks.check_report_dir(blocker / "reports")(_hw())
    assert diag.status is Health.FAIL and "cannot write reports" in diag.summary


def test_oversubscribed_threads_warn() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(512)
        [diag] = checks.check_threads(_hw())
    finally:
        torch.set_num_threads(before)
    assert diag.status is Health.WARN and "OMP_NUM_THREADS" in diag.fix


def test_a_crashing_probe_becomes_a_failed_diagnostic(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    def broken(_: HardwareInfo) -> list[Diagnostic]:
        raise RuntimeError("probe exploded")
    monkeypatch.setattr(checks, "check_threads", broken)
    found = {d.name: d for d in run_diagnostics(tmp_path, gpu_smoke=False)}
    assert found["threads"].status is Health.FAIL
    assert "probe exploded" in found["threads"].summary


def test_json_report_and_exit_code_agree(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = doctor_main(["--json", "--report-dir", str(tmp_path)])
    report = json.loads(capsys.readouterr().out)
    assert code == report["exit_code"]
    assert report["status"] in ("ok", "warn", "fail")
    assert {"python", "torch", "determinism"} <= {d["name"] for d in report["diagnostics"]}
    assert report["hardware"]["torch_version"] == torch.__version__


def test_unwritable_report_dir_makes_doctor_exit_1(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert doctor_main(["--report-dir", str(tmp_path / "file" / "x"), "--no-gpu-smoke"]) == 1
    assert "cannot write reports" in capsys.readouterr().out


def test_junit_xml_has_one_testcase_per_diagnostic(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from junitparser import Failure, JUnitXml, Skipped

    (tmp_path / "file").write_text("")
    out = tmp_path / "doctor.xml"
    doctor_main(["--json", "--junit-xml", str(out), "--report-dir",
                 str(tmp_path / "file" / "x")])
    report = json.loads(capsys.readouterr().out)
    cases = [case for suite in JUnitXml.fromfile(str(out)) for case in suite]
    assert [c.name for c in cases] == [d["name"] for d in report["diagnostics"]]
    by_name = {c.name: c for c in cases}
    assert isinstance(by_name["report_dir"].result[0], Failure)
    skipped = [d["name"] for d in report["diagnostics"] if d["status"] == "skip"]
    assert all(isinstance(by_name[n].result[0], Skipped) for n in skipped)


def test_full_report_prints_details(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doctor_main(["--full-report", "--report-dir", str(tmp_path), "--no-gpu-smoke"])
    out = capsys.readouterr().out
    assert "tb-doctor" in out and "executable:" in out and "torch_threads:" in out
