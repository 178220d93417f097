"""What a file *is*, decided by its content: every format a standard loader could open it
as, not the one its name or first bytes suggest.

:func:`sniff` returns each interpretation that holds (a file can be a pickle *and* a zip:
``pickle.load`` reads the first, ``torch.load`` and ``zipfile`` the second), so the scanner
can scan all of them and refuse a polyglot. Nothing here executes or fully parses a file:
each check reads at most ``sniff_bytes`` (the zip check reads the end-of-archive record).

* **pickle**: the bytes parse as pickle opcodes with a consistent stack (checked by
  :func:`pickletools.dis`, which never imports or calls anything), in any protocol, with or
  without the ``PROTO`` opcode. A valid prefix cut by the sniff window counts.
* **zip**: :func:`zipfile.is_zipfile` (finds an archive appended after other data too).
* **tar**: a ustar/gnu header with a valid checksum (:mod:`tarfile`).
* **gzip**, **bz2**, **xz**, **lzma**, **zlib**, **lz4**, **zstd**: compressed streams
  (joblib and ``*.pkl.gz`` / ``*.tar.gz`` wrap pickles in these).
* **npy**: numpy's ``\\x93NUMPY`` magic (object arrays hold a pickle).
* **safetensors**: an 8-byte length followed by a JSON object; validated separately.
"""

from __future__ import annotations

import bz2
import io
import lzma
import pickletools
import re
import struct
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
NPY_MAGIC = b"\x93NUMPY"
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w.]*$")
_IMPORT_OPS = {"GLOBAL", "INST", "STACK_GLOBAL"}
_TRUNCATION = ("not enough data", "but only", "exhausted", "no newline found")
#: Compressed-stream kinds and whether the standard library can decode them.
DECODABLE = ("gzip", "bz2", "xz", "lzma", "zlib")


@dataclass(frozen=True)
class PickleSniff:
    """How far the bytes parse as a pickle.

    ``opcodes``: opcodes read before the end or an error; ``complete``: reached ``STOP``
    with a consistent stack; ``cut``: still valid where the sniff window ended;
    ``imports``: a ``GLOBAL``/``INST`` naming a dotted identifier (or a ``STACK_GLOBAL``
    after ``PROTO``) was read; ``proto``: opens with ``PROTO`` and at least two more
    opcodes with a sound stack follow before any damage; ``loads_code``: any
    opcode that imports by name (``GLOBAL``, ``INST``, ``STACK_GLOBAL``; ``EXT*`` need
    a populated copyreg registry, which stock Python and torch leave empty);
    ``long_arg``: the window ended inside a string argument the file can hold, which
    ends at ``resume`` (0: unknown).
    """

    opcodes: int = 0
    complete: bool = False
    cut: bool = False
    imports: bool = False
    proto: bool = False
    loads_code: bool = False
    long_arg: bool = False
    resume: int = 0

    def is_pickle(self, *, strict: bool) -> bool:
        """Whether a loader would take these bytes for a pickle.

        ``strict`` (for bytes that are most likely raw tensor data, where a few random
        bytes such as ``\\x89.`` form a valid but harmless pickle): a complete or
        window-cut parse with a consistent stack that imports something or runs to 16
        opcodes. Otherwise a complete parse, a cut one, one that imports a dotted name,
        or one that opens with ``PROTO`` (a truncated or corrupt pickle is still one).
        """
        if strict:
            return (self.complete or self.cut) and self.opcodes >= 3 and \
                (self.loads_code or self.opcodes >= 16)
        if self.complete or (self.cut and (self.opcodes >= 3 or self.long_arg)):
            return True
        return self.imports or self.proto  # \x80 + a protocol number: a pickle header


class _Null(io.StringIO):
    def write(self, text: str) -> int:
        return len(text)


def sniff_pickle(head: bytes, whole: bool, size: int | None = None) -> PickleSniff:
    """Parse ``head`` (the first bytes of a stream of ``size`` bytes; ``whole``: all of
    it) as one pickle. Never raises; never imports or calls anything.
    """
    if not head:
        return PickleSniff()
    with warnings.catch_warnings():  # pickletools warns about odd escapes in STRING args
        warnings.simplefilter("ignore")
        return _sniff_pickle(head, whole, size)


