"""What a check runs on: the model, its sample inputs, the device and the input spec."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch

from torchbridge.errors import ConfigError

#: A tensor, a tuple of positional tensors, or a dict of keyword tensors.
Inputs = Union[torch.Tensor, tuple[Any, ...], list[Any], Mapping[str, Any]]  # noqa: UP007
InputKey = Union[int, str]  # noqa: UP007


@dataclass(frozen=True)
class Dim:
    """A named dynamic dimension: the inputs it lives on, the axis in each, its range.

    ``input`` is one input (its index, or its name for dict inputs), a list of inputs that
    share the dim on the same ``axis`` (``["input_ids", "attention_mask"]``), or a mapping
    input → axis (``{"input_ids": 1, "pixel_mask": 2}``). Every input named is resized
    together, and exporters give them one shared symbol. With a single input and dict
    inputs, the other inputs whose length on ``axis`` equals the declared input's share the
    dim by default (:func:`resolve_dims` says so); a list or mapping is taken as written.

    Raises :class:`ConfigError` for an empty input list, a negative ``min`` or
    ``max < min``.
    """

    input: InputKey | Sequence[InputKey] | Mapping[InputKey, int] = 0
    axis: int = 1
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.input, list):
            object.__setattr__(self, "input", tuple(self.input))
        if not self.axes:
            raise ConfigError("a dim needs at least one input")
        for key, axis in self.axes.items():
            if not isinstance(key, int | str) or isinstance(key, bool):
                raise ConfigError(f"dim input must be an input index or name, got {key!r}")
            if not isinstance(axis, int) or isinstance(axis, bool):
                raise ConfigError(f"dim axis of input {key!r} must be an integer, got {axis!r}")
        if isinstance(self.min, bool) or not isinstance(self.min, int) or self.min < 0:
            raise ConfigError(f"dim min must be a whole number >= 0, got {self.min!r}")
        if self.max is not None and (isinstance(self.max, bool) or not isinstance(self.max, int)
                                     or self.max < self.min):
            raise ConfigError(f"dim max must be a whole number >= min ({self.min}), "
                              f"got {self.max!r}")

    def __hash__(self) -> int:  # ``input`` may be a dict, which the generated hash rejects
        return hash((tuple(self.axes.items()), self.min, self.max))

    @property
    def axes(self) -> dict[InputKey, int]:
        """Input → axis for every input the dim lives on, in declaration order."""
        if isinstance(self.input, Mapping):
            return dict(self.input)
        if isinstance(self.input, tuple):
            return dict.fromkeys(self.input, self.axis)
        return {self.input: self.axis}  # type: ignore[dict-item]

    @property
    def explicit(self) -> bool:
        """Whether the inputs were listed (list or mapping) rather than one input named."""
        return isinstance(self.input, Mapping | tuple)

    @property
    def first(self) -> tuple[InputKey, int]:
        """The first declared input and its axis (the one whose length defines the dim)."""
        return next(iter(self.axes.items()))

    def describe(self) -> str:
        """``input_ids:1, attention_mask:1`` — where the dim lives, for messages."""
        return ", ".join(f"{key}:{axis}" for key, axis in self.axes.items())


@dataclass(frozen=True)
class InputSpec:
    """Which dim of each input is the batch dim (0 unless declared) and named dynamic dims.

    Example::

        InputSpec(dims={"seq": Dim(input="input_ids", axis=1, min=1, max=512)}, max_batch=64)
    """

    batch_dim: int = 0
    batch_dims: Mapping[InputKey, int | None] = field(default_factory=dict)
    dims: Mapping[str, Dim] = field(default_factory=dict)
    max_batch: int | None = None

    def batch_axis(self, key: InputKey) -> int | None:
        """Batch axis of one input; ``None`` for inputs that carry no batch dim."""
        return self.batch_dims.get(key, self.batch_dim)

    @classmethod
    def coerce(cls, value: object) -> InputSpec:
        """Accept an ``InputSpec``, ``None`` or a plain dict as users write it in fixtures."""
        if value is None:
            return cls()
        if isinstance(value, InputSpec):
            return value
        if isinstance(value, Mapping):
            data = dict(value)
            dims = {name: d if isinstance(d, Dim) else Dim(**d)
                    for name, d in dict(data.pop("dims", {})).items()}
            try:
                return cls(dims=dims, **data)
            except TypeError as exc:
                raise ConfigError(f"input spec: {exc}") from None
        raise ConfigError(f"input spec: expected InputSpec or dict, got {type(value).__name__}")


def named_inputs(inputs: Inputs) -> list[tuple[InputKey, Any]]:
    """The inputs as (key, value) pairs: index for positional ones, name for keyword ones."""
    if isinstance(inputs, torch.Tensor):
        return [(0, inputs)]
    if isinstance(inputs, Mapping):
        return list(inputs.items())
    return list(enumerate(inputs))


def rebuild(inputs: Inputs, values: list[Any]) -> Inputs:
    """Put new values back into the structure of ``inputs``."""
    if isinstance(inputs, torch.Tensor):
        return values[0]
    if isinstance(inputs, Mapping):
        return dict(zip(inputs.keys(), values, strict=True))
    return tuple(values)


def call_model(model: Callable[..., Any], inputs: Inputs) -> Any:
    """Call ``model`` the way its inputs are shaped: ``m(x)``, ``m(*xs)`` or ``m(**kw)``."""
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(*inputs)


def to_device(obj: Any, device: str | torch.device) -> Any:
    """Move every tensor in a nested structure to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return type(obj)(to_device(v, device) for v in obj) if not hasattr(obj, "_fields") \
            else type(obj)(*(to_device(v, device) for v in obj))
    return obj


