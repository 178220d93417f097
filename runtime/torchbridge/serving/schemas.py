"""The model's input signature and validation of JSON tensors against it.

The signature comes from the sample input (dtype, rank, the size of every dim) and the
input spec (which dim is the batch dim, which named dims are dynamic and their ranges);
every dim that is neither batch nor declared dynamic must match the sample exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from torchbridge.core.subject import InputKey, InputSpec, named_inputs

#: Open Inference Protocol v2 datatypes by torch dtype.
V2_DATATYPES: dict[torch.dtype, str] = {
    torch.bool: "BOOL", torch.uint8: "UINT8", torch.int8: "INT8", torch.int16: "INT16",
    torch.int32: "INT32", torch.int64: "INT64", torch.float16: "FP16",
    torch.float32: "FP32", torch.float64: "FP64", torch.bfloat16: "BF16",
    torch.uint16: "UINT16", torch.uint32: "UINT32", torch.uint64: "UINT64",
}
_NUMPY_BY_V2 = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16,
                "UINT32": np.uint32, "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16,
                "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
                "FP64": np.float64}


class InvalidInput(ValueError):
    """A request's tensors do not fit the model's signature; the message says what to change.

    ``status`` is 400 for a body that is not the expected JSON structure and 422 for
    well-formed JSON whose tensors do not match (wrong dtype, rank or dim size).
    """

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TensorSpec:
    """One model input: name, dtype, shape (-1 = variable) and ranges of variable dims."""

    name: str
    key: InputKey
    dtype: torch.dtype
    shape: tuple[int, ...]
    batch_axis: int | None
    ranges: Mapping[int, tuple[int, int | None]] = field(default_factory=dict)
    #: axis -> named dynamic dim, so inputs sharing a dim can be checked to agree on it
    dims: Mapping[int, str] = field(default_factory=dict)

    @functools.cached_property
    def numpy_dtype(self) -> Any:
        dtype = torch.float32 if self.dtype is torch.bfloat16 else self.dtype
        return torch.empty((), dtype=dtype).numpy().dtype

    @property
    def datatype(self) -> str:
        return V2_DATATYPES.get(self.dtype, "BYTES")

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """How the model is called (one tensor, positional tensors or keywords) and its inputs."""

    kind: Literal["tensor", "tuple", "dict", "unknown"]
    inputs: tuple[TensorSpec, ...]
    max_rows: int

    @property
    def known(self) -> bool:
        return self.kind != "unknown"

    def names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    def rebuild(self, tensors: Sequence[torch.Tensor]) -> Any:
        """The model call's inputs: a tensor, a tuple, or a dict, as the sample had them."""
        if self.kind in ("tensor", "unknown"):
            return tensors[0]
        if self.kind == "dict":
            return {spec.key: t for spec, t in zip(self.inputs, tensors, strict=True)}
        return tuple(tensors)


def signature(sample: Any, spec: InputSpec | Mapping[str, Any] | None, max_rows: int
              ) -> Signature:
    """The input signature of a model from its sample input and input spec.

    With no sample, any float32 array with a batch dim is accepted (kind ``unknown``).
    """
    input_spec = InputSpec.coerce(spec)
    if sample is None:
        anything = TensorSpec("input_0", 0, torch.float32, (), 0)
        return Signature("unknown", (anything,), max_rows)
    pairs = named_inputs(sample)
    kind: Literal["tensor", "tuple", "dict"] = (
        "tensor" if isinstance(sample, torch.Tensor)
        else "dict" if isinstance(sample, Mapping) else "tuple")
    specs = []
    for key, value in pairs:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"sample input {key!r} is a {type(value).__name__}; the server "
                            "serves tensor inputs only")
        axis = input_spec.batch_axis(key)
        shape = list(value.shape)
        ranges: dict[int, tuple[int, int | None]] = {}
        dims: dict[int, str] = {}
        if axis is not None:
            shape[axis] = -1
            ranges[axis] = (1, max_rows)
        for dim_name, dim in input_spec.dims.items():
            if key in dim.axes:  # a dim shared by several inputs is variable on each
                shape[dim.axes[key]] = -1
                ranges[dim.axes[key]] = (dim.min, dim.max)
                dims[dim.axes[key] % value.dim()] = dim_name
        name = key if isinstance(key, str) else f"input_{key}"
        specs.append(TensorSpec(name, key, value.dtype, tuple(shape), axis, ranges, dims))
    return Signature(kind, tuple(specs), max_rows)


