"""The cross-process reader/writer lock behind exclusive performance items."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pytest_torchbridge.perflock import RWFileLock


def test_readers_share_and_a_writer_waits_for_them(tmp_path: Path) -> None:
    lock = RWFileLock(tmp_path)
    events: list[str] = []
    readers_in = threading.Barrier(3)

    def reader(name: str) -> None:
        with lock.shared():
            events.append(f"{name} in")
            readers_in.wait(timeout=5)  # both readers hold the lock at the same time
            time.sleep(0.1)
            events.append(f"{name} out")

    def writer() -> None:
        readers_in.wait(timeout=5)
        with lock.exclusive():
            events.append("writer in")

    threads = [threading.Thread(target=reader, args=(n,)) for n in ("r1", "r2")]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert events.index("writer in") > max(events.index("r1 out"), events.index("r2 out"))


def test_a_waiting_writer_goes_before_later_readers(tmp_path: Path) -> None:
    lock = RWFileLock(tmp_path)
    events: list[str] = []
    first_in = threading.Event()

    def first_reader() -> None:
        with lock.shared():
            first_in.set()
            time.sleep(0.3)
            events.append("first reader out")

    def writer() -> None:
        first_in.wait(timeout=5)
        with lock.exclusive():
            events.append("writer in")
            time.sleep(0.1)
            events.append("writer out")

    def late_reader() -> None:
        first_in.wait(timeout=5)
        time.sleep(0.1)  # arrives while the writer is waiting
        with lock.shared():
            events.append("late reader in")

    threads = [threading.Thread(target=f) for f in (first_reader, writer, late_reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert events == ["first reader out", "writer in", "writer out", "late reader in"]
