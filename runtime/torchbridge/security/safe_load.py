"""Safe loading, used by every loader in the runtime.

* safetensors is preferred: its header is validated first, and loading it runs no code;
* ``torch.load`` is only ever called with ``weights_only=True``, after the file has been
  scanned: one that imports dangerous globals is refused with their names, one that
  imports classes outside torch's ``weights_only`` allowlist is refused with their names
  and what to do (``allowed_globals=`` or ``allow_code=True``);
* ``allow_code=True`` is the only way to run code from a model file; it is logged, and
  dangerous globals are refused even then.

Example::

    state = load_state_dict("model.safetensors")          # or a .pt state dict
    ckpt = load_checkpoint("train.ckpt", allowed_globals=[MyConfig])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torchbridge.errors import ModelLoadError
from torchbridge.security.limits import DEFAULT_LIMITS, ScanLimits
from torchbridge.security.safetensors_header import (
    InvalidArtifact,
    looks_like_safetensors,
    read_header,
)
from torchbridge.security.scan import scan_file
from torchbridge.security.verdict import FileVerdict, Verdict

log = logging.getLogger("torchbridge.security")


class UnsafeModelError(ModelLoadError):
    """A model file was refused before it was opened.

    ``globals``: every global the file imports that ``weights_only=True`` does not allow
    (what ``torch.serialization.get_unsafe_globals_in_checkpoint`` lists), ``dangerous``:
    those on the denylist, ``verdict``: the full scan.
    """

    def __init__(self, message: str, verdict: FileVerdict) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.dangerous = list(verdict.dangerous_globals)
        self.globals = sorted(set(verdict.dangerous_globals) | set(verdict.code_globals))


def qualified_name(obj: Any) -> str:
    """``module.name`` as pickle and torch's allowlist spell a class or function."""
    return f"{obj.__module__}.{getattr(obj, '__qualname__', obj.__name__)}"


def resolve_global(name: str) -> Any:
    """The object ``module.name`` names (the user trusts it by naming it)."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ModelLoadError(f"allowed global {name!r} cannot be imported; give module.name")


def _refusal(path: Path, verdict: FileVerdict, allow_code: bool) -> str | None:
    if verdict.verdict in (Verdict.UNSAFE, Verdict.INVALID):
        what = "is unsafe" if verdict.verdict is Verdict.UNSAFE else "cannot be read safely"
        return f"refused {path}: it {what}: " + "; ".join(verdict.reasons[:6])
    if verdict.verdict is Verdict.NOT_A_MODEL:
        return f"refused {path}: not a model file ({'; '.join(verdict.reasons)})"
    if verdict.code_globals and not allow_code:
        names = ", ".join(verdict.code_globals)
        return (f"refused {path}: it imports {names}, which weights_only=True does not allow "
                "(loading it would run code from the file). If you trust these classes, "
                "pass allowed_globals=[...] (torch.serialization.add_safe_globals); to run "
                "the file's code anyway, pass allow_code=True. Better: save a state dict "
                "as safetensors.")
    return None


def check_file(path: str | Path, *, allowed_globals: Iterable[Any] = (),
               allow_code: bool = False, limits: ScanLimits = DEFAULT_LIMITS) -> FileVerdict:
    """Scan ``path`` and raise :class:`UnsafeModelError` unless it may be opened.

    Secrets do not block loading (the file is still safe to read); they are in the verdict.
    """
    path = Path(path)
    names = [o if isinstance(o, str) else qualified_name(o) for o in allowed_globals]
    verdict = scan_file(path, limits=limits, secrets=False, allowed_globals=names)
    reason = _refusal(path, verdict, allow_code)
    if reason:
        raise UnsafeModelError(reason, verdict)
    return verdict


def load_safetensors(path: str | Path, device: str = "cpu",
                     limits: ScanLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Tensors of a safetensors file, after validating its header against the file."""
    from safetensors.torch import load_file

    try:
        read_header(path, limits)
    except InvalidArtifact as exc:
        raise ModelLoadError(f"refused {path}: {exc}") from None
    return load_file(str(path), device=device)


def load_checkpoint(path: str | Path, *, map_location: Any = "cpu",
                    allowed_globals: Iterable[Any] = (), allow_code: bool = False,
                    limits: ScanLimits = DEFAULT_LIMITS) -> Any:
    """``torch.load`` a checkpoint after scanning it (see the module docstring).

    ``allowed_globals``: classes/functions you trust, registered for this load only.
    ``allow_code``: load with ``weights_only=False`` when the file needs it; logged.
    """
    import torch

    path = Path(path)
    allowed = [resolve_global(o) if isinstance(o, str) else o for o in allowed_globals]
    verdict = check_file(path, allowed_globals=allowed, allow_code=allow_code, limits=limits)
    if verdict.code_globals and allow_code:
        log.warning("allow_code=True: loading %s with weights_only=False runs code from the "
                    "file; it imports %s", path, ", ".join(verdict.code_globals))
        return torch.load(path, map_location=map_location, weights_only=False)
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location=map_location, weights_only=True)


def load_state_dict(path: str | Path, *, device: str = "cpu",
                    allowed_globals: Iterable[Any] = ()) -> Mapping[str, Any]:
    """A state dict from safetensors (preferred) or a ``torch.save`` file, loaded safely."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(9)
    if path.suffix == ".safetensors" or looks_like_safetensors(head, path.stat().st_size):
        return load_safetensors(path, device)
    state = load_checkpoint(path, map_location=device, allowed_globals=allowed_globals)
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state
