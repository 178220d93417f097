"""Open Inference Protocol v2 bodies, with Triton's binary tensor data extension.

Requests: a JSON body, or -- when the ``Inference-Header-Content-Length: N`` header is
present -- N bytes of JSON followed by the raw tensors of the inputs whose
``parameters.binary_data_size`` is set, in input order (little-endian, row-major; BOOL one
byte per element). ``tritonclient.http`` sends this by default.

Responses: outputs are JSON ``data`` unless the request asks for binary, per output
(``outputs: [{"name", "parameters": {"binary_data": true}}]``) or for all of them
(``parameters: {"binary_data_output": true}``, what ``tritonclient`` sends when no outputs
are named); binary outputs carry ``parameters.binary_data_size`` and their bytes follow
the JSON, whose length is given in the ``Inference-Header-Content-Length`` response header.
A binary output carries NaN and infinities as they are; a JSON output holding one is a 500
(JSON cannot spell them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import torch

from torchbridge.serving.runner import check_finite, leaves
from torchbridge.serving.schemas import (
    V2_DATATYPES,
    InvalidInput,
    Signature,
    TensorSpec,
    check_shape,
    to_array,
)

HEADER = "inference-header-content-length"
BINARY_TYPE = "application/octet-stream"
#: numpy dtypes of the v2 datatypes, as laid out in binary tensor data (little-endian)
_WIRE = {"BOOL": "|b1", "UINT8": "|u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
         "INT8": "|i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
         "FP32": "<f4", "FP64": "<f8", "BF16": "<u2"}
_MAX_RANK = 32


@dataclass(frozen=True)
class V2Request:
    """A parsed infer request: the input arrays in signature order, the request id, and
    which outputs to return (``None``: all) and which of them in binary."""

    arrays: list[np.ndarray]
    request_id: Any
    wanted: tuple[str, ...] | None
    binary: frozenset[str]
    binary_all: bool
    #: outputs asked for with ``binary_data: false``: JSON even under ``binary_data_output``
    as_json: frozenset[str] = frozenset()


def split_body(raw: bytes, header: str | None) -> tuple[Any, bytes]:
    """(the JSON part parsed, the binary part) of a request body."""
    if header is None:
        json_part, blobs = raw, b""
    else:
        try:
            size = int(header)
        except ValueError:
            raise InvalidInput("Inference-Header-Content-Length is not a number", 400) \
                from None
        if not 0 <= size <= len(raw):
            raise InvalidInput(f"Inference-Header-Content-Length {size} is outside the body "
                               f"of {len(raw)} bytes", 400)
        json_part, blobs = raw[:size], raw[size:]
    try:
        return orjson.loads(json_part), blobs
    except orjson.JSONDecodeError as exc:
        hint = "" if header is not None else \
            " (binary tensor data needs the Inference-Header-Content-Length header)"
        raise InvalidInput(f"body is not valid JSON: {exc}{hint}", 400) from None


def parse_request(body: Any, blobs: bytes, sig: Signature) -> V2Request:
    """A :class:`V2Request` from the JSON part and the binary part of a request."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise InvalidInput('body must be a JSON object with an "inputs" list', 400)
    by_name: dict[str, tuple[dict[str, Any], bytes | None]] = {}
    offset = 0
    for index, entry in enumerate(body["inputs"]):
        if not isinstance(entry, dict) or not {"name", "shape", "datatype"} <= set(entry):
            raise InvalidInput(f"inputs[{index}] needs name, shape and datatype", 400)
        size = _parameters(entry, f"inputs[{index}]").get("binary_data_size")
        blob = None
        if size is not None:
            if not _count(size) or offset + size > len(blobs):
                raise InvalidInput(f"inputs[{index}]: binary_data_size {size!r} does not fit "
                                   f"the {len(blobs) - offset} binary bytes left", 400)
            blob = blobs[offset:offset + size]
            offset += size
        elif "data" not in entry:
            raise InvalidInput(f"inputs[{index}] needs data (or binary_data_size)", 400)
        if str(entry["name"]) in by_name:  # which one would the model get?
            raise InvalidInput(f"input {entry['name']!r} is given more than once", 400)
        by_name[str(entry["name"])] = (entry, blob)
    if offset != len(blobs):
        raise InvalidInput(f"{len(blobs) - offset} binary bytes after the last input", 400)
    names = sig.names() if sig.known else list(by_name)[:1] or ["input_0"]
    if sorted(by_name) != sorted(names):
        raise InvalidInput(f"inputs must be named {names}; got {sorted(by_name)}")
    arrays = [_input(*by_name[spec.name if sig.known else names[0]], spec)
              for spec in sig.inputs]
    wanted, binary, as_json = _outputs(body.get("outputs"))
    params = _parameters(body, "request")
    if params.get("classification") is not None:
        raise InvalidInput("the classification extension is not supported")
    binary_all = params.get("binary_data_output", False)
    if not isinstance(binary_all, bool):
        raise InvalidInput("parameters.binary_data_output must be true or false")
    return V2Request(arrays, body.get("id"), wanted, binary, binary_all, as_json)


