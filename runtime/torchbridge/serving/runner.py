"""Running one batch: join the requests' arrays, one forward pass, split the outputs back.

Runs on the batcher's worker thread. Inputs arrive as numpy arrays (parsed on the event
loop) and become tensors with ``torch.from_numpy`` (no copy); outputs leave as numpy views,
one slice per request, so serialisation needs no further copies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from torchbridge.core.subject import call_model
from torchbridge.serving.batcher import Work
from torchbridge.serving.padding import Padding, pad_batch, unpad
from torchbridge.serving.schemas import Signature


def to_tree(obj: Any) -> Any:
    """Model outputs as plain data: tensors become C-contiguous numpy arrays; tuples become
    lists; mappings, named tuples and dataclasses become dicts."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if tensor.dtype is torch.bfloat16:
            tensor = tensor.float()
        return np.ascontiguousarray(tensor.numpy())
    if isinstance(obj, Mapping):
        return {str(k): to_tree(v) for k, v in obj.items()}
    if hasattr(obj, "_asdict"):
        return {k: to_tree(v) for k, v in obj._asdict().items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_tree(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_tree(v) for v in obj]
    return obj


def map_arrays(tree: Any, fn: Callable[[np.ndarray], Any]) -> Any:
    if isinstance(tree, np.ndarray):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: map_arrays(v, fn) for k, v in tree.items()}
    if isinstance(tree, list):
        return [map_arrays(v, fn) for v in tree]
    return tree


def leaves(tree: Any, prefix: str = "") -> list[tuple[str, np.ndarray]]:
    """Named array leaves: ``output_0`` for a lone tensor or list items, keys for dicts."""
    if isinstance(tree, np.ndarray):
        return [(prefix or "output_0", tree)]
    if isinstance(tree, dict):
        return [leaf for k, v in tree.items()
                for leaf in leaves(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(tree, list):
        return [leaf for i, v in enumerate(tree)
                for leaf in leaves(v, f"{prefix}[{i}]" if prefix else f"output_{i}")]
    return []


def split_tree(tree: Any, rows: Sequence[int]) -> list[Any]:
    """One tree per request: every array leaf cut along dim 0 by the requests' row counts."""
    total = sum(rows)
    for name, array in leaves(tree):
        if array.ndim == 0 or array.shape[0] != total:
            raise ValueError(f"output {name} has shape {list(array.shape)}, but the batch had "
                             f"{total} rows: outputs must carry the batch on dim 0")
    parts = []
    start = 0
    for count in rows:
        stop = start + count
        parts.append(map_arrays(tree, _cut(start, stop)))
        start = stop
    return parts


def _cut(start: int, stop: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda array: array[start:stop]


class ModelRunner:
    """The batcher's compute function for one model on one device."""

    def __init__(self, model: Any, sig: Signature, device: str = "cpu",
                 on_failure: Callable[[BaseException], None] | None = None,
                 padding: Padding | None = None) -> None:
        self.model = model
        self.sig = sig
        self.device = device
        self.padding = padding
        self._on_failure = on_failure

    def tensors(self, requests: Sequence[Sequence[np.ndarray]]) -> list[torch.Tensor]:
        out = []
        for index, spec in enumerate(self.sig.inputs):
            if len(requests) == 1 or spec.batch_axis is None:
                array = requests[0][index]
            else:
                array = np.concatenate([r[index] for r in requests], axis=spec.batch_axis)
            tensor = torch.from_numpy(array)
            if spec.dtype is torch.bfloat16:
                tensor = tensor.to(torch.bfloat16)
            if self.device != "cpu":
                tensor = tensor.to(self.device, non_blocking=True)
            out.append(tensor)
        return out

    def __call__(self, batch: list[Work]) -> list[Any]:
        requests: Sequence[Sequence[np.ndarray]] = [w.inputs for w in batch]
        lengths: list[int] = []
        if self.padding is not None and len(batch) > 1:
            requests, lengths = pad_batch(requests, self.padding)
        try:
            with torch.inference_mode():
                output = call_model(self.model, self.sig.rebuild(self.tensors(requests)))
            tree = to_tree(output)
        except BaseException as exc:
            if self._on_failure is not None:
                self._on_failure(exc)
            raise
        if len(batch) == 1:
            return [tree]
        parts = split_tree(tree, [w.rows for w in batch])
        if lengths and self.padding is not None:
            longest = max(lengths)
            parts = [unpad(part, self.padding.axis, longest, length)
                     for part, length in zip(parts, lengths, strict=True)]
        return parts
