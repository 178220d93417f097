"""A static pickle scanner: lists the globals a pickle would import and the strings it
holds, without unpickling it, in bounded memory.

The walker runs the pickle machine *symbolically*: it keeps a stack and a memo of small
stand-in values (strings, numbers, tuples, globals, "an object built by calling X") so
that every global is named the way :mod:`pickle` would resolve it — ``STACK_GLOBAL`` fed
from the memo or from a protocol-0 ``STRING`` with escapes (``'\\x70osix'`` is
``posix``), dotted names (``GLOBAL torch.serialization`` + ``os.system`` is recorded as
``torch.serialization.os.system``), Python 2 names mapped as protocol 0-2 unpicklers map
them. A global whose name cannot be known statically is ``<unresolved>``.

Why not picklescan's walker: ``picklescan.scanner.scan_pickle_bytes`` reads every opcode
argument whole (a pickle holding a 2 GB ``BINBYTES8`` needs 2 GB), keeps every opcode
in a list, and does not return the string constants we scan for secrets. Here large
arguments are skipped, and every read is counted against
:class:`~torchbridge.security.limits.ScanLimits`.

A stream may hold several pickles back to back (a legacy ``torch.save`` file holds
five); all of them are walked, whatever their protocol. joblib writes raw array bytes
right after each ``NumpyArrayWrapper``: they are skipped by the size the wrapper
declares, as joblib reads them.

Example::

    with open("data.pkl", "rb") as f:
        found = scan_pickle_stream(f)
    found.globals        # ['collections.OrderedDict', 'torch._utils._rebuild_tensor_v2']
"""

from __future__ import annotations

import _compat_pickle
import codecs
import math
import pickletools
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from torchbridge.security.limits import DEFAULT_LIMITS, LimitExceeded, ScanLimits

#: Stand-in for a global that cannot be resolved statically.
UNRESOLVED = "<unresolved>"
#: Stand-ins for two operations no saved model performs, judged ``unsafe``: calling a
#: value the pickle computed (not a global), and BUILD on a global (monkeypatching it).
COMPUTED_CALL = "<call of a computed value>"
#: Types pickle has opcodes for: a saved model names them only as values (the factory of
#: a ``defaultdict(list)``); a call of one is recorded as ``<call of builtins.list>``.
REFERENCE_ONLY = frozenset(f"builtins.{t}" for t in (
    "list", "dict", "tuple", "int", "float", "str", "bool", "bytes", "object"))
BUILD_ON_GLOBAL = "<BUILD on a class or function>"
#: Allowlisted constructors that consume their argument whole: pickle hands them a
#: literal (``set([1, 2])``); fed an object another call built (``set(range(10**12))``)
#: or, for ``bytearray``, a size, they allocate without bound while the file loads.
CONSUMING = frozenset({"builtins.set", "builtins.frozenset", "builtins.bytearray",
                        "collections.deque", "collections.Counter",
                        "collections.OrderedDict", "collections.defaultdict"})

_CHUNK = 1 << 16
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE",
               "BINUNICODE", "BINUNICODE8"}
_BYTES_OPS = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "BINFLOAT",
            "FLOAT"}
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
#: Containers longer than this become opaque: only short values matter for resolution.
_MAX_ITEMS = 64
_MAX_STACK = 1_000_000
#: Pickles a loader reads from one stream at most (legacy ``torch.save``: magic number,
#: protocol, system info, the object, storage keys).
_LOADER_PICKLES = 5
#: joblib's wrapper for numpy arrays whose raw bytes follow the pickle opcodes.
JOBLIB_ARRAY_WRAPPERS = frozenset({"joblib.numpy_pickle.NumpyArrayWrapper",
                                   "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper"})
_DTYPE_STR = re.compile(r"^[<>|=]?([a-zA-Z])(\d*)$")


def python3_name(qualified: str) -> str:
    """The name Python 3 imports for a global written by a protocol 0-2 pickler
    (``commands.Popen`` → ``subprocess.Popen``, ``__builtin__.eval`` → ``builtins.eval``)."""
    module, _, name = qualified.rpartition(".")
    return global_name(module, name, 2)


