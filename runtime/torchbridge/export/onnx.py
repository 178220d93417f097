"""ONNX: the dynamo exporter (the legacy one on request), checked and proven in onnxruntime.

Steps: capture with ``torch.export`` (dynamic batch and named dims from the input spec,
at a batch of at least 2) → ``torch.onnx.export`` of that program → one ``.onnx`` file
below 2 GB (external data above, covered by the checksum) → ``onnx.checker`` with the
full check → an onnxruntime session (CUDA provider when the run is on CUDA and it is
available) run at every point of the validation plan and compared with eager PyTorch.
"""

from __future__ import annotations

import inspect
import linecache
import re
import time
from pathlib import Path
from typing import Any

import torch

from torchbridge.core.subject import Subject
from torchbridge.errors import CheckSkipped
from torchbridge.export.checksums import write_checksum
from torchbridge.export.common import (
    ExportFailed,
    ExportOptions,
    ExportReport,
    as_call,
    condensed,
    export_subject,
    model_bytes,
    quiet,
    tensor_inputs,
    unsound_trace_lines,
    validate_graph,
    warning_texts,
)
from torchbridge.export.program import capture, dim_names, dynamic_names
from torchbridge.loading import OnnxModel, external_locations

INSTALL_HINT = "pip install 'pytest-torchbridge[onnx]'"
#: protobuf cannot hold a model of 2 GiB or more in one file; stay clear of the limit.
SINGLE_FILE_LIMIT = 1_900_000_000


def require_onnx(*, exporter: str = "dynamo") -> None:
    """Raise :class:`CheckSkipped` with the install hint when a needed package is missing."""
    needed = ["onnx", "onnxruntime"] + (["onnxscript"] if exporter == "dynamo" else [])
    import importlib.util

    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise CheckSkipped(f"ONNX export needs {', '.join(missing)}: {INSTALL_HINT}")


def export_onnx(subject: Subject, path: Path, options: ExportOptions) -> ExportReport:
    """Export ``subject.model`` to ``path`` and prove it in onnxruntime (see module doc)."""
    require_onnx(exporter=options.exporter)
    report = ExportReport("onnx", path)
    base = export_subject(subject)
    model, _ = base.placed()
    start = time.perf_counter()
    with quiet() as caught:
        if options.exporter == "legacy":
            _legacy_export(model, base, path, options)
        else:
            _dynamo_export(model, base, path, options)
    if options.exporter == "legacy":  # it traces; fresh inputs in validation catch the
        # frozen value branches, shape-dependent ones (every HF model has some) are fine
        report.details["unsound_trace_lines"] = unsound_trace_lines(caught)
    report.export_s = time.perf_counter() - start
    report.files = _artifact_files(path)
    report.details["warnings"] = warning_texts(caught)
    report.details["exporter"] = options.exporter
    _check_model(path)
    report.checksum_file = write_checksum(path, report.files)
    report.details.update(graph_signature(path))
    if options.validate:
        session = OnnxModel(path, subject.device)
        report.details["providers"] = session.active_providers
        report.validations = validate_graph(lambda x: _run(session, x), subject, options)
    return report


def _dynamo_export(model: Any, subject: Subject, path: Path, options: ExportOptions) -> None:
    program = capture(model, subject, dynamic=options.dynamic)
    try:
        onnx_program = torch.onnx.export(
            program, (), dynamic_shapes=dynamic_names(subject, dynamic=options.dynamic),
            dynamo=True, opset_version=options.opset, verbose=False)
    except Exception as exc:
        raise ExportFailed(explain_conversion_error(exc, program)) from None
    if onnx_program is None:
        raise ExportFailed("torch.onnx.export returned no program")
    external = model_bytes(model) >= SINGLE_FILE_LIMIT
    onnx_program.save(str(path), external_data=external)


def _legacy_export(model: Any, subject: Subject, path: Path, options: ExportOptions) -> None:
    args, kwargs = as_call(subject.inputs)
    names = input_names(model, subject)
    axes = {names[i]: dict(axes) for i, (_, axes) in
            enumerate(dim_names(subject, dynamic=options.dynamic).items()) if axes}
    call_args = args + ((kwargs,) if kwargs else ())
    try:
        torch.onnx.export(model, call_args, str(path), dynamo=False, input_names=names,
                          dynamic_axes=axes or None, opset_version=options.opset or 17)
    except Exception as exc:
        raise ExportFailed(f"legacy ONNX export failed: {type(exc).__name__}: "
                           f"{condensed(str(exc), 600)}") from None


