"""What a check runs on: the model, its sample inputs, the device and the input spec."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import torch

from torchbridge.errors import ConfigError

#: A tensor, a tuple of positional tensors, or a dict of keyword tensors.
Inputs = Union[torch.Tensor, tuple[Any, ...], list[Any], Mapping[str, Any]]  # noqa: UP007
InputKey = Union[int, str]  # noqa: UP007


@dataclass(frozen=True)
class Dim:
    """A named dynamic dimension: which input, which axis, and its allowed range."""

    input: InputKey = 0
    axis: int = 1
    min: int = 1
    max: int | None = None


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

    def __post_init__(self) -> None:
        self.spec = InputSpec.coerce(self.spec)
        if not isinstance(self.inputs, torch.Tensor | tuple | list | Mapping):
            raise ConfigError("sample_input must be a tensor, a tuple of tensors or a dict of "
                              f"tensors, got {type(self.inputs).__name__}")

    @property
    def batch_size(self) -> int:
        for key, value in named_inputs(self.inputs):
            axis = self.spec.batch_axis(key)
            if isinstance(value, torch.Tensor) and axis is not None:
                return int(value.shape[axis])
        raise ConfigError("no input carries a batch dim; declare one in the input spec")

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
        """The sample inputs with named dynamic dim ``name`` resized to ``size``."""
        if name not in self.spec.dims:
            known = ", ".join(self.spec.dims) or "none declared"
            raise ConfigError(f"unknown dynamic dim {name!r} (input spec has: {known})")
        dim = self.spec.dims[name]
        values = []
        for key, value in named_inputs(self.inputs):
            hit = key == dim.input and isinstance(value, torch.Tensor)
            values.append(_tile(value, dim.axis, size) if hit else value)
        return rebuild(self.inputs, values)

    def fresh_model(self) -> Any:
        """A new model from the factory, or a deep copy when there is none."""
        model = self.factory() if self.factory is not None else copy.deepcopy(self.model)
        if isinstance(model, torch.nn.Module):
            model = model.to(self.device).eval()
        return model