def global_name(module: str, name: str, proto: int) -> str:
    """``module.name`` as :meth:`pickle.Unpickler.find_class` resolves it: protocol 0-2
    names go through ``_compat_pickle`` first; a dotted ``name`` is an attribute path
    below ``module`` and is kept whole (``torch.serialization`` + ``os.system`` →
    ``torch.serialization.os.system``)."""
    if proto < 3:
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
    cannot be resolved statically is ``<unresolved>``); ``calls``: the globals called as
    plain callables (``REDUCE``/``INST``/``OBJ``), ``rebuilt``: classes instantiated with
    ``NEWOBJ`` (no ``__init__``); ``strings``: string constants (each cut to
    ``max_string_chars``; at most ``max_strings`` of them and ``max_secret_bytes``
    characters in all, ``strings_dropped`` counts the others); ``pickles``: complete
    pickles read; ``error``: why parsing
    stopped early, if it did; ``opcodes``: opcodes read.
    """

    globals: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    pickles: int = 0
    opcodes: int = 0
    string_chars: int = 0
    strings_dropped: int = 0
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

    def skip(self, n: int) -> None:
        """Skip ``n`` bytes (seeking when the stream allows; a truncated file then fails
        at the next read)."""
        self.read_prefix(n, 0)

    def read_prefix(self, n: int, keep: int) -> bytes:
        """Read ``n`` bytes, returning at most the first ``keep`` and discarding the rest."""
        head = self.read(min(n, keep))
        left = n - len(head)
        if left and self.seekable:  # skipped unread: not counted against the limit
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


def _decode_string_arg(raw: bytes) -> str:
    """A protocol-0 ``STRING`` as :mod:`pickle` decodes it: quoted, then backslash
    escapes (``'\\x70osix'`` → ``posix``). Raises :class:`PickleError` like pickle."""
    if len(raw) < 2 or raw[:1] != raw[-1:] or raw[:1] not in (b"'", b'"'):
        raise PickleError("the STRING opcode argument must be quoted")
    try:
        value = codecs.escape_decode(raw[1:-1])[0]
    except ValueError as exc:
        raise PickleError(f"STRING: bad escape ({exc})") from None
    return bytes(value).decode("latin-1")


class _Mark:
    """The MARK opcode's stack entry."""


class _Opaque:
    """A value the walker does not track (tensors, big containers, buffers)."""


_MARK = _Mark()
_OPAQUE = _Opaque()


@dataclass(eq=False)  # hashed by identity: a dict keyed by a global (torch.float32) is fine
class _Global:
    name: str


@dataclass(eq=False)
class _Made:
    """An object built from a global: ``callee(*args)`` (``new``: ``callee.__new__``)."""

    callee: str
    new: bool
    args: Any
    state: Any = None


def _small(value: Any) -> Any:
    """``value`` if it is a short container, else an opaque stand-in (bounded memory)."""
    if isinstance(value, list | tuple | dict) and len(value) > _MAX_ITEMS:
        return _OPAQUE
    return value


