"""Which pickle globals are dangerous, which are harmless, and which merely need trust.

Three tiers, from most to least severe:

* **dangerous** — a denylist of callables that run commands, evaluate code, import
  modules, open files or sockets (``posix.system``, ``builtins.eval``, ``runpy``,
  ``operator.attrgetter`` …). Our own list is merged with picklescan's, which is
  maintained against published bypasses, when picklescan is installed.
* **allowed** — what ``torch.load(weights_only=True)`` accepts (torch's own allowlist plus
  anything registered with ``torch.serialization.add_safe_globals``), and TorchScript's
  ``__torch__`` classes.
* **code** — everything else: classes and functions a full unpickle would import and
  call. Not known to be malicious, but loading them runs code from the file.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

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

#: Pickle opcode stand-in for a global that cannot be resolved statically.
UNRESOLVED = "<unresolved>"


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


def weights_only_allowed() -> frozenset[str]:
    """Globals ``torch.load(weights_only=True)`` accepts right now (torch's allowlist plus
    user-registered safe globals)."""
    from torch import _weights_only_unpickler as unpickler

    return frozenset(unpickler._get_allowed_globals()) | \
        frozenset(unpickler._get_user_allowed_globals())


def classify(globals_: Iterable[str], extra_allowed: Iterable[str] = ()
             ) -> tuple[list[str], list[str]]:
    """Split globals into (dangerous, needs-code); allowed ones are dropped. Sorted."""
    allowed = weights_only_allowed() | frozenset(extra_allowed)
    dangerous, code = [], []
    for name in sorted(set(globals_)):
        if is_dangerous(name):
            dangerous.append(name)
        elif name not in allowed and not name.startswith("__torch__."):
            code.append(name)
    return dangerous, code
