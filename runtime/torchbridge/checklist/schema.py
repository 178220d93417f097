"""The checklist file: a model's production checklist declared in TOML, without Python.

In ``torchbridge.toml`` at the top level, or in ``pyproject.toml`` under
``[tool.torchbridge]``::

    name = "classifier"                  # optional; names the items (file::name[tb-...])

    [model]
    factory = "mypkg.models:build"       # or path/to/file.py:build, or artifact = "clf.pt2"
    weights = "clf.safetensors"          # optional, with a factory

    [input]
    shape = [8, 256]                     # or shapes = [[8, 128], [8, 128]]
    dtype = "float32"                    # or dtypes = [...]; integers draw below the
                                         # embedding each feeds, or int_high (or one per input)
    batch_dim = 0
    max_batch = 64
    dims = { seq = { input = 0, axis = 1, min = 1, max = 512 } }

    [tolerances]                         # default rtol / atol of every check that has them
    rtol = 1e-3
    atol = 1e-4

    [checks]
    forward = true
    determinism = { runs = 5 }
    latency = { p99 = { cpu = "40ms", cuda = "8ms" }, batch_size = 1 }

    [[checks.export]]                    # a check given twice: an array of tables
    format = "onnx"

Check keywords are exactly the marker's keywords and are validated by the same code
(``torchbridge.checks.registry.parse_config``). Every error names the file and line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchbridge.checklist.locate import PathPart, line_of
from torchbridge.errors import ConfigError

TOP_KEYS = ("name", "model", "input", "tolerances", "checks")
MODEL_KEYS = ("factory", "artifact", "weights", "allow_pickle", "allow_globals")
INPUT_KEYS = ("shape", "shapes", "dtype", "dtypes", "int_high", "seed", "batch_dim",
              "batch_dims", "max_batch", "dims")
DIM_KEYS = ("input", "axis", "min", "max")
TOLERANCE_KEYS = ("rtol", "atol")


class ChecklistError(ConfigError):
    """A checklist file is invalid; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class CheckEntry:
    """One check of the checklist: its name, validated config and where it is written."""

    check: str
    config: Any
    line: int
    index: int | None = None


@dataclass(frozen=True)
class ModelSource:
    factory: str | None = None
    artifact: str | None = None
    weights: str | None = None
    allow_pickle: bool = False
    allow_globals: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputSource:
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...] = ("float32",)
    int_high: int | tuple[int, ...] | None = None
    seed: int = 0
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Checklist:
    """A validated checklist file."""

    path: Path
    name: str
    model: ModelSource
    inputs: InputSource
    checks: tuple[CheckEntry, ...]
    section: tuple[str, ...] = ()

    @property
    def base_dir(self) -> Path:
        """Relative paths (factory files, weights, artifacts) resolve from here."""
        return self.path.parent


