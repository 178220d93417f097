"""Which pickle globals a file may name: the allowlist verdict.

A file is judged global by global (names as :mod:`torchbridge.security.pickles` resolves
them, the way :mod:`pickle` does):

* **safe** — the global is a known-safe reconstructor: what
  ``torch.load(weights_only=True)`` accepts (torch's allowlist plus anything registered
  with ``torch.serialization.add_safe_globals``), torch's TorchScript helpers
  (``torch.jit._pickle.*``, ``__torch__`` classes), numpy's array, scalar and dtype
  reconstructors, joblib's array wrapper, and the names the user allowed
  (``--allow-global module.Name``).
* **code** — a *class* (never a plain function) from a module whose classes the user
  trusts to be rebuilt: ``torch.nn``/``torch.optim`` modules, exactly the module of any
  name the user allowed (not its package), or ``--allow-global module.*`` (submodules
  too). Loading it runs those classes'
  constructors and ``__setstate__``; loaders refuse it unless ``allow_code`` /
  ``--allow-pickle``.
* **unsafe** — everything else: any other function or class, anything reached through a
  dunder attribute (``builtins.print.__class__``), a global that cannot be resolved
  statically.

The denylist below does not decide anything; it only words the message ("it calls
posix.system: runs a shell command"). Our list is merged with picklescan's.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from torchbridge.security.pickles import (
    BUILD_ON_GLOBAL,
    COMPUTED_CALL,
    CONSUMING,
    REFERENCE_ONLY,
    UNRESOLVED,
)

__all__ = ["UNRESOLVED", "classify", "denylist", "explain", "is_dangerous", "safe_names"]

ANY = "*"

#: module → names (or ANY). Both spellings of builtins: protocol 0-2 write ``__builtin__``.
_OWN_DENYLIST: dict[str, frozenset[str] | str] = {
    **{mod: frozenset({"eval", "exec", "compile", "getattr", "setattr", "delattr", "apply",
                       "open", "breakpoint", "__import__", "globals", "locals", "vars",
                       "input", "memoryview"})
       for mod in ("builtins", "__builtin__")},
    **{mod: ANY for mod in (
        "os", "posix", "nt", "subprocess", "sys", "socket", "runpy", "shutil", "pty",
        "pickle", "_pickle", "pdb", "bdb", "ctypes", "webbrowser", "importlib", "marshal",
        "code", "codeop", "commands", "multiprocessing", "asyncio", "signal", "tempfile",
        "http", "httplib", "urllib", "requests", "aiohttp", "ftplib", "smtplib", "telnetlib",
        "cProfile", "profile", "pydoc", "timeit", "trace", "venv", "ensurepip", "pip",
        "dill", "cloudpickle", "joblib", "shelve", "zipimport", "uuid", "pkgutil",
    )},
    "operator": frozenset({"attrgetter", "itemgetter", "methodcaller"}),
    "_operator": frozenset({"attrgetter", "itemgetter", "methodcaller"}),
    "functools": frozenset({"partial", "reduce"}),
    "types": frozenset({"CodeType", "FunctionType", "LambdaType", "MethodType"}),
    "io": frozenset({"open", "FileIO", "open_code"}),
    "_io": frozenset({"open", "FileIO", "open_code"}),
    "torch.serialization": frozenset({"load"}),
    "torch": frozenset({"load"}),
    "numpy": frozenset({"load"}),
    "numpy.testing._private.utils": ANY,
    "logging": frozenset({"FileHandler"}),
}



@functools.lru_cache(maxsize=1)
def denylist() -> Mapping[str, frozenset[str] | str]:
    """Our denylist merged with picklescan's (when installed)."""
    merged: dict[str, frozenset[str] | str] = dict(_OWN_DENYLIST)
    for module, names in _picklescan_denylist().items():
        mine = merged.get(module)
        if mine == ANY or names == ANY:
            merged[module] = ANY
        else:
            merged[module] = frozenset(mine or ()) | frozenset(names)
    return merged


def denylist_sources() -> list[str]:
    """Where the denylist came from, for reports (``torchbridge``, ``picklescan 1.0.5``)."""
    sources = ["torchbridge"]
    if _picklescan_denylist():
        from importlib.metadata import version

        sources.append(f"picklescan {version('picklescan')}")
    return sources


@functools.lru_cache(maxsize=1)
def _picklescan_denylist() -> dict[str, frozenset[str] | str]:
    try:
        from picklescan import scanner
    except ImportError:
        return {}
    table = getattr(scanner, "_unsafe_globals", None)
    if not isinstance(table, dict):  # its layout changed: use ours, and say so in reports
        return {}
    out: dict[str, frozenset[str] | str] = {}
    for module, names in table.items():
        out[module] = ANY if names == ANY else frozenset(
            [names] if isinstance(names, str) else names)
    return out


