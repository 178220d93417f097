"""A side worker of ``--tb-baseline-ref``: an inner pytest session serving timing blocks.

The head session starts ``python -m pytest <test files> --tb-ab-serve=R,W`` once per side
(in the base worktree, and in the working tree) and per process (see
:mod:`pytest_torchbridge.base_ref`). This session collects those files with its side's
code and then, instead of running the tests, waits for requests over the pipes; for each
it runs that one item, which builds the model and inputs through the side's own fixtures
and, instead of running the check, serves timing blocks, lock-step:

=================================================  ====================================
head sends                                         worker answers
=================================================  ====================================
``{"op": "item", "nodeid", "device",               ``{"event": "ready"}`` once built and
"batch_size", "threads"}``                         bound, or ``{"event": "error",
                                                   "reason"}``
``{"op": "warm", "seconds"}``                      ``{"ok": true}``
``{"op": "block", "calls"}``                       ``{"ns": [<int>, ...]}`` (each call)
``{"op": "quit"}``                                 (the item ends; the next may follow)
``{"op": "exit"}``                                 (the session ends)
=================================================  ====================================

Anything that stops an item before ``ready`` (absent here, a collection or fixture error,
the model rejecting the batch) is answered with the reason; the worker stays up.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest

from pytest_torchbridge.channel import Channel, ChannelClosed

#: The worker waits this long for the head's next request before giving up.
IDLE_TIMEOUT_S = 600.0


def channel_from(spec: str) -> Channel:
    read_fd, write_fd = (int(part) for part in spec.split(","))
    return Channel(read_fd, write_fd)


class WorkerReporter:
    """Registered in a side worker's session: runs requested items, says why one failed."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.request: dict[str, Any] = {}
        self.answered = False
        self.broken: dict[str, str] = {}  # collection errors, by file

    def error(self, reason: str) -> None:
        """Answer the current request with ``reason`` (once)."""
        if not self.answered:
            self.answered = True
            with contextlib.suppress(ChannelClosed):
                self.channel.send({"event": "error", "reason": reason})

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.broken[report.nodeid.split("::")[0]] = _last_line(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        items = {item.nodeid: item for item in session.items}
        while True:
            try:
                message = self.channel.receive(IDLE_TIMEOUT_S)
            except ChannelClosed:
                return True
            if message.get("op") != "item":
                return True
            self.request, self.answered = message, False
            nodeid = str(message["nodeid"])
            item = items.get(nodeid)
            if item is None:
                broken = self.broken.get(nodeid.split("::")[0])
                self.error(f"collecting its file failed there: {broken}" if broken
                           else "no such test item there")
                continue
            item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
            self.error("the item ran no TorchBridge check there")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed or (report.skipped and report.when == "setup"):
            verb = "skipped" if report.skipped else f"failed in {report.when}"
            self.error(f"the item {verb} there: {_last_line(report)}")


def _last_line(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        return str(longrepr[2])
    lines = [line.strip() for line in report.longreprtext.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E ")]
    return (errors[-1][1:].strip() if errors else lines[-1] if lines else "unknown error")[:400]


def serve(item: pytest.Item, subject: Any, reporter: WorkerReporter) -> None:
    """Serve timing blocks of ``subject``'s model until the head says ``quit``."""
    from torchbridge.measure.ab import LocalSide
    from torchbridge.measure.runner import ModelRejected, bind
    from torchbridge.measure.timing import quiet_region, threads

    channel, request = reporter.channel, reporter.request
    reporter.answered = True
    with threads(int(request["threads"])):
        placed = dataclasses.replace(subject, device=str(request["device"]))
        try:
            call = bind(placed, request.get("batch_size"))
        except ModelRejected as exc:
            channel.send({"event": "error", "reason": str(exc)})
            return
        side = LocalSide(call.fn, placed.device)
        message = channel.request({"event": "ready"}, IDLE_TIMEOUT_S)
        with quiet_region():
            while message.get("op") != "quit":
                if message["op"] == "warm":
                    side.warm_up(float(message["seconds"]))
                    reply: dict[str, Any] = {"ok": True}
                else:
                    reply = {"ns": side.time_block(int(message["calls"]))}
                message = channel.request(reply, IDLE_TIMEOUT_S)