class _Walker:
    """One pass over one pickle, with a symbolic stack and memo."""

    def __init__(self, reader: _Reader, findings: PickleFindings, limits: ScanLimits) -> None:
        self.reader = reader
        self.findings = findings
        self.limits = limits
        self.memo: dict[int, Any] = {}
        self.stack: list[Any] = []
        self.proto = 0

    # ----------------------------------------------------------------- stack helpers

    def push(self, value: Any) -> None:
        if len(self.stack) >= _MAX_STACK:
            raise LimitExceeded(f"pickle stack deeper than {_MAX_STACK} entries")
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack or self.stack[-1] is _MARK:
            raise PickleError("unpickling stack underflow")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index] is _MARK:
                items = self.stack[index + 1:]
                del self.stack[index:]
                return items
        raise PickleError("could not find MARK")

    def top(self) -> Any:
        if not self.stack or self.stack[-1] is _MARK:
            raise PickleError("unpickling stack underflow")
        return self.stack[-1]

    # ----------------------------------------------------------------- recording

    def _global(self, module: Any, name: Any) -> _Global:
        if not isinstance(module, str) or not isinstance(name, str):
            self.findings.notes.append("STACK_GLOBAL whose module/name cannot be resolved "
                                       "statically")
            resolved = UNRESOLVED
        else:
            resolved = global_name(module, name, self.proto)
        self.findings.add_global(resolved)
        return _Global(resolved)

    def _string(self, value: str) -> None:
        kept = value[: self.limits.max_string_chars]
        found = self.findings
        # Bounded by count and by total characters (max_secret_bytes): a pickle of 200k
        # distinct 4k strings would otherwise hold 800 MB of text.
        if len(found.strings) < self.limits.max_strings and \
                found.string_chars + len(kept) <= self.limits.max_secret_bytes:
            found.strings.append(kept)
            found.string_chars += len(kept)
        else:
            found.strings_dropped += 1

    def _call(self, callee: Any, args: Any, new: bool) -> _Made | _Opaque:
        if isinstance(callee, _Global) and callee.name in REFERENCE_ONLY:
            self.findings.add_global(f"<call of {callee.name}>")
        if not isinstance(callee, _Global):
            # Real pickles only call globals; calling what an earlier call returned is
            # how gadget chains reach builtins (``numpy.__builtins__.get('exec')``).
            self.findings.add_global(COMPUTED_CALL)
            return _OPAQUE
        target = self.findings.rebuilt if new else self.findings.calls
        if callee.name not in target:
            target.append(callee.name)
        if callee.name not in REFERENCE_ONLY and (  # those calls are flagged already
                (callee.name in CONSUMING and _unbounded_input(callee.name, args)) or
                _fed_a_range(args)):
            self.findings.add_global(f"<call of {callee.name} on a computed value>")
        return _Made(callee.name, new, _small(args))

    # ----------------------------------------------------------------- arguments

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

    # ----------------------------------------------------------------- opcodes

    def step(self, code: bytes) -> bool:
        """Handle one opcode; ``False`` after STOP. Raises :class:`PickleError` where
        :mod:`pickle` would fail."""
        entry = _TABLE.get(code)
        if entry is None:
            raise PickleError(f"invalid opcode {code!r}")
        op, handler = entry
        self.findings.opcodes += 1
        arg = None if op.arg is None else self._arg(op)
        if handler is None:  # STOP
            self.pop()
            return False
        handler(self, op.name, arg)
        return True

    def _op_proto(self, name: str, arg: Any) -> None:
        self.proto = int(arg)

    def _op_nothing(self, name: str, arg: Any) -> None:
        """FRAME and READONLY_BUFFER change nothing the scan tracks."""

    def _op_number(self, name: str, arg: Any) -> None:
        self.push(self._number(name, arg))

    def _op_constant(self, name: str, arg: Any) -> None:
        self.push({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])

    def _op_container(self, name: str, arg: Any) -> None:
        self._containers(name)

    def _push_string(self, name: str, arg: bytes) -> None:
        if name in _BYTES_OPS:
            if arg and arg.isascii() and arg.decode("ascii").isprintable():
                self._string(arg.decode("ascii"))
            self.push(arg if len(arg) <= 64 else _OPAQUE)
            return
        if name == "STRING":
            value = _decode_string_arg(arg)
        elif name == "UNICODE":
            value = arg.decode("raw_unicode_escape", "replace")
        else:
            value = arg.decode("utf-8" if "UNICODE" in name else "latin-1", "replace")
        self._string(value)
        self.push(value)

    @staticmethod
    def _number(name: str, arg: Any) -> Any:
        if name in ("LONG1", "LONG4"):
            return int.from_bytes(arg, "little", signed=True) if len(arg) <= 64 else _OPAQUE
        if name in ("INT", "LONG", "FLOAT"):
            text = arg.decode("latin-1")
            if name == "INT" and text in ("00", "01"):  # protocol 0's False / True
                return text == "01"
            if name == "LONG" and text.endswith("L"):
                text = text[:-1]
            try:  # as pickle parses them: int(text, 0), float(text)
                return float(text) if name == "FLOAT" else int(text, 0)
            except ValueError:
                raise PickleError(f"{name}: bad literal {text[:40]!r}") from None
        return arg

    def _containers(self, name: str) -> bool:
        if name == "MARK":
            self.push(_MARK)
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE", "EMPTY_SET"):
            self.push({"EMPTY_LIST": [], "EMPTY_DICT": {}, "EMPTY_TUPLE": (),
                       "EMPTY_SET": _OPAQUE}[name])
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            items = [self.pop() for _ in range(count)][::-1]
            self.push(tuple(items))
        elif name in ("TUPLE", "LIST", "FROZENSET"):
            items = self.pop_mark()
            value: Any = tuple(items) if name == "TUPLE" else \
                list(items) if name == "LIST" else _OPAQUE
            self.push(_small(value))
        elif name == "DICT":
            self.push(self._dict_from(self.pop_mark()))
        elif name in ("APPEND", "APPENDS", "ADDITEMS"):
            items = [self.pop()] if name == "APPEND" else self.pop_mark()
            self._extend(self.top(), items)
        elif name in ("SETITEM", "SETITEMS"):
            items = [self.pop() for _ in range(2)][::-1] if name == "SETITEM" \
                else self.pop_mark()
            self._update(self.top(), items)
        else:
            return False
        return True

    def _dict_from(self, items: list[Any]) -> Any:
        if len(items) % 2:
            raise PickleError("odd number of items for DICT")
        out: dict[Any, Any] = {}
        self._update(out, items)
        return _small(out)

    def _extend(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(items)
            if len(target) > _MAX_ITEMS:
                target.clear()  # keeps identity (memo); only short lists matter

    def _update(self, target: Any, items: list[Any]) -> None:
        if len(items) % 2:
            raise PickleError("odd number of items for SETITEMS")
        if not isinstance(target, dict):
            return
        for key, value in zip(items[::2], items[1::2], strict=True):
            try:
                target[key] = value
            except TypeError:  # unhashable stand-in; pickle would fail the same way
                raise PickleError("unhashable dict key") from None
        if len(target) > _MAX_ITEMS:
            target.clear()

    def _memo_op(self, name: str, arg: Any) -> bool:
        if name in _GET_OPS:
            index = _int_arg(name, arg)
            if index not in self.memo:
                raise PickleError(f"memo key {index} not found")
            self.push(self.memo[index])
        elif name in _PUT_OPS or name == "MEMOIZE":
            index = len(self.memo) if name == "MEMOIZE" else _int_arg(name, arg)
            if len(self.memo) >= self.limits.max_memo and index not in self.memo:
                raise LimitExceeded(f"more than max_memo={self.limits.max_memo} memo entries")
            self.memo[index] = self.top()
        elif name == "POP":
            if self.stack and self.stack[-1] is _MARK:
                self.pop_mark()
            else:
                self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.push(self.top())
        else:
            return False
        return True

    def _objects(self, name: str, arg: Any) -> None:
        if name == "GLOBAL":
            self.push(self._global(*arg))
        elif name == "STACK_GLOBAL":
            attr = self.pop()
            module = self.pop()
            self.push(self._global(module, attr))
        elif name == "INST":
            cls = self._global(*arg)
            self.push(self._call(cls, tuple(self.pop_mark()), new=False))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise PickleError("OBJ without a class")
            self.push(self._call(items[0], tuple(items[1:]), new=False))
        elif name == "REDUCE":
            args = self.pop()
            self.push(self._call(self.pop(), args, new=False))
        elif name == "NEWOBJ":
            args = self.pop()
            self.push(self._call(self.pop(), args, new=True))
        elif name == "NEWOBJ_EX":
            self.pop()
            args = self.pop()
            self.push(self._call(self.pop(), args, new=True))
        elif name == "BUILD":
            self._build(self.pop())
        elif name in ("PERSID", "NEXT_BUFFER"):
            self.push(_OPAQUE)
        elif name == "BINPERSID":
            self.pop()
            self.push(_OPAQUE)
        elif name in _EXT_OPS:
            self.findings.add_global(UNRESOLVED)
            self.findings.notes.append(f"{name}: import through the copyreg extension "
                                       "registry")
            self.push(_Global(UNRESOLVED))
        else:
            raise PickleError(f"unhandled opcode {name}")

    def _build(self, state: Any) -> None:
        target = self.top()
        if isinstance(target, _Global):  # setting attributes on a class or function
            self.findings.add_global(BUILD_ON_GLOBAL)
        if isinstance(target, _Made):
            target.state = _small(state)
            if target.callee in JOBLIB_ARRAY_WRAPPERS:
                self._skip_joblib_array(target)

    # ----------------------------------------------------------------- joblib

    def _skip_joblib_array(self, wrapper: _Made) -> None:
        """Skip the array bytes joblib wrote after this wrapper (its ``read_array``)."""
        state = wrapper.state
        if not isinstance(state, dict):
            raise PickleError("joblib NumpyArrayWrapper without its state")
        shape, dtype = state.get("shape"), state.get("dtype")
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0
                                                   for d in shape):
            raise PickleError("joblib NumpyArrayWrapper with a shape the scanner cannot read")
        itemsize = _dtype_itemsize(dtype)
        if itemsize is None:  # object array: joblib unpickles a nested pickle here
            inner = _Walker(self.reader, self.findings, self.limits)
            _walk_one(inner, self.reader.next_byte())
            return
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self.reader.read(1)[0]
            self.reader.skip(padding)
        self.reader.skip(math.prod(shape) * itemsize)


