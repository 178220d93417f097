"""Evidence that a model really ran on the device a check compares.

``model.to(device)`` moves an ``nn.Module``; a plain callable (a function closing over its
weights, a wrapper that is not a module) stays where it was built. A cross-device check on
such a model would compare the CPU with itself and pass. A run counts as on ``device`` when
the model holds a parameter or buffer there, or an output tensor came back there.
"""

from __future__ import annotations

from typing import Any

import torch

from torchbridge.core.trees import tensor_leaves


def _same(tensor: torch.Tensor, device: torch.device) -> bool:
    if tensor.device.type != device.type:
        return False
    return device.index is None or tensor.device.index in (device.index, None)


def ran_on(model: Any, output: Any, device: str) -> bool:
    """Whether ``model`` (after ``.to(device)``) or its ``output`` lives on ``device``."""
    target = torch.device(device)
    if isinstance(model, torch.nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            if _same(tensor, target):
                return True
    return any(_same(leaf, target) for _, leaf in tensor_leaves(output))


def not_on(device: str) -> str:
    """The failure message when :func:`ran_on` says no."""
    return (f"nothing shows the model ran on {device}: it holds no parameter there and its "
            "outputs came back elsewhere (a callable that is not an nn.Module is not moved "
            "by .to()), so the comparison would be the CPU against itself; pass an "
            "nn.Module or place the model on the device yourself")
