"""Read and validate a safetensors header without trusting it.

Layout: 8-byte little-endian header length N, N bytes of JSON, then the tensor bytes.
The header is checked the way the ``safetensors`` library checks it before loading, so a
file we call valid is one it would load: a JSON object whose ``__metadata__`` (optional)
maps strings to strings and whose every other entry is a tensor with a known ``dtype``,
a ``shape`` of non-negative integers and ``data_offsets`` of exactly two integers; the
tensors, sorted by offset, tile the data buffer exactly (no gap, no overlap, nothing
after the last one) and each spans ``prod(shape) * itemsize`` bytes.

Every defect is an :class:`InvalidArtifact` naming what is wrong; no input makes the
reader raise anything else (a JSON nested 200,000 deep is a ``RecursionError`` inside
:func:`json.loads`, turned into an :class:`InvalidArtifact`). Tensor names and metadata
keys can hold secrets, so messages show them redacted (:func:`~torchbridge.security.
secrets.safe_name`).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import IO, Any

from torchbridge.security.limits import DEFAULT_LIMITS, ScanLimits
from torchbridge.security.secrets import safe_name

#: Bits per element of every dtype safetensors 0.4-0.8 knows.
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
              "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16,
              "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
              "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


#: JSON items (commas) a header may hold: six per tensor for a million tensors.
MAX_HEADER_ITEMS = 6_000_000


class InvalidArtifact(ValueError):
    """The file is not a valid instance of the format it claims; the message says why."""


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether the first 9 bytes open a safetensors file of ``size`` bytes."""
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length <= size - 8 and head[8:9] == b"{"


