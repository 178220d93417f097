"""Bounds on what a scan may read, so hostile files cannot exhaust time or memory.

:class:`ScanLimits` holds the limits (immutable, passed down from the front end);
:class:`ScanBudget` is what one file's scan has spent so far against them. Every byte
the scanner decompresses or extracts goes through a :class:`CountingReader`, which
charges the budget and checks the clock, so no archive, however shaped, can make a scan
decode more than ``max_decoded_bytes`` or run past ``max_seconds``.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import IO

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class ScanLimits:
    """Every limit a scan enforces. Crossing one is an ``invalid`` verdict that names the
    limit (the file was not fully scanned, so it is not trusted), never a crash.

    * ``max_pickle_bytes``: bytes of one pickle stream read before the scan gives up (a
      ``torch.save`` ``data.pkl`` is kilobytes even for multi-gigabyte models; large
      inline byte strings in seekable files are skipped without being read).
    * ``max_member_bytes``: declared uncompressed size of one archive member that has to
      be decompressed to be scanned (pickles, nested archives, text).
    * ``max_archive_bytes``: declared uncompressed size of a whole archive (zip bombs).
    * ``max_ratio``: declared compression ratio above which a large member, or a whole
      archive declaring more than ``ratio_min_bytes``, is a bomb.
    * ``max_depth``: containers nested inside containers (``outer.zip`` → ``inner.zip``
      = 1; a ``.tar.gz`` is a tar inside a gzip stream = 1).
    * ``max_members``: entries in one archive (zip or tar).
    * ``max_memo``: pickle memo entries tracked; ``max_strings`` / ``max_string_chars``:
      string constants kept for secret scanning and the characters kept of each.
    * ``max_text_bytes``: bytes of one member or file read as text for secrets.
    * ``max_header_bytes``: the largest safetensors JSON header accepted.
    * ``max_decoded_bytes``: bytes decompressed or extracted from containers in one
      file's scan, all levels together (tensor storages are never decoded; their first
      ``sniff_bytes`` are).
    * ``max_secret_bytes``: bytes of text held and searched for secrets in one file.
    * ``max_seconds``: wall time for one file's scan.
    * ``sniff_bytes``: bytes of a file or member read to decide what it is.
    """

    max_pickle_bytes: int = 4 * GiB
    max_member_bytes: int = 4 * GiB
    max_archive_bytes: int = 256 * GiB
    max_ratio: float = 200.0
    ratio_min_bytes: int = 64 * MiB
    max_depth: int = 3
    max_members: int = 100_000
    max_memo: int = 1_000_000
    max_strings: int = 200_000
    max_string_chars: int = 4096
    max_text_bytes: int = 1 * MiB
    max_header_bytes: int = 100 * MiB
    max_decoded_bytes: int = 1 * GiB
    max_secret_bytes: int = 16 * MiB
    max_seconds: float = 60.0
    sniff_bytes: int = 64 * 1024


DEFAULT_LIMITS = ScanLimits()


class LimitExceeded(Exception):
    """A scan limit was crossed; the message names the limit and the value found."""


@dataclass
class ScanBudget:
    """What one file's scan has spent: decoded bytes, text bytes, time. The ``charge_*``
    methods raise :class:`LimitExceeded` naming the limit crossed."""

    limits: ScanLimits = DEFAULT_LIMITS
    decoded: int = 0
    text: int = 0
    started: float = field(default_factory=time.monotonic)

    def check_time(self) -> None:
        """Raises :class:`LimitExceeded` once the scan has run ``max_seconds``."""
        elapsed = time.monotonic() - self.started
        if elapsed > self.limits.max_seconds:
            raise LimitExceeded(f"scan ran {elapsed:.1f} s > max_seconds "
                                f"{self.limits.max_seconds:g}")

    def charge_decoded(self, n: int) -> None:
        """Count ``n`` bytes decompressed or extracted; raises past ``max_decoded_bytes``."""
        self.decoded += n
        if self.decoded > self.limits.max_decoded_bytes:
            raise LimitExceeded(f"more than max_decoded_bytes {self.limits.max_decoded_bytes}"
                                " bytes decompressed or extracted from containers")
        self.check_time()

    def charge_text(self, n: int) -> None:
        """Count ``n`` bytes of text held for secret scanning; raises past
        ``max_secret_bytes``."""
        self.text += n
        if self.text > self.limits.max_secret_bytes:
            raise LimitExceeded(f"more than max_secret_bytes {self.limits.max_secret_bytes} "
                                "bytes of text to search for secrets")


class CountingReader:
    """A read-only stream over ``raw`` that charges every byte read to ``budget`` and,
    with ``cap``, refuses to yield more than ``cap`` bytes (``what`` names the stream in
    the :class:`LimitExceeded` message).

    Enough of the file protocol for :mod:`shutil`, :mod:`pickle`-style readers and the
    decompressors: ``read``, ``readline``, ``readable``, ``seekable`` (False: a counted
    stream is read once, forwards).
    """

    def __init__(self, raw: IO[bytes] | io.BufferedIOBase, budget: ScanBudget,
                 cap: int | None = None, what: str = "") -> None:
        self.raw = raw
        self.budget = budget
        self.cap = cap
        self.what = what
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left, in 1 MiB steps, if ``n`` < 0)."""
        if n is None or n < 0:
            chunks = []
            while chunk := self.read(MiB):
                chunks.append(chunk)
            return b"".join(chunks)
        return self._charge(self.raw.read(n))

    def readline(self, limit: int = -1) -> bytes:
        """One line, at most ``limit`` bytes."""
        return self._charge(self.raw.readline(limit))

    def _charge(self, data: bytes) -> bytes:
        self.count += len(data)
        if self.cap is not None and self.count > self.cap:
            raise LimitExceeded(f"{self.what} decodes to more than {self.cap} bytes "
                                f"(past max_ratio {self.budget.limits.max_ratio:g} of its "
                                "size): a compression bomb")
        self.budget.charge_decoded(len(data))
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False
