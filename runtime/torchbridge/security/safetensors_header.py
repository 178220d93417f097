"""Read and validate a safetensors header without trusting it.

Layout: 8-byte little-endian header length N, N bytes of JSON, then the tensor bytes.
A hostile or broken file can declare a header longer than the file (truncated), one so
large that reading it would exhaust memory (oversized), or tensor offsets outside the
data; each is an :class:`InvalidArtifact` naming what is wrong.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from torchbridge.security.limits import DEFAULT_LIMITS, ScanLimits

_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
                "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
                "I64": 8, "U64": 8, "F64": 8, "C64": 8, "F4": 1, "F6_E2M3": 1,
                "F6_E3M2": 1}


class InvalidArtifact(ValueError):
    """The file is not a valid instance of the format it claims; the message says why."""


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether the first 9 bytes open a safetensors file of ``size`` bytes."""
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length <= size - 8 and head[8:9] == b"{"


def read_header(path: str | Path, limits: ScanLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The parsed header of a safetensors file, after checking it against the file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise InvalidArtifact(f"{path.name}: {size} bytes, too short for a safetensors "
                                  "header (truncated?)")
        (length,) = struct.unpack("<Q", prefix)
        if length > limits.max_header_bytes:
            raise InvalidArtifact(f"{path.name}: declares a {length}-byte header, over the "
                                  f"{limits.max_header_bytes}-byte limit (corrupt or hostile)")
        if length > size - 8:
            raise InvalidArtifact(f"{path.name}: declares a {length}-byte header but only "
                                  f"{size - 8} bytes follow (truncated)")
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArtifact(f"{path.name}: header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InvalidArtifact(f"{path.name}: header is not a JSON object")
    _check_entries(path.name, header, size - 8 - length)
    return header


def _check_entries(name: str, header: dict[str, Any], data_size: int) -> None:
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
                raise InvalidArtifact(f"{name}: __metadata__ must map strings to strings")
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise InvalidArtifact(f"{name}: tensor {key!r} lacks dtype/shape/data_offsets")
        start, stop = entry["data_offsets"]
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop):
            raise InvalidArtifact(f"{name}: tensor {key!r} has bad offsets {start}..{stop}")
        if stop > data_size:
            raise InvalidArtifact(f"{name}: tensor {key!r} ends at byte {stop} of the data "
                                  f"but the file holds {data_size} (truncated)")
        width = _DTYPE_BYTES.get(entry["dtype"])
        count = 1
        for dim in entry["shape"]:
            count *= int(dim)
        if width is not None and entry["dtype"] not in ("F4", "F6_E2M3", "F6_E3M2") \
                and count * width != stop - start:
            raise InvalidArtifact(f"{name}: tensor {key!r} {entry['dtype']}{entry['shape']} "
                                  f"needs {count * width} bytes, offsets give {stop - start}")
        end = max(end, stop)
    if end != data_size:
        raise InvalidArtifact(f"{name}: {data_size - end} trailing bytes after the last "
                              "tensor (not a file safetensors wrote)")
