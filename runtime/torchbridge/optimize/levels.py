"""The transformations behind each optimization level.

* ``inference``: a copy in eval mode with batch norm folded into the preceding conv or
  linear layer (torch.fx where the model traces, adjacent ``nn.Sequential`` pairs where it
  does not), called under ``torch.inference_mode``.
* ``compile``: ``torch.compile`` of the inference model (Inductor needs a C++ compiler on
  the CPU; without one, or when compilation fails, the level is skipped with the reason).
* ``quantized``: dynamic int8 quantization of ``Linear``/``LSTM``/``GRU`` layers on the CPU
  (``torch.ao.quantization.quantize_dynamic``); numerics change by design.
"""

from __future__ import annotations

import copy
import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from torchbridge.core.subject import call_model
from torchbridge.errors import CheckSkipped
from torchbridge.export.common import condensed, quiet, warning_texts

LEVELS = ("inference", "compile", "quantized")
_BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


@dataclass
class Transformed:
    """An optimized model: what to call, the module to save, and what was done."""

    level: str
    module: Any
    call: Callable[[Any], Any]
    notes: list[str] = field(default_factory=list)


def _inference_call(module: Any) -> Callable[[Any], Any]:
    def run(inputs: Any) -> Any:
        with torch.inference_mode():
            return call_model(module, inputs)

    return run


def count_batch_norms(model: torch.nn.Module) -> int:
    return sum(isinstance(m, _BATCH_NORMS) for m in model.modules())


def fold_sequential_pairs(model: torch.nn.Module) -> int:
    """Fold each BatchNorm that directly follows a conv/linear layer inside an
    ``nn.Sequential`` into that layer (eval-mode numerics); returns how many were folded."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    folded = 0
    for container in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        names = list(container._modules)
        for first, second in itertools.pairwise(names):
            layer, norm = container._modules[first], container._modules[second]
            if not isinstance(norm, _BATCH_NORMS) or not norm.track_running_stats:
                continue
            if isinstance(layer, _CONVS):
                container._modules[first] = fuse_conv_bn_eval(layer, norm)
            elif isinstance(layer, torch.nn.Linear) and isinstance(norm, torch.nn.BatchNorm1d):
                container._modules[first] = fuse_linear_bn_eval(layer, norm)
            else:
                continue
            container._modules[second] = torch.nn.Identity()
            folded += 1
    return folded


def inference(model: Any) -> Transformed:
    """Eval mode, inference mode and batch-norm folding, on a copy of ``model``."""
    if not isinstance(model, torch.nn.Module):
        return Transformed("inference", model, _inference_call(model),
                           ["not an nn.Module: only inference mode applied"])
    module = copy.deepcopy(model).eval()
    notes = []
    before = count_batch_norms(module)
    if before:
        try:
            with quiet():  # importing fx's optimization module warns about TorchScript
                from torch.fx.experimental.optimization import fuse

                fused = fuse(module, inplace=False)
            if count_batch_norms(fused) < before:
                notes.append(f"torch.fx folded {before - count_batch_norms(fused)} batch "
                             "norm(s) into conv/linear layers")
                module = fused
        except Exception as exc:  # models with Python control flow do not fx-trace
            notes.append(f"torch.fx tracing failed ({condensed(str(exc), 120)}); folding "
                         "adjacent nn.Sequential pairs instead")
        if count_batch_norms(module) == before:
            folded = fold_sequential_pairs(module)
            if folded:
                notes.append(f"folded {folded} batch norm(s) in nn.Sequential pairs")
    if not notes:
        notes.append("eval + inference mode (no batch norm to fold)")
    return Transformed("inference", module, _inference_call(module), notes)


def compiler_missing() -> str | None:
    """Why torch.compile cannot build CPU kernels here, or ``None`` when it can."""
    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return "torch.compile (Inductor) needs a C++ compiler on the CPU; install g++"
    return None


def compiled(model: Any, device: str, sample: Any) -> Transformed:
    """``torch.compile`` of the inference model, compiled now on ``sample``."""
    base = inference(model)
    if not device.startswith("cuda"):
        reason = compiler_missing()
        if reason:
            raise CheckSkipped(reason)
    try:
        with quiet() as caught:
            fn = torch.compile(base.module)
            _inference_call(fn)(sample)
    except Exception as exc:
        raise CheckSkipped(f"torch.compile does not work here: {type(exc).__name__}: "
                           f"{condensed(str(exc), 300)}") from None
    notes = [*base.notes, "torch.compile (Inductor, default mode); the saved artifact is the "
             "inference model, compile it again after loading"]
    notes += [f"warning: {w}" for w in warning_texts(caught, 3)]
    return Transformed("compile", base.module, _inference_call(fn), notes)


_QUANTIZABLE = (torch.nn.Linear, torch.nn.LSTM, torch.nn.GRU)
_TRANSFORMER_LAYERS = (torch.nn.TransformerEncoderLayer, torch.nn.TransformerDecoderLayer,
                       torch.nn.MultiheadAttention)


def quantizable(model: torch.nn.Module) -> tuple[list[str], int]:
    """Names of layers dynamic quantization can replace, and how many were held back
    because they sit inside a transformer layer."""
    inside = {f"{name}.{child}" if name else child
              for name, module in model.named_modules()
              if isinstance(module, _TRANSFORMER_LAYERS)
              for child, _ in module.named_modules() if child}
    names, held_back = [], 0
    for name, module in model.named_modules():
        if isinstance(module, _QUANTIZABLE):
            if name in inside:
                held_back += 1
            else:
                names.append(name)
    return names, held_back


def quantized(model: Any, device: str) -> Transformed:
    """Dynamic int8 quantization of Linear/LSTM/GRU layers (CPU only)."""
    if not device.startswith("cpu"):
        raise CheckSkipped(f"dynamic int8 quantization runs on the CPU only, not {device}")
    if not isinstance(model, torch.nn.Module):
        raise CheckSkipped("dynamic quantization needs an nn.Module")
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        raise CheckSkipped("this torch build has no quantized CPU engine")
    module = copy.deepcopy(model).eval()
    names, held_back = quantizable(module)
    if not names:
        raise CheckSkipped("no Linear/LSTM/GRU layer to quantize" + (
            f" ({held_back} inside transformer layers, whose fast path reads their float "
            "weights)" if held_back else ""))
    with quiet():
        module = torch.ao.quantization.quantize_dynamic(module, set(names), dtype=torch.qint8)
    count = sum(type(module.get_submodule(n)).__module__.startswith("torch.ao.nn.quantized")
                for n in names)
    notes = [f"dynamic int8: {count} layer(s) quantized ({torch.backends.quantized.engine} "
             "engine); accuracy is compared with looser, reported tolerances"]
    if held_back:
        notes.append(f"{held_back} layer(s) inside nn.Transformer*Layer kept in float: "
                     "their fused fast path reads the float weights directly")
    return Transformed("quantized", module, _inference_call(module), notes)
