"""A static pickle scanner: lists the globals a pickle would import and the strings it
holds, without unpickling it, in bounded memory.

Why not picklescan's own walker: ``picklescan.scanner.scan_pickle_bytes`` reads every
opcode argument whole (a pickle holding a 2 GB ``BINBYTES8`` needs 2 GB), keeps every
opcode of the stream in a list, and does not return the string constants we scan for
secrets. We keep its denylist (see :mod:`torchbridge.security.policy`) and walk the
opcodes ourselves: large arguments are skipped, only strings are remembered, and every
read is counted against :class:`~torchbridge.security.limits.ScanLimits`.

Example::

    with open("data.pkl", "rb") as f:
        found = scan_pickle_stream(f)
    found.globals        # ['collections.OrderedDict', 'torch._utils._rebuild_tensor_v2']
"""

from __future__ import annotations

import _compat_pickle
import collections
import pickletools
import struct
from dataclasses import dataclass, field
from typing import IO, Any

from torchbridge.security.limits import DEFAULT_LIMITS, LimitExceeded, ScanLimits
from torchbridge.security.policy import UNRESOLVED

_CHUNK = 1 << 16
_OPS: dict[str, pickletools.OpcodeInfo] = {op.code: op for op in pickletools.opcodes}
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE",
               "BINUNICODE", "BINUNICODE8"}
_BYTES_OPS = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_EXT_OPS = {"EXT1", "EXT2", "EXT4"}
# Length-prefixed arguments: (size of the length field, struct format).
_PREFIXED = {"string1": (1, "<B"), "bytes1": (1, "<B"), "unicodestring1": (1, "<B"),
             "string4": (4, "<i"), "bytes4": (4, "<I"), "unicodestring4": (4, "<I"),
             "bytes8": (8, "<Q"), "unicodestring8": (8, "<Q"), "bytearray8": (8, "<Q"),
             "long1": (1, "<B"), "long4": (4, "<i")}
_FIXED = {"uint1": (1, "<B"), "uint2": (2, "<H"), "int4": (4, "<i"), "uint4": (4, "<I"),
          "uint8": (8, "<Q"), "float8": (8, ">d")}
_LINE_ARGS = {"decimalnl_short", "decimalnl_long", "stringnl", "stringnl_noescape",
              "unicodestringnl", "floatnl"}


def python3_name(qualified: str) -> str:
    """The name Python 3 imports for a global written by a protocol 0-2 pickler
    (``commands.Popen`` → ``subprocess.Popen``, ``__builtin__.eval`` → ``builtins.eval``)."""
    module, _, name = qualified.rpartition(".")
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


class PickleError(ValueError):
    """The stream is not a complete pickle (truncated, or not a pickle at all)."""


@dataclass
class PickleFindings:
    """What one pickle stream (or a run of them) holds.

    ``globals``: every ``module.name`` it imports, in first-seen order (an import that
    cannot be resolved statically is ``<unresolved>``); ``strings``: string constants
    (each cut to ``max_string_chars``); ``pickles``: complete pickles read; ``error``:
    why parsing stopped early, if it did; ``opcodes``: opcodes read.
    """

    globals: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    pickles: int = 0
    opcodes: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def add_global(self, name: str) -> None:
        if name not in self.globals:
            self.globals.append(name)


