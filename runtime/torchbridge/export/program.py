"""``torch.export.export`` with dynamic dims from the input spec, and readable failures.

Shared by the ``pt2`` and ``onnx`` formats: both start from the same ``ExportedProgram``,
so a model that cannot be captured fails the same way, naming the line that stops it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from torchbridge.core.subject import Subject, named_inputs
from torchbridge.core.trees import CACHE_OFF_HINT
from torchbridge.export.common import ExportFailed, as_call, condensed, quiet

BATCH = "batch"


def dim_names(subject: Subject, *, dynamic: bool) -> dict[Any, dict[int, str]]:
    """For each tensor input, axis → dynamic dim name (``batch`` and the spec's named dims).

    Inputs without a dynamic axis get an empty mapping (static)."""
    names: dict[Any, dict[int, str]] = {}
    for key, value in named_inputs(subject.inputs):
        axes: dict[int, str] = {}
        if dynamic and isinstance(value, torch.Tensor):
            batch_axis = subject.spec.batch_axis(key)
            if batch_axis is not None:
                axes[batch_axis % value.dim()] = BATCH
            for name, dim in subject.spec.dims.items():
                if key in dim.axes:  # a dim shared by several inputs names each of them
                    axes[dim.axes[key] % value.dim()] = name
        names[key] = axes
    return names


def _structure(subject: Subject, per_input: Mapping[Any, Any]) -> Any:
    """Per-input specs in the shape ``dynamic_shapes`` wants: tuple for positional inputs,
    dict for keyword inputs."""
    if isinstance(subject.inputs, Mapping):
        return {key: per_input[key] or None for key in subject.inputs}
    return tuple(per_input[key] or None for key, _ in named_inputs(subject.inputs))


def dynamic_shapes(subject: Subject, *, dynamic: bool) -> Any:
    """``dynamic_shapes`` for ``torch.export.export``: one ``Dim`` object per name, so the
    batch dim of every input is the same symbol, and so is a named dim shared by several
    inputs (``seq`` on ``input_ids`` and ``attention_mask``); ranges from the input spec."""
    names = dim_names(subject, dynamic=dynamic)
    if not any(names.values()):
        return None
    dims: dict[str, Any] = {}
    for name in {n for axes in names.values() for n in axes.values()}:
        if name == BATCH:
            low, high = 1, subject.spec.max_batch
        else:
            low, high = subject.spec.dims[name].min, subject.spec.dims[name].max
        bounds = {"min": low} | ({"max": high} if high is not None else {})
        dims[name] = torch.export.Dim(_identifier(name), **bounds)
    per_input = {key: {axis: dims[name] for axis, name in axes.items()}
                 for key, axes in names.items()}
    return _structure(subject, per_input)


def dynamic_names(subject: Subject, *, dynamic: bool) -> Any:
    """The same structure as :func:`dynamic_shapes` with plain names, which the ONNX
    exporter turns into named dims (``batch``, ``seq``) of the graph's inputs."""
    names = dim_names(subject, dynamic=dynamic)
    if not any(names.values()):
        return None
    return _structure(subject, names)


def _identifier(name: str) -> str:
    cleaned = re.sub(r"\W", "_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"d_{cleaned}"


def capture(model: Any, subject: Subject, *, dynamic: bool) -> Any:
    """``torch.export.export`` the model on the subject's inputs; :class:`ExportFailed` with
    the cause and the user's source line when it cannot be captured."""
    if not isinstance(model, torch.nn.Module):
        raise ExportFailed(f"torch.export needs an nn.Module, got {type(model).__name__}")
    args, kwargs = as_call(subject.inputs)
    if isinstance(model, torch.jit.ScriptModule):
        return _convert_script(model, args, kwargs)
    shapes = dynamic_shapes(subject, dynamic=dynamic)
    with quiet():
        try:
            return torch.export.export(model, args, kwargs or None, dynamic_shapes=shapes)
        except Exception as exc:
            hints = "".join(subject.sharing_hint(name) for name in subject.spec.dims)
            raise ExportFailed(explain_capture_error(exc) + hints) from None


def _convert_script(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A TorchScript module (a ``model.pt`` archive) as an ExportedProgram, through torch's
    TorchScript converter: torch.export cannot trace a ScriptModule itself."""
    from torch._export.converter import TS2EPConverter

    with quiet():
        try:
            return TS2EPConverter(model, args, kwargs or None).convert()
        except Exception as exc:
            raise ExportFailed(f"cannot convert the TorchScript module for torch.export: "
                               f"{type(exc).__name__}: {condensed(str(exc), 500)}") from None


_UNKNOWN_OUTPUT = re.compile(r"Found <class '([\w.]+)'> in output, which is not a known type")


def explain_capture_error(exc: BaseException) -> str:
    """Why torch.export failed, in one actionable sentence plus the source line."""
    text = str(exc)
    where = _user_frame(text)
    at = f" at {where}" if where else ""
    kind = type(exc).__name__
    unknown = _UNKNOWN_OUTPUT.search(text)
    if unknown:
        cls = unknown.group(1).rsplit(".", 1)[-1]
        hint = (CACHE_OFF_HINT
                if "cache" in cls.lower() else
                "return tensors, or register the type with torch.utils._pytree."
                "register_pytree_node")
        return f"torch.export cannot capture the model's output: it returns a {cls} object, " \
               f"which is not a pytree type; {hint}"
    if "data-dependent" in text or "GuardOnDataDependent" in kind:
        return (f"torch.export cannot capture data-dependent control flow{at}: the model "
                f"branches on tensor values ({condensed(text, 160)}). Rewrite the branch "
                "with torch.cond/torch.where, or move it out of forward()")
    if "Constraints violated" in text or "specialized" in text or "specialize" in text:
        return (f"a dynamic dim is fixed by the model{at}: {condensed(text, 500)}. Make the "
                "model shape-generic (no constant reshapes), declare the real range in the "
                "input spec, or export with dynamic=False")
    return f"torch.export failed{at}: {kind}: {condensed(text, 500)}"


def _user_frame(text: str) -> str:
    match = re.search(r'File "([^"]+)", line (\d+), in (\w+)', text)
    if not match:
        return ""
    return f"{match.group(1)}:{match.group(2)} in {match.group(3)}()"