def read_header(path: str | Path, limits: ScanLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The parsed header of a safetensors file, after checking it against the file.

    Raises :class:`InvalidArtifact` for any defect, and ``OSError`` if the file cannot
    be read at all.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        return read_header_stream(handle, size, path.name, limits)


def read_header_stream(handle: IO[bytes], size: int, name: str,
                       limits: ScanLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """:func:`read_header` for an open stream positioned at the file's start, holding
    ``size`` bytes in all; ``name`` is used in messages. Raises :class:`InvalidArtifact`.
    """
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise InvalidArtifact(f"{name}: {size} bytes, too short for a safetensors "
                              "header (truncated?)")
    (length,) = struct.unpack("<Q", prefix)
    if length > limits.max_header_bytes:
        raise InvalidArtifact(f"{name}: declares a {length}-byte header, over the "
                              f"max_header_bytes limit {limits.max_header_bytes} "
                              "(corrupt or hostile)")
    if length > size - 8:
        raise InvalidArtifact(f"{name}: declares a {length}-byte header but only "
                              f"{size - 8} bytes follow (truncated)")
    raw = handle.read(length)
    if len(raw) < length:
        raise InvalidArtifact(f"{name}: header cut short after {len(raw)} of {length} "
                              "bytes (truncated)")
    return parse_header(raw, size - 8 - length, name)


def parse_header(raw: bytes, data_size: int, name: str) -> dict[str, Any]:
    """Parse and validate header bytes ``raw`` for a data buffer of ``data_size`` bytes.

    Raises :class:`InvalidArtifact` naming the first defect.
    """
    if not raw.lstrip(b" ").startswith(b"{"):
        raise InvalidArtifact(f"{name}: header does not open a JSON object")
    items = raw.count(b",")
    if items > MAX_HEADER_ITEMS:  # json.loads would build tens of millions of objects
        raise InvalidArtifact(f"{name}: header holds {items} JSON items, more than the "
                              f"{MAX_HEADER_ITEMS} a file of a million tensors needs")
    try:
        header = json.loads(raw, object_pairs_hook=_object_like_serde,
                            parse_int=_int_like_serde)
    except RecursionError:
        raise InvalidArtifact(f"{name}: header JSON nested too deep to be a "
                              "safetensors header") from None
    except _SerdeRefuses as exc:
        raise InvalidArtifact(f"{name}: header JSON that safetensors refuses: {exc}") \
            from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArtifact(f"{name}: header is not valid JSON "
                              f"({type(exc).__name__} at {getattr(exc, 'pos', '?')})"
                              ) from None
    if not isinstance(header, dict):
        raise InvalidArtifact(f"{name}: header is not a JSON object")
    check_entries(name, header, data_size)
    return header


class _SerdeRefuses(ValueError):
    """JSON that Python's parser takes but safetensors' (serde_json) refuses."""


def _object_like_serde(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as safetensors reads it: a repeated field of a tensor entry
    (``dtype``/``shape``/``data_offsets``) is an error there (Python keeps the last);
    keys must be valid Unicode (a lone surrogate ``"\\ud800"`` is refused)."""
    keys = [key for key, _ in pairs]
    for key in keys:
        _utf8(key)
    if len(set(keys)) != len(keys) and {"dtype", "shape", "data_offsets"} & set(keys):
        raise _SerdeRefuses("a tensor entry repeats a field")
    out = {}
    for key, value in pairs:
        if isinstance(value, str):
            _utf8(value)
        out[key] = value
    return out


def _utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _SerdeRefuses("a string that is not valid Unicode (lone surrogate)") from None


def _int_like_serde(literal: str) -> int:
    """serde reads offsets and dims as unsigned integers: ``-0`` is refused too."""
    if literal == "-0":
        raise _SerdeRefuses("-0 is not an unsigned integer")
    return int(literal)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_metadata(name: str, entry: Any) -> None:
    if entry is None:
        return
    if not isinstance(entry, dict):
        raise InvalidArtifact(f"{name}: __metadata__ is {type(entry).__name__}, "
                              "not an object of strings")
    for key, value in entry.items():
        if not isinstance(value, str):
            raise InvalidArtifact(f"{name}: __metadata__[{safe_name(key)}] is "
                                  f"{type(value).__name__}, not a string")


def _tensor_span(name: str, key: str, entry: Any) -> tuple[int, int]:
    """(start, stop) of one tensor entry after checking dtype, shape and offsets."""
    label = f"{name}: tensor {safe_name(key)}"
    if not isinstance(entry, dict):
        raise InvalidArtifact(f"{label} is {type(entry).__name__}, not an object")
    missing = {"dtype", "shape", "data_offsets"} - set(entry)
    if missing:
        raise InvalidArtifact(f"{label} lacks {', '.join(sorted(missing))}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        shown = safe_name(dtype) if isinstance(dtype, str) else type(dtype).__name__
        raise InvalidArtifact(f"{label} has unknown dtype {shown}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise InvalidArtifact(f"{label} has a bad shape (not a list of non-negative "
                              f"integers: {_describe(shape)})")
    if not isinstance(offsets, list) or len(offsets) != 2 or \
            not all(_is_int(o) and o >= 0 for o in offsets):
        raise InvalidArtifact(f"{label} has bad data_offsets (need exactly two "
                              f"non-negative integers: {_describe(offsets)})")
    start, stop = offsets
    if start > stop:
        raise InvalidArtifact(f"{label} has data_offsets {start}..{stop} that run backwards")
    count = 1
    for dim in shape:
        count *= dim
    bits = count * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != stop - start:
        raise InvalidArtifact(f"{label} {dtype}{shape} needs {bits / 8:g} bytes, "
                              f"data_offsets give {stop - start}")
    return start, stop


def _describe(value: Any) -> str:
    text = json.dumps(value)[:60] if not isinstance(value, str) else "a string"
    return text


def check_entries(name: str, header: dict[str, Any], data_size: int) -> None:
    """Validate every entry of a parsed header against a data buffer of ``data_size``
    bytes. Raises :class:`InvalidArtifact`."""
    spans: list[tuple[int, int, str]] = []
    for key, entry in header.items():
        if key == "__metadata__":
            _check_metadata(name, entry)
            continue
        start, stop = _tensor_span(name, key, entry)
        spans.append((start, stop, key))
    spans.sort()
    end = 0
    for start, stop, key in spans:
        if start < end:
            raise InvalidArtifact(f"{name}: tensor {safe_name(key)} at bytes {start}..{stop} "
                                  f"overlaps the tensor before it (ends at {end})")
        if start > end:
            raise InvalidArtifact(f"{name}: {start - end} bytes of the data buffer before "
                                  f"tensor {safe_name(key)} belong to no tensor")
        end = stop
    if end > data_size:
        raise InvalidArtifact(f"{name}: the tensors need {end} bytes of data but the file "
                              f"holds {data_size} (truncated)")
    if end != data_size:
        raise InvalidArtifact(f"{name}: {data_size - end} trailing bytes after the last "
                              "tensor (not a file safetensors wrote)")
