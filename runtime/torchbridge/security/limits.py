"""Bounds on what a scan may read, so hostile files cannot exhaust time or memory."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class ScanLimits:
    """Every limit a scan enforces. Crossing one is a verdict (``unsafe``), never a crash.

    * ``max_pickle_bytes``: bytes of one pickle stream read before the scan gives up (a
      ``torch.save`` ``data.pkl`` is kilobytes even for multi-gigabyte models; large
      inline byte strings in seekable files are skipped without being read).
    * ``max_member_bytes``: declared uncompressed size of one archive member that has to
      be decompressed to be scanned (pickles, nested archives, text).
    * ``max_archive_bytes``: declared uncompressed size of a whole archive (zip bombs).
    * ``max_ratio``: declared compression ratio above which a large member is a bomb.
    * ``max_depth``: archives nested inside archives (``outer.zip`` → ``inner.zip`` = 1).
    * ``max_members``: entries in one archive.
    * ``max_memo``: pickle memo entries tracked; ``max_strings`` / ``max_string_chars``:
      string constants kept for secret scanning and the characters kept of each.
    * ``max_text_bytes``: size up to which an archive member is read as text for secrets.
    * ``max_header_bytes``: the largest safetensors JSON header accepted.
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


DEFAULT_LIMITS = ScanLimits()


class LimitExceeded(Exception):
    """A scan limit was crossed; the message names the limit and the value found."""