def _unbounded_input(callee: str, args: Any) -> bool:
    """Whether a consuming constructor gets an object built by another call (or, for
    ``bytearray``, an integer size) instead of a literal."""
    items = args if isinstance(args, tuple) else (args,)
    if callee == "builtins.bytearray" and any(isinstance(a, int) and a > 0 for a in items):
        return True
    # Protocol 2 writes bytes as ``_codecs.encode(text, 'latin1')``: a literal too.
    return any(isinstance(a, _Made) and a.callee != "_codecs.encode" for a in items)


def _fed_a_range(args: Any) -> bool:
    """Whether any callable gets a ``range`` object: a saved model rebuilds ranges but
    never passes one on; fed to ``torch.Size`` or a tensor's size, it is iterated whole."""
    items = args if isinstance(args, tuple) else (args,)
    return any(isinstance(a, _Made) and a.callee == "builtins.range" for a in items)


def _int_arg(name: str, arg: Any) -> int:
    """An opcode's integer argument (protocol 0 writes it as a decimal line); raises
    :class:`PickleError` where pickle fails to parse it."""
    try:
        return int(arg)
    except (TypeError, ValueError):
        raise PickleError(f"{name}: bad integer argument {arg!r:.40}") from None


def _dtype_itemsize(dtype: Any) -> int | None:
    """Bytes per element of a pickled ``numpy.dtype`` stand-in; ``None`` for object
    arrays. Raises :class:`PickleError` for one the scanner cannot size."""
    if not isinstance(dtype, _Made) or dtype.callee not in ("numpy.dtype",) or \
            not isinstance(dtype.args, tuple) or not dtype.args or \
            not isinstance(dtype.args[0], str):
        raise PickleError("joblib array with a dtype the scanner cannot read")
    state = dtype.state
    if isinstance(state, tuple) and len(state) > 5 and isinstance(state[5], int) and \
            state[5] > 0:
        return state[5]
    match = _DTYPE_STR.match(dtype.args[0])
    if not match:
        raise PickleError(f"joblib array with dtype {dtype.args[0]!r}")
    kind, digits = match.groups()
    if kind == "O":
        return None
    if not digits:
        raise PickleError(f"joblib array with dtype {dtype.args[0]!r}")
    return int(digits) * (4 if kind == "U" else 1)


