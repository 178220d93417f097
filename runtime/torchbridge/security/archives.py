"""Walk a file by its content — every format a loader could open it as — and collect
every pickle global and string it holds, within :class:`ScanLimits`.

A file (and, recursively, every archive member and decompressed stream) is sniffed by
:func:`torchbridge.security.formats.sniff`: pickle (any protocol, several back to back),
zip (also appended after other data), tar, gzip / bz2 / xz / lzma / zlib, ``.npy``
(object arrays hold a pickle; string arrays are text) and safetensors. Bytes that parse
as more than one of these are a *polyglot*: each loader would see a different file, so
the file is ``invalid`` even when every part scans clean.

Bounded cost: archives are read with :mod:`zipfile` / :mod:`tarfile`, members are
checked against their declared sizes and compression ratios *before* anything is
decompressed, every decoded byte is charged to a :class:`ScanBudget` (total bytes
decoded, text held for secret scanning, wall time), and members are spooled to disk
past 32 MiB. Tensor storages of ``torch.save`` / TorchScript / ``.pt2`` archives are
not read beyond their first ``sniff_bytes``, unless those parse as a pickle or an
archive (a ``.pt2`` weight that torch unpickles is scanned as one).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil
import struct
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from torchbridge.security import formats
from torchbridge.security.limits import (
    DEFAULT_LIMITS,
    CountingReader,
    LimitExceeded,
    MiB,
    ScanBudget,
    ScanLimits,
)
from torchbridge.security.pickles import scan_pickle_stream
from torchbridge.security.safetensors_header import (
    InvalidArtifact,
    looks_like_safetensors,
    read_header_stream,
)
from torchbridge.security.secrets import (
    decode_text,
    name_findings,
    scan_safetensors_header,
)
from torchbridge.security.verdict import SecretFinding

PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".dill", ".dat", ".data", ".p", ".sav",
                   ".pck", ".pcl", ".pkl_"}
TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pt2", ".ptl"}
ZIP_SUFFIXES = {".zip", ".npz", ".jar", ".mar"}
#: Names that hold text, where only a complete pickle counts as one (a README that
#: happens to open with ``c`` is not a protocol-0 ``GLOBAL``).
TEXT_SUFFIXES = {".txt", ".md", ".json", ".yaml", ".yml", ".py", ".cfg", ".toml", ".ini",
                 ".csv", ".rst", ".html", ".log", ".sha256", ".sh", ".xml"}
_STORAGE = re.compile(r"(^|/)(data|weights|constants|tensors?)/[^/]*$")
_SPOOL = 32 * MiB
_STORAGE_SNIFF = 4096
_NUMBERED = re.compile(r"(^|/)\d+$")
_CONTAINERS = {"zip", "tar", "npy", *formats.DECODABLE, "lz4", "zstd"}
#: The first pickle of a legacy (non-zip) ``torch.save`` file: its magic number.
LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
_LEGACY_TAR = {"sys_info", "pickle", "storages", "tensors"}


@dataclass
class ContentScan:
    """What a file holds, as far as safety goes.

    ``format``: ``torch-zip`` (``torch.save``), ``torchscript``, ``pt2``, ``zip``, ``npz``,
    ``pickle``, ``torch-legacy``, ``tar``, ``torch-legacy-tar``, ``gzip`` (and the other
    compressions), ``npy``, ``safetensors``, ``polyglot`` or ``unknown``; ``kinds``: every
    format the file's bytes open as; ``globals``: each imported global → the locations
    (``file:member``) importing it; ``strings``: (location, text) to search for secrets;
    ``findings``: secrets already found (safetensors headers); ``unsafe``: reasons to
    refuse whatever the globals; ``invalid``: why (part of) it could not be parsed or
    trusted (limits crossed, polyglots, corrupt members); ``header``: the safetensors
    header of a safetensors file; ``torchscript``: locations of TorchScript archives.
    """

    format: str = "unknown"
    kinds: list[str] = field(default_factory=list)
    globals: dict[str, list[str]] = field(default_factory=dict)
    strings: list[tuple[str, str]] = field(default_factory=list)
    findings: list[SecretFinding] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pickles: int = 0
    members: int = 0
    header: dict[str, Any] | None = None
    torchscript: set[str] = field(default_factory=set)

    def in_torchscript(self, location: str) -> bool:
        """Whether ``location`` is inside a TorchScript archive (whose ``__torch__``
        names only TorchScript's own unpickler resolves)."""
        return any(location.startswith(p + ":") for p in self.torchscript)

    def add_global(self, name: str, location: str) -> None:
        self.globals.setdefault(name, [])
        if location not in self.globals[name]:
            self.globals[name].append(location)


def archive_format(names: list[str]) -> str:
    """``torch-zip``, ``torchscript``, ``pt2``, ``npz`` or ``zip`` from member names."""
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in tails or any(t.startswith("models/") and t.endswith(".json")
                                        for t in tails):
        return "pt2"
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        return "torchscript"
    if "data.pkl" in tails:
        return "torch-zip"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _named(name: str, location: str, walk: _Walk) -> str:
    """A member's label for locations, recording a secret its name holds (one scan)."""
    if not walk.secrets or _NUMBERED.search(name):  # torch's data/0, data/1, ...
        return name
    found = name_findings(name, location)
    walk.result.findings += found
    return f"<redacted name, {len(name)} chars>" if found else name


class _Timed:
    """A seekable stream whose reads check the scan's clock (every 1,024 calls)."""

    def __init__(self, raw: IO[bytes], budget: ScanBudget) -> None:
        self.raw = raw
        self.budget = budget
        self.calls = 0

    def _tick(self) -> None:
        self.calls += 1
        if not self.calls & 1023:
            self.budget.check_time()

    def read(self, n: int = -1) -> bytes:
        self._tick()
        return self.raw.read(n)

    def readline(self, limit: int = -1) -> bytes:
        self._tick()
        return self.raw.readline(limit)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


class _Walk:
    """One file's scan: the result being filled, the limits and what has been spent."""

    def __init__(self, result: ContentScan, limits: ScanLimits, secrets: bool) -> None:
        self.result = result
        self.limits = limits
        self.budget = ScanBudget(limits)
        self.secrets = secrets

    # ------------------------------------------------------------------ helpers

    def text(self, location: str, text: str) -> None:
        """Keep ``text`` for secret scanning (charged against ``max_secret_bytes``)."""
        if self.secrets and text:
            self.budget.charge_text(len(text))
            self.result.strings.append((location, text))

    def text_bytes(self, location: str, raw: bytes) -> None:
        """Keep the text of ``raw`` (UTF-8/16/32, or the printable runs of binary data)."""
        if self.secrets and raw:
            text = decode_text(raw[: self.limits.max_text_bytes])
            if text:
                self.text(location, text)

    def spool(self, source: Any, head: bytes = b""
              ) -> tempfile.SpooledTemporaryFile[bytes]:
        """Copy ``source`` (already counted) after ``head`` into a seekable spool, which
        the caller closes."""
        spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=_SPOOL)
        spool.write(head)
        shutil.copyfileobj(source, spool, MiB)
        spool.seek(0)
        return spool

    def _afford(self, declared: int, location: str) -> None:
        """Refuse, before decoding, a member whose declared size exceeds what is left."""
        left = self.limits.max_decoded_bytes - self.budget.decoded
        if declared > left:
            raise LimitExceeded(f"{location}: declares {declared} bytes, more than the "
                                f"{left} left of max_decoded_bytes "
                                f"{self.limits.max_decoded_bytes}")

    # ------------------------------------------------------------------ dispatch

    def blob(self, f: IO[bytes], size: int, location: str, depth: int, *, suffix: str = "",
             top: bool = False, strict: bool = False, force_pickle: bool = False,
             storage: bool = False) -> list[str]:
        """Scan seekable ``f`` (``size`` bytes) as everything it parses as; its kinds.
        ``storage``: tensor bytes, judged only as ``torch.load`` would read them."""
        self.budget.check_time()
        f.seek(0)
        head = f.read(self.limits.sniff_bytes)
        f.seek(0)
        kinds = formats.sniff(head, f, size, strict=strict, storage=storage)
        if force_pickle and not {"pickle", "zip"} & set(kinds):
            kinds.append("pickle")  # torch.load reads a zip as a zip, anything else as pickles
        header = None if storage else self._safetensors(f, head, size, location, suffix)
        if header is not None:
            kinds.append("safetensors")
        if len(kinds) > 1 and "pickle" in kinds and not force_pickle and not \
                formats.sniff_pickle(head, len(head) >= size, size).is_pickle(strict=True):
            # Beside another format only a sound pickle counts: a safetensors header
            # length of 0x280 opens with the bytes of a PROTO 2 opcode.
            kinds.remove("pickle")
        if top:
            self.result.kinds = kinds
            self.result.header = header
        if len(kinds) > 1:
            self.result.invalid.append(
                f"{location}: parses as {' and '.join(kinds)} at once (a polyglot: each "
                "loader would read a different file); refused")
        if any(k in _CONTAINERS for k in kinds) and depth > self.limits.max_depth:
            self.result.invalid.append(f"{location}: containers nested deeper than "
                                       f"max_depth {self.limits.max_depth}; not scanned")
            return kinds
        for kind in kinds:
            self._dispatch(kind, f, size, head, location, depth, top, suffix)
        if top and not kinds and self.secrets and suffix != ".onnx":
            # A config or notes file beside the model: its text can leak credentials.
            f.seek(0)
            text = decode_text(f.read(self.limits.max_text_bytes), runs=False)
            if text:
                self.text(location, text)
        if header is not None and self.secrets:
            self.result.findings += scan_safetensors_header(header, location)
        return kinds

    def _dispatch(self, kind: str, f: IO[bytes], size: int, head: bytes, location: str,
                  depth: int, top: bool, suffix: str) -> None:
        if kind == "zip":
            self.zip(f, location, depth, top, suffix)
        elif kind == "tar":
            self.tar(f, location, depth, top)
        elif kind == "npy":
            self.npy(f, size, location)
        elif kind == "pickle":
            self.pickles(f, 0, location)
            if top:
                self.result.format = "torch-legacy" if head.startswith(LEGACY_MAGIC) \
                    else "pickle"
        elif kind != "safetensors":
            self.compressed(kind, f, size, location, depth, suffix)
        if top and kind not in ("zip", "tar", "pickle"):
            self.result.format = kind
        if top and len(self.result.kinds) > 1:
            self.result.format = "polyglot"

    def _safetensors(self, f: IO[bytes], head: bytes, size: int, location: str,
                     suffix: str) -> dict[str, Any] | None:
        if not (looks_like_safetensors(head, size) or suffix == ".safetensors"):
            return None
        f.seek(0)
        try:
            return read_header_stream(f, size, location, self.limits)
        except InvalidArtifact as exc:
            self.result.invalid.append(str(exc))
            return None
        finally:
            f.seek(0)

    # ------------------------------------------------------------------ pickles

    def pickles(self, f: IO[bytes], start: int, location: str) -> None:
        """Every pickle from byte ``start`` on (legacy ``torch.save`` writes five; a
        pickle run of any protocol is followed to its end)."""
        f.seek(start)
        head = f.read(len(LEGACY_MAGIC))
        f.seek(start)
        try:
            found = scan_pickle_stream(_Timed(f, self.budget), self.limits,  # type: ignore[arg-type]
                                       multiple=True)
        except LimitExceeded as exc:
            self.result.invalid.append(f"{location}: {exc}; not fully scanned")
            return
        except Exception as exc:  # the walker's own defect: refuse, keep scanning the rest
            self.result.invalid.append(f"{location}: pickle could not be walked "
                                       f"({type(exc).__name__}: {str(exc)[:160]})")
            return
        self.result.pickles += found.pickles
        for name in found.globals:
            self.result.add_global(name, location)
        for text in found.strings:
            self.text(location, text)
        if self.secrets and self._strings_cut(found):
            self._raw_text(f, start, f.tell(), location)
        self.result.notes.extend(f"{location}: {n}" for n in dict.fromkeys(found.notes))
        if found.error:
            self.result.invalid.append(f"{location}: not a complete pickle ({found.error})")
        elif head == LEGACY_MAGIC and found.pickles < 5:
            self.result.invalid.append(f"{location}: legacy torch.save file with "
                                       f"{found.pickles} of its 5 pickles (truncated)")

    def _strings_cut(self, found: Any) -> bool:
        """Whether the walker kept only part of the pickle's strings (each is cut at
        ``max_string_chars``, and only ``max_strings`` are kept)."""
        return bool(getattr(found, "strings_dropped", 0)) or \
            len(found.strings) >= self.limits.max_strings or \
            any(len(t) >= self.limits.max_string_chars for t in found.strings)

    def _raw_text(self, f: IO[bytes], start: int, end: int, location: str) -> None:
        """The printable runs of a pickle's bytes ``start..end``, for secrets the walker
        did not keep whole (a key at character 5,000 of a docstring, or in string
        #300,000). A fallback, so it stops (with a note, not a refusal) where the
        ``max_secret_bytes`` budget left by the rest of the scan runs out."""
        left = self.limits.max_secret_bytes - self.budget.text
        if end - start > left:
            self.result.notes.append(f"{location}: pickle strings searched whole only in "
                                     f"its first {max(left, 0)} bytes (max_secret_bytes)")
            end = start + max(left, 0)
        f.seek(start)
        overlap = b""
        while start < end:
            chunk = f.read(min(MiB, end - start))
            if not chunk:
                break
            start += len(chunk)
            text = decode_text(overlap + chunk)
            overlap = chunk[-256:]
            if text:
                self.budget.text += len(chunk)
                self.result.strings.append((location, text))

    # ------------------------------------------------------------------ members

    def member(self, opener: Callable[[], Any], declared: int | None, name: str,
               location: str, depth: int, *, storage: bool, force_pickle: bool = False,
               cap: int | None = None) -> None:
        """Scan one archive member or decoded stream: sniff its head; raw tensor bytes
        stop there, text is kept for secrets, anything that parses as a format is
        spooled and walked. ``declared``: its size if the container says (``None`` for a
        compressed stream, whose decoding ``cap`` bounds instead)."""
        suffix = PurePosixPath(name).suffix.lower()
        with opener() as raw:
            counted = CountingReader(raw, self.budget, cap, location)
            # A tensor storage: its first 4 KiB say whether it is a pickle (a checkpoint
            # of 20,000 tensors then costs 80 MB of reads, not 1.3 GB).
            window = _STORAGE_SNIFF if storage else self.limits.sniff_bytes
            head = counted.read(window)
            whole = len(head) < window or (declared is not None and len(head) >= declared)
            size = len(head) if whole else (declared if declared is not None else
                                             cap or len(head) + 1)
            strict = storage or suffix in TEXT_SUFFIXES
            kinds = formats.sniff(head, None, size, strict=strict, storage=storage)
            parsed = bool(kinds) or force_pickle or looks_like_safetensors(head, size) \
                or suffix == ".safetensors"
            if not parsed:
                if not storage:
                    rest = b"" if whole else counted.read(
                        max(0, self.limits.max_text_bytes - len(head)))
                    self.text_bytes(location, head + rest)
                return
            if declared is not None:
                if declared > self.limits.max_member_bytes:
                    self.result.invalid.append(
                        f"{location}: {declared} bytes > max_member_bytes "
                        f"{self.limits.max_member_bytes}; not scanned, so not trusted")
                    return
                self._afford(declared - len(head), location)
            spool = self.spool(counted, head)
        with spool:
            size = spool.seek(0, os.SEEK_END)
            spool.seek(0)
            # In memory, a plain BytesIO: the pickle walker reads it opcode by opcode.
            data: IO[bytes] = io.BytesIO(spool.read()) if size <= _SPOOL else spool
            self.blob(data, size, location, depth + 1, suffix=suffix,
                      strict=strict and not force_pickle, force_pickle=force_pickle,
                      storage=storage and not force_pickle)

    def zip(self, f: IO[bytes], location: str, depth: int, top: bool, suffix: str) -> None:
        """Every member of a zip archive, checked against the limits before decoding."""
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
                struct.error) as exc:
            self.result.invalid.append(f"{location}: unreadable zip archive ({exc})")
            return
        with archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            if not self._zip_within_limits(infos, location):
                return
            if archive.comment:
                self.text(f"{location}: archive comment",
                          archive.comment.decode("utf-8", "replace"))
            fmt = archive_format([i.filename for i in infos])
            if fmt == "torchscript":
                self.result.torchscript.add(location)
            if top:
                self.result.format = "npz" if fmt == "zip" and suffix == ".npz" else fmt
            forced = self._pt2_pickled(archive, infos) if fmt == "pt2" else set()
            self._torchscript_code(archive, infos)
            for index, info in enumerate(infos):
                self.result.members += 1
                label = _named(info.filename, f"{location}: member name #{index}", self)
                where = f"{location}:{label}"
                if info.comment or info.extra:  # header bytes a secret can hide in
                    self.text_bytes(f"{where}: member header", info.comment + info.extra)
                self._zip_member(archive, info, where, fmt, depth, info.filename in forced)

    def _zip_within_limits(self, infos: list[zipfile.ZipInfo], location: str) -> bool:
        if len(infos) > self.limits.max_members:
            self.result.invalid.append(f"{location}: {len(infos)} members > max_members "
                                       f"{self.limits.max_members}")
            return False
        declared = sum(i.file_size for i in infos)
        if declared > self.limits.max_archive_bytes:
            self.result.invalid.append(f"{location}: declares {declared} uncompressed bytes "
                                       f"> max_archive_bytes {self.limits.max_archive_bytes}"
                                       ": zip bomb")
            return False
        packed = sum(i.compress_size for i in infos)
        ratio = declared / max(packed, 1)
        if declared > self.limits.ratio_min_bytes and ratio > self.limits.max_ratio:
            self.result.invalid.append(f"{location}: its members expand {packed} bytes to "
                                       f"{declared} (ratio {ratio:.0f} > max_ratio "
                                       f"{self.limits.max_ratio:.0f}): zip bomb")
            return False
        return True

    def _pt2_pickled(self, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]
                     ) -> set[str]:
        """Members of a ``.pt2`` that ``torch.export.load`` unpickles (PART A's map).
        Also records as unsafe the code its serialized programs hold (sympy/guards)."""
        try:
            from torchbridge.security.pt2_archive import program_problems, unpickled_members
        except ImportError:
            return set()
        self.result.unsafe += program_problems(archive, self.limits)

        def read(name: str) -> bytes:
            info = archive.getinfo(name)
            if info.file_size > self.limits.max_text_bytes:
                raise ValueError(f"{name}: config larger than max_text_bytes")
            with archive.open(info) as handle:
                return CountingReader(handle, self.budget).read(info.file_size)

        try:
            return set(unpickled_members([i.filename for i in infos], read))
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
            self.result.invalid.append(f"pt2 payload configs unreadable ({exc})")
            return set()

    def _torchscript_code(self, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]
                          ) -> None:
        """TorchScript source (``code/**/*.py``, whatever the archive is called) that
        reaches files or the network when ``torch.jit.load`` runs it is unsafe."""
        from torchbridge.security.torchscript_code import code_problems, source_members

        sources = {}
        for name in source_members([i.filename for i in infos]):
            info = archive.getinfo(name)
            if info.file_size > self.limits.max_header_bytes:
                self.result.unsafe.append(f"{name}: TorchScript source of {info.file_size} "
                                          "bytes > max_header_bytes; it cannot be checked")
                continue
            with archive.open(info) as handle:
                sources[name] = CountingReader(handle, self.budget).read(
                    info.file_size).decode("utf-8", "replace")
        self.result.unsafe += code_problems(sources)

    def _zip_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, location: str,
                    fmt: str, depth: int, forced: bool) -> None:
        bomb = _bomb_reason(info, self.limits)
        if bomb:
            self.result.invalid.append(f"{location}: {bomb}")
            return
        suffix = PurePosixPath(info.filename).suffix.lower()
        storage = fmt not in ("zip", "npz") and bool(_STORAGE.search(info.filename)) and \
            suffix not in PICKLE_SUFFIXES | TORCH_SUFFIXES
        try:
            self.member(lambda: archive.open(info), info.file_size, info.filename, location,
                        depth, storage=storage, force_pickle=forced)
        except LimitExceeded:
            raise
        except Exception as exc:
            # BadZipFile (bad CRC, names that differ), zlib.error (corrupt data),
            # RuntimeError (encrypted), NotImplementedError (unknown compression) ...
            self.result.invalid.append(f"{location}: cannot be read "
                                       f"({type(exc).__name__}: {str(exc)[:200]})")

    def tar(self, f: IO[bytes], location: str, depth: int, top: bool) -> None:
        """Every regular member of a tar archive (links and devices are never read)."""
        f.seek(0)
        try:
            archive = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115 (closed below)
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            self.result.invalid.append(f"{location}: unreadable tar archive ({exc})")
            return
        names: list[str] = []
        with archive:
            for index, info in enumerate(self._tar_members(archive, location)):
                names.append(info.name)
                label = _named(info.name, f"{location}: member name #{index}", self)
                where = f"{location}:{label}"
                self._tar_header_text(info, where)
                if not info.isreg():
                    self.result.notes.append(f"{where}: not a regular file; not read")
                    continue
                try:
                    self.member(functools.partial(_extract, archive, info), info.size,
                                info.name, where, depth, storage=False)
                except LimitExceeded:
                    raise
                except Exception as exc:  # TarError, truncated data, corrupt streams ...
                    self.result.invalid.append(f"{where}: cannot be read "
                                               f"({type(exc).__name__}: {str(exc)[:200]})")
        if top:
            self.result.format = "torch-legacy-tar" if set(names) >= _LEGACY_TAR else "tar"

    def _tar_header_text(self, info: tarfile.TarInfo, where: str) -> None:
        """A tar header's own strings (PAX records such as ``comment``, the link target,
        user and group names) are text a secret can hide in."""
        header = [f"{key}={value}" for key, value in info.pax_headers.items()
                  if key != "path"]  # the name is judged as the member's name
        header += [text for text in (info.linkname, info.uname, info.gname) if text]
        if header:
            self.text(f"{where}: tar header", "\n".join(header))

    def _tar_members(self, archive: tarfile.TarFile, location: str
                     ) -> Iterator[tarfile.TarInfo]:
        count = 0
        while True:
            self.budget.check_time()
            try:
                info = archive.next()
            except (tarfile.TarError, EOFError, OSError) as exc:
                self.result.invalid.append(f"{location}: corrupt tar archive ({exc})")
                return
            if info is None:
                return
            count += 1
            self.result.members += 1
            if count > self.limits.max_members:
                self.result.invalid.append(f"{location}: more than max_members "
                                           f"{self.limits.max_members} members")
                return
            yield info

    # ------------------------------------------------------------------ streams

    def compressed(self, kind: str, f: IO[bytes], size: int, location: str, depth: int,
                   suffix: str) -> None:
        """A compressed stream, walked like an archive member: its decoded head decides;
        only content that parses as a format is decoded whole, and never past
        ``max_ratio`` times the stream's size (over ``ratio_min_bytes``): a gzip bomb of
        zeros costs its first megabyte."""
        where = f"{location}:<{kind}>"
        f.seek(0)
        if kind == "gzip":
            self.text(f"{where}: gzip header", _gzip_header_text(f.read(1 << 16)))
            f.seek(0)
        cap = max(self.limits.ratio_min_bytes, int(self.limits.max_ratio * size))
        try:
            self.member(lambda: formats.open_decompressed(kind, f), None, "", where,
                        depth, storage=False, cap=cap)
        except LimitExceeded:
            raise
        except Exception as exc:  # zlib.error, lzma.LZMAError, EOFError, OSError ...
            self.result.invalid.append(f"{location}: corrupt, truncated or undecodable "
                                       f"{kind} stream ({type(exc).__name__}: "
                                       f"{str(exc)[:200]})")

    def npy(self, f: IO[bytes], size: int, location: str) -> None:
        """A ``.npy`` array: object arrays hold a pickle (``np.load(allow_pickle=True)``
        runs it), string arrays are text."""
        f.seek(0)
        try:
            dtype, count = formats.npy_header(f)
        except Exception as exc:  # numpy raises ValueError / SyntaxError / TypeError
            self.result.invalid.append(f"{location}: malformed .npy header "
                                       f"({type(exc).__name__}: {str(exc)[:200]})")
            return
        if getattr(dtype, "names", None):  # a structured dtype's field names are text
            self.text(f"{location}: .npy field names", "\n".join(dtype.names))
        if getattr(dtype, "hasobject", False):
            self.result.notes.append(f"{location}: object array (np.load(allow_pickle=True)"
                                     " unpickles it)")
            self.pickles(f, f.tell(), location)
            return
        kind = getattr(dtype, "kind", "")
        if kind in ("U", "S") and self.secrets:
            raw = f.read(min(count * int(getattr(dtype, "itemsize", 1)),
                             self.limits.max_text_bytes))
            codec = ("utf-32-be" if getattr(dtype, "byteorder", "") == ">" else "utf-32-le") \
                if kind == "U" else "latin-1"
            text = raw[: len(raw) // 4 * 4 if kind == "U" else len(raw)].decode(
                codec, "replace").replace("\0", "\n")
            self.text(location, text)


