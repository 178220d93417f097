"""Merging TorchBridge reports, the merge gate, the markdown summary and the HTML report.

>>> from torchbridge.reporting import merge_reports, decide, render_markdown
>>> merged = merge_reports(["cpu.json", "gpu.json"])          # doctest: +SKIP
>>> verdict = decide(merged)                                   # doctest: +SKIP
>>> print(render_markdown(merged, verdict))                    # doctest: +SKIP

:func:`publish` does all of it in one call, as ``tb-report merge`` and the pytest
options ``--tb-markdown`` / ``--tb-html`` use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torchbridge.reporting.document import write_json
from torchbridge.reporting.gate import GatePolicy, GateVerdict, decide
from torchbridge.reporting.html import render_html, write_html
from torchbridge.reporting.markdown import render_markdown, write_markdown
from torchbridge.reporting.merge import (
    MergedReport,
    ReportError,
    from_results,
    load_report,
    merge_reports,
    merge_sources,
)
from torchbridge.reporting.openmetrics import render_openmetrics, write_openmetrics


@dataclass
class Outputs:
    """Where :func:`publish` writes; ``None`` skips that output."""

    json: str | Path | None = None
    markdown: str | Path | None = None
    html: str | Path | None = None
    openmetrics: str | Path | None = None
    step_summary: bool = True


@dataclass
class Published:
    """The verdict and the files written."""

    verdict: GateVerdict
    files: list[Path] = field(default_factory=list)


def publish(report: MergedReport, outputs: Outputs, policy: GatePolicy | None = None,
            title: str = "TorchBridge report") -> Published:
    """Decide the gate for ``report`` and write the requested outputs."""
    verdict = decide(report, policy)
    files: list[Path] = []
    if outputs.json:
        document = report.to_dict()
        document["verdict"] = verdict.to_dict()
        files.append(write_json(outputs.json, document))
    if outputs.markdown or outputs.step_summary:
        files += write_markdown(outputs.markdown, render_markdown(report, verdict),
                                outputs.step_summary)
    if outputs.html:
        files.append(write_html(outputs.html, render_html(report, verdict, title)))
    if outputs.openmetrics:
        files.append(write_openmetrics(outputs.openmetrics, render_openmetrics(report, verdict)))
    return Published(verdict, files)


__all__ = [
    "GatePolicy", "GateVerdict", "MergedReport", "Outputs", "Published", "ReportError",
    "decide", "from_results", "load_report", "merge_reports", "merge_sources", "publish",
    "render_html", "render_markdown", "render_openmetrics",
]
