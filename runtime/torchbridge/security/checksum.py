"""``sha256sum``-compatible checksum files: create and verify.

A line is ``<64 hex digits>  <path>`` (`` *`` for binary mode is read too); a path with a
backslash or newline is escaped and the line starts with ``\\`` as GNU coreutils does,
so ``sha256sum -c`` reads what we write and we read what it writes. Paths are written
relative to the checksum file's folder (or as given when printing to stdout) and
verified relative to the checksum file's folder.

An ONNX model named on its own brings its external-data files along, so the checksum
covers the whole artifact.

Example::

    text = write_checksums(["exports/"], "exports.sha256")
    bad = [r for r in verify_checksums("exports.sha256") if not r.ok]
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchbridge.errors import TorchBridgeError

_LINE = re.compile(r"^(\\?)([0-9a-fA-F]{64}) ([ *])(.+)$")


class ChecksumError(TorchBridgeError):
    """A checksum file cannot be created or read at all (not: a mismatch)."""


@dataclass(frozen=True)
class ChecksumResult:
    """One line of a checksum file, verified: ``status`` is ``OK``, ``FAILED`` (digest
    differs), ``MISSING`` (no such file) or ``MALFORMED`` (not a checksum line)."""

    path: str
    status: str
    expected: str = ""
    actual: str = ""
    line: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def describe(self) -> str:
        if self.status == "FAILED":
            return f"{self.path}: FAILED (expected {self.expected[:12]}…, got " \
                   f"{self.actual[:12]}…)"
        if self.status == "MALFORMED":
            return f"line {self.line}: MALFORMED (not '<sha256>  <path>')"
        return f"{self.path}: {self.status}"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def onnx_external_files(path: str | Path) -> list[Path]:
    """External-data files an ONNX model refers to (empty without onnx or for others)."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        return []
    try:
        import onnx
    except ImportError:  # without onnx, the file torch.onnx writes by default
        sibling = path.with_name(path.name + ".data")
        return [sibling] if sibling.is_file() else []
    model = onnx.load(str(path), load_external_data=False)
    locations = {entry.value for tensor in _graph_tensors(model.graph)
                 for entry in tensor.external_data if entry.key == "location"}
    return [path.parent / location for location in sorted(locations)]


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _graph_tensors(sub)


def collect_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files to checksum: files named (with their ONNX external data) and every file under
    directories named, each once, in a stable order."""
    out: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    out[Path(root) / name] = None
        elif path.is_file():
            out[path] = None
            for extra in onnx_external_files(path):
                if not extra.is_file():
                    raise ChecksumError(f"{path} refers to external data {extra.name}, "
                                        "which is missing")
                out[extra] = None
        else:
            raise ChecksumError(f"{path}: no such file or directory")
    return list(out)


def _escape(name: str) -> tuple[str, str]:
    if "\\" in name or "\n" in name:
        return "\\", name.replace("\\", "\\\\").replace("\n", "\\n")
    return "", name


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), name)


def write_checksums(paths: Iterable[str | Path], out_file: str | Path | None = None) -> str:
    """Checksum lines for ``paths`` (files and directories); written to ``out_file`` when
    given (paths relative to its folder), and returned. The checksum file itself is
    skipped when it lies under a directory being summed."""
    base = Path(out_file).resolve().parent if out_file is not None else None
    lines = []
    for path in collect_files(paths):
        if out_file is not None and path.resolve() == Path(out_file).resolve():
            continue
        name = Path(os.path.relpath(path.resolve(), base)).as_posix() if base else \
            path.as_posix()
        prefix, escaped = _escape(name)
        lines.append(f"{prefix}{sha256_file(path)}  {escaped}\n")
    text = "".join(lines)
    if out_file is not None:
        Path(out_file).write_text(text, encoding="utf-8")
    return text


def verify_checksums(checksum_file: str | Path) -> list[ChecksumResult]:
    """Verify every line of ``checksum_file``. Never raises for a bad line or a missing
    file: each is a result; raises :class:`ChecksumError` only when the checksum file
    itself cannot be read or holds no lines."""
    checksum_file = Path(checksum_file)
    try:
        text = checksum_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChecksumError(f"cannot read checksum file {checksum_file}: {exc}") from None
    base = checksum_file.parent
    results = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            results.append(ChecksumResult("", "MALFORMED", line=number))
            continue
        escaped, expected, _, name = match.groups()
        name = _unescape(name) if escaped else name
        target = base / name
        if not target.is_file():
            results.append(ChecksumResult(name, "MISSING", expected.lower(), line=number))
            continue
        actual = sha256_file(target)
        status = "OK" if actual == expected.lower() else "FAILED"
        results.append(ChecksumResult(name, status, expected.lower(), actual, number))
    if not results:
        raise ChecksumError(f"{checksum_file} holds no checksum lines")
    return results