class _Context:
    """Raises errors that carry the file and the line of the offending key."""

    def __init__(self, path: Path, text: str, section: tuple[str, ...]) -> None:
        self.path, self.text, self.section = path, text, section

    def line(self, keys: tuple[PathPart, ...]) -> int:
        return line_of(self.text, [*self.section, *keys]) or 1

    def error(self, keys: tuple[PathPart, ...], message: str) -> ChecklistError:
        where = ".".join(str(k) for k in keys)
        prefix = f"{self.path}:{self.line(keys)}: "
        return ChecklistError(prefix + (f"{where}: {message}" if where else message))

    def table(self, value: Any, keys: tuple[PathPart, ...], known: tuple[str, ...]
              ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(keys, f"expected a table, got {type(value).__name__}")
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise self.error((*keys, unknown[0]), f"unknown key {unknown[0]!r}; known keys "
                                                  f"here: {', '.join(known)}")
        return dict(value)


def _positive_ints(ctx: _Context, value: Any, keys: tuple[PathPart, ...]) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ctx.error(keys, f"expected a list of non-negative integers like [8, 256], "
                              f"got {value!r}")
    return tuple(value)


def _model(ctx: _Context, raw: Any) -> ModelSource:
    if raw is None:
        raise ctx.error((), "no [model] table; give model.factory = 'package.module:build' "
                            "or model.artifact = 'model.pt2'")
    data = ctx.table(raw, ("model",), MODEL_KEYS)
    factory, artifact = data.get("factory"), data.get("artifact")
    if bool(factory) == bool(artifact):
        raise ctx.error(("model",), "give exactly one of factory = 'package.module:build' "
                                    "and artifact = 'model.pt2'")
    if factory is not None and (not isinstance(factory, str) or ":" not in factory):
        raise ctx.error(("model", "factory"), f"expected 'package.module:function' or "
                                              f"'path/file.py:function', got {factory!r}")
    if artifact is not None and not isinstance(artifact, str):
        raise ctx.error(("model", "artifact"), "expected a file path string")
    if data.get("weights") is not None and (artifact or not isinstance(data["weights"], str)):
        raise ctx.error(("model", "weights"), "weights (a file path) go with a factory only; "
                                              "an artifact holds its own weights")
    if not isinstance(data.get("allow_pickle", False), bool):
        raise ctx.error(("model", "allow_pickle"), "expected true or false")
    allowed = data.get("allow_globals", [])
    if not isinstance(allowed, list) or not all(isinstance(n, str) and n for n in allowed):
        raise ctx.error(("model", "allow_globals"), "expected a list of 'module.Name' "
                                                    "strings (pickle globals to trust)")
    return ModelSource(factory, artifact, data.get("weights"), data.get("allow_pickle", False),
                       tuple(allowed))


def _inputs(ctx: _Context, raw: Any) -> InputSource:
    if raw is None:
        raise ctx.error((), "no [input] table; give input.shape = [batch, ...] for a random "
                            "sample input")
    data = ctx.table(raw, ("input",), INPUT_KEYS)
    if ("shape" in data) == ("shapes" in data):
        raise ctx.error(("input",), "give exactly one of shape = [8, 256] and "
                                    "shapes = [[8, 128], [8, 128]]")
    if "shape" in data:
        shapes: tuple[tuple[int, ...], ...] = (_positive_ints(ctx, data["shape"],
                                                              ("input", "shape")),)
    else:
        if not isinstance(data["shapes"], list) or not data["shapes"]:
            raise ctx.error(("input", "shapes"), "expected a list of shapes")
        shapes = tuple(_positive_ints(ctx, s, ("input", "shapes")) for s in data["shapes"])
    dtypes = data.get("dtypes", [data.get("dtype", "float32")])
    if not isinstance(dtypes, list) or not all(isinstance(d, str) for d in dtypes) or \
            len(dtypes) not in (1, len(shapes)):
        raise ctx.error(("input", "dtypes" if "dtypes" in data else "dtype"),
                        f"expected one dtype name for all inputs or one per input "
                        f"({len(shapes)}), got {dtypes!r}")
    _check_dtypes(ctx, dtypes, "dtypes" if "dtypes" in data else "dtype")
    for key in ("seed", "batch_dim", "max_batch"):
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool)):
            raise ctx.error(("input", key), f"expected an integer, got {data[key]!r}")
    int_high = data.get("int_high")
    if isinstance(int_high, list):
        int_high = tuple(_positive_ints(ctx, int_high, ("input", "int_high")))
        if len(int_high) != len(shapes):
            raise ctx.error(("input", "int_high"), f"expected one bound for all inputs or one "
                                                   f"per input ({len(shapes)}), got "
                                                   f"{len(int_high)}")
    elif int_high is not None and (not isinstance(int_high, int) or isinstance(int_high, bool)
                                   or int_high < 1):
        raise ctx.error(("input", "int_high"), f"expected a positive integer or a list of "
                                               f"them, got {int_high!r}")
    spec: dict[str, Any] = {k: data[k] for k in ("batch_dim", "max_batch") if k in data}
    if "batch_dims" in data:
        spec["batch_dims"] = _batch_dims(ctx, data["batch_dims"])
    if "dims" in data:
        spec["dims"] = _dims(ctx, data["dims"])
    _validate_spec(ctx, spec)
    return InputSource(shapes, tuple(dtypes), int_high, data.get("seed", 0), spec)


def _check_dtypes(ctx: _Context, names: list[str], key: str) -> None:
    from torchbridge.inputs import parse_dtype

    for name in names:
        try:
            parse_dtype(name)
        except ConfigError as exc:
            raise ctx.error(("input", key), str(exc)) from None


def _batch_dims(ctx: _Context, raw: Any) -> dict[int | str, int | None]:
    if not isinstance(raw, Mapping):
        raise ctx.error(("input", "batch_dims"), "expected a table input → axis")
    for key, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ctx.error(("input", "batch_dims", key), f"expected an axis (an integer; "
                                                          f"-1 for no batch dim), got {value!r}")
    # TOML keys are strings; positional inputs are named by their index
    return {int(k) if str(k).isdigit() else str(k): (None if v < 0 else int(v))
            for k, v in raw.items()}