def is_dangerous(qualified: str) -> bool:
    """Whether ``module.name`` is on the denylist (a module listed as ``*`` covers its
    submodules). An unresolvable global counts as dangerous."""
    if qualified == UNRESOLVED or "<" in qualified:
        return True
    table = denylist()
    # Names can be dotted (``Class.method``), so try every split point.
    parts = qualified.split(".")
    for cut in range(1, len(parts)):
        mod, attr = ".".join(parts[:cut]), ".".join(parts[cut:])
        entry = table.get(mod)
        if entry == ANY:
            return True
        if isinstance(entry, frozenset) and (attr in entry or attr.split(".")[0] in entry):
            return True
    return False




def denylisted_path(qualified: str) -> str | None:
    """The denylisted callable a (possibly dotted) global reaches, if any:
    ``torch.serialization.os.system`` and ``logging.os.system`` reach ``os.system``."""
    parts = qualified.split(".")
    for start in range(len(parts) - 1):
        tail = ".".join(parts[start:])
        if is_dangerous(tail):
            return tail
    return None


def dunder_segment(qualified: str) -> str | None:
    """The first ``__dunder__`` segment of an attribute path (``numpy.__builtins__``,
    ``builtins.print.__class__.__base__``); TorchScript's ``__torch__`` root is not one."""
    for index, part in enumerate(qualified.split(".")):
        if index == 0 and part in ("__torch__", "__main__"):
            continue
        if len(part) > 4 and part.startswith("__") and part.endswith("__"):
            return part
    return None


def weights_only_allowed() -> frozenset[str]:
    """Globals ``torch.load(weights_only=True)`` accepts right now (torch's allowlist plus
    user-registered safe globals)."""
    from torch import _weights_only_unpickler as unpickler

    return frozenset(unpickler._get_allowed_globals()) | \
        frozenset(unpickler._get_user_allowed_globals())


# --------------------------------------------------------------------------- allowlist

#: Known-safe reconstructors beyond torch's weights_only list: they build arrays,
#: scalars, dtypes, tensors and plain containers, and call nothing named by the file.
_OWN_SAFE = frozenset({
    # torch: TorchScript's pickle helpers (identity functions and type tags).
    "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_tensorlist",
    "torch.jit._pickle.build_doublelist", "torch.jit._pickle.build_boollist",
    "torch.jit._pickle.build_tensor_from_id", "torch.jit._pickle.restore_type_tag",
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_sparse_tensor", "torch._utils._rebuild_nested_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor",
    "torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_wrapper_subclass",
    "torch._tensor._rebuild_from_type_v2", "torch.storage.UntypedStorage",
    "torch.storage.TypedStorage", "torch.serialization._get_layout",
    # numpy: arrays, scalars, dtypes (numpy 1 and numpy 2 spellings).
    "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar", "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
    # joblib: the wrapper whose raw array bytes follow it in the stream.
    "joblib.numpy_pickle.NumpyArrayWrapper",
    # plain containers and values, as pickle writes them (builtins.list/str/int … are
    # allowed as values only, see REFERENCE_ONLY: called, they only serve gadgets such as
    # list(range(10**12)); fractions.Fraction is left out: its parser computes 10**exp).
    "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.range",
    "builtins.complex", "builtins.bytearray", "_codecs.encode", "collections.OrderedDict",
    "collections.Counter", "collections.defaultdict", "collections.deque",
    "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
    "argparse.Namespace", "datetime.datetime", "datetime.date", "datetime.time",
    "datetime.timedelta", "datetime.timezone", "decimal.Decimal",
})

#: numpy's dtype classes (``numpy.dtypes.Float64DType`` …) when numpy cannot be asked.
_NUMPY_DTYPE_CLASSES = ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16",
                        "UInt32", "UInt64", "Float16", "Float32", "Float64", "LongDouble",
                        "Complex64", "Complex128", "CLongDouble", "Bytes", "Str", "Void",
                        "Object", "DateTime64", "TimeDelta64", "Byte", "UByte", "Short",
                        "UShort", "Int", "UInt", "Long", "ULong", "LongLong", "ULongLong",
                        "StringDType")

#: Modules whose *classes* may be rebuilt when the user allows code (verdict ``code``).
TRUSTED_CLASS_MODULES = ("torch.nn.", "torch.ao.nn.", "torch.optim.")


@functools.lru_cache(maxsize=1)
def _static_safe_names() -> frozenset[str]:
    names = set(_OWN_SAFE) | REFERENCE_ONLY
    names.update(f"numpy.dtypes.{n if n.endswith('DType') else n + 'DType'}"
                 for n in _NUMPY_DTYPE_CLASSES)
    try:
        from torch import _weights_only_unpickler as unpickler

        names.update(unpickler._get_allowed_globals())
    except ImportError:  # scanning without torch: our own list only
        pass
    return frozenset(names)


