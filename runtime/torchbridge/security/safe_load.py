"""Safe loading, used by every loader in the runtime.

* safetensors is preferred: its header is validated first, and loading it runs no code;
* every file is scanned first (:func:`check_file`) and judged by the allowlist
  (:mod:`torchbridge.security.policy`): ``unsafe`` and ``invalid`` files are refused with
  the reasons, whatever the flags;
* ``torch.load`` runs with ``weights_only=True`` and the allowlist's extra reconstructors
  (numpy scalars and dtypes …) plus the user's ``allowed_globals`` registered;
* ``allow_code=True`` is the only way to rebuild classes from a file (verdict ``code``:
  trusted classes such as ``torch.nn`` modules); it is logged, and the full unpickle it
  runs has a ``find_class`` that refuses anything off the allowlist even then;
* ``.pt2`` archives: every member ``torch.export.load`` would unpickle is scanned, and
  the load runs with ``torch.load`` forced to ``weights_only=True`` (:func:`load_pt2`).

Example::

    state = load_state_dict("model.safetensors")          # or a .pt state dict
    ckpt = load_checkpoint("train.ckpt", allowed_globals=[MyConfig])
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import pickle
import threading
import types
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from torchbridge.errors import ModelLoadError
from torchbridge.security.limits import DEFAULT_LIMITS, ScanLimits
from torchbridge.security.pickles import global_name
from torchbridge.security.policy import (
    classify,
    explain,
    object_name,
    safe_names,
    weights_only_allowed,
)
from torchbridge.security.pt2_archive import check_archive, tail
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

    ``globals``: every global the file imports that is not allowlisted (what
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` lists, without the ``<…>``
    stand-ins for unnamed operations), ``dangerous``: those judged unsafe, ``verdict``:
    the full scan.
    """

    def __init__(self, message: str, verdict: FileVerdict) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.dangerous = list(verdict.dangerous_globals)
        self.globals = sorted(g for g in set(verdict.dangerous_globals) |
                              set(verdict.code_globals) if not g.startswith("<"))


def qualified_name(obj: Any) -> str:
    """``module.name`` as pickle and torch's allowlist spell a class or function."""
    return object_name(obj)


def global_names(allowed_globals: Iterable[Any]) -> list[str]:
    """``module.name`` (or ``module.*``) strings for objects or names the user trusts."""
    return [o if isinstance(o, str) else qualified_name(o) for o in allowed_globals]


def resolve_global(name: str) -> Any:
    """The object ``module.name`` names (the user trusts it by naming it, so importing
    its module is theirs to allow). Raises :class:`ModelLoadError` when it cannot be
    imported."""
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


#: Packages whose allowlisted reconstructors may be imported to register them with
#: ``weights_only`` loading (the file never chooses what is imported).
_IMPORTABLE_ROOTS = ("numpy", "joblib", "builtins", "collections", "_codecs", "copyreg",
                     "argparse", "datetime", "decimal", "fractions", "torch")


@functools.lru_cache(maxsize=1)
def _builtin_safe_objects() -> tuple[Any, ...]:
    """The allowlist's objects beyond torch's own, for ``torch.serialization.safe_globals``
    (those whose package is not installed are skipped)."""
    objects = []
    torch_names = set(weights_only_allowed())
    for name in sorted(safe_names() - torch_names):
        if name.split(".")[0] not in _IMPORTABLE_ROOTS:
            continue
        try:
            with warnings.catch_warnings():  # numpy.core.* spellings are deprecated aliases
                warnings.simplefilter("ignore")
                objects.append(resolve_global(name))
        except ModelLoadError:
            continue
    return tuple(objects)


def _user_objects(names: Iterable[str]) -> list[Any]:
    return [resolve_global(n) for n in names if not n.endswith(".*")]


def _refusal(path: Path, verdict: FileVerdict, allow_code: bool) -> str | None:
    if verdict.verdict in (Verdict.UNSAFE, Verdict.INVALID):
        what = "is unsafe" if verdict.verdict is Verdict.UNSAFE else "cannot be read safely"
        return f"refused {path}: it {what}: " + "; ".join(verdict.reasons[:6])
    if verdict.verdict is Verdict.NOT_A_MODEL:
        return f"refused {path}: not a model file ({'; '.join(verdict.reasons)})"
    if verdict.code_globals and not allow_code:
        names = ", ".join(verdict.code_globals)
        flags = " ".join(f"--allow-global {n}" for n in verdict.code_globals[:3])
        return (f"refused {path}: it rebuilds the classes {names}, which are not on the "
                "allowlist (loading them runs their code). If you trust these classes, "
                f"pass {flags} (Python: allowed_globals=[...]); to rebuild them as a "
                "pickled module, pass --allow-pickle (allow_code=True). Better: save a "
                "state dict as safetensors.")
    return None


