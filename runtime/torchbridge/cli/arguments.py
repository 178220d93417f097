"""The one vocabulary of model, input and device options that every command shares.

Every command that loads a model spells it the same way::

    --model M [--weights W] [--allow-pickle] [--allow-global MODULE.NAME]
    --input-shape [NAME=]8,128 (repeat per input) --dtype [NAME=]int64 (once, or per input)
    --dim seq=input_ids:1,attention_mask:1:1-512 (a named dynamic dim, repeatable)
    --device cpu|cuda|cuda:N|mps|xpu

Named shapes (``--input-shape input_ids=8,128``) give the model keyword inputs, as Hugging
Face models take them; unnamed ones are positional. The runtime functions these options
feed (:func:`torchbridge.loading.load_model`, :func:`torchbridge.inputs.synthesize_inputs`,
:func:`torchbridge.core.subject.parse_dim`) take plain values: only this module knows
argparse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from torchbridge.errors import ConfigError, HardwareUnavailable


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--model``, ``--weights`` and the loader's security options."""
    parser.add_argument("--model", required=required,
                        help="a .pt2 or TorchScript archive, an ONNX file, or "
                             "package.module:factory (or path/file.py:factory)")
    parser.add_argument("--weights", default=None,
                        help="safetensors (or .pt state dict) weights for a factory model")
    add_security_arguments(parser)


def add_security_arguments(parser: argparse.ArgumentParser, *, pickle: bool = True) -> None:
    """``--allow-global`` (repeatable) and, with ``pickle``, ``--allow-pickle``: the two
    ways to let the loader's scan accept more (see docs/security.md)."""
    if pickle:
        parser.add_argument("--allow-pickle", action="store_true",
                            help="allow rebuilding trusted classes from a pickled checkpoint "
                                 "(a whole module, or --weights holding objects); this RUNS "
                                 "their code, use only for files you trust")
    parser.add_argument("--allow-global", action="append", default=[], metavar="MODULE.NAME",
                        help="treat this pickle global as safe when loading files "
                             "(repeatable); MODULE.* lets that module's classes be rebuilt "
                             "with --allow-pickle")


def add_input_arguments(parser: argparse.ArgumentParser, *, default_shape: str | None = None,
                        dims: bool = True) -> None:
    """``--input-shape`` and ``--dtype`` (both repeatable) and, with ``dims``, ``--dim``."""
    parser.add_argument("--input-shape", action="append", default=None,
                        metavar="[NAME=]SHAPE",
                        help="input shape, batch first, e.g. 8,128; repeat (or use ';') for "
                             "several inputs; NAME=8,128 passes the input by keyword"
                             + (f" (default {default_shape})" if default_shape else ""))
    parser.add_argument("--dtype", action="append", default=None, metavar="[NAME=]DTYPE",
                        help="input dtype: float32 (default), float16, bfloat16, int64, ...; "
                             "once for all inputs, once per input, or NAME=DTYPE")
    if dims:
        parser.add_argument("--dim", action="append", default=[],
                            metavar="NAME=[INPUT:]AXIS[,...][:MIN-MAX]",
                            help="a named dynamic dim, e.g. seq=1:1-512 (axis 1 of the first "
                                 "input) or seq=input_ids:1,attention_mask:1:1-512 (shared)")


def add_device_argument(parser: argparse.ArgumentParser, *, default: str = "cpu") -> None:
    """``--device``, checked by :func:`device_from_args` before anything loads."""
    parser.add_argument("--device", default=default,
                        help=f"cpu, cuda, cuda:N, mps or xpu (default {default})")


def device_from_args(args: argparse.Namespace) -> str:
    """``--device`` normalised (``cuda:0``); :class:`HardwareUnavailable` (exit 2) naming
    the reason when this machine or this torch build lacks it."""
    from torchbridge.hardware import check_device

    name = getattr(args, "device", None) or "cpu"
    try:
        return check_device(name)
    except HardwareUnavailable as exc:
        raise HardwareUnavailable(f"--device {name}: {exc}") from None


def load_from_args(args: argparse.Namespace, device: str | None = None) -> Any:
    """:func:`torchbridge.loading.load_model` with the options :func:`add_model_arguments`
    added, on ``device`` (default: ``--device``, checked first)."""
    from torchbridge.loading import load_model

    return load_model(args.model, args.weights, allow_pickle=args.allow_pickle,
                      device=device or device_from_args(args),
                      allowed_globals=tuple(getattr(args, "allow_global", None) or ()))


def inputs_from_args(args: argparse.Namespace, model: Any, *, example: Any = None,
                     default_shape: str | None = None, device: str = "cpu",
                     required: bool = True) -> Any:
    """Inputs for a command: synthesized from ``--input-shape``/``--dtype`` when given,
    else the model's stored ``example`` inputs, else ``default_shape``. Without any of
    them: :class:`ConfigError` when ``required``, else ``None``."""
    from torchbridge.core.subject import to_device
    from torchbridge.inputs import named_shapes, synthesize_named

    shapes = args.input_shape or ([] if example is not None else
                                  [default_shape] if default_shape else [])
    if not shapes:
        if example is not None:
            return to_device(example, device)
        if not required:
            return None
        raise ConfigError("the model carries no example inputs; pass --input-shape "
                          "(e.g. --input-shape 8,128) and --dtype")
    names, parsed = named_shapes(shapes)
    return synthesize_named(names, parsed, args.dtype or ["float32"], model=model,
                            device=device)


def spec_from_args(args: argparse.Namespace, *, max_batch: int | None = None) -> Any:
    """The :class:`~torchbridge.core.subject.InputSpec` the ``--dim`` options declare."""
    from torchbridge.core.subject import InputSpec, parse_dim

    return InputSpec(dims=dict(parse_dim(text) for text in args.dim), max_batch=max_batch)


class DeprecatedAlias(argparse.Action):
    """An old spelling that still works, with a note on stderr naming the new one."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str,
                 **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        items = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, [*items, values])


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None
               ) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with ``--device`` (when the parser has it) checked and
    normalised once, before anything loads."""
    args = parser.parse_args(argv)
    if getattr(args, "device", None) is not None:
        args.device = device_from_args(args)
    return args
