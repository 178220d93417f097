"""Structured request logs and the audit log.

One JSON object per request on the ``torchbridge.serving.access`` logger: request id,
endpoint, status, latency, model name and version, and the inputs' shapes and dtypes --
never their values unless the operator sets ``log_payloads``. The audit log (a file of
JSON lines) records which model version served which request, and for which key digest.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import IO, Any

import orjson

ACCESS_LOGGER = "torchbridge.serving.access"
access_log = logging.getLogger(ACCESS_LOGGER)

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_PREFIX = uuid.uuid4().hex[:12]
_counter = iter(range(1, 1 << 62))


def request_id(incoming: bytes | None) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a fresh unique id."""
    if incoming is not None and _REQUEST_ID.match(incoming):
        return incoming.decode("ascii")
    # A process prefix plus a counter is unique and far cheaper than uuid4 per request.
    return f"{_PREFIX}-{next(_counter):x}"


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` (and of its causes) with every exception *message* replaced
    by its length: frames and exception types stay, input values that a message may quote
    do not reach the log."""
    lines: list[str] = []
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        part = ["Traceback (most recent call last):\n", *traceback.format_list(frames),
                f"{type(current).__module__}.{type(current).__qualname__}: "
                f"<message redacted, {len(str(current))} characters; log_payloads shows it>\n"]
        lines[:0] = part
        nxt = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if nxt is not None:
            lines[:0] = ["\nThe above exception led to the one below:\n\n"]
        current = nxt
    return "".join(lines).rstrip("\n")


def log_exception(logger: logging.Logger, message: str, exc: BaseException,
                  payloads: bool) -> None:
    """Log ``exc`` at ERROR with its traceback. Without ``payloads`` (the operator's
    ``log_payloads``) its message, which may quote input values, is redacted: the record
    keeps the exception type and a traceback of frames only."""
    if payloads:
        logger.error("%s: %s: %s", message, type(exc).__name__, exc, exc_info=exc)
        return
    logger.error("%s: %s (message redacted)\n%s", message, type(exc).__name__,
                 redacted_traceback(exc), extra={"tb": {"exception_type": type(exc).__name__}})


class JsonFormatter(logging.Formatter):
    """Formats records as one JSON object per line, merging a record's ``tb`` dict."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"ts": round(record.created, 6), "level": record.levelname,
                                "logger": record.name, "message": record.getMessage()}
        extra = getattr(record, "tb", None)
        if isinstance(extra, dict):
            data.update(extra)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def configure_json_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send TorchBridge server logs to ``stream`` (stderr) as JSON lines.

    Called by :func:`~torchbridge.serving.server.run_server` and ``tb-serve``; a library
    embedding the app keeps its own logging set-up.
    """
    logger = logging.getLogger("torchbridge.serving")
    if any(getattr(h, "_tb_json", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._tb_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class AuditLog:
    """Append-only JSON lines: time, request id, endpoint, status, model version, key id."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - lives with the app
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = orjson.dumps({"ts": time.time(), **record}) + b"\n"
        with self._lock:
            self._file.write(line)

    def close(self) -> None:
        with self._lock:
            self._file.close()