def input_names(model: Any, subject: Subject) -> list[str]:
    """Names for the graph's inputs: keyword names, else ``forward``'s parameter names."""
    keys = [key for key, _ in tensor_inputs(subject.inputs)]
    if all(isinstance(k, str) for k in keys):
        return [str(k) for k in keys]
    try:
        params = [p for p in inspect.signature(model.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError, AttributeError):
        params = []
    return [params[k].name if isinstance(k, int) and k < len(params) else f"input_{k}"
            for k in keys]


def _artifact_files(path: Path) -> list[Path]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return [path, *(path.parent / loc for loc in external_locations(proto))]


def _check_model(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportFailed(f"onnx.checker rejected {path.name}: {condensed(str(exc), 600)}") \
            from None


def graph_signature(path: Path) -> dict[str, Any]:
    """Input/output names and shapes (dim names for dynamic dims) and the opset."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)

    def shape(value: Any) -> list[Any]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return {"inputs": {v.name: shape(v) for v in proto.graph.input},
            "outputs": {v.name: shape(v) for v in proto.graph.output},
            "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                         default=0)}


def _run(session: Any, inputs: Any) -> Any:
    """Feed the tensor inputs in order; the graph has one input per tensor input."""
    tensors = [value for _, value in tensor_inputs(inputs)]
    return session(*tensors)


# --------------------------------------------------------------------------- diagnostics

_OP = re.compile(r"OpOverload\(op='([\w.]+)', overload='(\w+)'\)")
_NODE = re.compile(r"translating node %(\w+) .*?target=torch\.ops\.([\w.]+)")
_EXECUTING = re.compile(r"While executing %(\w+) .*?target=torch\.ops\.([\w.]+)")
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
#: Where to point users when the dynamo exporter cannot convert a graph.
LEGACY_HINT = ("the legacy TorchScript-based exporter may export it: @tb.export(\"onnx\", "
               "exporter=\"legacy\") or tb-export --exporter legacy")


def explain_conversion_error(exc: BaseException, program: Any) -> str:
    """Name the operator the ONNX exporter could not translate and the module using it."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    node_match = _NODE.search(text)
    op_match = _OP.search(text)
    if op_match:
        op = f"{op_match.group(1)}.{op_match.group(2)}"
    elif node_match:
        op = node_match.group(2)
    else:
        return _failed_while_executing(exc, text, program)
    where = _locate(program, node_match.group(1) if node_match else None, op)
    cause = "has no ONNX translation" if "No ONNX function found" in text else \
        f"could not be translated ({_summary(text)})"
    return (f"operator {op}{where} {cause} (onnxscript {_version('onnxscript')}). Replace it "
            "in the model, register a custom translation (torch.onnx.export(..., "
            "custom_translation_table=...)), or export to pt2 instead")


def _failed_while_executing(exc: BaseException, text: str, program: Any) -> str:
    """A failure inside the exporter's own passes (``ConversionError`` while decomposing):
    the operator it was executing, the module and source line that produced it, and the
    legacy exporter as the way out."""
    executing = _EXECUTING.search(text)
    frames = _FRAME.findall(text.split("Original traceback:", 1)[-1]) \
        if "Original traceback:" in text else []
    cause = _summary(text).split(" While executing ")[0]
    if not executing and not frames:
        return (f"ONNX conversion failed: {type(exc).__name__}: {cause}; {LEGACY_HINT}")
    where = ""
    if frames:
        file, line = frames[-1]
        where = _module_at(program, file, int(line)) + f" at {file}:{line}"
        source = linecache.getline(file, int(line)).strip()
        where += f" `{source}`" if source else ""
    op = f"operator {executing.group(2)}" if executing else "the graph"
    return (f"ONNX conversion of {op}{where} failed ({type(exc).__name__}: {cause}); "
            f"{LEGACY_HINT}")


def _module_at(program: Any, file: str, line: int) -> str:
    """`` in <module path> (<class>)`` for the graph node traced from ``file:line``."""
    needle = f'File "{file}", line {line}'
    for node in program.graph.nodes:
        trace = node.meta.get("stack_trace") or ""
        stack = node.meta.get("nn_module_stack") or {}
        if needle in trace and stack:
            fqn, cls = list(stack.values())[-1]
            name = _clean_fqn(str(fqn)) or "the top-level model"
            return f" in {name} ({getattr(cls, '__name__', str(cls).split('.')[-1])})"
    return ""


def _summary(text: str) -> str:
    match = re.search(r"## Exception summary\s*(.+?)(?:\n\s*\n|$)", text, re.S)
    return condensed(match.group(1) if match else text, 300)


def _locate(program: Any, node_name: str | None, op: str) -> str:
    """`` used in <module path> (<class>) at <file:line>`` for the node, when known."""
    for node in program.graph.nodes:
        if node.name != node_name and str(node.target) != op:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        where = ""
        if stack:
            fqn, cls = list(stack.values())[-1]
            name = _clean_fqn(str(fqn)) or "the top-level model"
            where = f" used in {name} ({getattr(cls, '__name__', str(cls).split('.')[-1])})"
        trace = node.meta.get("stack_trace") or ""
        frames = re.findall(r'File "([^"]+)", line (\d+)', trace)
        if frames:
            where += f" at {frames[-1][0]}:{frames[-1][1]}"
        return where
    return ""


def _clean_fqn(fqn: str) -> str:
    fqn = re.sub(r"^L\['self'\]\.?", "", fqn)
    return re.sub(r"\[(\d+)\]", r".\1", fqn).strip(".")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


__all__ = ["explain_conversion_error", "export_onnx", "graph_signature", "require_onnx"]
