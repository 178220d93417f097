"""Export a model to ONNX, TorchScript, SafeTensors or pt2, and prove the artifact.

Every format loads its artifact back and compares it with eager PyTorch (several batch
sizes for the graph formats), writes a ``sha256sum``-compatible checksum next to it, and
returns an :class:`ExportReport`. A model that cannot be exported raises
:class:`ExportFailed` naming the cause (the operator and module for ONNX, the source
line for data-dependent control flow).

Example::

    from torchbridge.core.subject import Subject
    from torchbridge.export import ExportOptions, export_model

    report = export_model(Subject(model, x), "onnx", Path("clf.onnx"), ExportOptions())
    assert report.ok, report.summary()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from torchbridge.core.subject import Subject
from torchbridge.errors import ConfigError
from torchbridge.export.common import (
    FORMATS,
    SUFFIXES,
    ExportFailed,
    ExportOptions,
    ExportReport,
    Tolerances,
    Validation,
)

Exporter = Callable[[Subject, Path, ExportOptions], ExportReport]


def exporter(fmt: str) -> Exporter:
    """The export function of format ``fmt``."""
    if fmt == "onnx":
        from torchbridge.export.onnx import export_onnx

        return export_onnx
    if fmt == "torchscript":
        from torchbridge.export.torchscript import export_torchscript

        return export_torchscript
    if fmt == "safetensors":
        from torchbridge.export.safetensors import export_safetensors

        return export_safetensors
    if fmt == "pt2":
        from torchbridge.export.pt2 import export_pt2

        return export_pt2
    raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


def export_model(subject: Subject, fmt: str, path: Path,
                 options: ExportOptions | None = None) -> ExportReport:
    """Export ``subject.model`` to ``path`` in format ``fmt`` and validate it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = options or ExportOptions()
    report = exporter(fmt)(subject, path, options)
    report.details["validated"] = options.validate
    if fmt == "safetensors":
        pass  # weights only, validated at the sample's sizes: no dim is resized or exported
    elif not options.dynamic:
        # nothing is resized in a static graph, so the sharing notes would mislead
        fixed = ", ".join(["batch", *subject.spec.dims])
        report.details["notes"] = [f"static graph (dynamic=False): {fixed} fixed at the export "
                                   "sizes, and only those sizes validated"]
    elif subject.notes:  # e.g. a dim found shared by several inputs: exported as one symbol
        report.details["notes"] = list(subject.notes)
    return report


def export_many(subject: Subject, targets: Mapping[str, Path],
                options: ExportOptions | None = None,
                on_done: Callable[[ExportReport], None] | None = None) -> list[ExportReport]:
    """Export to every ``format → path`` in ``targets``. A format that cannot be exported
    gives a report with ``error`` set; the others still run. Missing optional packages
    (:class:`CheckSkipped`) propagate: they are an environment problem, not the model's.

    An artifact that failed (export or validation) is deleted with its checksum file, so
    that nothing left in the folder looks like a good artifact (``tb-checksum verify``
    would otherwise say OK); ``details["removed"]`` names what was deleted.
    """
    reports = []
    for fmt, path in targets.items():
        try:
            report = export_model(subject, fmt, path, options)
        except ExportFailed as exc:
            report = ExportReport(fmt, Path(path), error=str(exc))
        if not report.ok:
            _discard(report)
        reports.append(report)
        if on_done is not None:
            on_done(report)
    return reports


def _discard(report: ExportReport) -> None:
    """Delete a failed artifact's files and checksum (and what an earlier run left at the
    same path: it does not belong to this model)."""
    path = report.path
    doomed = [*report.files, *([path, path.with_name(path.name + ".sha256")] if path else []),
              *([report.checksum_file] if report.checksum_file else [])]
    removed = []
    for file in dict.fromkeys(doomed):
        if file.is_file():
            file.unlink()
            removed.append(str(file))
    report.details["removed"] = removed
    report.checksum_file = None


def artifact_path(out_dir: Path, stem: str, fmt: str) -> Path:
    """``<out_dir>/<stem><suffix>`` for format ``fmt`` (``model.onnx``, ``model.ts.pt``)."""
    return Path(out_dir) / f"{stem}{SUFFIXES[fmt]}"


__all__ = ["FORMATS", "SUFFIXES", "ExportFailed", "ExportOptions", "ExportReport",
           "Tolerances", "Validation", "artifact_path", "export_many", "export_model", "exporter"]