def to_array(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    """A nested JSON list as a numpy array of the spec's dtype, or :class:`InvalidInput`."""
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError):
        raise InvalidInput(f"{where}: not a rectangular array (rows of different lengths?)") \
            from None
    kind = raw.dtype.kind
    target = spec.numpy_dtype
    if target.kind in "iu" and kind == "f" and np.isfinite(raw).all() and \
            (raw == np.floor(raw)).all():
        kind = "i"  # 3.0 is an integer in JSON; anything fractional is refused below
    if kind not in "biuf" or (target.kind in "iu" and kind == "f") or \
            (target.kind == "b" and kind != "b"):
        found = "strings" if kind in "US" else "null or mixed values" if kind == "O" else \
            f"{raw.dtype} values"
        raise InvalidInput(f"{where}: expected {spec.datatype} numbers, got {found}")
    with np.errstate(over="ignore", invalid="ignore"):
        array = raw.astype(target, copy=False)
    if target.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(f"{where}: values out of range for {spec.datatype}")
    if target.kind in "iu" and kind in "iu" and raw.size and _out_of_range(raw, target):
        raise InvalidInput(f"{where}: values out of range for {spec.datatype}")
    return array


def _out_of_range(raw: np.ndarray, target: Any) -> bool:
    """Whether integral values fall outside ``target``'s range. Integral floats are
    compared against the bounds as floats with the top bound exclusive: ``float(2**63 - 1)``
    rounds up to ``2**63``, so ``9.223372036854776e18 > INT64_MAX`` is False in float
    arithmetic although the value would wrap to INT64_MIN."""
    info = np.iinfo(target)
    if raw.dtype.kind == "f":
        return bool(raw.min() < float(info.min) or raw.max() >= float(info.max) + 1.0)
    return bool(raw.min() < info.min or raw.max() > info.max)


def check_shape(array: np.ndarray, spec: TensorSpec, where: str) -> None:
    """Rank, fixed dims and dynamic-dim ranges of ``array`` against ``spec``."""
    if not spec.shape:  # unknown signature: anything with a batch dim
        if array.ndim < 1 or array.shape[0] < 1:
            raise InvalidInput(f"{where}: expected an array with a batch dim of at least 1 row")
        return
    if array.ndim != len(spec.shape):
        raise InvalidInput(f"{where}: expected rank {len(spec.shape)} (shape "
                           f"{_show(spec.shape)}), got rank {array.ndim} {list(array.shape)}")
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if want >= 0 and want != got:
            raise InvalidInput(f"{where}: dim {axis} must be {want}, got {got} "
                               f"(expected shape {_show(spec.shape)})")
        if want < 0:
            low, high = spec.ranges.get(axis, (0, None))
            if got < low or (high is not None and got > high):
                label = "batch dim" if axis == spec.batch_axis else f"dim {axis}"
                bound = f"[{low}, {high}]" if high is not None else f">= {low}"
                raise InvalidInput(f"{where}: {label} is {got}, allowed {bound}")


def parse_predict(body: Any, sig: Signature) -> list[np.ndarray]:
    """``{"inputs": X}`` (one input) or ``{"inputs": {"name": X, ...}}`` → checked arrays."""
    if not isinstance(body, dict) or "inputs" not in body:
        raise InvalidInput('body must be a JSON object {"inputs": ...}', 400)
    value = body["inputs"]
    if len(sig.inputs) == 1 and not isinstance(value, dict):
        return [_one(value, sig.inputs[0], "inputs")]
    if not isinstance(value, dict):
        raise InvalidInput(f'the model takes {len(sig.inputs)} inputs: send "inputs" as an '
                           f"object with keys {sig.names()}", 400)
    missing = [n for n in sig.names() if n not in value]
    extra = [n for n in value if n not in sig.names()]
    if missing or extra:
        raise InvalidInput(f"inputs must have exactly the keys {sig.names()}; missing "
                           f"{missing}, unexpected {extra}")
    return [_one(value[s.name], s, f"inputs.{s.name}") for s in sig.inputs]


