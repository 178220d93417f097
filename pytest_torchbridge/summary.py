"""``--tb-markdown PATH`` and ``--tb-html PATH``: the session's summary and HTML report.

Written by the controller only, from every result gathered (xdist workers included). The
markdown is also appended to ``$GITHUB_STEP_SUMMARY`` when that variable is set, so a
GitHub Actions job shows it without an extra step.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_torchbridge.results import collected, is_controller
from pytest_torchbridge.settings import settings

WRITTEN_KEY = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchbridge")
    group.addoption("--tb-markdown", default=None, metavar="PATH",
                    help="write a markdown summary of the TorchBridge results (also appended "
                         "to $GITHUB_STEP_SUMMARY when set)")
    group.addoption("--tb-html", default=None, metavar="PATH",
                    help="write a self-contained HTML report with plots (latency CDFs, "
                         "throughput, memory, baselines)")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    opts = settings(config)
    markdown, html = opts.markdown, opts.html
    if not is_controller(config) or not (markdown or html):
        return
    from torchbridge.hardware import detect
    from torchbridge.reporting import GatePolicy, Outputs, from_results, publish

    report = from_results(collected(config), job="pytest", machine=detect().to_dict())
    policy = GatePolicy(fail_on_skip=opts.fail_on_skip)
    published = publish(report, Outputs(markdown=markdown, html=html,
                                        step_summary=bool(markdown)), policy)
    config.stash[WRITTEN_KEY] = [str(path) for path in published.files]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    for path in config.stash.get(WRITTEN_KEY, []):
        terminalreporter.write_line(f"TorchBridge: wrote {path}")