def _dims(ctx: _Context, raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, Mapping):
        raise ctx.error(("input", "dims"), "expected a table of named dims, e.g. "
                                           "dims = { seq = { input = 0, axis = 1, max = 512 } }")
    dims = {}
    for name, value in raw.items():
        data = ctx.table(value, ("input", "dims", name), DIM_KEYS)
        if "input" in data:  # one input, a list sharing `axis`, or a table input -> axis
            data["input"] = _input_keys(data["input"])
        dims[str(name)] = data
    return dims


def _input_key(key: Any) -> Any:
    # TOML keys are strings; positional inputs are named by their index
    return int(key) if isinstance(key, str) and key.isdigit() else key


def _input_keys(raw: Any) -> Any:
    if isinstance(raw, Mapping):
        return {_input_key(k): v for k, v in raw.items()}
    if isinstance(raw, list):
        return [_input_key(k) for k in raw]
    return _input_key(raw)


def _validate_spec(ctx: _Context, spec: dict[str, Any]) -> None:
    from torchbridge.core.subject import InputSpec

    try:
        InputSpec.coerce(spec)
    except (ConfigError, TypeError) as exc:
        raise ctx.error(("input",), str(exc)) from None


def _with_tolerances(check: str, kwargs: dict[str, Any], tolerances: dict[str, Any]
                     ) -> dict[str, Any]:
    """File-wide rtol/atol for checks whose config has them, unless the check sets its own."""
    from torchbridge.checks import registry

    fields = {f.name for f in dataclasses.fields(registry.get(check).config_type)}
    return {**{k: v for k, v in tolerances.items() if k in fields}, **kwargs}


def _entry(ctx: _Context, check: str, raw: Any, keys: tuple[PathPart, ...],
           tolerances: dict[str, Any], index: int | None) -> CheckEntry:
    from torchbridge.checks import registry

    if raw is True:
        kwargs: dict[str, Any] = {}
    elif isinstance(raw, Mapping):
        kwargs = dict(raw)
    else:
        raise ctx.error(keys, f"expected true or a table of the marker's keywords, got {raw!r}")
    try:
        registry.get(check)
        config = registry.parse_config(check, (), _with_tolerances(check, kwargs, tolerances))
    except ConfigError as exc:
        bad = _offending_key(str(exc), kwargs)
        raise ctx.error((*keys, bad) if bad else keys, str(exc)) from None
    return CheckEntry(check, config, ctx.line(keys), index)


def _offending_key(message: str, kwargs: dict[str, Any]) -> str | None:
    """The keyword an error message names, to point at its line."""
    for key in sorted(kwargs, key=len, reverse=True):
        if f"'{key}'" in message or f"{key}:" in message or f"{key}[" in message:
            return key
    return None


def _checks(ctx: _Context, raw: Any, tolerances: dict[str, Any]) -> tuple[CheckEntry, ...]:
    if raw is None:
        raise ctx.error((), "no [checks] table; list the checks to run, e.g. "
                            "checks = { forward = true, latency = { p99 = '20ms' } }")
    if not isinstance(raw, Mapping) or not raw:
        raise ctx.error(("checks",), "expected a table with at least one check")
    entries = []
    for check, value in raw.items():
        if value is False:
            continue  # a check switched off, e.g. overriding a shared file
        if isinstance(value, list):
            entries += [_entry(ctx, check, item, ("checks", check, i), tolerances, i)
                        for i, item in enumerate(value)]
        else:
            entries.append(_entry(ctx, check, value, ("checks", check), tolerances, None))
    return tuple(entries)


def _tolerances(ctx: _Context, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    data = ctx.table(raw, ("tolerances",), TOLERANCE_KEYS)
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ctx.error(("tolerances", key), f"expected a non-negative number, got "
                                                 f"{value!r}")
    return data


def parse_checklist(data: Any, path: Path, text: str, section: tuple[str, ...] = ()
                    ) -> Checklist:
    """Validate the parsed TOML ``data`` of ``path`` (``section``: its table, e.g.
    ``("tool", "torchbridge")`` in pyproject.toml)."""
    ctx = _Context(path, text, section)
    table = ctx.table(data, (), TOP_KEYS)
    name = table.get("name", path.parent.name if section else path.stem)
    if not isinstance(name, str) or not name:
        raise ctx.error(("name",), "expected a non-empty string")
    tolerances = _tolerances(ctx, table.get("tolerances"))
    return Checklist(path=path, name=name, model=_model(ctx, table.get("model")),
                     inputs=_inputs(ctx, table.get("input")),
                     checks=_checks(ctx, table.get("checks"), tolerances), section=section)
