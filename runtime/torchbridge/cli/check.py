"""``tb-check [FILE] [pytest options...]``: run a checklist file with pytest underneath.

FILE defaults to ``torchbridge.toml`` in the current folder, then to ``pyproject.toml``
when it has a ``[tool.torchbridge]`` table. Every other argument goes to pytest
unchanged, so the options and reports are pytest's and the plugin's
(``--tb-hardware``, ``--junitxml``, ``--tb-json``, ``--tb-html``, ``-n``, ...).
pytest runs in a child process: the runtime never imports pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from torchbridge.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from torchbridge.errors import ConfigError

USAGE = """usage: tb-check [FILE] [--allow-global MODULE.NAME ...] [pytest options...]

Run the checks a checklist file declares (torchbridge.toml, or [tool.torchbridge] in
pyproject.toml) as pytest items; every option after FILE is passed to pytest, except
--allow-global (repeatable): a pickle global to trust when loading the model's files,
added to [model] allow_globals.
Exit status: 0 all checks passed, 1 a check failed, 2 usage or collection error."""

# pytest's exit codes: 0 ok, 1 tests failed, 2 interrupted, 3 internal, 4 usage, 5 none
_EXIT = {0: EXIT_OK, 1: EXIT_FAILED}


def find_checklist(folder: Path) -> Path | None:
    """The checklist file tb-check runs when none is named."""
    from torchbridge.checklist import has_section

    candidate = folder / "torchbridge.toml"
    if candidate.is_file():
        return candidate
    pyproject = folder / "pyproject.toml"
    return pyproject if pyproject.is_file() and has_section(pyproject) else None


def pytest_command(file: Path, options: Sequence[str]) -> list[str]:
    """The pytest command line that runs ``file``'s checks with ``options``."""
    extra = ["--tb-checklist-pyproject"] if file.name == "pyproject.toml" else []
    return [sys.executable, "-m", "pytest", str(file), *extra, *options]


def split_allow_globals(options: Sequence[str]) -> tuple[list[str], list[str]]:
    """(``--allow-global`` names, the other options) from tb-check's arguments.
    Raises :class:`ConfigError` for ``--allow-global`` without a name."""
    names: list[str] = []
    rest: list[str] = []
    items = list(options)
    while items:
        item = items.pop(0)
        if item == "--allow-global":
            if not items or items[0].startswith("-"):
                raise ConfigError("--allow-global needs a MODULE.NAME")
            names.append(items.pop(0))
        elif item.startswith("--allow-global="):
            names.append(item.split("=", 1)[1])
        else:
            rest.append(item)
    return names, rest


def check(file: Path | None = None, options: Sequence[str] = ()) -> int:
    """Run a checklist; returns tb's exit status (0 pass, 1 a check failed, 2 usage)."""
    from torchbridge.checklist import load_checklist
    from torchbridge.checklist.loader import ALLOW_GLOBALS_ENV

    target = file or find_checklist(Path.cwd())
    if target is None:
        print("tb-check: no torchbridge.toml here and no [tool.torchbridge] in pyproject.toml;"
              " name the checklist file: tb-check path/to/torchbridge.toml", file=sys.stderr)
        return EXIT_USAGE
    load_checklist(target)  # a bad file is a usage error with its line, before pytest starts
    names, options = split_allow_globals(options)
    env = dict(os.environ)
    if names:
        env[ALLOW_GLOBALS_ENV] = ",".join(names)
    completed = subprocess.run(pytest_command(target, options), check=False, env=env)
    return _EXIT.get(completed.returncode, EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return EXIT_OK
    file = Path(args.pop(0)) if args and not args[0].startswith("-") else None
    if file is not None and not file.is_file():
        print(f"tb-check: {file}: no such file", file=sys.stderr)
        return EXIT_USAGE
    return check(file, args)
