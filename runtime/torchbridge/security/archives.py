"""Walk a model file — zip archive, raw or legacy pickle, nested archives — and collect
every pickle global and string it holds, within :class:`ScanLimits`.

Archives are read with the standard library's :mod:`zipfile`, which never decompresses
past a member's declared size; members are checked against the declared sizes and
compression ratios *before* anything is decompressed, so a zip bomb is a verdict and
not an out-of-memory kill. Tensor storages of ``torch.save`` / TorchScript / ``.pt2``
archives are never read: torch does not unpickle them.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from torchbridge.security.limits import DEFAULT_LIMITS, LimitExceeded, MiB, ScanLimits
from torchbridge.security.pickles import looks_like_pickle, scan_pickle_stream

PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".dill", ".dat", ".data"}
TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pt2", ".ptl"}
ZIP_SUFFIXES = {".zip", ".npz", ".jar", ".mar"}
_STORAGE = re.compile(r"(^|/)(data|weights|constants|tensors?)/[^/]*$")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_SPOOL = 32 * MiB
#: The first pickle of a legacy (non-zip) ``torch.save`` file: its magic number.
LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."


@dataclass
class ContentScan:
    """What a file holds, as far as safety goes.

    ``format``: ``torch-zip`` (``torch.save``), ``torchscript``, ``pt2``, ``zip``,
    ``pickle``, ``torch-legacy`` or ``unknown``; ``globals``: each imported global → the
    locations (``file:member``) importing it; ``strings``: (location, string constant);
    ``unsafe``: reasons the file must be refused whatever it imports (limits crossed,
    zip bombs); ``invalid``: why (part of) it could not be parsed.
    """

    format: str = "unknown"
    globals: dict[str, list[str]] = field(default_factory=dict)
    strings: list[tuple[str, str]] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pickles: int = 0
    members: int = 0

    def add_global(self, name: str, location: str) -> None:
        self.globals.setdefault(name, [])
        if location not in self.globals[name]:
            self.globals[name].append(location)


def archive_format(names: list[str]) -> str:
    """``torch-zip``, ``torchscript``, ``pt2`` or ``zip`` from an archive's member names."""
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in tails or any(t.startswith("models/") and t.endswith(".json")
                                        for t in tails):
        return "pt2"
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        return "torchscript"
    if "data.pkl" in tails:
        return "torch-zip"
    return "zip"


def _is_zip(stream: IO[bytes]) -> bool:
    try:
        return zipfile.is_zipfile(stream)
    finally:
        stream.seek(0)


def _scan_pickle(stream: IO[bytes], location: str, result: ContentScan, limits: ScanLimits,
                 multiple: bool) -> None:
    found = scan_pickle_stream(stream, limits, multiple=multiple)
    result.pickles += found.pickles
    for name in found.globals:
        result.add_global(name, location)
    result.strings.extend((location, s) for s in found.strings)
    result.notes.extend(f"{location}: {n}" for n in dict.fromkeys(found.notes))
    if found.error:
        result.invalid.append(f"{location}: not a complete pickle ({found.error})")


def _bomb_reason(info: zipfile.ZipInfo, limits: ScanLimits) -> str | None:
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > limits.ratio_min_bytes and ratio > limits.max_ratio:
        return (f"{info.filename} expands {info.compress_size} bytes to {info.file_size} "
                f"(ratio {ratio:.0f} > max_ratio {limits.max_ratio:.0f}): zip bomb")
    return None


def _member_kind(info: zipfile.ZipInfo, head: bytes, fmt: str, limits: ScanLimits) -> str:
    suffix = PurePosixPath(info.filename).suffix.lower()
    if head.startswith(_ZIP_MAGIC) or suffix in ZIP_SUFFIXES:
        return "zip"  # e.g. a .pt2's data/sample_inputs/model.pt, which torch loads
    if fmt != "zip" and _STORAGE.search(info.filename) and \
            suffix not in PICKLE_SUFFIXES | TORCH_SUFFIXES:
        return "storage"  # raw tensor bytes; torch never unpickles these
    if suffix in PICKLE_SUFFIXES or looks_like_pickle(head) or \
            (suffix in TORCH_SUFFIXES and head[:1] == b"\x80"):
        return "pickle"
    if info.file_size <= limits.max_text_bytes:
        return "text"
    return "skip"


