"""Reading checklist files and building the subject their checks run on."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import tomllib

from torchbridge.checklist.schema import Checklist, ChecklistError, parse_checklist

PYPROJECT_SECTION = ("tool", "torchbridge")


def _toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChecklistError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ChecklistError(f"{path}: not valid TOML: {exc}") from None


def has_section(path: str | Path) -> bool:
    """Whether a pyproject.toml holds a ``[tool.torchbridge]`` table."""
    try:
        data, _ = _toml(Path(path))
    except ChecklistError:
        return False
    return isinstance(data.get("tool", {}).get("torchbridge"), dict)


def load_checklist(path: str | Path) -> Checklist:
    """Read and validate a ``torchbridge.toml`` or the ``[tool.torchbridge]`` table of a
    ``pyproject.toml``. Raises :class:`ChecklistError` naming the file and line."""
    target = Path(path)
    data, text = _toml(target)
    if target.name == "pyproject.toml":
        section = data.get("tool", {}).get("torchbridge")
        if section is None:
            raise ChecklistError(f"{target}: no [tool.torchbridge] table")
        return parse_checklist(section, target, text, PYPROJECT_SECTION)
    return parse_checklist(data, target, text)


def _resolve(checklist: Checklist, spec: str) -> str:
    """File paths in the checklist are relative to its folder; module paths are untouched."""
    if ":" in spec and not spec.endswith((".pt2", ".onnx", ".pt", ".ts")):
        target, _, attr = spec.rpartition(":")
        if target.endswith(".py") or "/" in target:
            return f"{(checklist.base_dir / target)}:{attr}"
        return spec
    return str(checklist.base_dir / spec)


def _importable(checklist: Checklist) -> None:
    """``package.module:factory`` resolves from the checklist's folder, as conftest does."""
    folder = str(checklist.base_dir.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)


def load_model(checklist: Checklist, device: str = "cpu") -> Any:
    """The checklist's model on ``device``, loaded through :mod:`torchbridge.loading`."""
    from torchbridge.loading import load_model as load

    _importable(checklist)
    source = checklist.model
    allowed = (*source.allow_globals, *allow_globals_from_env())
    if source.factory:
        weights = str(checklist.base_dir / source.weights) if source.weights else None
        return load(_resolve(checklist, source.factory), weights, device=device,
                    allow_pickle=source.allow_pickle, allowed_globals=allowed).model
    assert source.artifact is not None
    return load(_resolve(checklist, source.artifact), allow_pickle=source.allow_pickle,
                device=device, allowed_globals=allowed).model


#: How ``tb-check --allow-global NAME`` hands its names to the pytest run it starts.
ALLOW_GLOBALS_ENV = "TORCHBRIDGE_ALLOW_GLOBALS"


def allow_globals_from_env() -> tuple[str, ...]:
    """The ``--allow-global`` names ``tb-check`` passed to this run (comma-separated)."""
    return tuple(n.strip() for n in os.environ.get(ALLOW_GLOBALS_ENV, "").split(",")
                 if n.strip())


def sample_inputs(checklist: Checklist, model: Any) -> Any:
    """Seeded random inputs of the declared shapes (integers across the vocabulary of the
    embedding tables each one feeds, or below ``int_high``)."""
    from torchbridge.inputs import synthesize_inputs

    spec = checklist.inputs
    return synthesize_inputs(list(spec.shapes), list(spec.dtypes), int_high=spec.int_high,
                             seed=spec.seed, model=model)


def build_subject(checklist: Checklist, device: str, model: Any = None) -> Any:
    """A :class:`~torchbridge.checks.Subject` for the checklist's model on ``device``.

    The factory of the subject loads a fresh model, so checks that compare separately
    built instances (determinism across instances) see a real second load.
    """
    from torchbridge.core.subject import InputSpec, Subject

    model = load_model(checklist, device) if model is None else model
    return Subject(model=model, inputs=sample_inputs(checklist, model), device=device,
                   spec=InputSpec.coerce(dict(checklist.inputs.spec)),
                   factory=lambda: load_model(checklist, device),
                   name=checklist.name)