def _length(key: InputKey, axis: int, value: Any, name: str) -> int:
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"dim {name!r} names input {key!r}, which is not a tensor")
    if not -value.dim() <= axis < value.dim():
        raise ConfigError(f"dim {name!r}: input {key!r} has {value.dim()} dims, no axis {axis}")
    return int(value.shape[axis])


def _check_dim(name: str, dim: Dim, inputs: Inputs) -> int:
    """The dim's current length; :class:`ConfigError` when an input is missing or the
    inputs disagree on it."""
    present = dict(named_inputs(inputs))
    lengths = {}
    for key, axis in dim.axes.items():
        if key not in present:
            have = ", ".join(repr(k) for k in present) or "none"
            raise ConfigError(f"dim {name!r} names input {key!r}, which the sample input does "
                              f"not have (it has: {have})")
        lengths[key] = _length(key, axis, present[key], name)
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{k}:{dim.axes[k]} has {n}" for k, n in lengths.items())
        raise ConfigError(f"dim {name!r} is shared by inputs of different lengths ({sizes}); "
                          "give the sample the same length on each")
    return next(iter(lengths.values()))


def _same_length(value: Any, axis: int, batch_axis: int | None, length: int) -> bool:
    """Whether tensor ``value`` has ``length`` on ``axis`` (counted from the end when
    negative), and that axis is not its batch axis."""
    if not isinstance(value, torch.Tensor) or not -value.dim() <= axis < value.dim():
        return False
    own = axis % value.dim()
    return own != (None if batch_axis is None else batch_axis % value.dim()) \
        and value.shape[own] == length


def _token_level_like(value: torch.Tensor, declared: Any) -> bool:
    """Whether ``value`` joins a dim declared on ``declared`` by default: masks and ids
    (integer or boolean, any rank: a (B, S) mask beside (B, S, H) ``inputs_embeds``) and
    tensors of the declared input's rank. A floating-point input of another rank (CLIP's
    (B, 3, H, W) ``pixel_values`` beside (B, S) ids of length 3) only matches by chance."""
    floating = value.dtype.is_floating_point or value.dtype.is_complex
    return not floating or (isinstance(declared, torch.Tensor)
                            and value.dim() == declared.dim())


def _not_shared_note(name: str, key: InputKey, axis: int, length: int, other: InputKey,
                     value: torch.Tensor, declared: Any) -> str:
    rank = declared.dim() if isinstance(declared, torch.Tensor) else "?"
    return (f"dim {name!r} declared on {key!r} is not shared with {other!r} although it has "
            f"the same length {length} on axis {axis}: {other!r} is a {value.dim()}-d "
            f"floating-point input beside a {rank}-d one, so the match is taken as chance; "
            f"declare input=[{key!r}, {other!r}] if the model ties them")


