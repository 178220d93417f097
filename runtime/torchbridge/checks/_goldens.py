"""Golden outputs as safetensors: one tensor per flattened output path, plus metadata.

A golden file holds every tensor leaf of the model's output under its path from
:func:`torchbridge.core.trees.flatten` (``output``, ``output[0]``, ``output.logits``)
and string metadata: the format version, torch version, the output paths in order, the
input shapes, and any non-tensor leaves as JSON. Loading runs no code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchbridge.core.subject import Inputs, named_inputs
from torchbridge.core.trees import Opaque, flatten, opaque_reason

FORMAT = "torchbridge-golden/1"


@dataclass
class Golden:
    """Flattened outputs: tensors by path, other leaves by path, and the file's metadata."""

    tensors: dict[str, torch.Tensor]
    values: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        order = json.loads(self.metadata.get("outputs", "[]"))
        return order or sorted({*self.tensors, *self.values})

    @property
    def input_shapes(self) -> dict[str, list[int]]:
        return dict(json.loads(self.metadata.get("input_shapes", "{}")))


def input_shapes(inputs: Inputs) -> dict[str, list[int]]:
    return {str(key): list(value.shape) for key, value in named_inputs(inputs)
            if isinstance(value, torch.Tensor)}


def unstorable(output: Any) -> list[str]:
    """Why each leaf that a golden cannot hold (an object that cannot be flattened) is
    refused: storing its repr would leave its tensors unchecked."""
    return [f"{path}: {opaque_reason(leaf)}" for path, leaf in flatten(output)
            if isinstance(leaf, Opaque)]


def from_output(output: Any, inputs: Inputs) -> Golden:
    """The golden form of ``output`` (tensors copied to the CPU, contiguous, unshared);
    cache key/value tensors are stored under their paths like any other tensor."""
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, Any] = {}
    leaves = flatten(output)
    for path, leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            tensors[path] = leaf.detach().to("cpu").contiguous().clone()
        else:
            values[path] = leaf
    metadata = {
        "format": FORMAT,
        "torch_version": torch.__version__,
        "outputs": json.dumps([path for path, _ in leaves]),
        "input_shapes": json.dumps(input_shapes(inputs)),
        "values": json.dumps(values, default=repr),
    }
    return Golden(tensors, values, metadata)


def save(golden: Golden, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(golden.tensors, str(path), metadata=golden.metadata)


def load(path: Path) -> Golden:
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        for key in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            tensors[key] = handle.get_tensor(key)
    values = json.loads(metadata.get("values", "{}"))
    return Golden(tensors, values, metadata)


def structure_problems(actual: Golden, expected: Golden) -> list[str]:
    """What differs in outputs and shapes between a fresh run and the golden file."""
    problems = []
    got, want = actual.paths, expected.paths
    missing = [p for p in want if p not in got]
    extra = [p for p in got if p not in want]
    if missing:
        problems.append(f"outputs in the golden but not produced by the model: {missing}")
    if extra:
        problems.append(f"outputs produced by the model but not in the golden: {extra}")
    for path in (p for p in want if p in got):
        a, e = actual.tensors.get(path), expected.tensors.get(path)
        if a is not None and e is not None and a.shape != e.shape:
            problems.append(f"{path} has shape {tuple(a.shape)}, golden {tuple(e.shape)}")
        elif a is not None and e is not None and a.dtype != e.dtype:
            problems.append(f"{path} has dtype {a.dtype}, golden {e.dtype}")
        elif (a is None) != (e is None):
            problems.append(f"{path} is a tensor in only one of model output and golden")
    return problems
