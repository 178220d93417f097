"""Results travel on test reports (``report.tb_results``), so they survive pytest-xdist;
the controller alone gathers them and writes the reports."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_torchbridge.execution import HARDWARE_SKIP, RESULTS_KEY
from pytest_torchbridge.settings import settings

COLLECTED_KEY = pytest.StashKey[list[dict[str, Any]]]()
SKIPS_KEY = pytest.StashKey[list[str]]()


def is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    results = item.stash.get(RESULTS_KEY, [])
    if results and report.when == "call":
        report.tb_results = results  # type: ignore[attr-defined]
    return report


def gather(config: pytest.Config, report: pytest.TestReport) -> None:
    """Controller side: keep every result, and remember hardware skips."""
    collected = config.stash.setdefault(COLLECTED_KEY, [])
    for result in getattr(report, "tb_results", None) or []:
        collected.append({**result, "test_id": report.nodeid})
    if report.skipped and HARDWARE_SKIP in report.user_properties:
        config.stash.setdefault(SKIPS_KEY, []).append(report.nodeid)


class Gatherer:
    """Registered on the controller only: sees every report, local or from xdist workers."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.skipped):
            gather(self.config, report)


def collected(config: pytest.Config) -> list[dict[str, Any]]:
    return config.stash.get(COLLECTED_KEY, [])


def write_reports(config: pytest.Config) -> None:
    path = settings(config).json_path
    if not path:
        return
    from torchbridge.reporting.document import build_report, write_json

    write_json(path, build_report(collected(config)))