def _sniff_pickle(head: bytes, whole: bool, size: int | None) -> PickleSniff:
    opcodes, imports, code = 0, False, False
    proto = len(head) >= 2 and head[0] == 0x80 and head[1] <= 5
    stream = io.BytesIO(head)
    end = 0
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            opcodes += 1
            end = stream.tell()
            code = code or opcode.name in _IMPORT_OPS
            if opcode.name in ("GLOBAL", "INST"):
                imports = imports or _is_global_arg(arg)
            elif opcode.name == "STACK_GLOBAL" and proto:
                imports = True
            if opcode.name == "STOP":
                break
    except Exception as exc:  # genops raises ValueError; anything else is not a pickle
        cut = not whole and any(t in str(exc) for t in _TRUNCATION)
        resume = _long_argument(head, end, size) if cut else None
        if resume is not None:
            # A string longer than the sniff window: the prefix before it decides, and
            # (see sniff) the bytes after it must go on as opcodes.
            return PickleSniff(opcodes + 1, False, _stack_ok(head[:end], allow_cut=True),
                               imports, proto, code, long_arg=True, resume=resume)
        cut = cut and _stack_ok(head, allow_cut=True)
        # A PROTO header, then sound opcodes up to the damage: a corrupt pickle (random
        # tensor bytes open with 0x80 0x02 once in 11,000 files; three sound opcodes
        # after it almost never follow).
        proto = proto and opcodes >= 3 and _stack_ok(head[:end], allow_cut=True)
        return PickleSniff(opcodes, False, cut, imports, proto, code)
    return PickleSniff(opcodes, _stack_ok(head, allow_cut=False), False, imports,
                       proto and opcodes >= 3, code)


#: Opcodes whose argument is a length-prefixed string: (length size, struct format).
_LONG_ARGS = {b"T": (4, "<i"), b"X": (4, "<I"), b"\x8d": (8, "<Q"), b"B": (4, "<I"),
              b"\x8e": (8, "<Q"), b"\x96": (8, "<Q")}


def _long_argument(head: bytes, at: int, size: int | None) -> int | None:
    """If the opcode at ``at`` is a string argument running past the window that the
    file can hold, where the bytes after it start (0 when unknown): a length-prefixed one
    whose declared length fits in ``size``, or a newline-terminated text one (``V`` /
    ``S``) with no newline in the window."""
    code = head[at:at + 1]
    if code in _LONG_ARGS:
        width, fmt = _LONG_ARGS[code]
        if len(head) < at + 1 + width:
            return None
        (length,) = struct.unpack(fmt, head[at + 1:at + 1 + width])
        stop = at + 1 + width + length
        return stop if size is not None and length >= 0 and stop < size else None
    if code in (b"V", b"S"):
        rest = head[at + 1:]
        printable = sum(32 <= c < 127 or c in (9, 13) or c >= 128 for c in rest[:4096])
        if b"\n" not in rest and printable >= 0.95 * min(len(rest), 4096):
            return 0
    return None


def _continues(tail: bytes) -> bool:
    """Whether bytes after a long argument go on as a pickle: three opcodes, or ``STOP``
    sooner (random data fails within a byte or two)."""
    count = 0
    try:
        for opcode, _, _ in pickletools.genops(io.BytesIO(tail)):
            count += 1
            if opcode.name == "STOP" or count >= 3:
                return True
    except Exception:  # genops' ValueError: not opcodes
        return False
    return False


def _is_global_arg(arg: object) -> bool:
    if not isinstance(arg, str) or " " not in arg:
        return False
    module, _, name = arg.partition(" ")
    return bool(_IDENTIFIER.match(module) and _IDENTIFIER.match(name))


def _stack_ok(head: bytes, *, allow_cut: bool) -> bool:
    """Whether :func:`pickletools.dis` accepts the stack discipline of ``head``."""
    try:
        pickletools.dis(io.BytesIO(head), out=_Null())
    except Exception as exc:
        return allow_cut and any(t in str(exc) for t in _TRUNCATION)
    return True