def _user_registered_safe_names() -> frozenset[str]:
    """What ``torch.serialization.add_safe_globals`` registered, as ``module.name``."""
    if "torch" not in sys.modules:
        return frozenset()
    import torch

    names = set()
    for entry in torch.serialization.get_safe_globals():
        if isinstance(entry, tuple):
            names.add(str(entry[1]))
        else:
            names.add(object_name(entry))
    return frozenset(names)


def object_name(obj: Any) -> str:
    """``module.qualname`` as pickle and torch's allowlist spell a class or function."""
    return f"{obj.__module__}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}"


def safe_names(extra_allowed: Iterable[str] = ()) -> frozenset[str]:
    """Every global judged ``safe``: the built-in allowlist, torch's registered safe
    globals and ``extra_allowed`` (exact ``module.name`` entries; ``module.*`` entries
    trust classes, see :func:`trusted_modules`)."""
    exact = {name for name in extra_allowed if not name.endswith(".*")}
    return _static_safe_names() | _user_registered_safe_names() | frozenset(exact)


def trusted_modules(extra_allowed: Iterable[str] = ()) -> tuple[str, ...]:
    """Where classes may be rebuilt (``code``): module prefixes (``torch.nn.``, and each
    ``module.*`` the user allowed, submodules included) and, for each ``module.Name`` the
    user allowed, exactly that module (``module:``; ``--allow-global torch.Size`` must not
    trust every class of torch, ``torch.package.PackageExporter`` writes files)."""
    prefixes = list(TRUSTED_CLASS_MODULES)
    for name in extra_allowed:
        if name.endswith(".*"):
            prefixes.append(name[:-2] + ".")
        elif name.rpartition(".")[0]:
            prefixes.append(name.rpartition(".")[0] + ":")
    return tuple(dict.fromkeys(prefixes))


def _in_trusted(module: str, prefixes: tuple[str, ...]) -> bool:
    """Whether classes of ``module`` are trusted by ``prefixes`` (see
    :func:`trusted_modules`)."""
    return any(module + ":" == p or (p.endswith(".") and (module + ".").startswith(p))
               for p in prefixes)


def _import_trusted(module: str, prefixes: tuple[str, ...]) -> Any:
    """Import ``module`` only when it is trusted (or is already imported): a hostile file
    must never get an arbitrary module imported."""
    if module in sys.modules:
        return sys.modules[module]
    if not _in_trusted(module, prefixes):
        return None
    try:
        return importlib.import_module(module)
    except Exception:  # a module that fails to import holds no class we trust
        return None


def is_trusted_class(qualified: str, extra_allowed: Iterable[str] = ()) -> bool:
    """Whether ``qualified`` names a class defined in a trusted module, found without
    dunder attributes and without importing anything outside those modules."""
    prefixes = trusted_modules(extra_allowed)
    parts = qualified.split(".")
    if not any(_in_trusted(".".join(parts[:cut]), prefixes) for cut in range(1, len(parts))) \
            or dunder_segment(qualified) or denylisted_path(qualified):
        return False
    for cut in range(len(parts) - 1, 0, -1):
        obj = _import_trusted(".".join(parts[:cut]), prefixes)
        if obj is None:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return False
        return isinstance(obj, type) and _in_trusted(obj.__module__, prefixes)
    return False


#: Packages whose already-imported modules may be looked into to resolve an alias.
_ALIAS_ROOTS = frozenset({"torch", "numpy", "collections", "builtins", "copyreg", "_codecs",
                          "argparse", "datetime", "decimal", "joblib"})


def alias_of(qualified: str) -> str | None:
    """The canonical ``module.qualname`` of the object a dotted name reaches, when it can be
    found statically (``torch.nn.Parameter`` → ``torch.nn.parameter.Parameter``): only
    in modules of :data:`_ALIAS_ROOTS` that are already imported, without dunder
    attributes, through ``inspect.getattr_static`` (no ``__getattr__`` hooks, no
    descriptors run). ``None`` when it cannot."""
    parts = qualified.split(".")
    if parts[0] not in _ALIAS_ROOTS or dunder_segment(qualified):
        return None
    for cut in range(len(parts) - 1, 0, -1):
        obj: Any = sys.modules.get(".".join(parts[:cut]))
        if obj is None:
            continue
        try:
            for attr in parts[cut:]:
                obj = inspect.getattr_static(obj, attr)
        except AttributeError:
            return None
        module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(name, str):
            return None
        # The canonical name must reach this very object: ``list[Node]`` (a GenericAlias,
        # callable like list) and functools.wraps wrappers borrow another's names.
        return f"{module}.{name}" if _static_lookup(module, name) is _unwrapped(obj) \
            else None
    return None