def resolve_dims(spec: InputSpec, inputs: Inputs) -> tuple[InputSpec, list[str]]:
    """``spec`` with every dim's inputs written out, and a note for each dim that the
    sample showed to be shared.

    A dim declared on one input of dict inputs also lives on the other tensors with the
    same length on the same axis (BERT's ``attention_mask`` and ``token_type_ids`` follow
    ``input_ids``), except where that axis is the input's batch axis or the tensor is a
    floating-point input of another rank (an image beside ids; noted, not shared). A list
    or mapping of inputs is taken as written (``input={"input_ids": 1}`` shares nothing).

    Raises :class:`ConfigError` when a dim names an input the sample lacks, an axis the
    input lacks, or inputs that disagree on its length."""
    dims: dict[str, Dim] = {}
    notes: list[str] = []
    for name, dim in spec.dims.items():
        length = _check_dim(name, dim, inputs)
        key, axis = dim.first
        named: Mapping[Any, Any] = inputs if isinstance(inputs, Mapping) else {}
        twins = [] if dim.explicit else [
            other for other, value in named.items()
            if other != key and _same_length(value, axis, spec.batch_axis(other), length)]
        others = [o for o in twins if _token_level_like(named[o], named[key])]
        notes.extend(_not_shared_note(name, key, axis, length, o, named[o], named[key])
                     for o in twins if o not in others)
        if others:
            dims[name] = dataclasses.replace(dim, input=[key, *others])
            notes.append(f"dim {name!r} declared on {key!r} is shared with "
                         f"{', '.join(repr(o) for o in others)} (same length {length} on axis "
                         f"{axis}): all are resized together; declare input={{{key!r}: {axis}}}"
                         " to resize only the one input")
        else:
            dims[name] = dim
    return dataclasses.replace(spec, dims=dims), notes


_RANGE = re.compile(r":(?P<min>\d+)-(?P<max>\d+)?$")
_TARGET = re.compile(r"^(?:(?P<input>[A-Za-z_]\w*|\d+)[.:])?(?P<axis>-?\d+)$")


def parse_dim(text: str) -> tuple[str, Dim]:
    """A dim as written on the command line: ``NAME=TARGET[,TARGET...][:MIN-MAX]`` with
    ``TARGET`` = ``AXIS`` (of input 0), ``INPUT.AXIS`` or ``INPUT:AXIS`` (``INPUT`` an index
    or a name), e.g. ``seq=1:1-512`` or ``seq=input_ids:1,attention_mask:1:1-512``.

    Raises :class:`ConfigError` naming the text when it does not parse."""
    usage = (f"--dim {text!r}: expected NAME=[INPUT:]AXIS[,[INPUT:]AXIS...][:MIN-MAX], e.g. "
             "seq=1:1-512 or seq=input_ids:1,attention_mask:1:1-512")
    name, sep, rest = text.strip().partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise ConfigError(usage)
    low, high = 1, None
    bounds = _RANGE.search(rest)
    # "seq=1:1-512": the range; "seq=x:1" has no "-", so ":1" is an axis, not a range
    if bounds:
        low = int(bounds["min"])
        high = int(bounds["max"]) if bounds["max"] else None
        rest = rest[:bounds.start()]
    axes: dict[InputKey, int] = {}
    for part in rest.split(","):
        match = _TARGET.match(part.strip())
        if not match:
            raise ConfigError(usage)
        raw = match["input"] or "0"
        axes[int(raw) if raw.isdigit() else raw] = int(match["axis"])
    if high is not None and high < low:
        raise ConfigError(f"--dim {text!r}: max {high} is below min {low}")
    if len(axes) == 1:
        (key, axis), = axes.items()
        return name, Dim(input=key, axis=axis, min=low, max=high)
    shared = len(set(axes.values())) == 1
    return name, Dim(input=list(axes) if shared else axes, axis=next(iter(axes.values())),
                     min=low, max=high)


