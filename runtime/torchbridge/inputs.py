"""Synthetic inputs from ``--input-shape 8,128 --dtype int64``, shared by every command.

Several inputs are given by repeating the option (``--input-shape 8,128 --input-shape
8,128``) or separating shapes with ``;``. Floats come from a standard normal. Integer
inputs are drawn across the vocabulary: each integer input is drawn below the size of the
embedding tables it feeds (found by running the model once with forward hooks on its
``nn.Embedding``/``nn.EmbeddingBag`` modules), so BERT's ``input_ids`` span its 30522
tokens while its ``token_type_ids`` stay in {0, 1}. ``int_high`` (one bound, or one per
input) overrides that. The first dim of every shape is the batch dim.

Example::

    shapes = parse_shapes(["8,128"])
    x = synthesize_inputs(shapes, ["int64"], model=model)
    check_inputs_fit(model, x, "--input-shape 8,128")
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from typing import Any

import torch

from torchbridge.core.subject import call_model, named_inputs
from torchbridge.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float64": torch.float64, "double": torch.float64,
    "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
    "bool": torch.bool,
}


def parse_shape(text: str) -> tuple[int, ...]:
    """``"8,128"`` (or ``"8x128"``) → ``(8, 128)``; a clear error for anything else."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--input-shape {text!r}: expected comma-separated integers such as "
                          "8,128") from None
    if not shape or any(d <= 0 for d in shape):
        raise ConfigError(f"--input-shape {text!r}: every dim must be a positive integer, "
                          "batch first (e.g. 8,128)")
    return shape


def parse_shapes(values: Sequence[str]) -> list[tuple[int, ...]]:
    """Shapes of every input from repeated options, each possibly holding ``;``-lists."""
    return [parse_shape(part) for value in values for part in value.split(";") if part.strip()]


def parse_dtype(name: str) -> torch.dtype:
    """``"int64"`` → ``torch.int64``; a clear error naming the accepted spellings."""
    try:
        return DTYPES[name.strip().lower()]
    except KeyError:
        raise ConfigError(f"--dtype {name!r}: expected one of {', '.join(sorted(DTYPES))}") \
            from None


#: Upper bound (exclusive) for integer inputs of a model without embedding tables.
DEFAULT_INT_HIGH = 100
_EMBEDDINGS = (torch.nn.Embedding, torch.nn.EmbeddingBag)


def vocab_size(model: Any) -> int | None:
    """Smallest embedding table of ``model``: a bound valid for any embedding an integer
    input may feed (used before the model has been probed), or ``None`` without tables."""
    if not isinstance(model, torch.nn.Module):
        return None
    sizes = [m.num_embeddings for m in model.modules() if isinstance(m, _EMBEDDINGS)]
    return min(sizes) if sizes else None


def embedding_bounds(model: Any, inputs: Sequence[torch.Tensor],
                     names: Sequence[str] | None = None) -> list[int | None]:
    """For each input (in order), the smallest ``num_embeddings`` of the embedding tables
    it feeds as it is (same tensor), from one forward pass with hooks (positional, or by
    keyword when ``names`` are given); ``None`` for an input that feeds none directly.
    Errors of the pass propagate."""
    from torchbridge.core.subject import call_model

    fed: dict[int, list[int]] = {}
    index_of = {id(t): i for i, t in enumerate(inputs)}

    def record(module: torch.nn.Embedding | torch.nn.EmbeddingBag,
               args: tuple[Any, ...]) -> None:
        if args and id(args[0]) in index_of:
            fed.setdefault(index_of[id(args[0])], []).append(module.num_embeddings)

    handles = [m.register_forward_pre_hook(record) for m in model.modules()
               if isinstance(m, _EMBEDDINGS)]
    try:
        with torch.inference_mode():
            call_model(model, dict(zip(names, inputs, strict=True)) if names
                       else inputs[0] if len(inputs) == 1 else tuple(inputs))
    finally:
        for handle in handles:
            handle.remove()
    return [min(fed[i]) if i in fed else None for i in range(len(inputs))]


def _per_input(int_high: int | Sequence[int | None] | None, count: int) -> list[int | None]:
    if int_high is None or isinstance(int_high, int):
        return [int_high] * count
    highs = list(int_high)
    if len(highs) != count:
        raise ConfigError(f"{len(highs)} int_high values for {count} inputs; give one bound "
                          "for all inputs or one per input (None: from the model)")
    return highs


