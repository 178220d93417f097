"""The environment diagnostics behind ``tb-doctor``, one function each.

Every function returns :class:`Diagnostic` objects and never raises: a probe that
crashes is itself reported as a failed diagnostic by :func:`run_diagnostics`.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torchbridge.doctor.model import Diagnostic, Health
from torchbridge.hardware import HardwareInfo, detect

GiB = 1 << 30
MIN_TORCH = (2, 6)  # torch.load defaults to weights_only=True from 2.6 on
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_python(_: HardwareInfo) -> list[Diagnostic]:
    version = platform.python_version()
    ok = sys.version_info >= (3, 10)
    return [Diagnostic("python", "runtime", Health.OK if ok else Health.FAIL,
                       f"Python {version} ({platform.python_implementation()})",
                       {"version": version, "executable": sys.executable},
                       "" if ok else "use Python 3.10 or newer")]


def check_torch(hw: HardwareInfo) -> list[Diagnostic]:
    version = torch.__version__
    build = "rocm" if hw.hip_version else "cuda" if hw.cuda_version else "cpu"
    ok = _version_tuple(version)[:2] >= MIN_TORCH
    return [Diagnostic("torch", "runtime", Health.OK if ok else Health.FAIL,
                       f"torch {version} ({build} build)",
                       {"version": version, "build": build, "debug": torch.version.debug,
                        "git": torch.version.git_version},
                       "" if ok else "upgrade to torch>=2.6 (safe weights_only loading)")]


def check_accelerator_runtime(hw: HardwareInfo) -> list[Diagnostic]:
    details: dict[str, Any] = {"cuda_runtime": hw.cuda_version, "hip_runtime": hw.hip_version,
               "driver": hw.driver_version, "nvml_error": hw.nvml_error,
               "cuda_available": hw.cuda_available}
    if not hw.cuda_version and not hw.hip_version:
        return [Diagnostic("cuda_runtime", "gpu", Health.SKIP,
                           "CPU-only torch build: no CUDA/ROCm runtime", details)]
    runtime = f"CUDA {hw.cuda_version}" if hw.cuda_version else f"ROCm/HIP {hw.hip_version}"
    if not hw.cuda_available and _visible_devices() == []:
        return [Diagnostic("cuda_runtime", "gpu", Health.SKIP,
                           f"{runtime} build; CUDA_VISIBLE_DEVICES hides every GPU", details)]
    if not hw.cuda_available:
        return [Diagnostic("cuda_runtime", "gpu", Health.WARN,
                           f"{runtime} build, but no GPU is usable", details,
                           "check the driver (nvidia-smi / rocm-smi) and CUDA_VISIBLE_DEVICES")]
    driver_cuda = _driver_cuda_version()
    details["driver_cuda_version"] = driver_cuda
    if hw.cuda_version and driver_cuda:
        need = _version_tuple(hw.cuda_version)
        if driver_cuda[0] < need[0]:
            return [Diagnostic("cuda_runtime", "gpu", Health.FAIL,
                               f"{runtime} needs a driver for CUDA {need[0]}.x; the driver "
                               f"supports {driver_cuda[0]}.{driver_cuda[1]}", details,
                               "upgrade the NVIDIA driver or install a torch built for an "
                               "older CUDA")]
    driver = f", driver {hw.driver_version}" if hw.driver_version else ""
    return [Diagnostic("cuda_runtime", "gpu", Health.OK, f"{runtime}{driver}", details)]


def _driver_cuda_version() -> tuple[int, int] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            value = int(pynvml.nvmlSystemGetCudaDriverVersion())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML: the driver's CUDA version is simply unknown
        return None
    return value // 1000, (value % 1000) // 10


def _visible_devices() -> list[str] | None:
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def check_gpu_agreement(hw: HardwareInfo) -> list[Diagnostic]:
    details = {"torch": [g.name for g in hw.gpus], "nvml": [g.name for g in hw.nvml_gpus],
               "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
               "nvml_error": hw.nvml_error}
    health, summary, fix = _gpu_agreement(hw)
    return [Diagnostic("gpu_visibility", "gpu", health, summary, details, fix)]


def _gpu_agreement(hw: HardwareInfo) -> tuple[Health, str, str]:
    """Whether torch and NVML see the same GPUs: health, what was seen, what to do."""
    torch_n, nvml_n = len(hw.gpus), len(hw.nvml_gpus)
    if not torch_n and not nvml_n:
        return Health.SKIP, "no GPU visible to torch or NVML", ""
    if hw.hip_version:
        return Health.OK, f"{torch_n} ROCm GPU(s) visible to torch (NVML does not apply)", ""
    if not nvml_n:
        return (Health.WARN, f"torch sees {torch_n} GPU(s) but NVML cannot be read",
                "pip install 'pytest-torchbridge[nvidia]' for utilisation and driver checks")
    visible = _visible_devices()
    if not torch_n:
        if visible == []:
            return Health.SKIP, f"CUDA_VISIBLE_DEVICES hides all {nvml_n} GPU(s) from torch", ""
        return (Health.FAIL, f"NVML sees {nvml_n} GPU(s) but torch sees none",
                "check CUDA_VISIBLE_DEVICES and that torch is a CUDA build matching the "
                "driver")
    nvml_ids = [g.uuid for g in hw.nvml_gpus]
    unknown = [g.uuid for g in hw.gpus
               if g.uuid and not any(_same_uuid(g.uuid, n) for n in nvml_ids)]
    if unknown:
        return Health.FAIL, f"torch sees GPU(s) NVML does not know: {unknown}", ""
    expected = nvml_n if visible is None else min(len(visible), nvml_n)
    if torch_n != expected:
        return (Health.WARN, f"torch sees {torch_n} GPU(s), NVML {nvml_n}, "
                f"CUDA_VISIBLE_DEVICES allows {expected}", "check CUDA_VISIBLE_DEVICES")
    return Health.OK, f"torch and NVML agree on {torch_n} GPU(s)", ""


def _same_uuid(torch_uuid: str, nvml_uuid: str | None) -> bool:
    if not nvml_uuid:
        return False
    strip = lambda s: s.lower().removeprefix("gpu-").replace("-", "")  # noqa: E731
    return strip(torch_uuid) == strip(nvml_uuid)


def check_gpus(hw: HardwareInfo) -> list[Diagnostic]:
    """Per GPU: free memory, compute capability, bf16/fp16, and whether this torch build
    ships kernels for it."""
    out = []
    arch_list = torch.cuda.get_arch_list() if hw.cuda_available else []
    for gpu in hw.gpus:
        major, minor = gpu.compute_capability or (0, 0)
        free = gpu.free_memory
        details: dict[str, Any] = {
            "name": gpu.name, "total_memory": gpu.total_memory, "free_memory": free,
            "compute_capability": f"{major}.{minor}", "uuid": gpu.uuid,
            "bf16": bool(torch.cuda.is_bf16_supported()) if major >= 8 else False,
            "fp16": (major, minor) >= (5, 3), "torch_arch_list": arch_list}
        status, fix = Health.OK, ""
        summary = (f"cuda:{gpu.index} {gpu.name}: sm_{major}{minor}, "
                   f"{(free or 0) / GiB:.1f}/{gpu.total_memory / GiB:.1f} GiB free, "
                   f"bf16 {'yes' if details['bf16'] else 'no'}, "
                   f"fp16 {'yes' if details['fp16'] else 'no'}")
        if not hw.hip_version and arch_list and not _arch_supported(major, minor, arch_list):
            status, fix = Health.FAIL, "install a torch build with kernels for this GPU"
            summary += f"; torch has no kernels for sm_{major}{minor} ({' '.join(arch_list)})"
        elif free is not None and free < 0.1 * gpu.total_memory:
            status, fix = Health.WARN, "another process holds most of this GPU's memory"
            summary += " (under 10% free)"
        out.append(Diagnostic(f"gpu{gpu.index}", "gpu", status, summary, details, fix))
    return out


def _arch_supported(major: int, minor: int, arch_list: list[str]) -> bool:
    target = major * 10 + minor
    for arch in arch_list:
        kind, _, number = arch.partition("_")
        digits = "".join(ch for ch in number if ch.isdigit())
        if not digits:
            continue
        value = int(digits)
        # sm_XY runs on the same major with an equal or higher minor; compute_XY (PTX)
        # is JIT-compiled for anything newer.
        if (kind == "sm" and value // 10 == major and value <= target) or \
                (kind == "compute" and value <= target):
            return True
    return False


def check_cudnn(hw: HardwareInfo) -> list[Diagnostic]:
    if not hw.cuda_available:
        return [Diagnostic("cudnn", "gpu", Health.SKIP, "no GPU: cuDNN not used")]
    if not torch.backends.cudnn.is_available():
        return [Diagnostic("cudnn", "gpu", Health.WARN, "cuDNN is not available to torch",
                           fix="install a torch build that bundles cuDNN")]
    version = torch.backends.cudnn.version()
    return [Diagnostic("cudnn", "gpu", Health.OK, f"cuDNN {version}",
                       {"version": version, "enabled": torch.backends.cudnn.enabled,
                        "benchmark": torch.backends.cudnn.benchmark,
                        "deterministic": torch.backends.cudnn.deterministic})]


def check_onnxruntime(hw: HardwareInfo) -> list[Diagnostic]:
    try:
        import onnxruntime as ort
    except ImportError:
        return [Diagnostic("onnxruntime", "runtime", Health.SKIP, "onnxruntime not installed",
                           fix="pip install 'pytest-torchbridge[onnx]'")]
    providers = ort.get_available_providers()
    details = {"version": ort.__version__, "providers": providers,
               "device": ort.get_device()}
    if hw.cuda_available and not hw.hip_version and "CUDAExecutionProvider" not in providers:
        return [Diagnostic("onnxruntime", "runtime", Health.WARN,
                           f"onnxruntime {ort.__version__} has no CUDA provider on a GPU "
                           "machine", details, "pip install onnxruntime-gpu (instead of "
                           "onnxruntime) to run ONNX checks on the GPU")]
    return [Diagnostic("onnxruntime", "runtime", Health.OK,
                       f"onnxruntime {ort.__version__}: {', '.join(providers)}", details)]


def check_determinism(hw: HardwareInfo) -> list[Diagnostic]:
    """Enforce deterministic algorithms for a moment and run a matmul on each device."""
    config = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    details: dict[str, Any] = {"CUBLAS_WORKSPACE_CONFIG": config}
    devices = ["cpu"] + (["cuda"] if hw.cuda_available else [])
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    errors = {}
    try:
        torch.use_deterministic_algorithms(True)
        for device in devices:
            try:
                a = torch.randn(64, 64, device=device)
                (a @ a).sum().item()
            except RuntimeError as exc:
                errors[device] = str(exc).splitlines()[0]
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)
    details["errors"] = errors
    cuda_config_ok = config in DETERMINISTIC_CUBLAS
    if errors:
        return [Diagnostic("determinism", "reproducibility", Health.WARN,
                           f"deterministic algorithms cannot be enforced on "
                           f"{', '.join(errors)}", details,
                           "export CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting Python")]
    if hw.cuda_available and not hw.hip_version and not cuda_config_ok:
        return [Diagnostic("determinism", "reproducibility", Health.WARN,
                           "CUBLAS_WORKSPACE_CONFIG is not set: cuBLAS is not deterministic",
                           details, "export CUBLAS_WORKSPACE_CONFIG=:4096:8")]
    return [Diagnostic("determinism", "reproducibility", Health.OK,
                       f"deterministic algorithms can be enforced on {', '.join(devices)}",
                       details)]


def check_threads(hw: HardwareInfo) -> list[Diagnostic]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    threads = torch.get_num_threads()
    details = {"torch_threads": threads, "interop_threads": torch.get_num_interop_threads(),
               "cpu_count": os.cpu_count(), "usable_cpus": usable,
               **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    if threads > usable:
        return [Diagnostic("threads", "cpu", Health.WARN,
                           f"torch uses {threads} threads on {usable} usable CPU(s): "
                           "oversubscribed, latency will be noisy", details,
                           f"set OMP_NUM_THREADS={usable} or torch.set_num_threads({usable})")]
    return [Diagnostic("threads", "cpu", Health.OK,
                       f"torch uses {threads} of {usable} usable CPU(s), "
                       f"{details['interop_threads']} inter-op", details)]


def check_host_memory(_: HardwareInfo) -> list[Diagnostic]:
    import psutil

    memory = psutil.virtual_memory()
    details = {"total": memory.total, "available": memory.available}
    summary = f"{memory.available / GiB:.1f} of {memory.total / GiB:.1f} GiB available"
    if memory.available < GiB:
        return [Diagnostic("host_memory", "cpu", Health.WARN, summary + " (under 1 GiB)",
                           details, "free memory before measuring")]
    return [Diagnostic("host_memory", "cpu", Health.OK, summary, details)]


def check_extras(_: HardwareInfo) -> list[Diagnostic]:
    from importlib.metadata import PackageNotFoundError, requires, version

    try:
        from packaging.requirements import Requirement
    except ImportError:  # packaging comes with pytest; without it, nothing to parse with
        return [Diagnostic("extras", "runtime", Health.SKIP, "packaging not installed")]
    try:
        reqs = requires("pytest-torchbridge") or []
    except PackageNotFoundError:
        return [Diagnostic("extras", "runtime", Health.SKIP,
                           "pytest-torchbridge is not installed as a distribution")]
    extras: dict[str, dict[str, str | None]] = {}
    for raw in reqs:
        req = Requirement(raw)
        if not req.marker or "extra" not in str(req.marker):
            continue
        extra = str(req.marker).split("extra ==")[-1].strip().strip("'\"")
        if extra == "dev":
            continue
        try:
            found: str | None = version(req.name)
        except PackageNotFoundError:
            found = None
        extras.setdefault(extra, {})[req.name] = found
    complete = sorted(e for e, pkgs in extras.items() if all(pkgs.values()))
    missing = sorted(set(extras) - set(complete))
    summary = f"installed: {', '.join(complete) or 'none'}"
    if missing:
        summary += f"; not installed: {', '.join(missing)}"
    fix = f"pip install 'pytest-torchbridge[{','.join(missing)}]'" if missing else ""
    return [Diagnostic("extras", "runtime", Health.OK, summary, {"extras": extras}, fix)]


def check_report_dir(report_dir: Path) -> Callable[[HardwareInfo], list[Diagnostic]]:
    def probe(_: HardwareInfo) -> list[Diagnostic]:
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=report_dir, prefix=".tb-doctor-"):
                pass
        except OSError as exc:
            return [Diagnostic("report_dir", "io", Health.FAIL,
                               f"cannot write reports to {report_dir}: {exc.strerror or exc}",
                               {"path": str(report_dir)},
                               "make it writable or pass --report-dir")]
        return [Diagnostic("report_dir", "io", Health.OK, f"{report_dir} is writable",
                           {"path": str(report_dir.resolve())})]
    return probe


def check_gpu_smoke(hw: HardwareInfo) -> list[Diagnostic]:
    """On each GPU: allocate, run fp32/fp16/bf16 matmuls, compare with the CPU, and time
    them with CUDA events."""
    if not hw.cuda_available:
        return [Diagnostic("gpu_smoke", "gpu", Health.SKIP, "no GPU")]
    out = []
    for gpu in hw.gpus:
        out.append(_smoke_one(gpu.index, (gpu.compute_capability or (0, 0))[0] >= 8))
    return out


def _smoke_one(index: int, bf16: bool) -> Diagnostic:
    device = torch.device("cuda", index)
    n = 2048
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=generator), torch.randn(n, n, generator=generator)
    expected = (a.double() @ b.double())
    details: dict[str, Any] = {"size": n}
    problems = []
    dtypes = [torch.float32, torch.float16] + ([torch.bfloat16] if bf16 else [])
    with torch.cuda.device(device):
        for dtype in dtypes:
            x, y = a.to(device, dtype), b.to(device, dtype)
            (x @ y).sum().item()  # warm-up: context, cuBLAS handles
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(10):
                result = x @ y
            end.record()
            torch.cuda.synchronize(device)
            ms = start.elapsed_time(end) / 10
            err = ((result.double().cpu() - expected).abs().max() /
                   expected.abs().max()).item()
            name = str(dtype).removeprefix("torch.")
            details[name] = {"ms": round(ms, 4), "tflops": round(2 * n**3 / ms / 1e9, 1),
                             "max_rel_err": err}
            if err > (2e-2 if dtype != torch.float32 else 1e-2):
                problems.append(f"{name} matmul off by {err:.2e}")
        details["peak_allocated"] = torch.cuda.max_memory_allocated(device)
    rates = ", ".join(f"{k} {v['tflops']} TFLOPS" for k, v in details.items()
                      if isinstance(v, dict))
    if problems:
        return Diagnostic(f"gpu{index}_smoke", "gpu", Health.FAIL,
                          f"cuda:{index}: " + "; ".join(problems), details,
                          "the GPU computes wrong results: check ECC errors (nvidia-smi -q)")
    return Diagnostic(f"gpu{index}_smoke", "gpu", Health.OK, f"cuda:{index} matmul: {rates}",
                      details)


def run_diagnostics(report_dir: str | Path = ".", *, gpu_smoke: bool = True
                    ) -> list[Diagnostic]:
    """Every diagnostic, in a stable order; a probe that crashes is a failed diagnostic."""
    hw = detect()
    probes: list[tuple[str, Callable[[HardwareInfo], list[Diagnostic]]]] = [
        ("python", check_python), ("torch", check_torch),
        ("cuda_runtime", check_accelerator_runtime), ("gpu_visibility", check_gpu_agreement),
        ("gpus", check_gpus), ("cudnn", check_cudnn), ("onnxruntime", check_onnxruntime),
        ("determinism", check_determinism), ("threads", check_threads),
        ("host_memory", check_host_memory), ("extras", check_extras),
        ("report_dir", check_report_dir(Path(report_dir)))]
    if gpu_smoke:
        probes.append(("gpu_smoke", check_gpu_smoke))
    results: list[Diagnostic] = []
    for name, probe in probes:
        start = time.perf_counter()
        try:
            found = probe(hw)
        except Exception as exc:  # a crashing probe is a finding, not a crash
            found = [Diagnostic(name, "doctor", Health.FAIL,
                                f"the {name} probe raised {type(exc).__name__}: {exc}",
                                {"traceback": traceback.format_exc()})]
        for diagnostic in found:
            diagnostic.details.setdefault("probe_s", round(time.perf_counter() - start, 4))
        results.extend(found)
    return results