_Handler = Callable[[_Walker, str, Any], object]


def _dispatch_table() -> dict[bytes, tuple[pickletools.OpcodeInfo, _Handler | None]]:
    """Opcode byte → (opcode, handler); STOP's handler is ``None``."""
    table: dict[bytes, tuple[pickletools.OpcodeInfo, _Handler | None]] = {}
    for op in pickletools.opcodes:
        name = op.name
        handler: _Handler | None
        if name == "STOP":
            handler = None
        elif name == "PROTO":
            handler = _Walker._op_proto
        elif name in ("FRAME", "READONLY_BUFFER"):
            handler = _Walker._op_nothing
        elif name in _STRING_OPS or name in _BYTES_OPS:
            handler = _Walker._push_string
        elif name in _INT_OPS:
            handler = _Walker._op_number
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            handler = _Walker._op_constant
        elif name in _CONTAINER_OPS:
            handler = _Walker._op_container
        elif name in _MEMO_OPS:
            handler = _Walker._memo_op
        else:
            handler = _Walker._objects
        table[op.code.encode("latin-1")] = (op, handler)
    return table


_CONTAINER_OPS = {"MARK", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE", "EMPTY_SET", "TUPLE1",
                  "TUPLE2", "TUPLE3", "TUPLE", "LIST", "FROZENSET", "DICT", "APPEND",
                  "APPENDS", "ADDITEMS", "SETITEM", "SETITEMS"}