class _Reader:
    """Counts bytes against the pickle limit and skips large arguments unread."""

    def __init__(self, stream: IO[bytes], limits: ScanLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.consumed = 0
        try:
            self.seekable = bool(stream.seekable()) and not hasattr(stream, "_decompressor")
        except (AttributeError, OSError):
            self.seekable = False

    def _count(self, n: int) -> None:
        self.consumed += n
        if self.consumed > self.limits.max_pickle_bytes:
            raise LimitExceeded(f"pickle stream longer than max_pickle_bytes="
                                f"{self.limits.max_pickle_bytes}")

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self._count(len(data))
        if len(data) != n:
            raise PickleError(f"truncated: wanted {n} bytes, got {len(data)}")
        return data

    def read_prefix(self, n: int, keep: int) -> bytes:
        """Read ``n`` bytes, returning at most the first ``keep`` and discarding the rest:
        seeking over them when the stream allows (a truncated file then fails at the next
        read), else reading them in chunks that count against the limit."""
        head = self.read(min(n, keep))
        left = n - len(head)
        if left and self.seekable:
            self.stream.seek(left, 1)
            return head
        while left > 0:
            self.read(min(left, _CHUNK))
            left -= min(left, _CHUNK)
        return head

    def readline(self) -> bytes:
        limit = self.limits.max_string_chars * 4 + 2
        line = self.stream.readline(limit)
        self._count(len(line))
        if not line.endswith(b"\n"):
            if len(line) >= limit:
                raise LimitExceeded(f"newline-terminated pickle argument over {limit} bytes")
            raise PickleError("truncated inside a newline-terminated argument")
        return line[:-1]

    def next_byte(self) -> bytes:
        byte = self.stream.read(1)
        self._count(len(byte))
        return byte


def _decode_line_string(raw: bytes) -> str:
    text = raw.decode("latin-1")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text


class _Walker:
    """One pass over one pickle: resolves GLOBAL / STACK_GLOBAL through the memo."""

    def __init__(self, reader: _Reader, findings: PickleFindings, limits: ScanLimits) -> None:
        self.reader = reader
        self.findings = findings
        self.limits = limits
        self.memo: dict[int, str | None] = {}
        # Recent pushes: a str for string pushes, None for anything else. STACK_GLOBAL
        # needs the two values under it; any other opcode in between makes them unknown.
        self.recent: collections.deque[str | None] = collections.deque(maxlen=2)
        self.proto = 0

    def _global(self, module: str, name: str) -> None:
        # Protocols 0-2 carry Python 2 names; the unpickler maps them as pickle does
        # (``__builtin__.eval`` is imported as ``builtins.eval``), and so do we.
        qualified = f"{module}.{name}"
        self.findings.add_global(python3_name(qualified) if self.proto < 3 else qualified)

    def _string(self, value: str) -> None:
        if len(self.findings.strings) < self.limits.max_strings:
            self.findings.strings.append(value[: self.limits.max_string_chars])

    def _arg(self, op: pickletools.OpcodeInfo) -> Any:
        arg = op.arg
        if arg is None:
            return None
        name = arg.name
        if name in _FIXED:
            size, fmt = _FIXED[name]
            return struct.unpack(fmt, self.reader.read(size))[0]
        if name in _PREFIXED:
            size, fmt = _PREFIXED[name]
            length = struct.unpack(fmt, self.reader.read(size))[0]
            if length < 0:
                raise PickleError(f"{op.name}: negative length {length}")
            keep = self.limits.max_string_chars * 4
            return self.reader.read_prefix(length, keep)
        if name == "stringnl_noescape_pair":
            return (self.reader.readline().decode("utf-8", "replace"),
                    self.reader.readline().decode("utf-8", "replace"))
        if name in _LINE_ARGS:
            return self.reader.readline()
        raise PickleError(f"unknown argument type {name}")

    def _memo_put(self, index: int) -> None:
        if len(self.memo) >= self.limits.max_memo and index not in self.memo:
            raise LimitExceeded(f"more than max_memo={self.limits.max_memo} memo entries")
        self.memo[index] = self.recent[-1] if self.recent else None

    def step(self, code: bytes) -> bool:
        """Handle one opcode; ``False`` after STOP."""
        op = _OPS.get(code.decode("latin-1"))
        if op is None:
            raise PickleError(f"invalid opcode {code!r}")
        self.findings.opcodes += 1
        arg = self._arg(op)
        name = op.name
        if name == "STOP":
            return False
        if name == "PROTO":
            self.proto = int(arg)
            return True
        if name == "FRAME":
            return True
        if name in _STRING_OPS:
            if name in ("STRING", "UNICODE"):
                value = _decode_line_string(arg) if name == "STRING" else \
                    arg.decode("raw_unicode_escape", "replace")
            else:
                value = arg.decode("utf-8" if "UNICODE" in name else "latin-1", "replace")
            self._string(value)
            self.recent.append(value)
        elif name in _BYTES_OPS:
            if arg and arg.isascii() and arg.decode("ascii").isprintable():
                self._string(arg.decode("ascii"))
            self.recent.append(None)
        elif name in _GET_OPS:
            self.recent.append(self.memo.get(int(arg)))
        elif name in _PUT_OPS:
            self._memo_put(int(arg))
        elif name == "MEMOIZE":
            self._memo_put(len(self.memo))
        elif name in ("GLOBAL", "INST"):
            self._global(*arg)
            self.recent.append(None)
        elif name == "STACK_GLOBAL":
            if len(self.recent) == 2 and all(isinstance(v, str) for v in self.recent):
                self._global(str(self.recent[0]), str(self.recent[1]))
            else:
                self.findings.add_global(UNRESOLVED)
                self.findings.notes.append("STACK_GLOBAL whose module/name cannot be "
                                           "resolved statically")
            self.recent.append(None)
        elif name in _EXT_OPS:
            self.findings.add_global(UNRESOLVED)
            self.findings.notes.append(f"{name}: import through the copyreg extension "
                                       "registry")
            self.recent.append(None)
        else:
            self.recent.append(None)
        return True


def scan_pickle_stream(stream: IO[bytes], limits: ScanLimits = DEFAULT_LIMITS, *,
                       multiple: bool = True) -> PickleFindings:
    """Walk the pickle(s) in ``stream`` without executing anything.

    With ``multiple`` (legacy ``torch.save`` files hold several pickles back to back, then
    raw tensor bytes) scanning goes on while the next byte opens another protocol-2+
    pickle. Raises :class:`LimitExceeded`; parse failures land in ``findings.error`` with
    whatever was found before them.
    """
    findings = PickleFindings()
    reader = _Reader(stream, limits)
    while True:
        code = reader.next_byte()
        if not code:
            if findings.pickles == 0:
                findings.error = "empty stream"
            return findings
        if findings.pickles and code != b"\x80":
            return findings  # trailing non-pickle data (legacy torch storages)
        walker = _Walker(reader, findings, limits)
        try:
            while walker.step(code):
                code = reader.next_byte()
                if not code:
                    raise PickleError("truncated: stream ended before STOP")
        except PickleError as exc:
            if findings.pickles:  # bytes after the loader's pickles are never unpickled
                findings.notes.append(f"trailing data after pickle {findings.pickles} "
                                      f"is not a pickle ({exc})")
            else:
                findings.error = str(exc)
            return findings
        findings.pickles += 1
        if not multiple:
            return findings


def looks_like_pickle(head: bytes) -> bool:
    """Whether bytes open a protocol 2+ pickle (``\\x80`` then the protocol number)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
