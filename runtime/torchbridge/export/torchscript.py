"""TorchScript: trace or script → ``torch.jit.save`` → ``torch.jit.load`` → compare.

TorchScript is deprecated in torch 2.13 (``torch.export`` replaces it) and says so with
warnings on every call. Those warnings are recorded in the report instead of being
emitted, so suites running with ``-W error`` pass.

A tracer warning that a value "might cause the trace to be incorrect" means a Python value
computed from a tensor (``if x.max() > 1:``) was frozen into the trace: the artifact takes
the sample's branch for every input. That fails the export, naming the source line, unless
``allow_tracer_warnings=True``; validation alone can miss it when no validation input
falls on the other side.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from torchbridge.core.subject import Subject, call_model
from torchbridge.core.trees import CACHE_OFF_HINT
from torchbridge.export.checksums import write_checksum
from torchbridge.export.common import (
    ExportFailed,
    ExportOptions,
    ExportReport,
    as_call,
    condensed,
    export_subject,
    quiet,
    refuse_unsound_trace,
    validate_graph,
    warning_texts,
)
from torchbridge.inputs import SIGNATURE_FILE, input_signature

METHODS = ("trace", "script")


def save_torchscript(module: Any, path: Path, inputs: Any) -> None:
    """``torch.jit.save`` with the shapes and dtypes of ``inputs`` recorded in the archive
    (:data:`~torchbridge.inputs.SIGNATURE_FILE`), so that loading it needs no
    ``--input-shape``."""
    signature = input_signature(inputs)
    torch.jit.save(module, str(path),
                   _extra_files={SIGNATURE_FILE: signature} if signature else None)


_UNTRACEABLE = re.compile(r"Tracer cannot infer type of (\w+)\(")


def _trace_hint(text: str) -> str:
    """What to do when tracing failed: an output object the tracer cannot return (a
    transformers ``ModelOutput`` holding a ``DynamicCache``, or nesting other outputs, as
    CLIP's) needs another fix than a model the tracer cannot follow."""
    found = _UNTRACEABLE.search(text)
    if found and "Cache(" in text:
        return (f"; the output ({found.group(1)}) holds a KV cache object, which TorchScript "
                f"cannot return: {CACHE_OFF_HINT}")
    if found:
        return (f"; the tracer cannot return a {found.group(1)} object: export to pt2 or "
                "onnx (they flatten registered output types), or wrap the model so forward "
                "returns tensors")
    return "; try method='script' or export to pt2"


def to_torchscript(model: Any, subject: Subject, method: str) -> Any:
    """A ``ScriptModule`` of ``model`` by tracing on the subject's inputs or by scripting."""
    if method not in METHODS:
        raise ExportFailed(f"unknown TorchScript method {method!r}; use one of {METHODS}")
    try:
        if method == "script":
            return torch.jit.script(model)
        args, kwargs = as_call(subject.inputs)
        if kwargs:
            return torch.jit.trace(model, example_kwarg_inputs=kwargs, strict=False,
                                   check_trace=False)
        return torch.jit.trace(model, args, strict=False, check_trace=False)
    except Exception as exc:
        hint = "; try method='trace'" if method == "script" else _trace_hint(str(exc))
        raise ExportFailed(f"torch.jit.{method} failed: {type(exc).__name__}: "
                           f"{condensed(str(exc), 300)}{hint}") from None


def export_torchscript(subject: Subject, path: Path, options: ExportOptions) -> ExportReport:
    """Trace or script ``subject.model``, save to ``path``, load it back, prove it."""
    report = ExportReport("torchscript", path)
    base = export_subject(subject)
    model, _ = base.placed()
    start = time.perf_counter()
    with quiet() as caught:
        module = to_torchscript(model, base, options.method)
    unsound = refuse_unsound_trace(caught, options, "use method='script' or the pt2 format")
    with quiet() as saving:
        save_torchscript(module, path, base.inputs)
    caught += saving
    report.export_s = time.perf_counter() - start
    report.files = [path]
    report.checksum_file = write_checksum(path, report.files)
    texts = warning_texts(caught)
    report.details["method"] = options.method
    report.details["warnings"] = texts
    report.details["tracer_warnings"] = [t for t in texts if t.startswith("TracerWarning")]
    report.details["unsound_trace_lines"] = unsound
    if options.validate:
        with quiet():
            loaded = torch.jit.load(str(path), map_location=subject.device).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            report.validations = validate_graph(lambda x: call_model(loaded, x), subject,
                                                options)
    return report
