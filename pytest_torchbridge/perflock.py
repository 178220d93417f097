"""A cross-process reader/writer lock on ``fcntl.flock``, with writers first.

Under pytest-xdist every test holds the lock *shared* while it runs; a performance
measurement holds it *exclusively*, so it never overlaps another test on another worker.
A writer first takes a gate file, so that a stream of readers cannot starve it: new
readers queue at the gate behind a waiting writer. Without ``fcntl`` (Windows) the lock
does nothing and :attr:`RWFileLock.available` is False.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class RWFileLock:
    """Shared/exclusive lock over two files in ``directory`` (created if missing)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.gate = self.directory / "gate.lock"
        self.main = self.directory / "rw.lock"

    @property
    def available(self) -> bool:
        return fcntl is not None

    @contextlib.contextmanager
    def _held(self, path: Path, mode: int) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def _acquire(self, mode: int) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        fd = os.open(self.main, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with self._held(self.gate, fcntl.LOCK_EX):
                fcntl.flock(fd, mode)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def shared(self) -> contextlib.AbstractContextManager[None]:
        """Held by every test: many at once, none while a measurement runs."""
        return self._acquire(fcntl.LOCK_SH if fcntl is not None else 0)

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held by a performance measurement: alone."""
        return self._acquire(fcntl.LOCK_EX if fcntl is not None else 0)
