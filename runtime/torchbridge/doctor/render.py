"""``tb-doctor`` output: a rich table for people, JSON and JUnit XML for CI.

JUnit XML is written with :mod:`xml.etree.ElementTree`: the format needs five element
types, and the ``junit-xml`` package adds a dependency (unreleased since 2020) for no
gain. One ``<testcase>`` per diagnostic; ``fail`` → ``<failure>``, ``skip`` →
``<skipped>``, ``warn`` passes with a ``tb.status=warn`` property and the advice in
``<system-out>`` (JUnit has no "warning" outcome, and a warning must not turn CI red).
"""

from __future__ import annotations

import datetime as dt
import platform
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from torchbridge.doctor.model import Diagnostic, Health, exit_code, overall

_STYLE = {Health.OK: "green", Health.WARN: "yellow", Health.FAIL: "bold red", Health.SKIP: "dim"}


def to_json(diagnostics: list[Diagnostic], hardware: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable report: overall status, exit code, every diagnostic."""
    return {"status": overall(diagnostics).value, "exit_code": exit_code(diagnostics),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "diagnostics": [d.to_dict() for d in diagnostics],
            "hardware": hardware}


def print_report(diagnostics: list[Diagnostic], *, full: bool) -> None:
    """A table of diagnostics; with ``full``, every detail under it."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="tb-doctor", show_lines=False)
    for column in ("area", "check", "status", "finding"):
        table.add_column(column, overflow="fold")
    for d in diagnostics:
        finding = d.summary + (f"\n[italic]fix:[/] {d.fix}" if d.fix and d.status in
                               (Health.WARN, Health.FAIL) else "")
        table.add_row(d.category, d.name, f"[{_STYLE[d.status]}]{d.status.value}[/]", finding)
    console.print(table)
    if full:
        for d in diagnostics:
            details = {k: v for k, v in d.details.items() if k != "traceback"}
            if details:
                console.rule(f"{d.category} / {d.name}")
                for key, value in details.items():
                    console.print(f"  {key}: {value}", markup=False, highlight=False)
    status = overall(diagnostics)
    counts = {s: sum(d.status is s for d in diagnostics) for s in Health}
    console.print(f"[{_STYLE[status]}]{status.value.upper()}[/]: " +
                  ", ".join(f"{n} {s.value}" for s, n in counts.items() if n))


def write_junit(diagnostics: list[Diagnostic], path: str | Path) -> None:
    """JUnit XML with one test case per diagnostic (see the module docstring)."""
    suite = ET.Element("testsuite", {
        "name": "tb-doctor", "tests": str(len(diagnostics)),
        "failures": str(sum(d.status is Health.FAIL for d in diagnostics)),
        "errors": "0", "skipped": str(sum(d.status is Health.SKIP for d in diagnostics)),
        "time": f"{sum(float(d.details.get('probe_s', 0)) for d in diagnostics):.3f}",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node()})
    for d in diagnostics:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"tb-doctor.{d.category}", "name": d.name,
            "time": f"{float(d.details.get('probe_s', 0)):.3f}"})
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", {"name": "tb.status", "value": d.status.value})
        if d.status is Health.FAIL:
            failure = ET.SubElement(case, "failure", {"message": d.summary,
                                                      "type": "DoctorFailure"})
            failure.text = d.fix or d.summary
        elif d.status is Health.SKIP:
            ET.SubElement(case, "skipped", {"message": d.summary})
        out = ET.SubElement(case, "system-out")
        out.text = d.summary + (f"\nWARNING: {d.fix}" if d.status is Health.WARN and d.fix
                                else "")
    root = ET.Element("testsuites", {"name": "tb-doctor"})
    root.append(suite)
    ET.indent(root)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