def _pt2_verdict(path: Path, names: list[str], limits: ScanLimits) -> FileVerdict | None:
    """An ``unsafe`` verdict when ``path`` is a ``.pt2`` archive holding a member torch
    would unpickle that is not allowlist-safe (or AOTInductor native code)."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        if not any(tail(i.filename) == "archive_format" for i in archive.infolist()):
            return None
        problems = check_archive(archive, names, limits)
    if not problems:
        return None
    from torchbridge.security.secrets import redact_secrets  # reasons quote member names

    return FileVerdict(str(path), "pt2", Verdict.UNSAFE,
                       [redact_secrets(p) for p in problems])


def check_file(path: str | Path, *, allowed_globals: Iterable[Any] = (),
               allow_code: bool = False, limits: ScanLimits = DEFAULT_LIMITS) -> FileVerdict:
    """Scan ``path`` and raise :class:`UnsafeModelError` unless it may be opened: any
    ``unsafe`` or ``invalid`` verdict, any member of a ``.pt2`` archive that torch would
    unpickle and that is not safe, and ``code`` unless ``allow_code``.

    Secrets do not block loading (the file is still safe to read); they are in the verdict.
    """
    path = Path(path)
    _regular_file(path)
    names = global_names(allowed_globals)
    verdict = scan_file(path, limits=limits, secrets=False, allowed_globals=names)
    reason = _refusal(path, verdict, allow_code)
    if reason:
        raise UnsafeModelError(reason, verdict)
    pt2 = _pt2_verdict(path, names, limits)
    if pt2 is not None:
        raise UnsafeModelError(f"refused {path}: torch.export.load would unpickle or run "
                               "what is not safe: " + "; ".join(pt2.reasons[:6]), pt2)
    return verdict


def _regular_file(path: Path) -> None:
    """Raise :class:`UnsafeModelError` unless ``path`` is a regular file: opening a FIFO
    or a device named like a model would block or read forever."""
    if not path.is_file():
        what = "no such file" if not path.exists() else "not a regular file"
        verdict = FileVerdict(str(path), "unknown", Verdict.INVALID, [f"{path}: {what}"])
        raise UnsafeModelError(f"refused {path}: {what}", verdict)


def load_safetensors(path: str | Path, device: str = "cpu",
                     limits: ScanLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Tensors of a safetensors file, after validating its header against the file."""
    from safetensors.torch import load_file

    _regular_file(Path(path))
    try:
        read_header(path, limits)
    except InvalidArtifact as exc:
        raise ModelLoadError(f"refused {path}: {exc}") from None
    return load_file(str(path), device=device)


class _GuardedUnpickler(pickle.Unpickler):
    """A full unpickler for ``allow_code`` loads whose ``find_class`` still enforces the
    verdict at run time: only allowlisted globals and trusted classes are imported, so a
    global the static scan misread still cannot reach a denylisted or unknown callable."""

    allowed: tuple[str, ...] = ()

    def find_class(self, module: str, name: str) -> Any:
        # Protocols 0-2 map Python 2 names (``__builtin__.set``); later ones do not. The
        # protocol is not visible here, so both readings are judged, except a Python 2
        # module name that Python 3 cannot import at all.
        candidates = {global_name(module, name, 2)}
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            candidates.add(f"{module}.{name}")
        unsafe, _ = classify(candidates, self.allowed, torchscript=False)
        if unsafe:
            raise pickle.UnpicklingError(f"refused global {unsafe[0]}: {explain(unsafe[0])}")
        return super().find_class(module, name)


