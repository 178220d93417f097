"""``cpu_fallback``: the model also runs on the CPU and matches the accelerator's output."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from torchbridge.checks import _tolerances
from torchbridge.checks._placement import not_on, ran_on
from torchbridge.checks.base import Check, RunContext
from torchbridge.checks.registry import register
from torchbridge.core.compare import compare_outputs
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.signal import no_signal_note
from torchbridge.core.subject import Subject, call_model, to_device
from torchbridge.errors import HardwareSkipped


@dataclass(frozen=True)
class CpuFallbackConfig(_tolerances.ToleranceConfig):
    """``rtol``/``atol``: tolerance between device and CPU outputs (default per dtype,
    loosened for cross-device kernels: float32 rtol=1e-3, atol=1e-4; float16 1e-2/1e-3;
    bfloat16 5e-2/1e-2). ``per_output``: ``{"logits": (rtol, atol)}`` overrides."""


@register
class CpuFallbackCheck(Check[CpuFallbackConfig]):
    name = "cpu_fallback"
    summary = "A copy of the model on the CPU matches the accelerator's outputs."

    def run(self, subject: Subject, config: CpuFallbackConfig, context: RunContext) -> CheckResult:
        if not _tolerances.is_accelerator(subject.device):
            raise HardwareSkipped("the check runs on the CPU already; cpu_fallback compares an "
                               "accelerator with the CPU (run with --tb-hardware=cuda)")
        model, _ = subject.placed()
        on_device = subject.run(model=model)
        result = self.result_for(subject)
        if not ran_on(model, on_device, subject.device):
            result.status = Status.FAILED
            result.message = not_on(subject.device)
            return result
        cpu_model = copy.deepcopy(model)
        if isinstance(cpu_model, torch.nn.Module):
            cpu_model = cpu_model.to("cpu")
        try:
            with torch.inference_mode():
                on_cpu = call_model(cpu_model, to_device(subject.inputs, "cpu"))
        except Exception as exc:  # the model's failure on the CPU is the finding
            result.status = Status.FAILED
            result.message = f"the model does not run on the CPU: {type(exc).__name__}: {exc}"
            return result
        per_output = _tolerances.effective_per_output(
            on_device, subject.device, config.rtol, config.atol, config.per_output, loosen=True)
        comparison = compare_outputs(on_cpu, to_device(on_device, "cpu"), rtol=config.rtol,
                                     atol=config.atol, per_output=per_output)
        result.metric("max_abs_error", comparison.max_abs)
        result.metric("max_rel_error", comparison.max_rel)
        result.details["comparison"] = comparison.to_dict()
        if comparison.ok:
            result.message = (f"CPU output matches {subject.device} (max abs "
                              f"{comparison.max_abs:.3g}, max rel {comparison.max_rel:.3g})"
                              + no_signal_note(on_cpu))
        else:
            result.status = Status.FAILED
            result.message = f"CPU output differs from {subject.device}: {comparison.describe()}"
        return result