_MEMO_OPS = _GET_OPS | _PUT_OPS | {"MEMOIZE", "POP", "POP_MARK", "DUP"}
_TABLE = _dispatch_table()


def _walk_one(walker: _Walker, code: bytes) -> None:
    """Walk one pickle from its first opcode ``code`` to STOP."""
    if not code:
        raise PickleError("truncated: stream ended before STOP")
    reader = walker.reader
    read = reader.stream.read
    step = walker.step
    limit = reader.limits.max_pickle_bytes
    while step(code):
        code = read(1)
        if not code:
            raise PickleError("truncated: stream ended before STOP")
        reader.consumed += 1
        if reader.consumed > limit:
            raise LimitExceeded(f"pickle stream longer than max_pickle_bytes={limit}")
    walker.findings.pickles += 1


def scan_pickle_stream(stream: IO[bytes], limits: ScanLimits = DEFAULT_LIMITS, *,
                       multiple: bool = True) -> PickleFindings:
    """Walk the pickle(s) in ``stream`` without executing anything.

    With ``multiple`` (legacy ``torch.save`` files hold several pickles back to back, then
    raw tensor bytes) scanning goes on while what follows parses as another pickle, of
    any protocol; the first bytes that do not are noted and left. Raises
    :class:`LimitExceeded`; parse failures land in ``findings.error`` with whatever was
    found before them.
    """
    findings = PickleFindings()
    reader = _Reader(stream, limits)
    while True:
        code = reader.next_byte()
        if not code:
            if findings.pickles == 0:
                findings.error = "empty stream"
            return findings
        marks = (len(findings.globals), len(findings.calls), len(findings.rebuilt))
        try:
            _walk_one(_Walker(reader, findings, limits), code)
        except LimitExceeded:
            raise
        except Exception as exc:  # PickleError, or bytes no pickle would accept either
            if not isinstance(exc, PickleError):
                exc = PickleError(f"{type(exc).__name__}: {str(exc)[:200]}")
            if not findings.pickles:
                findings.error = str(exc)
                return findings
            findings.notes.append(f"data after pickle {findings.pickles} is not a "
                                  f"pickle ({exc})")
            if findings.pickles >= _LOADER_PICKLES:
                # Past what any loader unpickles (legacy torch.save reads five): raw
                # tensor bytes that happened to parse for a while import nothing.
                del findings.globals[marks[0]:], findings.calls[marks[1]:], \
                    findings.rebuilt[marks[2]:]
            return findings
        if not multiple:
            return findings


def looks_like_pickle(head: bytes) -> bool:
    """Whether bytes open a protocol 2+ pickle (``\\x80`` then the protocol number)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
