"""One JSON message a line over a pair of pipe file descriptors.

The head session and a base-side worker talk over two dedicated pipes (not stdin or
stdout, which pytest captures in the worker). Reads wait with a timeout, so a worker
that hangs or dies cannot hang the head's session.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import time
from typing import Any


class ChannelClosed(Exception):
    """The other end closed its pipe (it exited) or did not answer in time."""


class Channel:
    """Send and receive JSON objects, one a line, over ``read_fd`` / ``write_fd``."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.write_fd, data):]
        except (BrokenPipeError, OSError) as exc:
            raise ChannelClosed(f"the other side has gone ({exc})") from None

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message; :class:`ChannelClosed` on end of file or after ``timeout``
        seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if not ready:
                raise ChannelClosed(f"no answer within {timeout:g} s")
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                raise ChannelClosed("the other side closed the pipe")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ChannelClosed(f"unexpected message {message!r}")
        return message

    def request(self, message: dict[str, Any], timeout: float | None = None
                ) -> dict[str, Any]:
        self.send(message)
        return self.receive(timeout)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
