"""``multi_gpu``: the model gives the same outputs on every visible GPU."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from torchbridge.checks import _tolerances
from torchbridge.checks._placement import not_on, ran_on
from torchbridge.checks.base import Check, RunContext
from torchbridge.checks.registry import register
from torchbridge.core.compare import OutputComparison, compare_outputs
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.signal import no_signal_note
from torchbridge.core.subject import Subject, call_model, to_device
from torchbridge.errors import HardwareSkipped


@dataclass(frozen=True)
class MultiGpuConfig(_tolerances.ToleranceConfig):
    """``rtol``/``atol``: tolerance between GPUs (default per dtype, as torch.testing:
    identical GPUs run identical kernels). ``per_output`` overrides by output."""


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@register
class MultiGpuCheck(Check[MultiGpuConfig]):
    name = "multi_gpu"
    summary = "Outputs agree across every visible GPU."

    def run(self, subject: Subject, config: MultiGpuConfig, context: RunContext) -> CheckResult:
        count = visible_gpus()
        if count < 2:
            raise HardwareSkipped(f"needs 2 GPUs, found {count}")
        source = subject.model
        outputs = {}
        for index in range(count):
            device = f"cuda:{index}"
            model = copy.deepcopy(source)
            if isinstance(model, torch.nn.Module):
                model = model.to(device)
            with torch.inference_mode():
                output = call_model(model, to_device(subject.inputs, device))
            if not ran_on(model, output, device):
                return CheckResult(self.name, Status.FAILED, not_on(device), subject.device)
            outputs[device] = to_device(output, "cpu")
            del model
        first, *others = outputs
        compared: dict[str, OutputComparison] = {
            device: compare_outputs(outputs[device], outputs[first], rtol=config.rtol,
                                    atol=config.atol, per_output=config.per_output)
            for device in others}
        result = self.result_for(subject)
        result.metric("gpus", count)
        result.metric("max_abs_error", max(c.max_abs for c in compared.values()))
        result.details["comparisons"] = {d: c.to_dict() for d, c in compared.items()}
        bad = [f"{device} vs {first}: {c.describe()}" for device, c in compared.items()
               if not c.ok]
        if bad:
            result.status = Status.FAILED
            result.message = "outputs differ between GPUs: " + " | ".join(bad)
        else:
            result.message = (f"outputs agree on {count} GPUs ({', '.join(outputs)})"
                              + no_signal_note(outputs[first]))
        return result
