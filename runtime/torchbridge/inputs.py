"""Synthetic inputs from ``--input-shape 8,128 --dtype int64``, shared by every command.

Several inputs are given by repeating the option (``--input-shape 8,128 --input-shape
8,128``) or separating shapes with ``;``. Integer inputs are drawn below the smallest
embedding table of the model (so token ids are valid), floats from a standard normal.
The first dim of every shape is the batch dim.

Example::

    shapes = parse_shapes(["8,128"])
    x = synthesize_inputs(shapes, ["int64"], int_high=vocab_size(model))
    check_inputs_fit(model, x, "--input-shape 8,128")
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch

from torchbridge.core.subject import call_model, named_inputs, to_device
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


def vocab_size(model: Any) -> int | None:
    """Smallest ``nn.Embedding`` table of ``model``: the bound for valid integer ids."""
    if not isinstance(model, torch.nn.Module):
        return None
    sizes = [m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    return min(sizes) if sizes else None


def synthesize_inputs(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[str] = ("float32",),
                      *, int_high: int | None = None, seed: int = 0,
                      device: str = "cpu") -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Random inputs of the given shapes; one tensor for one shape, else a tuple.

    ``dtypes`` holds one name for all inputs or one per input. Integers are drawn from
    ``[0, int_high)`` (``int_high`` defaults to 100); the draw is seeded, so two calls
    give the same inputs.
    """
    if not shapes:
        raise ConfigError("no input shape given; pass --input-shape, e.g. --input-shape 8,128")
    names = list(dtypes) or ["float32"]
    if len(names) not in (1, len(shapes)):
        raise ConfigError(f"{len(names)} --dtype values for {len(shapes)} input shapes; give "
                          "one dtype for all inputs or one per input")
    names = names * len(shapes) if len(names) == 1 else names
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for shape, name in zip(shapes, names, strict=True):
        dtype = parse_dtype(name)
        if dtype.is_floating_point:
            tensor = torch.randn(shape, generator=generator).to(dtype)
        elif dtype == torch.bool:
            tensor = torch.randint(0, 2, shape, generator=generator).bool()
        else:
            tensor = torch.randint(0, int_high or 100, shape, generator=generator, dtype=dtype)
        tensors.append(tensor.to(device))
    return tensors[0] if len(tensors) == 1 else tuple(tensors)


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


def add_input_arguments(parser: argparse.ArgumentParser, *, default_shape: str | None = None
                        ) -> None:
    """Add ``--input-shape`` (repeatable) and ``--dtype`` (repeatable) to a parser."""
    parser.add_argument("--input-shape", action="append", default=None,
                        help="input shape, batch first, e.g. 8,128; repeat (or use ';') for "
                             "several inputs" + (f" (default {default_shape})"
                                                 if default_shape else ""))
    parser.add_argument("--dtype", action="append", default=None,
                        help="input dtype: float32 (default), float16, bfloat16, int64, ...; "
                             "once for all inputs or once per input")


def inputs_from_args(args: argparse.Namespace, model: Any, *, example: Any = None,
                     default_shape: str | None = None, device: str = "cpu") -> Any:
    """Inputs for a command: synthesized from ``--input-shape``/``--dtype`` when given,
    else the model's stored ``example`` inputs, else ``default_shape``."""
    shapes = args.input_shape or ([] if example is not None else
                                  [default_shape] if default_shape else [])
    if not shapes:
        if example is not None:
            return to_device(example, device)
        raise ConfigError("the model carries no example inputs; pass --input-shape "
                          "(e.g. --input-shape 8,128) and --dtype")
    return synthesize_inputs(parse_shapes(shapes), args.dtype or ["float32"],
                             int_high=vocab_size(model), device=device)


def describe_inputs(inputs: Any) -> str:
    """``"(8, 128) int64"``-style text for messages."""
    parts = [f"{tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}"
             if isinstance(v, torch.Tensor) else type(v).__name__
             for _, v in named_inputs(inputs)]
    return ", ".join(parts)
