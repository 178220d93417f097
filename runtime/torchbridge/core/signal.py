"""Outputs without signal: comparing them proves nothing.

A model whose output is all zeros, or values around 1e-9, passes every comparison: golden
files, determinism and batch invariance are trivially green (torchvision's ViT initialises
its classification head to zero, so an untrained ``vit_b_16()`` returns zero logits). The
checks that compare outputs add :func:`no_signal_note` to their message, so such a pass says
what it is worth.
"""

from __future__ import annotations

from typing import Any

import torch

from torchbridge.core.trees import tensor_leaves

#: Largest absolute value of an output that carries no signal.
SIGNAL_FLOOR = 1e-6


def silent_outputs(output: Any, floor: float = SIGNAL_FLOOR) -> list[str]:
    """Paths of floating-point output tensors whose every element is within ``floor`` of
    zero (``output.logits``); empty tensors and integer outputs are not judged."""
    silent = []
    for path, tensor in tensor_leaves(output):
        if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
            continue
        with torch.no_grad():
            peak = float(tensor.detach().abs().max())
        if peak <= floor:
            silent.append(path)
    return silent


def no_signal_note(output: Any, floor: float = SIGNAL_FLOOR) -> str:
    """``"; warning: ..."`` naming the outputs without signal, or ``""``."""
    silent = silent_outputs(output, floor)
    if not silent:
        return ""
    shown = ", ".join(silent[:3]) + (f" and {len(silent) - 3} more" if len(silent) > 3 else "")
    return (f"; warning: no signal in {shown} (every value within {floor:g} of 0), so this "
            "comparison cannot fail; an untrained or zero-initialised head (e.g. "
            "torchvision's ViT) gives such outputs: load trained weights")