def _unwrapped(obj: Any) -> Any:
    """The function a ``staticmethod``/``classmethod`` holds (what getattr returns)."""
    return obj.__func__ if isinstance(obj, staticmethod | classmethod) else obj


def _static_lookup(module: str, qualname: str) -> Any:
    """``qualname`` inside the already-imported ``module``, without running any hook;
    ``None`` when it cannot be found that way."""
    obj: Any = sys.modules.get(module)
    try:
        for attr in qualname.split("."):
            obj = inspect.getattr_static(obj, attr)
    except AttributeError:
        return None
    return _unwrapped(obj)


#: Allowlisted types whose *calls* the walker judges by name (``list(range(10**12))``,
#: ``set(range(10**12))``): re-exported under another name they would escape that check.
_CALL_CHECKED = REFERENCE_ONLY | CONSUMING


def _allowed_alias(name: str, allowed: frozenset[str]) -> bool:
    """Whether ``name`` is another spelling of an allowlisted object (``torch.nn.Parameter``
    for ``torch.nn.parameter.Parameter``), other than of a call-checked type."""
    alias = alias_of(name)
    return alias in allowed and alias not in _CALL_CHECKED


def classify(globals_: Iterable[str], extra_allowed: Iterable[str] = (), *,
             torchscript: bool = True) -> tuple[list[str], list[str]]:
    """Split globals into (unsafe, code); safe ones are dropped. Sorted.

    ``unsafe``: every global that is neither on the allowlist (:func:`safe_names`) nor a
    trusted class (:func:`is_trusted_class`); ``code``: trusted classes that are not
    allowlisted. ``extra_allowed``: the user's ``module.Name`` / ``module.*`` entries.
    ``torchscript``: accept TorchScript's ``__torch__.*`` classes, which only
    TorchScript's own unpickler resolves; pass ``False`` for pickles Python unpickles
    (there ``__torch__`` would be imported from a ``__torch__.py`` beside the file).
    """
    extra = tuple(extra_allowed)
    allowed = safe_names(extra)
    unsafe, code = [], []
    for name in sorted(set(globals_)):
        if name in allowed or (torchscript and name.startswith("__torch__.")
                               and not dunder_segment(name)) or _allowed_alias(name, allowed):
            continue
        if is_trusted_class(name, extra):
            code.append(name)
        else:
            unsafe.append(name)
    return unsafe, code


def explain(name: str) -> str:
    """Why ``name`` is not safe, in words a person can act on (the denylist words it)."""
    if name == COMPUTED_CALL:
        return ("calls a value an earlier call returned (a gadget chain: saved models only "
                "call named reconstructors)")
    if name.endswith(" on a computed value>"):
        return (f"{name[1:-1]}: a constructor that consumes its argument whole, fed an "
                "object another call built (or a size) instead of a literal: unbounded "
                "memory and time while loading, e.g. set(range(10**12))")
    if name.startswith("<call of builtins."):
        return (f"{name[1:-1]}: a type pickle has opcodes for, called (only a gadget calls "
                "it, e.g. list(range(10**12)))")
    if name == BUILD_ON_GLOBAL:
        return "sets attributes on a class or function (BUILD on a global): monkeypatching"
    if name == UNRESOLVED or "<" in name:
        return ("imports a global the scanner cannot name statically (built at load "
                "time, or through the copyreg extension registry)")
    dunder = dunder_segment(name)
    if dunder:
        return f"reaches {name} through the dunder attribute {dunder} (a way to any builtin)"
    target = denylisted_path(name)
    if target:
        via = "" if target == name else f" (written {name})"
        return f"calls {target}{via}: denylisted, it runs commands, code or file I/O"
    return (f"imports {name}, which is not a known-safe reconstructor; if you trust it, "
            f"pass --allow-global {name}")


def describe_globals(names: Iterable[str]) -> str:
    """What the globals of a file are, in words: ``numpy scalar objects (…)``."""
    kinds: dict[str, list[str]] = {}
    for name in names:
        if name.startswith(("numpy.", "numpy._core.")) and "scalar" in name:
            kind = "numpy scalar objects"
        elif name == "numpy.dtype" or name.startswith("numpy.dtypes."):
            kind = "numpy dtype objects"
        elif name.startswith("numpy."):
            kind = "numpy objects"
        elif name.startswith(TRUSTED_CLASS_MODULES):
            kind = "torch module/optimizer classes"
        else:
            kind = "other objects"
        kinds.setdefault(kind, []).append(name)
    return "; ".join(f"{kind} ({', '.join(found)})" for kind, found in kinds.items())
