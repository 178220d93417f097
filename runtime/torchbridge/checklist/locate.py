"""Line numbers for TOML keys. ``tomllib`` reports none, so errors about a valid file's
values find the key's line by scanning the text: table headers, array-of-tables headers
(counted, so the second ``[[checks.export]]`` is index 1) and ``key = value`` lines,
dotted keys included. A key inside an inline table resolves to the line of the table."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

PathPart = str | int
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_NAME = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_NAME}(?:\s*\.\s*{_NAME})*)\s*=")
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


def _entries(text: str) -> list[tuple[list[PathPart], int]]:
    """(key path, line number) for every header and key line of ``text``."""
    entries: list[tuple[list[PathPart], int]] = []
    table: list[PathPart] = []
    arrays: Counter[tuple[str, ...]] = Counter()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.count('"""') % 2 or line.count("'''") % 2:
            in_multiline = not in_multiline
            if not in_multiline:
                continue
        if in_multiline:
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            names = _parts(header.group(2))
            if header.group(1) == "[[":
                index = arrays[tuple(names)]
                arrays[tuple(names)] += 1
                table = [*names, index]
            else:
                table = list(names)
            entries.append((list(table), number))
            continue
        key = _KEY.match(line)
        if key:
            entries.append(([*table, *_parts(key.group(1))], number))
    return entries


def line_of(text: str, path: Sequence[PathPart]) -> int | None:
    """The line of key ``path`` in TOML ``text``, or of its closest enclosing key.

    >>> line_of("[checks.latency]\\np99 = '5ms'\\n", ["checks", "latency", "p99"])
    2
    """
    target = list(path)
    best: tuple[int, int] | None = None  # (matched length, line)
    for key_path, number in _entries(text):
        if key_path == target:
            return number
        if len(key_path) < len(target) and key_path == target[:len(key_path)] and \
                (best is None or len(key_path) > best[0]):
            best = (len(key_path), number)
    return best[1] if best else None
