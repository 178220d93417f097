"""The base side of ``--tb-baseline-ref``: an inner pytest session in the base worktree.

The head session starts ``python -m pytest <nodeid> --tb-ab-serve=R,W`` in a git worktree
of the base ref (see :mod:`pytest_torchbridge.base_ref`). This session collects that one
item with the base code, builds its model and inputs through the base's own fixtures,
and, instead of running the check, serves timing blocks over the pipes, lock-step:

====================================  =============================================
head sends                            worker answers
====================================  =============================================
(nothing: the worker speaks first)    ``{"event": "hello"}`` once fixtures are built
``{"op": "bind", "device", "batch_size", "threads"}``  ``{"event": "ready"}``
``{"op": "warm", "seconds"}``         ``{"ok": true}``
``{"op": "block", "calls"}``          ``{"ns": [<int>, ...]}`` (each call's time)
``{"op": "quit"}``                    (the item passes, the session ends)
====================================  =============================================

Anything that goes wrong before ``ready`` (the item is absent, a fixture fails, the
model rejects the batch) is sent as ``{"event": "error", "reason": ...}``.
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
    """Registered in the worker session: tells the head why no item came to serve."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.served = False

    def _error(self, reason: str) -> None:
        if not self.served:
            self.served = True  # one reason is enough
            with contextlib.suppress(ChannelClosed):
                self.channel.send({"event": "error", "reason": reason})

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not session.items:
            self._error("no such test item there")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed or (report.skipped and report.when == "setup"):
            verb = "skipped" if report.skipped else f"failed in {report.when}"
            self._error(f"the item {verb} there: {_last_line(report)}")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self._error(f"the session ended (exit status {exitstatus}) before serving")


def _last_line(report: pytest.TestReport) -> str:
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

    channel = reporter.channel
    reporter.served = True
    request = channel.request({"event": "hello"}, IDLE_TIMEOUT_S)
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
