"""The TorchScript source of an archive (``code/**/*.py``) is compiled and run by
``torch.jit.load``: a class's ``__setstate__`` runs while loading, ``forward`` on every
call. TorchScript cannot import Python, but some of its operators reach the file system
or the network: ``torch.save(x, path)`` writes any file, ``torch.from_file(path,
shared=True)`` creates or truncates one, ``rpc_async``/``remote`` and the ``c10d`` /
``symm_mem`` collectives talk to other processes.

So the source's identifiers are checked against those operators: the ones torch
registers with a file-name argument (read from torch's operator schemas when torch is
importable) and a fixed list. A scripted model never needs them to compute outputs.

Example::

    problems = code_problems({"m/code/__torch__.py": source_text})
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

#: Operators (by name) and operator namespaces with effects outside the model.
_IO_OPS = frozenset({"save", "from_file", "rpc_async", "rpc_sync", "remote",
                     "load_library", "_load_for_mobile", "_save_for_mobile",
                     "_save_parameters", "_load_parameters", "_save_jit_module",
                     "_load_jit_module"})
_IO_NAMESPACES = frozenset({"c10d", "_c10d_functional", "_c10d_functional_autograd",
                            "symm_mem", "_dtensor", "_test", "debugprims",
                            "debug_mode_ops", "dist_c10d"})
_FILE_ARGS = frozenset({"filename", "file_name", "path", "file", "f", "url", "host"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: A triple-quoted string, a one-line string (escapes kept), or an identifier.
_TOKEN = re.compile(r"""("{3}|'{3})(.*?)\1|(["'])((?:\\.|(?!\3)[^\\\n])*)\3|([A-Za-z_]\w*)""",
                    re.S)


@functools.lru_cache(maxsize=1)
def io_operators() -> frozenset[str]:
    """Names TorchScript code must not call: :data:`_IO_OPS`, the namespaces of
    :data:`_IO_NAMESPACES`, and every registered operator taking a file name or path."""
    names = set(_IO_OPS) | _IO_NAMESPACES
    try:
        import torch
    except ImportError:  # scanning without torch: the fixed list only
        return frozenset(names)
    for schema in torch._C._jit_get_all_schemas():
        if any(arg.name in _FILE_ARGS and str(arg.type).startswith("str")
               for arg in schema.arguments):
            names.add(schema.name.split("::", 1)[1])
    return frozenset(names)


def source_members(names: list[str]) -> list[str]:
    """The members of a TorchScript archive that hold its source (``code/**/*.py``)."""
    # torch finds members case-insensitively: CODE/__TORCH__.PY is read as code too.
    return [n for n in names if "/code/" in f"/{n.lower()}" and n.lower().endswith(".py")]


def _names(text: str) -> set[str]:
    """Identifiers of ``text`` and string constants that are one identifier
    (``getattr(x, "save")``); words inside longer strings are not names. One regex pass
    (``tokenize`` reads 2 MB/s): a quote it cannot pair is skipped and what follows
    counts as code, so a quoting trick can only add names, never hide them."""
    names: set[str] = set()
    for match in _TOKEN.finditer(text):
        triple, single, word = match.group(2), match.group(4), match.group(5)
        if word is not None:
            names.add(word)
        elif _IDENTIFIER.fullmatch(triple if triple is not None else single):
            names.add(triple if triple is not None else single)
    return names


def code_problems(sources: Mapping[str, str]) -> list[str]:
    """Why the TorchScript ``sources`` (member name → text) would act outside the model
    when loaded or run: one reason per member (empty: none found)."""
    banned = io_operators()
    problems = []
    for name, text in sources.items():
        found = _names(text) & banned
        if found:
            problems.append(f"{name}: TorchScript code calls {', '.join(sorted(found))} "
                            "(file or network access when torch.jit.load runs it)")
    return problems
