"""pt2: ``torch.export.export`` → ``torch.export.save`` → ``torch.export.load`` → compare.

The archive carries the same dynamic dims as the ONNX export (batch and the input spec's
named dims) and is proven the same way, at every point of the validation plan.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from torchbridge.core.subject import Subject, call_model
from torchbridge.export.checksums import write_checksum
from torchbridge.export.common import (
    ExportFailed,
    ExportOptions,
    ExportReport,
    condensed,
    export_subject,
    quiet,
    validate_graph,
    warning_texts,
)
from torchbridge.export.program import capture


def export_pt2(subject: Subject, path: Path, options: ExportOptions) -> ExportReport:
    """Export ``subject.model`` to a ``.pt2`` archive at ``path``, load it back, prove it."""
    report = ExportReport("pt2", path)
    base = export_subject(subject)
    model, _ = base.placed()
    start = time.perf_counter()
    with quiet() as caught:
        program = capture(model, base, dynamic=options.dynamic)
        try:
            torch.export.save(program, str(path))
        except Exception as exc:
            raise ExportFailed(f"torch.export.save failed: {condensed(str(exc), 500)}") \
                from None
    report.export_s = time.perf_counter() - start
    report.files = [path]
    report.checksum_file = write_checksum(path, report.files)
    report.details["warnings"] = warning_texts(caught)
    report.details["range_constraints"] = {str(k): str(v) for k, v in
                                           program.range_constraints.items()}
    if options.validate:
        from torchbridge.security.safe_load import load_pt2

        with quiet():  # read back through the same scanned loader as any .pt2
            loaded = load_pt2(path).module()
        report.validations = validate_graph(lambda x: call_model(loaded, x), subject, options)
    return report
