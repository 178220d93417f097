"""The merged report as an OpenMetrics text file, for GitLab's ``artifacts:reports:metrics``
(the merge request widget compares each value with the target branch's).

Families: ``torchbridge_gate_passed`` (1/0), ``torchbridge_results{status}`` and, for every
measured metric of every result, ``torchbridge_<check>_<metric>{test, device, job}``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from torchbridge.reporting.gate import GateVerdict
from torchbridge.reporting.merge import MergedReport

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(*parts: str) -> str:
    """A valid metric name: ``latency``, ``p99_ms`` → ``torchbridge_latency_p99_ms``."""
    return _INVALID.sub("_", "_".join(("torchbridge", *parts))).lower()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def render_openmetrics(report: MergedReport, verdict: GateVerdict) -> str:
    """OpenMetrics text (ends with ``# EOF``)."""
    families: dict[str, list[str]] = defaultdict(list)
    families["torchbridge_gate_passed"].append(f"torchbridge_gate_passed {int(verdict.passed)}")
    for status, count in report.summary.items():
        families["torchbridge_results"].append(
            f"torchbridge_results{_labels(status=status)} {count}")
    for result in report.results:
        labels = _labels(test=str(result["key"]), device=str(result["device"]),
                         job=str(result["job"]))
        for name, metric in result["metrics"].items():
            value = metric.get("value") if isinstance(metric, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                family = metric_name(str(result["check"]), name)
                families[family].append(f"{family}{labels} {float(value)!r}")
    lines = []
    for family, samples in families.items():
        lines.append(f"# TYPE {family} gauge")
        lines += _unique(samples)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _unique(samples: list[str]) -> list[str]:
    """OpenMetrics forbids two samples with the same labels; keep the first."""
    seen: set[str] = set()
    kept = []
    for sample in samples:
        key = sample.rsplit(" ", 1)[0]
        if key not in seen:
            seen.add(key)
            kept.append(sample)
    return kept


def write_openmetrics(path: str | Path, text: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target
