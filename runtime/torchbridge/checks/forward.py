"""``forward``: the model runs, its outputs are finite, and it is in eval mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from torchbridge.checks.base import Check, CheckConfig, RunContext
from torchbridge.checks.registry import register
from torchbridge.core.compare import compare_outputs, nonfinite_outputs
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import Subject

# Modules whose behaviour differs between train() and eval().
_MODE_SENSITIVE = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm,
                   torch.nn.modules.instancenorm._InstanceNorm, torch.nn.AlphaDropout)


@dataclass(frozen=True)
class ForwardConfig(CheckConfig):
    """``allow_training_mode``: accept a model left in training mode."""

    allow_training_mode: bool = False


def training_modules(model: Any) -> list[str]:
    """Names of submodules in training mode whose behaviour differs from eval mode."""
    if not isinstance(model, torch.nn.Module):
        return []
    return [f"{name} ({type(module).__name__})" if name else type(module).__name__
            for name, module in model.named_modules()
            if module.training and isinstance(module, _MODE_SENSITIVE)]


def in_training_mode(model: Any) -> bool:
    """Whether any submodule is in training mode (``model.train()`` was left on)."""
    return isinstance(model, torch.nn.Module) and any(m.training for m in model.modules())


def _against_eval(subject: Subject, model: torch.nn.Module, output: Any) -> tuple[Status, str]:
    """A model in training mode without dropout or norm modules may still read
    ``self.training`` (transformers' attention applies dropout functionally): run it once
    in eval mode, restoring each submodule's mode after, and compare."""
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        evaluated = subject.run(model=model)
    finally:
        for module, training in modes.items():
            module.training = training
    comparison = compare_outputs(output, evaluated)
    if comparison.ok:
        return Status.PASSED, ("forward pass ran; all outputs finite (the model is in "
                               "training mode, but model.eval() gives the same outputs)")
    return Status.FAILED, ("model is in training mode and model.eval() changes its outputs "
                           "(its forward reads self.training, e.g. functional dropout in "
                           f"attention): {comparison.describe()}. Call model.eval() before "
                           "serving.")


@register
class ForwardCheck(Check[ForwardConfig]):
    name = "forward"
    summary = "The model runs on the sample input, outputs are finite, eval mode is set."

    def run(self, subject: Subject, config: ForwardConfig, context: RunContext) -> CheckResult:
        result = self.result_for(subject)
        model, _ = subject.placed()
        in_training = training_modules(model)
        output = subject.run(model=model)
        bad = nonfinite_outputs(output)
        result.metric("nonfinite_outputs", len(bad), "1")
        if bad:
            result.status = Status.FAILED
            result.message = f"non-finite outputs: {'; '.join(bad)}"
        elif in_training and not config.allow_training_mode:
            result.status = Status.FAILED
            shown = ", ".join(in_training[:5]) + (" ..." if len(in_training) > 5 else "")
            result.message = (f"model is in training mode; these modules behave differently "
                              f"in eval mode: {shown}. Call model.eval() before serving.")
        elif in_training_mode(model) and not config.allow_training_mode:
            result.status, result.message = _against_eval(subject, model, output)
        else:
            result.message = "forward pass ran; all outputs finite"
        result.details["training_modules"] = in_training
        return result