def compression(head: bytes) -> str | None:
    """The compressed-stream format ``head`` opens, if any."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4] in b"123456789" and len(head) > 3:
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x5d\x00\x00") and len(head) >= 13 and _decodes(
            lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE), head):
        return "lzma"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0 and \
            head[1] in (0x01, 0x5E, 0x9C, 0xDA) and _decodes(zlib.decompressobj, head):
        return "zlib"
    return None


def _decodes(make: Any, head: bytes) -> bool:
    """Whether the first KiB of ``head`` decodes with a fresh decompressor from ``make``
    (two-byte zlib and three-byte lzma headers occur by chance in tensor data)."""
    try:
        make().decompress(head[:1024])
    except Exception:  # zlib.error, lzma.LZMAError: not that format
        return False
    return True


class _ZlibReader(io.RawIOBase):
    """A raw zlib stream (joblib's ``compress=`` default) as a readable stream."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.inflater = zlib.decompressobj()
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(buffer)
        while not self.pending and not self.inflater.eof:
            data = self.inflater.unconsumed_tail or self.raw.read(1 << 16)
            if not data:
                raise EOFError("zlib stream ended early (truncated)")
            self.pending = self.inflater.decompress(data, want)
        chunk, self.pending = self.pending[:want], self.pending[want:]
        buffer[: len(chunk)] = chunk
        return len(chunk)


def open_decompressed(kind: str, raw: IO[bytes]) -> io.BufferedIOBase:
    """A stream of the decompressed bytes of ``raw``. Raises ``ValueError`` for kinds
    no installed library can decode (zstd; lz4 without the ``lz4`` package)."""
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bz2":
        return bz2.BZ2File(raw, "rb")
    if kind in ("xz", "lzma"):
        return lzma.LZMAFile(raw, "rb", format=lzma.FORMAT_AUTO)
    if kind == "zlib":
        return io.BufferedReader(_ZlibReader(raw))
    if kind == "lz4":  # joblib's compress="lz4", when the lz4 package is installed
        try:
            import lz4.frame
        except ImportError:
            pass
        else:
            reader: io.BufferedIOBase = lz4.frame.LZ4FrameFile(raw, "rb")
            return reader
    raise ValueError(f"{kind}-compressed data cannot be decoded without a third-party "
                     "decoder, so it cannot be scanned")


def is_zip(stream: IO[bytes]) -> bool:
    """Whether ``stream`` (seekable) holds a zip archive anywhere (``zipfile``'s test:
    an end-of-central-directory record near the end). Leaves the position at 0."""
    try:
        return zipfile.is_zipfile(stream)
    except Exception:  # BadZipFile (multi-disk), struct.error ...: not one zipfile reads
        return False
    finally:
        stream.seek(0)


def is_tar(head: bytes) -> bool:
    """Whether ``head`` opens a tar archive: a 512-byte header with a valid checksum."""
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except (tarfile.HeaderError, ValueError):
        return False
    return True


def npy_header(stream: IO[bytes]) -> tuple[Any, int]:
    """(dtype, element count) of a ``.npy`` stream, leaving it at the data. Raises
    ``ValueError`` (or numpy's own error) for a malformed header. numpy parses the
    header with :func:`ast.literal_eval`, which evaluates no code, and caps its size."""
    import numpy as np
    from numpy.lib import format as npformat

    version = npformat.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = npformat.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = npformat.read_array_header_2_0(stream)
    else:  # 3.0 (UTF-8 field names): only numpy's private reader parses it
        try:
            from numpy.lib._format_impl import (  # type: ignore[attr-defined]
                _read_array_header,
            )
        except ImportError:
            raise ValueError(f"unsupported .npy format version {version}") from None
        shape, _, dtype = _read_array_header(stream, version)
    count = int(np.prod(shape)) if shape else 1
    return dtype, count


#: What ``torch.load`` makes of bytes it is handed: a zip, a (legacy) tar, or pickles.
TORCH_LOAD_KINDS = ("zip", "tar", "pickle")


def sniff(head: bytes, stream: IO[bytes] | None, size: int, *, strict: bool = False,
          storage: bool = False) -> list[str]:
    """Every container format ``head`` (and, for zip, the seekable ``stream``) opens, in
    a stable order; pickle is decided by :func:`sniff_pickle`. Safetensors is not
    included (it needs its own validation). ``storage``: raw tensor bytes, which only
    ``torch.load`` might be handed, so only its kinds count."""
    kinds = _sniff(head, stream, size, strict=strict)
    return [k for k in kinds if k in TORCH_LOAD_KINDS] if storage else kinds


def _pickle_in(head: bytes, stream: IO[bytes] | None, size: int, strict: bool) -> bool:
    """Whether ``head`` opens a pickle; past a string longer than the window, the bytes
    after it (read from ``stream`` when there is one) must go on as opcodes."""
    found = sniff_pickle(head, whole=len(head) >= size, size=size)
    if not found.is_pickle(strict=strict):
        return False
    if found.long_arg and found.resume and stream is not None and not found.imports:
        stream.seek(found.resume)
        tail = stream.read(4096)
        stream.seek(0)
        return _continues(tail)
    return True


def _sniff(head: bytes, stream: IO[bytes] | None, size: int, *, strict: bool) -> list[str]:
    kinds: list[str] = []
    if head.startswith(ZIP_MAGIC) or (stream is not None and is_zip(stream)):
        kinds.append("zip")
    if is_tar(head):
        kinds.append("tar")
    packed = compression(head)
    if packed:
        kinds.append(packed)
    if head.startswith(NPY_MAGIC):
        kinds.append("npy")
    if _pickle_in(head, stream, size, strict):
        kinds.append("pickle")
    return kinds


def u64(data: bytes) -> int:
    """Little-endian unsigned 64-bit integer of the first 8 bytes."""
    return int(struct.unpack("<Q", data[:8])[0])