def guarded_pickle_module(allowed: Iterable[str] = ()) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load`` whose unpickler refuses every global that
    is neither allowlisted nor a trusted class (see :func:`classify`)."""
    module = types.ModuleType("torchbridge_guarded_pickle")
    unpickler = type("GuardedUnpickler", (_GuardedUnpickler,), {"allowed": tuple(allowed)})

    def load(file: IO[bytes], **kwargs: Any) -> Any:
        return unpickler(file, **kwargs).load()

    module.Unpickler = unpickler  # type: ignore[attr-defined]
    module.load = load  # type: ignore[attr-defined]
    module.__dict__.update(Pickler=pickle.Pickler, UnpicklingError=pickle.UnpicklingError)
    return module


def load_checkpoint(path: str | Path, *, map_location: Any = "cpu",
                    allowed_globals: Iterable[Any] = (), allow_code: bool = False,
                    limits: ScanLimits = DEFAULT_LIMITS) -> Any:
    """``torch.load`` a checkpoint after scanning it (see the module docstring).

    ``allowed_globals``: classes/functions you trust (objects or ``module.name``; a
    ``module.*`` entry trusts that module's classes to be rebuilt, which still needs
    ``allow_code``), registered for this load only. ``allow_code``: rebuild trusted
    classes with a full (guarded) unpickle when the file needs it; logged.
    Raises :class:`UnsafeModelError` when the scan refuses the file and
    :class:`ModelLoadError` when torch cannot read it.
    """
    import torch

    path = Path(path)
    names = global_names(allowed_globals)
    verdict = check_file(path, allowed_globals=names, allow_code=allow_code, limits=limits)
    trusted = [*_builtin_safe_objects(), *_user_objects(names)]
    if verdict.code_globals and allow_code:
        log.warning("allow_code=True: loading %s with a full unpickle rebuilds classes "
                    "from the file, running their code; it imports %s", path,
                    ", ".join(verdict.code_globals))
        return _guarded_load(path, map_location, names)
    try:
        with torch.serialization.safe_globals(trusted):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _wo_reason(exc)
        if not allow_code:
            raise ModelLoadError(
                f"cannot load {path}: the scan found only known-safe reconstructors, but "
                f"torch's weights_only unpickler cannot rebuild them ({reason}); pass "
                "--allow-pickle (allow_code=True) to load it with the guarded full "
                "unpickle, which still refuses anything off the allowlist") from None
    log.warning("allow_code=True: torch's weights_only unpickler cannot read %s (%s); "
                "loading it with the guarded full unpickle", path, reason)
    return _guarded_load(path, map_location, names)


def _guarded_load(path: Path, map_location: Any, names: list[str]) -> Any:
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=False,
                          pickle_module=guarded_pickle_module(names))
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"cannot load {path}: {_first_line(exc)}") from None


def _wo_reason(exc: BaseException) -> str:
    """The line of torch's weights_only error that says what it could not rebuild."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    found = [line for line in lines if "WeightsUnpickler error" not in line and
             not line.startswith(("Weights only load failed", "Please file", "Check the"))]
    return (found[0] if found else _first_line(exc))[:300]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _weights_only_forced() -> Iterator[None]:
    """Make every ``torch.load`` inside the block use ``weights_only=True``, even where
    the caller passes ``weights_only=False`` (torch's ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``):
    ``torch.export.load`` asks for full unpickles of pickled weights and constants."""
    key = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    with _FORCE_LOCK:
        before = os.environ.get(key)
        os.environ[key] = "1"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before


_FORCE_LOCK = threading.Lock()


def load_pt2(path: str | Path, *, allowed_globals: Iterable[Any] = (),
             limits: ScanLimits = DEFAULT_LIMITS) -> Any:
    """``torch.export.load`` a ``.pt2`` archive after scanning every member torch would
    unpickle (:func:`~torchbridge.security.pt2_archive.check_archive`), with every
    ``torch.load`` inside forced to ``weights_only=True``.

    Raises :class:`UnsafeModelError` when a member is not allowlist-safe (there is no
    ``allow_code`` for archives) and :class:`ModelLoadError` when torch cannot read it.
    """
    import torch

    path = Path(path)
    names = global_names(allowed_globals)
    check_file(path, allowed_globals=names, allow_code=False, limits=limits)
    if not _is_pt2(path):
        raise ModelLoadError(f"{path} is not a torch.export archive")
    trusted = [*_builtin_safe_objects(), *_user_objects(names)]
    try:
        with _weights_only_forced(), torch.serialization.safe_globals(trusted):
            return torch.export.load(str(path))
    except (pickle.UnpicklingError, RuntimeError, ValueError, KeyError,
            AssertionError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"cannot load torch.export archive {path}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None


def _is_pt2(path: Path) -> bool:
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(tail(n) == "archive_format" for n in archive.namelist())


def load_torchscript(path: str | Path, *, map_location: Any = "cpu",
                     limits: ScanLimits = DEFAULT_LIMITS) -> Any:
    """``torch.jit.load`` a TorchScript archive after the scan passes it (TorchScript's
    own unpickler imports no Python globals; the scan still refuses a file whose pickles
    name anything off the allowlist). Raises :class:`UnsafeModelError` when refused."""
    import torch

    check_file(path, allow_code=False, limits=limits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location=map_location)


def load_state_dict(path: str | Path, *, device: str = "cpu",
                    allowed_globals: Iterable[Any] = ()) -> Mapping[str, Any]:
    """A state dict from safetensors (preferred) or a ``torch.save`` file, loaded safely."""
    path = Path(path)
    _regular_file(path)
    with open(path, "rb") as handle:
        head = handle.read(9)
    if path.suffix == ".safetensors" or looks_like_safetensors(head, path.stat().st_size):
        return load_safetensors(path, device)
    state = load_checkpoint(path, map_location=device, allowed_globals=allowed_globals)
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state