def _scan_zip(stream: IO[bytes], location: str, depth: int, result: ContentScan,
              limits: ScanLimits) -> None:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        result.invalid.append(f"{location}: unreadable zip archive ({exc})")
        return
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > limits.max_members:
            result.unsafe.append(f"{location}: {len(infos)} members > max_members "
                                 f"{limits.max_members}")
            return
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_archive_bytes:
            result.unsafe.append(f"{location}: declares {declared} uncompressed bytes > "
                                 f"max_archive_bytes {limits.max_archive_bytes}: zip bomb")
            return
        fmt = archive_format([i.filename for i in infos])
        if depth == 0:
            result.format = fmt
        for info in infos:
            result.members += 1
            _scan_member(archive, info, f"{location}:{info.filename}", fmt, depth, result,
                         limits)


def _scan_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, location: str, fmt: str,
                 depth: int, result: ContentScan, limits: ScanLimits) -> None:
    bomb = _bomb_reason(info, limits)
    if bomb:
        result.unsafe.append(bomb)
        return
    try:
        with archive.open(info) as member:
            head = member.read(8)
        kind = _member_kind(info, head, fmt, limits)
        if kind in ("storage", "skip"):
            return
        if info.file_size > limits.max_member_bytes:
            result.unsafe.append(f"{location}: {info.file_size} bytes > max_member_bytes "
                                 f"{limits.max_member_bytes}; not scanned, so not trusted")
            return
        if kind == "pickle":
            with archive.open(info) as member:
                _scan_pickle(member, location, result, limits, multiple=False)
        elif kind == "zip":
            if depth + 1 > limits.max_depth:
                result.unsafe.append(f"{location}: archives nested deeper than max_depth "
                                     f"{limits.max_depth}")
                return
            with archive.open(info) as member, \
                    tempfile.SpooledTemporaryFile(max_size=_SPOOL) as spool:
                shutil.copyfileobj(member, spool, 1 << 20)
                spool.seek(0)
                if _is_zip(spool):
                    _scan_zip(spool, location, depth + 1, result, limits)
                elif looks_like_pickle(head):
                    _scan_pickle(spool, location, result, limits,
                                 multiple=True)
        else:
            with archive.open(info) as member:
                raw = member.read(limits.max_text_bytes)
            # A binary payload that is neither pickle nor archive holds nothing to scan.
            with contextlib.suppress(UnicodeDecodeError):
                result.strings.append((location, raw.decode("utf-8")))
    except LimitExceeded as exc:
        result.unsafe.append(f"{location}: {exc}")
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: encrypted member; NotImplementedError: unknown compression.
        result.invalid.append(f"{location}: cannot be read ({type(exc).__name__}: {exc})")


def scan_content(path: str | Path, limits: ScanLimits = DEFAULT_LIMITS) -> ContentScan:
    """Scan a zip archive or a (legacy ``torch.save``) pickle file for globals and strings.

    Other formats come back with ``format="unknown"``: safetensors and ONNX have their own
    readers in :mod:`torchbridge.security.scan`.
    """
    path = Path(path)
    result = ContentScan()
    with open(path, "rb") as handle:
        head = handle.read(8)
        handle.seek(0)
        try:
            if _is_zip(handle):
                _scan_zip(handle, path.name, 0, result, limits)
            elif head.startswith(_ZIP_MAGIC):
                result.format = "zip"
                result.invalid.append(f"{path.name}: zip archive without its central "
                                      "directory (truncated?)")
            elif head[:1] == b"\x80" or path.suffix.lower() in PICKLE_SUFFIXES | \
                    TORCH_SUFFIXES:
                legacy = handle.read(len(LEGACY_MAGIC)) == LEGACY_MAGIC
                handle.seek(0)
                result.format = "torch-legacy" if legacy else "pickle"
                _scan_pickle(handle, path.name, result, limits, multiple=True)
                if legacy and result.pickles < 5 and not result.invalid:
                    result.invalid.append(f"{path.name}: legacy torch.save file with "
                                          f"{result.pickles} of its 5 pickles (truncated)")
        except LimitExceeded as exc:
            result.unsafe.append(f"{path.name}: {exc}")
    return result