def synthesize_inputs(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[str] = ("float32",),
                      *, int_high: int | Sequence[int | None] | None = None, seed: int = 0,
                      device: str = "cpu", model: Any = None,
                      names: Sequence[str] | None = None
                      ) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Random inputs of the given shapes; one tensor for one shape, else a tuple.

    ``dtypes`` holds one name for all inputs or one per input. Integers are drawn from
    ``[0, high)``: ``int_high`` when given (one bound, or one per input with ``None``
    for "from the model"), else, with ``model``, the embedding tables each input feeds
    (:func:`embedding_bounds`; an integer input that feeds none directly keeps the
    smallest table's size, which is valid wherever it goes; one named ``*mask*`` is all
    ones, attending everywhere), else 100. The draw is
    seeded, so two calls give the same inputs. ``names``: the model takes the inputs as
    these keywords (for probing the tables). Raises :class:`ConfigError` for a bad shape,
    dtype or bound.
    """
    if not shapes:
        raise ConfigError("no input shape given; pass --input-shape, e.g. --input-shape 8,128")
    spelled = list(dtypes) or ["float32"]
    if len(spelled) not in (1, len(shapes)):
        raise ConfigError(f"{len(spelled)} --dtype values for {len(shapes)} input shapes; give "
                          "one dtype for all inputs or one per input")
    spelled = spelled * len(shapes) if len(spelled) == 1 else spelled
    given = _per_input(int_high, len(shapes))
    for high in given:
        if high is not None and (isinstance(high, bool) or not isinstance(high, int)
                                 or high < 1):
            raise ConfigError(f"int_high must be a positive integer, got {high!r}")
    safe = vocab_size(model) or DEFAULT_INT_HIGH
    dtypes_ = [parse_dtype(name) for name in spelled]
    highs = [h if h is not None else safe for h in given]
    tensors = _draw(shapes, dtypes_, highs, seed, device)
    probe = [i for i, (h, d) in enumerate(zip(given, dtypes_, strict=True))
             if h is None and _integer(d)]
    if probe and vocab_size(model) is not None:
        try:
            bounds = embedding_bounds(model, tensors, names)
        except Exception:  # inputs that do not fit: check_inputs_fit reports it to the user
            bounds = [None] * len(tensors)
        highs = [bounds[i] or highs[i] if i in probe else highs[i] for i in range(len(highs))]
        tensors = _draw(shapes, dtypes_, highs, seed, device)
        labels = input_labels(model, names, len(tensors))
        for i in probe:  # a mask of random ids is no mask: attend everywhere
            if bounds[i] is None and "mask" in labels[i].lower():
                tensors[i] = torch.ones_like(tensors[i])
    return tensors[0] if len(tensors) == 1 else tuple(tensors)


def input_labels(model: Any, names: Sequence[str] | None, count: int) -> list[str]:
    """What each of ``count`` inputs is called: ``names`` when given, else the model's
    ``forward`` parameters in order (positional inputs), else ``""``."""
    if names:
        return [str(n) for n in names]
    try:
        params = list(inspect.signature(getattr(model, "forward", model)).parameters)
    except (TypeError, ValueError):
        params = []
    return [*params[:count], *[""] * (count - len(params[:count]))]


def _integer(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def _draw(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[torch.dtype],
          highs: Sequence[int], seed: int, device: str) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for shape, dtype, high in zip(shapes, dtypes, highs, strict=True):
        if dtype.is_floating_point:
            tensor = torch.randn(shape, generator=generator).to(dtype)
        elif dtype == torch.bool:
            tensor = torch.randint(0, 2, shape, generator=generator).bool()
        else:
            tensor = torch.randint(0, high, shape, generator=generator, dtype=dtype)
        tensors.append(tensor.to(device))
    return tensors


def check_inputs_fit(model: Any, inputs: Any, described: str) -> Any:
    """Run ``model`` once on ``inputs``; a shape/dtype mismatch becomes a :class:`ConfigError`
    naming the option to change. Returns the outputs."""
    try:
        with torch.inference_mode():
            return call_model(model, inputs)
    except (RuntimeError, TypeError, IndexError, ValueError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"the model does not accept inputs of {described}: "
                          f"{type(exc).__name__}: {text}. Change --input-shape/--dtype to "
                          "what the model expects") from None


def named_shapes(values: Sequence[str]) -> tuple[list[str] | None, list[tuple[int, ...]]]:
    """Shapes from repeated ``--input-shape`` values (``;``-lists allowed), each optionally
    named: ``["input_ids=8,128", "attention_mask=8,128"]`` → names and shapes; names are
    ``None`` when no shape is named. Mixing named and unnamed shapes is a
    :class:`ConfigError`."""
    parts = [part.strip() for value in values for part in value.split(";") if part.strip()]
    names = [part.split("=", 1)[0].strip() for part in parts if "=" in part]
    if names and len(names) != len(parts):
        raise ConfigError("--input-shape: name every input (NAME=8,128) or none of them")
    if len(set(names)) != len(names):
        raise ConfigError(f"--input-shape: an input is named twice in {', '.join(names)}")
    return names or None, [parse_shape(part.rsplit("=", 1)[-1]) for part in parts]


def synthesize_named(names: Sequence[str] | None, shapes: Sequence[tuple[int, ...]],
                     dtypes: Sequence[str] = ("float32",), *, model: Any = None,
                     device: str = "cpu") -> Any:
    """:func:`synthesize_inputs`, as keyword inputs ``{name: tensor}`` when ``names`` are
    given (``dtypes`` may then say ``NAME=DTYPE``), else positional."""
    if names is None:
        return synthesize_inputs(shapes, dtypes, model=model, device=device)
    by_name = dict(d.split("=", 1) for d in dtypes if "=" in d)
    unknown = sorted(set(by_name) - set(names))
    if unknown:
        raise ConfigError(f"--dtype names unknown input(s) {', '.join(unknown)}; inputs: "
                          f"{', '.join(names)}")
    plain = [d for d in dtypes if "=" not in d]
    if by_name:
        if plain:
            raise ConfigError("--dtype: give NAME=DTYPE for every input or plain dtypes")
        plain = [by_name.get(name, "float32") for name in names]
    tensors = synthesize_inputs(shapes, plain or ["float32"], model=model, device=device,
                                names=names)
    return dict(zip(names, (tensors,) if isinstance(tensors, torch.Tensor) else tensors,
                    strict=True))


def describe_inputs(inputs: Any) -> str:
    """``"(8, 128) int64"``-style text for messages."""
    parts = [f"{tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}"
             if isinstance(v, torch.Tensor) else type(v).__name__
             for _, v in named_inputs(inputs)]
    return ", ".join(parts)


# ------------------------------------------------------------- TorchScript input signature

#: The extra file of a TorchScript archive where TorchBridge records the shapes and dtypes
#: (never the values) of the inputs it was traced with: TorchScript keeps no example inputs
#: of its own, and without them every command on the archive would need --input-shape.
SIGNATURE_FILE = "torchbridge_inputs.json"


def input_signature(inputs: Any) -> str | None:
    """``{"shapes": [[8, 16]], "dtypes": ["float32"]}`` for a tensor or a tuple of tensors
    (``None`` for other inputs, which the signature cannot describe)."""
    tensors = (inputs,) if isinstance(inputs, torch.Tensor) else inputs
    if not isinstance(tensors, tuple) or not tensors \
            or not all(isinstance(t, torch.Tensor) for t in tensors):
        return None
    return json.dumps({"shapes": [list(t.shape) for t in tensors],
                       "dtypes": [str(t.dtype).removeprefix("torch.") for t in tensors]})


def inputs_from_signature(text: str, model: Any, device: str = "cpu") -> Any:
    """Inputs synthesized to match a recorded :func:`input_signature`; :class:`ConfigError`
    when the record is unreadable."""
    try:
        data = json.loads(text)
        shapes = [tuple(int(n) for n in shape) for shape in data["shapes"]]
        dtypes = [str(name) for name in data["dtypes"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the archive's {SIGNATURE_FILE} is unreadable ({exc}); pass "
                          "--input-shape and --dtype") from None
    return synthesize_inputs(shapes, dtypes, model=model, device=device)