def _parameters(entry: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    params = entry.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}: parameters must be an object", 400)
    return params


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _input(entry: dict[str, Any], blob: bytes | None, spec: TensorSpec) -> np.ndarray:
    where = f"input {entry['name']!r}"
    if entry["datatype"] != spec.datatype:
        raise InvalidInput(f"{where}: datatype must be {spec.datatype}, "
                           f"got {entry['datatype']!r}")
    shape = entry["shape"]
    if not isinstance(shape, list) or len(shape) > _MAX_RANK or \
            not all(_count(d) for d in shape):
        raise InvalidInput(f"{where}: shape must be a list of at most {_MAX_RANK} "
                           "non-negative integers")
    count = math.prod(shape)  # Python ints: [2**32, 2**32] does not wrap around
    if blob is None:
        array = to_array(entry["data"], spec, where)
        if array.size != count:
            raise InvalidInput(f"{where}: data holds {array.size} values, shape {shape} "
                               f"needs {count}")
    else:
        wire = np.dtype(_WIRE[spec.datatype]) if spec.datatype in _WIRE else None
        if wire is None:
            raise InvalidInput(f"{where}: {spec.datatype} cannot be sent as binary data")
        if len(blob) != count * wire.itemsize:
            raise InvalidInput(f"{where}: {len(blob)} binary bytes, shape {shape} of "
                               f"{spec.datatype} needs {count * wire.itemsize}")
        array = np.frombuffer(blob, dtype=wire)
        if spec.datatype == "BOOL":  # a byte of 2 read as bool stays 2 inside the tensor
            array = np.frombuffer(blob, dtype=np.uint8) != 0
        if spec.datatype == "BF16":  # bfloat16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        array = array.astype(spec.numpy_dtype)
    array = array.reshape(shape)
    check_shape(array, spec, where)
    return array


def _outputs(value: Any
             ) -> tuple[tuple[str, ...] | None, frozenset[str], frozenset[str]]:
    """(requested names or None, names asked in binary, names asked in JSON)."""
    if value is None:
        return None, frozenset(), frozenset()
    if not isinstance(value, list) or not all(isinstance(o, dict) and "name" in o
                                              for o in value):
        raise InvalidInput('"outputs" must be a list of objects with a name', 400)
    binary = set()
    as_json = set()
    for output in value:
        params = _parameters(output, f"output {output['name']!r}")
        if params.get("classification") is not None:
            raise InvalidInput("the classification extension is not supported")
        flag = params.get("binary_data")
        if flag is not None and not isinstance(flag, bool):
            raise InvalidInput(f"output {output['name']!r}: binary_data must be true or false")
        if flag is True:
            binary.add(str(output["name"]))
        elif flag is False:
            as_json.add(str(output["name"]))
    return tuple(str(o["name"]) for o in value), frozenset(binary), frozenset(as_json)


def datatype(array: np.ndarray) -> str:
    """The v2 datatype of an output array; ``ValueError`` for one with none (never sent
    as ``BYTES``, which a client would decode as length-prefixed strings)."""
    kind = V2_DATATYPES.get(torch.from_numpy(np.empty(0, dtype=array.dtype)).dtype)
    if kind is None:
        raise ValueError(f"outputs of dtype {array.dtype} have no v2 datatype")
    return kind


def encode_response(tree: Any, request: V2Request, model: str, version: str,
                    request_id: str) -> tuple[bytes, int | None]:
    """(body, JSON header length or ``None`` when the body is plain JSON)."""
    named = dict(leaves(tree))
    names: Sequence[str] = request.wanted if request.wanted is not None else list(named)
    unknown = [n for n in names if n not in named]
    if unknown:
        raise InvalidInput(f"unknown output(s) {unknown}; the model has {list(named)}")
    outputs = []
    blobs: list[bytes] = []
    as_json = {}
    for name in names:
        array = named[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype(array),
                                 "shape": list(array.shape)}
        if name in request.binary or (request.binary_all and name not in request.as_json):
            wire = _WIRE.get(entry["datatype"])
            data = array.astype(wire).tobytes() if wire else array.tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            blobs.append(data)
        else:
            entry["data"] = array.ravel()
            as_json[name] = array
        outputs.append(entry)
    check_finite(as_json)
    head = orjson.dumps({"model_name": model, "model_version": version, "id": request_id,
                         "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


__all__ = ["BINARY_TYPE", "HEADER", "V2Request", "datatype", "encode_response",
           "parse_request", "split_body"]