def _gzip_header_text(head: bytes) -> str:
    """The strings of a gzip member header (RFC 1952: FEXTRA, FNAME, FCOMMENT), which
    :mod:`gzip` reads past without returning."""
    if len(head) < 10 or head[:2] != b"\x1f\x8b":
        return ""
    flags, at, parts = head[3], 10, []
    if flags & 4 and len(head) >= at + 2:  # FEXTRA: little-endian length, then bytes
        length = int.from_bytes(head[at:at + 2], "little")
        parts.append(head[at + 2:at + 2 + length])
        at += 2 + length
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated Latin-1
        if flags & bit:
            end = head.find(b"\0", at)
            end = len(head) if end < 0 else end
            parts.append(head[at:end])
            at = end + 1
    return "\n".join(p.decode("latin-1") for p in parts if p)


def _extract(archive: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    handle = archive.extractfile(info)
    if handle is None:
        raise OSError(f"{info.name}: no data")
    return handle


def _bomb_reason(info: zipfile.ZipInfo, limits: ScanLimits) -> str | None:
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > limits.ratio_min_bytes and ratio > limits.max_ratio:
        return (f"expands {info.compress_size} bytes to {info.file_size} "
                f"(ratio {ratio:.0f} > max_ratio {limits.max_ratio:.0f}): zip bomb")
    return None


def scan_content(path: str | Path, limits: ScanLimits = DEFAULT_LIMITS, *,
                 secrets: bool = True, handle: IO[bytes] | None = None,
                 strict: bool | None = None) -> ContentScan:
    """Scan a file by content (see the module docstring) for globals and strings.

    ``handle``: the file, already opened (the caller checked it is a regular file);
    ``secrets``: keep text for secret scanning; ``strict``: only a complete pickle counts
    (default: for text suffixes and ONNX external data). Limits crossed end up in
    ``invalid`` with the limit named; nothing is raised for a hostile file (``OSError``
    only when ``path`` cannot be opened).
    """
    path = Path(path)
    result = ContentScan()
    walk = _Walk(result, limits, secrets)
    suffix = path.suffix.lower()
    if strict is None:
        strict = suffix in TEXT_SUFFIXES | {".onnx"} or path.name.lower().endswith(
            (".onnx.data", ".onnx_data"))
    with contextlib.ExitStack() as stack:
        if handle is None:
            handle = stack.enter_context(open(path, "rb"))
        size = os.fstat(handle.fileno()).st_size
        try:
            walk.blob(handle, size, path.name, 0, suffix=suffix, top=True, strict=strict)
        except LimitExceeded as exc:
            result.invalid.append(f"{path.name}: {exc}; not fully scanned, so not trusted")
    return result