def parse_v2(body: Any, sig: Signature) -> list[np.ndarray]:
    """Open Inference Protocol v2 ``inputs: [{name, shape, datatype, data}]`` → arrays."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise InvalidInput('body must be a JSON object with an "inputs" list', 400)
    by_name: dict[str, Any] = {}
    for index, entry in enumerate(body["inputs"]):
        if not isinstance(entry, dict) or not {"name", "shape", "datatype", "data"} <= set(entry):
            raise InvalidInput(f"inputs[{index}] needs name, shape, datatype and data", 400)
        by_name[str(entry["name"])] = entry
    names = sig.names() if sig.known else list(by_name)[:1] or ["input_0"]
    if sorted(by_name) != sorted(names):
        raise InvalidInput(f"inputs must be named {names}; got {sorted(by_name)}")
    arrays = []
    for spec in sig.inputs:
        entry = by_name[spec.name if sig.known else names[0]]
        where = f"input {entry['name']!r}"
        if entry["datatype"] != spec.datatype:
            raise InvalidInput(f"{where}: datatype must be {spec.datatype}, "
                               f"got {entry['datatype']!r}")
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                  and d >= 0 for d in shape):
            raise InvalidInput(f"{where}: shape must be a list of non-negative integers")
        array = to_array(entry["data"], spec, where)
        if array.size != int(np.prod(shape)):
            raise InvalidInput(f"{where}: data holds {array.size} values, shape {shape} "
                               f"needs {int(np.prod(shape))}")
        array = array.reshape(shape)
        check_shape(array, spec, where)
        arrays.append(array)
    return arrays


def _one(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    array = to_array(value, spec, where)
    check_shape(array, spec, where)
    return array


def rows_of(arrays: Sequence[np.ndarray], sig: Signature) -> int:
    """How many batch rows a request carries (1 for models without a batch dim).

    Raises :class:`InvalidInput` (422) when the inputs disagree: their rows would be
    joined with other requests' and split back at the wrong places; or when inputs that
    share a named dim (``input_ids`` and ``attention_mask`` on ``seq``) differ on it."""
    counts = {spec.name: int(array.shape[spec.batch_axis])
              for array, spec in zip(arrays, sig.inputs, strict=False)
              if spec.batch_axis is not None and array.ndim > spec.batch_axis}
    if len(set(counts.values())) > 1:
        raise InvalidInput(f"inputs must have the same number of rows on their batch dim; "
                           f"got {counts}")
    _check_shared_dims(arrays, sig)
    return next(iter(counts.values()), 1)


def _check_shared_dims(arrays: Sequence[np.ndarray], sig: Signature) -> None:
    lengths: dict[str, dict[str, int]] = {}
    for array, spec in zip(arrays, sig.inputs, strict=False):
        for axis, name in spec.dims.items():
            if array.ndim > axis:
                lengths.setdefault(name, {})[spec.name] = int(array.shape[axis])
    for name, found in lengths.items():
        if len(set(found.values())) > 1:
            raise InvalidInput(f"inputs sharing dim {name!r} must have the same length on "
                               f"it; got {found}")


def group_key(arrays: Sequence[np.ndarray], sig: Signature, padding: Any = None
              ) -> tuple[Any, ...]:
    """Requests with equal keys can share a batch: same shapes apart from the batch dim
    (and apart from the padded dim, when the model declares padding)."""
    key: list[Any] = []
    for index, (array, spec) in enumerate(zip(arrays, sig.inputs, strict=False)):
        shape = list(array.shape)
        if padding is not None and index in padding.inputs:
            shape[padding.axis] = -2
        if spec.batch_axis is not None:
            shape[spec.batch_axis] = -1
            key.append(tuple(shape))
        else:  # an unbatched input is shared by the whole batch, so it must be identical
            key.append((tuple(shape), array.tobytes()))
    return tuple(key)


def describe(arrays: Sequence[np.ndarray], sig: Signature) -> dict[str, Any]:
    """Shapes and dtypes of a request's inputs for logs (never the values)."""
    return {spec.name: {"shape": list(a.shape), "dtype": str(a.dtype)}
            for spec, a in zip(sig.inputs, arrays, strict=False)}


def _show(shape: Sequence[int]) -> str:
    return "[" + ", ".join("N" if d < 0 else str(d) for d in shape) + "]"