def _tile(tensor: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """Make ``tensor`` have ``size`` along ``axis`` by repeating (or cutting) its slices."""
    current = tensor.shape[axis]
    if current == 0:
        raise ConfigError("cannot grow an input whose batch is empty; give a non-empty sample")
    reps = -(-size // current) if size else 0
    index = torch.arange(size, device=tensor.device) % current if reps else \
        torch.zeros(0, dtype=torch.long, device=tensor.device)
    return tensor.index_select(axis, index)


@dataclass
class Subject:
    """The model under test with its sample inputs, device and input spec.

    ``factory`` builds a fresh model (same weights) when a check needs one; ``reference``
    is an optional callable producing the expected outputs.
    """

    model: Any
    inputs: Inputs
    device: str = "cpu"
    spec: InputSpec = field(default_factory=InputSpec)
    factory: Callable[[], Any] | None = None
    reference: Callable[..., Any] | None = None
    name: str = "model"

    #: what the subject inferred from the sample (a dim shared by several inputs), for
    #: results to report
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spec = InputSpec.coerce(self.spec)
        if not isinstance(self.inputs, torch.Tensor | tuple | list | Mapping):
            raise ConfigError("sample_input must be a tensor, a tuple of tensors or a dict of "
                              f"tensors, got {type(self.inputs).__name__}")
        self.spec, notes = resolve_dims(self.spec, self.inputs)
        self.notes = [*self.notes, *(n for n in notes if n not in self.notes)]

    @property
    def batch_size(self) -> int:
        """Rows of the sample along the batch dims.

        Raises :class:`ConfigError` when no input carries a batch dim, or when inputs
        disagree on it (``position_ids`` of shape (1, S) broadcast beside (2, S) ids)."""
        rows = {key: int(value.shape[axis]) for key, value in named_inputs(self.inputs)
                if isinstance(value, torch.Tensor) and value.dim()
                and (axis := self.spec.batch_axis(key)) is not None and axis < value.dim()}
        if not rows:
            raise ConfigError("no input carries a batch dim; declare one in the input spec")
        if len(set(rows.values())) > 1:
            most = max(rows.values())
            odd = [key for key, n in rows.items() if n != most]
            listed = ", ".join(f"{k!r} has {n}" for k, n in rows.items())
            raise ConfigError(
                f"the inputs disagree on the batch size ({listed} rows on the batch axis); "
                f"give every input the batch size, or declare an input that broadcasts over "
                f"the batch as having no batch dim: batch_dims={{{odd[0]!r}: None}} in the "
                "input spec")
        return next(iter(rows.values()))

    def placed(self, device: str | None = None) -> tuple[Any, Inputs]:
        """The model and inputs on ``device`` (the subject's device by default)."""
        target = device or self.device
        model = self.model.to(target) if isinstance(self.model, torch.nn.Module) else self.model
        return model, to_device(self.inputs, target)

    def run(self, inputs: Inputs | None = None, model: Any = None) -> Any:
        """One forward pass without autograd on the subject's device."""
        model = self.model if model is None else model
        with torch.inference_mode():
            return call_model(model, to_device(self.inputs if inputs is None else inputs,
                                               self.device))

    def with_batch(self, size: int) -> Inputs:
        """The sample inputs grown or cut to ``size`` rows along each batch dim."""
        values = []
        for key, value in named_inputs(self.inputs):
            axis = self.spec.batch_axis(key)
            ok = isinstance(value, torch.Tensor) and axis is not None
            values.append(_tile(value, axis, size) if ok else value)  # type: ignore[arg-type]
        return rebuild(self.inputs, values)

    def row(self, index: int) -> Inputs:
        """Inputs holding only row ``index`` of the batch (batch size 1)."""
        values = []
        for key, value in named_inputs(self.inputs):
            axis = self.spec.batch_axis(key)
            ok = isinstance(value, torch.Tensor) and axis is not None
            values.append(value.narrow(axis, index, 1) if ok else value)
        return rebuild(self.inputs, values)

    def with_dim(self, name: str, size: int) -> Inputs:
        """The sample inputs with named dynamic dim ``name`` resized to ``size`` on every
        input it lives on (repeating or cutting slices along each one's axis)."""
        if name not in self.spec.dims:
            known = ", ".join(self.spec.dims) or "none declared"
            raise ConfigError(f"unknown dynamic dim {name!r} (input spec has: {known})")
        axes = self.spec.dims[name].axes
        values = [_tile(value, axes[key], size) if key in axes else value
                  for key, value in named_inputs(self.inputs)]
        return rebuild(self.inputs, values)

    def unshared_twins(self, name: str) -> list[InputKey]:
        """Inputs that have dim ``name``'s length on its axis although the dim is declared
        on one input only: candidates when the model ties them (a mask beside the ids)."""
        dim = self.spec.dims[name]
        if len(dim.axes) > 1:
            return []
        key, axis = dim.first
        length = self.dim_size(name)
        return [other for other, value in named_inputs(self.inputs) if other != key
                and isinstance(value, torch.Tensor) and -value.dim() <= axis < value.dim()
                and value.shape[axis] == length]

    def sharing_hint(self, name: str) -> str:
        """``; if the model ties them, declare input=[...]`` for :meth:`unshared_twins`."""
        twins = self.unshared_twins(name)
        if not twins:
            return ""
        key, axis = self.spec.dims[name].first
        listed = ", ".join(repr(k) for k in [key, *twins])
        return (f"; dim {name!r} is declared on {key!r} only, but "
                f"{', '.join(str(t) for t in twins)} have the same length on axis {axis}: "
                f"if the model ties them, declare input=[{listed}]")

    def dim_size(self, name: str) -> int:
        """The sample's length of named dynamic dim ``name``."""
        if name not in self.spec.dims:
            raise ConfigError(f"unknown dynamic dim {name!r}")
        return _check_dim(name, self.spec.dims[name], self.inputs)

    def fresh_model(self) -> Any:
        """A new model from the factory, or a deep copy when there is none."""
        model = self.factory() if self.factory is not None else copy.deepcopy(self.model)
        if isinstance(model, torch.nn.Module):
            model = model.to(self.device).eval()
        return model
