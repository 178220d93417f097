"""The security test corpus, generated on the fly (nothing downloaded).

Malicious files are *built*, never loaded: ``__reduce__`` classes make pickle record a
call to a dangerous global at dump time (nothing runs), and hand-written opcode streams
cover what ``__reduce__`` cannot express (getattr chains, memoised STACK_GLOBAL).
"""

from __future__ import annotations

import io
import os
import pickle
import runpy
import struct
import subprocess
import sys
import webbrowser
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PAYLOAD = "echo torchbridge-corpus-would-run-this"


class Reduce:
    """Pickles as ``func(*args)``; pickling only records the call."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def _unicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def getattr_chain_pickle() -> bytes:
    """``getattr(__import__('os'), 'system')(PAYLOAD)`` with GLOBAL opcodes."""
    return (b"\x80\x02" + b"cbuiltins\ngetattr\n" + b"cbuiltins\n__import__\n" + _unicode("os")
            + b"\x85R" + _unicode("system") + b"\x86R" + _unicode(PAYLOAD) + b"\x85R.")


def memoised_stack_global_pickle() -> bytes:
    """The same chain in protocol 4: STACK_GLOBAL whose module name comes from the memo."""
    def short(text: str) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text.encode()
    return (b"\x80\x04" + short("builtins") + b"\x94" + short("getattr") + b"\x94\x93"
            + b"h\x00" + short("__import__") + b"\x94\x93" + short("os") + b"\x85R"
            + short("system") + b"\x86R" + short(PAYLOAD) + b"\x85R.")


def attrgetter_pickle() -> bytes:
    """``operator.attrgetter('system')(__import__('os'))(PAYLOAD)``."""
    return (b"\x80\x02" + b"coperator\nattrgetter\n" + _unicode("system") + b"\x85R"
            + b"cbuiltins\n__import__\n" + _unicode("os") + b"\x85R" + b"\x85R"
            + _unicode(PAYLOAD) + b"\x85R.")


def reduce_payloads() -> dict[str, Any]:
    """name → an object whose pickle calls a dangerous global."""
    return {
        "os_system": Reduce(os.system, PAYLOAD),
        "builtins_eval": Reduce(eval, "__import__('os').system('true')"),
        "builtins_exec": Reduce(exec, "import os; os.system('true')"),
        "subprocess_popen": Reduce(subprocess.Popen, ["echo", "pwned"]),
        "runpy_run_code": Reduce(runpy._run_code, "print(1)", {}),  # type: ignore[attr-defined]
        "webbrowser_open": Reduce(webbrowser.open, "http://127.0.0.1:9/"),
    }


def opcode_payloads() -> dict[str, bytes]:
    return {"getattr_chain": getattr_chain_pickle(),
            "stack_global_memo": memoised_stack_global_pickle(),
            "operator_attrgetter": attrgetter_pickle()}


def _torch_zip_with_pickle(path: Path, data_pkl: bytes) -> None:
    """A torch.save-layout zip whose data.pkl is ``data_pkl`` (stored, like torch does)."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = data_pkl if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info, data)


def write_malicious(root: Path) -> dict[str, Path]:
    """Every malicious file of the corpus under ``root``; name → path."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, payload in reduce_payloads().items():
        raw = root / f"{name}.pkl"
        raw.write_bytes(pickle.dumps(payload, protocol=4))
        files[f"{name}.pkl"] = raw
        checkpoint = root / f"{name}.pt"
        torch.save({"weight": torch.ones(3), "extra": payload}, checkpoint)
        files[f"{name}.pt"] = checkpoint
    for name, data in opcode_payloads().items():
        raw = root / f"{name}.pkl"
        raw.write_bytes(data)
        files[f"{name}.pkl"] = raw
        checkpoint = root / f"{name}.pt"
        _torch_zip_with_pickle(checkpoint, data)
        files[f"{name}.pt"] = checkpoint
    legacy = root / "os_system_legacy.pth"
    torch.save({"w": torch.ones(2), "x": Reduce(os.system, PAYLOAD)}, legacy,
               _use_new_zipfile_serialization=False)
    files[legacy.name] = legacy
    files["nested.zip"] = write_nested_zip(root / "nested.zip")
    return files


def write_nested_zip(path: Path) -> Path:
    """outer.zip → inner.zip → payload.pkl (posix.system)."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("payload.pkl", pickle.dumps(Reduce(os.system, PAYLOAD)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", "model bundle")
        archive.writestr("inner.zip", inner.getvalue())
    return path


class TiedLM(torch.nn.Module):
    """Embedding and output projection share one weight."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(16, 8)
        self.head = torch.nn.Linear(8, 16, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


def example_models() -> dict[str, torch.nn.Module]:
    """The example models (examples/models) plus a tied-weight model."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:  # the repository root, where examples/ lives
        sys.path.insert(0, root)
    from examples.models import EXAMPLES

    models = {name: ex.build() for name, ex in EXAMPLES.items()}
    torch.manual_seed(0)
    models["tied"] = TiedLM().eval()
    return models


def write_benign(root: Path) -> dict[str, Path]:
    """State dicts of every example model (zip and legacy), safetensors files, a tied
    model, an optimizer state and a training checkpoint; name → path."""
    from safetensors.torch import save_model

    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, model in example_models().items():
        files[f"{name}.pt"] = root / f"{name}.pt"
        torch.save(model.state_dict(), files[f"{name}.pt"])
        files[f"{name}.safetensors"] = root / f"{name}.safetensors"
        save_model(model, str(files[f"{name}.safetensors"]))
    model = example_models()["mlp"]
    files["mlp_legacy.pth"] = root / "mlp_legacy.pth"
    torch.save(model.state_dict(), files["mlp_legacy.pth"], _use_new_zipfile_serialization=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 256)).sum().backward()
    optimizer.step()
    files["optimizer.pt"] = root / "optimizer.pt"
    torch.save(optimizer.state_dict(), files["optimizer.pt"])
    files["training.ckpt"] = root / "training.ckpt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
                "config": {"lr": 1e-3, "name": "mlp", "layers": [256, 1024, 10]}},
               files["training.ckpt"])
    return files
