"""``export``: the model exports to a format and the artifact is proven against eager PyTorch.

``@tb.export("onnx", dynamic=True)``, ``@tb.export("torchscript", method="trace")``,
``@tb.export("safetensors")``, ``@tb.export("pt2")``; each becomes its own item,
``test_x[tb-export-onnx]``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchbridge.checks._tolerances import per_output_option, tolerance_option
from torchbridge.checks.base import Check, CheckConfig, RunContext
from torchbridge.checks.forward import training_modules
from torchbridge.checks.options import batch_sizes, flag, option, optional
from torchbridge.checks.registry import register
from torchbridge.core.compare import Tolerance
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import Subject
from torchbridge.errors import ConfigError

FORMATS = ("onnx", "torchscript", "safetensors", "pt2")


def _format(value: object, what: str) -> str:
    fmt = str(value).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"{what} must be one of {', '.join(FORMATS)}, got {value!r}; "
                          "e.g. @tb.export('onnx')")
    return fmt


@dataclass(frozen=True)
class ExportConfig(CheckConfig):
    """``format``: onnx | torchscript | safetensors | pt2. ``dynamic``: dynamic batch and
    named dims, validated at batch 1, an odd batch and the largest batch. ``method``:
    trace | script (torchscript only). ``exporter``: dynamo | legacy (onnx only).
    ``opset``: ONNX opset. ``rtol``/``atol``/``per_output``: comparison tolerances.
    ``batch_sizes``: the batch sizes to validate at instead of the default plan.
    ``allow_tracer_warnings``: accept a trace that the tracer says may be incorrect
    (torchscript ``method="trace"`` only; by default such a warning fails the export and
    names the source line)."""

    positional = ("format",)

    format: str = option("", _format)
    dynamic: bool = option(True, flag)
    method: str | None = None
    exporter: str | None = None
    opset: int | None = None
    rtol: float | None = option(None, tolerance_option)
    atol: float | None = option(None, tolerance_option)
    per_output: Mapping[str, Tolerance] = option(None, per_output_option)
    batch_sizes: tuple[int, ...] | None = option(None, optional(batch_sizes))
    allow_tracer_warnings: bool = option(False, flag)

    def __post_init__(self) -> None:
        super().__post_init__()
        fmt = self.format
        self._only_for("method", "torchscript", ("trace", "script"))
        if self.allow_tracer_warnings and fmt != "torchscript":
            raise ConfigError(f"allow_tracer_warnings applies to format 'torchscript' only, "
                              f"not {fmt!r}")
        self._only_for("exporter", "onnx", ("dynamo", "legacy"))
        if self.opset is not None:
            if fmt != "onnx":
                raise ConfigError(f"opset applies to format 'onnx' only, not {fmt!r}")
            if isinstance(self.opset, bool) or not isinstance(self.opset, int) \
                    or not 7 <= self.opset <= 30:
                raise ConfigError(f"opset must be an integer ONNX opset (e.g. 18), "
                                  f"got {self.opset!r}")

    def _only_for(self, name: str, fmt: str, allowed: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value is None:
            return
        if self.format != fmt:
            raise ConfigError(f"{name} applies to format {fmt!r} only, not {self.format!r}")
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def options_from(config: ExportConfig) -> Any:
    """The runtime's :class:`ExportOptions` for a check configuration."""
    from torchbridge.export import ExportOptions, Tolerances

    return ExportOptions(dynamic=config.dynamic, method=config.method or "trace",
                         exporter=config.exporter or "dynamo", opset=config.opset,
                         tolerances=Tolerances(config.rtol, config.atol,
                                               dict(config.per_output or {})),
                         batch_sizes=config.batch_sizes,
                         allow_tracer_warnings=config.allow_tracer_warnings)


def result_from(report: Any, device: str) -> CheckResult:
    """A check result carrying the export report's metrics and per-run comparisons."""
    status = Status.PASSED if report.ok else Status.FAILED
    result = CheckResult("export", status, report.summary(), device)
    result.metric("max_abs_error", report.max_abs_error)
    result.metric("export_s", report.export_s, "s")
    result.metric("file_bytes", report.file_bytes, "bytes")
    result.metric("validation_runs", len(report.validations))
    result.details.update(report.to_dict())
    return result


@register
class ExportCheck(Check[ExportConfig]):
    name = "export"
    family = "export"
    summary = "Exports to ONNX/TorchScript/SafeTensors/pt2 and proves the artifact matches."

    def item_id(self, config: ExportConfig) -> str:
        variant = "-script" if config.method == "script" else \
            "-legacy" if config.exporter == "legacy" else ""
        return f"tb-export-{config.format}{variant}"

    def run(self, subject: Subject, config: ExportConfig, context: RunContext) -> CheckResult:
        # imported here, not at the top: pytester's inner sessions unload modules they first
        # imported, and a module-level ExportFailed would then be a stale class that no
        # longer catches what export_model raises (tests/test_export_check.py)
        from torchbridge.export import ExportFailed, artifact_path, export_model

        in_training = training_modules(subject.model)
        if in_training:
            return CheckResult(self.name, Status.FAILED,
                               f"model is in training mode ({', '.join(in_training[:3])}); "
                               "an export would bake in training behaviour and eager "
                               "outputs would not be reproducible. Call model.eval() first",
                               subject.device)
        with tempfile.TemporaryDirectory(prefix="tb-export-") as scratch:
            folder = Path(context.work_dir) if context.work_dir else Path(scratch)
            path = artifact_path(folder, _stem(subject), config.format)
            try:
                report = export_model(subject, config.format, path, options_from(config))
            except ExportFailed as exc:
                return CheckResult(self.name, Status.FAILED, str(exc), subject.device,
                                   details={"format": config.format})
            result = result_from(report, subject.device)
        if not context.work_dir:
            result.details["artifacts_kept"] = False
        return result


def _stem(subject: Subject) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in subject.name) or "model"
