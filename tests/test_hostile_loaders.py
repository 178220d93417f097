"""No product loader executes a hostile file (issue 12): every case of the corpus goes
through every loader — ``torchbridge.loading``, ``safe_load``, tb-profile, tb-serve's
model loading, tb-export ``--weights`` and the ``@tb.security`` audit — with and without
``--allow-pickle``; afterwards no payload's marker file may exist.

The loaders may refuse (they should, for malicious files) or load (benign files); any
exception is fine, a marker is not. Runs in a temp dir (a ``hubconf.py`` or module
shipped beside a model must not be importable from the tests' own folder).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hostile import Case, all_cases, pickles

from torchbridge.security import safe_load

Loader = Callable[[Path, bool, Path], object]


def _factory(root: Path) -> str:
    """A ``file.py:build`` model spec whose architecture fits nothing in particular."""
    file = root / "tb_hostile_factory.py"
    file.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    return f"{file}:build"


def _pickle_flag(allow: bool) -> list[str]:
    return ["--allow-pickle"] if allow else []


def _load_model(path: Path, allow: bool, root: Path) -> object:
    from torchbridge.loading import load_model

    return load_model(str(path), allow_pickle=allow)


def _load_weights(path: Path, allow: bool, root: Path) -> object:
    from torchbridge.loading import load_model

    return load_model(_factory(root), str(path), allow_pickle=allow)


def _safe_load(path: Path, allow: bool, root: Path) -> object:
    with contextlib.suppress(Exception):
        safe_load.load_checkpoint(path, allow_code=allow)
    with contextlib.suppress(Exception):
        safe_load.load_state_dict(path)
    with contextlib.suppress(Exception):
        safe_load.load_pt2(path)
    return safe_load.load_torchscript(path)


def _tb_profile(path: Path, allow: bool, root: Path) -> object:
    from torchbridge.cli.profile import main

    return main(["--model", str(path), "--input-shape", "1,4", "--steps", "1",
                 *_pickle_flag(allow)])


def _tb_serve(path: Path, allow: bool, root: Path) -> object:
    from torchbridge.serving import ServerConfig
    from torchbridge.serving.loader import build_app

    return build_app(str(path), None, ServerConfig(warmup=False), input_shapes=[(1, 4)],
                     allow_pickle=allow)


def _tb_export_weights(path: Path, allow: bool, root: Path) -> object:
    from torchbridge.cli.export import main

    return main(["--model", _factory(root), "--weights", str(path), "--input-shape", "1,4",
                 "--format", "safetensors", "--no-validate", "--output-dir",
                 str(root / "out"), "--json", *_pickle_flag(allow)])


def _audit(path: Path, allow: bool, root: Path) -> object:
    from torchbridge.security.audit import audit

    return audit(torch.nn.Linear(4, 2), [path.name], base_dir=path.parent, roundtrip=False)


LOADERS: dict[str, Loader] = {
    "load_model": _load_model, "load_model --weights": _load_weights,
    "safe_load": _safe_load, "tb-profile": _tb_profile, "tb-serve": _tb_serve,
    "tb-export --weights": _tb_export_weights, "@tb.security audit": _audit,
}


def _run_all(case: Case, root: Path) -> list[str]:
    """Build ``case`` and run every loader on it twice; the loaders after which its
    marker existed."""
    marker = root / "MARKER"
    path = case.build(root, marker)
    ran = []
    for name, loader in LOADERS.items():
        for allow in (False, True):
            with contextlib.suppress(BaseException), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loader(path, allow, root)
            if marker.exists():
                ran.append(f"{name}{' --allow-pickle' if allow else ''}")
                marker.unlink()
    return ran


def _cases() -> list[Case]:
    try:
        return all_cases()
    except ImportError:  # the container kinds (hostile/formats.py) are not written yet
        return list(pickles.CASES)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c.name)
def test_no_loader_runs_the_payload(case: Case, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    logging.disable(logging.CRITICAL)
    try:
        ran = _run_all(case, tmp_path)
    finally:
        logging.disable(logging.NOTSET)
    assert not ran, f"{case.name}: the payload ran under {ran}"
    assert not (Path(os.getcwd()) / "MARKER").exists()
