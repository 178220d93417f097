"""SafeTensors: ``save_model`` (tied weights kept once) with metadata, reload, compare.

The reload goes into a fresh model from the factory fixture (a deep copy when there is
none) whose state was first overwritten with NaN, so a tensor the file does not restore
shows up as a mismatch instead of passing on the factory's identical initial weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from torchbridge.core.subject import Subject, named_inputs
from torchbridge.export.checksums import write_checksum
from torchbridge.export.common import (
    ExportFailed,
    ExportOptions,
    ExportReport,
    Point,
    condensed,
    fresh_points,
    validate,
)


def metadata(model: torch.nn.Module, subject: Subject) -> dict[str, str]:
    """``__metadata__`` written with the weights: framework, versions, class, input spec."""
    cls = type(model)
    spec = subject.spec
    return {
        "format": "pt",
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "input_spec": json.dumps({
            "batch_dim": spec.batch_dim,
            "batch_dims": {str(k): v for k, v in spec.batch_dims.items()},
            "dims": {n: {"input": d.input, "axis": d.axis, "min": d.min, "max": d.max}
                     for n, d in spec.dims.items()},
            "max_batch": spec.max_batch,
            "sample_shapes": _sample_shapes(subject),
        }),
        "producer": "torchbridge",
    }


def _sample_shapes(subject: Subject) -> dict[str, Any]:
    return {str(k): {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in named_inputs(subject.inputs) if isinstance(v, torch.Tensor)}


def shared_tensors(model: torch.nn.Module) -> list[list[str]]:
    """Groups of state-dict names that share storage (tied weights)."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor.numel():
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
            groups.setdefault(key, []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _poison(model: torch.nn.Module) -> None:
    """Overwrite every saved floating tensor with NaN (integers with -1)."""
    with torch.no_grad():
        for tensor in model.state_dict(keep_vars=True).values():
            tensor.fill_(float("nan") if tensor.is_floating_point() else -1)


def export_safetensors(subject: Subject, path: Path, options: ExportOptions) -> ExportReport:
    """Save the weights to ``path``, reload them into a fresh model and prove it."""
    from safetensors import safe_open
    from safetensors.torch import load_model, save_model

    model, _ = subject.placed()
    if not isinstance(model, torch.nn.Module):
        raise ExportFailed(f"safetensors stores an nn.Module's weights; got "
                           f"{type(model).__name__}")
    report = ExportReport("safetensors", path)
    meta = metadata(model, subject)
    start = time.perf_counter()
    try:
        save_model(model, str(path), metadata=meta)
    except Exception as exc:
        raise ExportFailed(f"safetensors save_model failed: {condensed(str(exc), 500)}") \
            from None
    report.export_s = time.perf_counter() - start
    report.files = [path]
    report.checksum_file = write_checksum(path, report.files)
    with safe_open(str(path), framework="pt") as handle:
        stored_meta = handle.metadata() or {}
        report.details["tensors"] = len(list(handle.keys()))
    report.details["metadata"] = stored_meta
    report.details["shared_tensors"] = shared_tensors(model)
    report.details["reloaded_into"] = "factory" if subject.factory is not None else "deepcopy"
    if stored_meta != meta:
        raise ExportFailed(f"metadata read back differs from what was written: {stored_meta}")
    if options.validate:
        fresh = subject.fresh_model()
        _poison(fresh)
        try:
            load_model(fresh, str(path), strict=True, device=str(subject.device))
        except Exception as exc:
            raise ExportFailed(f"reloading {path.name} into a fresh "
                               f"{type(fresh).__name__} failed: {condensed(str(exc), 500)}") \
                from None
        sizes = {"batch": subject.batch_size}
        points = [Point("sample batch", sizes, subject.inputs), *fresh_points(subject, sizes)]
        report.validations = validate(lambda x: subject.run(x, model=fresh), subject, points,
                                      options.tolerances)
    return report
