"""Loading a model for the command line: one function every ``--model`` option goes through.

A model is given as

* a ``torch.export`` archive (``.pt2``),
* a TorchScript archive (recognised by its contents, whatever its suffix),
* an ONNX file (an onnxruntime-backed callable, for commands that can work on one),
* ``package.module:factory`` or ``path/to/file.py:factory``, with optional weights from a
  safetensors file or a ``.pt``/``.pth`` state dict (read with ``weights_only=True``).

A pickled whole-module checkpoint (``torch.save(model)``) runs code when loaded, so it
is refused unless the caller passes ``allow_pickle=True``. Whatever goes wrong raises
:class:`~torchbridge.errors.ModelLoadError` with what to change; no substitute model is
ever returned.

Example::

    loaded = load_model("mypkg.models:build_classifier", "clf.safetensors")
    logits = loaded.model(torch.randn(8, 128))
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from torchbridge.errors import ModelLoadError
from torchbridge.inputs import SIGNATURE_FILE, inputs_from_signature

log = logging.getLogger(__name__)

SourceKind = Literal["pt2", "torchscript", "onnx", "factory", "pickle"]

_ONNX_HINT = "pip install 'pytest-torchbridge[onnx]'"


@dataclass
class LoadedModel:
    """A loaded model and where it came from.

    ``model`` is callable like the original (an ``nn.Module``, a TorchScript module, or
    an :class:`OnnxModel`); ``example_inputs`` are the inputs stored with the archive
    (``.pt2`` keeps them) or ``None``; ``sha256`` maps each file read (model archive,
    weights, ONNX external data) to its hex digest, for provenance in reports.
    """

    model: Any
    example_inputs: Any
    source: SourceKind
    path: str
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def is_torch(self) -> bool:
        """Whether ``model`` is a PyTorch module (anything but an ONNX session)."""
        return isinstance(self.model, torch.nn.Module | torch.jit.ScriptModule)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 digest of a file, read in chunks so large checkpoints stay cheap."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- detection


def _zip_names(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def detect_kind(path: Path) -> str:
    """What a model file holds: ``pt2``, ``torchscript``, ``onnx``, ``safetensors``,
    ``torch-save`` (a ``torch.save`` pickle, zip or legacy) or ``unknown``.

    Archives are recognised by their contents, not their suffix: a ``.pt`` file can be a
    TorchScript archive, a state dict or a whole pickled module.
    """
    names = _zip_names(path)
    if names:
        tails = {name.split("/", 1)[1] if "/" in name else name for name in names}
        if "archive_format" in tails or "models/model.json" in tails:
            return "pt2"
        if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
            return "torchscript"
        if "data.pkl" in tails:
            return "torch-save"
        return "unknown"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".safetensors":
        return "safetensors"
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head[:1] == b"\x80":  # pickle protocol marker: legacy (non-zip) torch.save
        return "torch-save"
    return "unknown"


# --------------------------------------------------------------------------- checkpoints


def _load_checkpoint(path: str | Path, *, weights_only: bool = True,
                     allowed_globals: Sequence[str] = ()) -> Any:
    """The single place this module calls ``torch.load``.

    Security scanning hooks in here (before the load), so every checkpoint the CLI
    reads passes through one gate. ``weights_only=False`` is only reached after the
    caller explicitly allowed pickles, and even then rebuilds only trusted classes.
    """
    from torchbridge.security.safe_load import load_checkpoint

    return load_checkpoint(path, map_location="cpu", allow_code=not weights_only,
                           allowed_globals=allowed_globals)


def _refuse_pickle(path: Path, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"{path} is a pickled whole-module checkpoint ({reason}). Loading it runs arbitrary "
        "code from the file. Prefer a safe format: export it with torch.export (.pt2), "
        "TorchScript, or pass --model package.module:factory --weights weights.safetensors. "
        "If you trust the file, pass --allow-pickle (allow_pickle=True).")


def _load_torch_save(path: Path, allow_pickle: bool,
                     allowed: Sequence[str] = ()) -> tuple[Any, SourceKind]:
    from torchbridge.security.safe_load import UnsafeModelError

    try:
        obj = _load_checkpoint(path, weights_only=True, allowed_globals=allowed)
    except UnsafeModelError as exc:
        return _load_pickled_module(path, exc, allow_pickle, allowed)
    except ModelLoadError:  # safe, but beyond what torch's weights_only unpickler rebuilds
        if not allow_pickle:
            raise
        obj = _load_checkpoint(path, weights_only=False, allowed_globals=allowed)
    if isinstance(obj, torch.nn.Module):  # only reachable with custom safe globals
        return obj, "pickle"
    raise ModelLoadError(
        f"{path} holds a {_describe(obj)}, not a model. A state dict needs its architecture: "
        "pass --model package.module:factory --weights " + path.name)


def _load_pickled_module(path: Path, exc: Any, allow_pickle: bool,
                         allowed: Sequence[str]) -> tuple[Any, SourceKind]:
    """A whole pickled module (verdict ``code``), rebuilt only with ``allow_pickle``.
    Raises :class:`ModelLoadError` for any other refusal, and without ``allow_pickle``."""
    if exc.verdict.verdict.value != "code":
        raise ModelLoadError(str(exc)) from None
    if not allow_pickle:
        raise _refuse_pickle(path, _unsafe_globals(exc.verdict.code_globals)) from None
    log.warning("loading %s with a full unpickle: this runs code from the file (the "
                "constructors of %s), as --allow-pickle asked", path,
                ", ".join(exc.verdict.code_globals))
    obj = _load_checkpoint(path, weights_only=False, allowed_globals=allowed)
    if not isinstance(obj, torch.nn.Module):
        raise ModelLoadError(f"{path} unpickled to a {type(obj).__name__}, not an "
                             "nn.Module") from None
    return obj, "pickle"


def _unsafe_globals(names: Sequence[str]) -> str:
    """Name the classes the pickle would rebuild: the reason it is refused."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"it imports {shown}"


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        return f"state dict ({len(obj)} entries)" if obj else "empty mapping"
    return type(obj).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _flat(exc: BaseException, limit: int = 600) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text[:limit] + (" ..." if len(text) > limit else "")


# --------------------------------------------------------------------------- formats


def _load_pt2(path: Path, device: str, allowed: Sequence[str] = ()) -> LoadedModel:
    from torchbridge.security.safe_load import load_pt2

    program = load_pt2(path, allowed_globals=allowed)
    module = program.module()
    module.to(device)
    example = program.example_inputs
    args = None
    if example is not None:
        pos, kw = example
        args = dict(kw) if kw and not pos else tuple(pos)
    return LoadedModel(module, args, "pt2", str(path), {path.name: sha256_file(path)})


def _load_torchscript(path: Path, device: str) -> LoadedModel:
    from torchbridge.security.safe_load import UnsafeModelError, load_torchscript

    try:
        module = load_torchscript(path, map_location=device)
    except UnsafeModelError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load TorchScript archive {path}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None
    module.eval()
    signature = _member(path, f"extra/{SIGNATURE_FILE}")
    example = inputs_from_signature(signature, module, device) if signature else None
    return LoadedModel(module, example, "torchscript", str(path),
                       {path.name: sha256_file(path)})


def _member(path: Path, tail: str) -> str | None:
    """The text of the archive member ``<archive>/<tail>``, or ``None`` without one."""
    with zipfile.ZipFile(path) as archive:
        name = next((n for n in archive.namelist() if n.split("/", 1)[-1] == tail), None)
        return archive.read(name).decode() if name else None


class OnnxModel:
    """An ONNX file behind an onnxruntime session, callable like a PyTorch model.

    Tensors go in (positionally in ``input_names`` order, or by keyword), tensors come
    out: one tensor for a single output, else a tuple. Outputs are on the CPU.
    """

    def __init__(self, path: str | Path, device: str = "cpu", *,
                 threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError(f"loading ONNX models needs onnxruntime: {_ONNX_HINT}") \
                from None
        self.path = Path(path)
        self.providers = onnx_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3  # keep onnxruntime's info/warnings off the CLI output
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=self.providers)
        except Exception as exc:
            raise ModelLoadError(f"cannot load ONNX model {path}: {type(exc).__name__}: "
                                 f"{_first_line(exc)}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def active_providers(self) -> list[str]:
        """The providers the session actually uses (CUDA may be asked for and missing)."""
        return list(self.session.get_providers())

    def _feeds(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.input_names):
            raise TypeError(f"ONNX model takes {len(self.input_names)} input(s) "
                            f"({', '.join(self.input_names)}), got {len(args)}")
        feeds = dict(zip(self.input_names, args, strict=False))
        unknown = sorted(set(kwargs) - set(self.input_names))
        if unknown:
            raise TypeError(f"unknown ONNX input(s) {unknown}; inputs: {self.input_names}")
        feeds.update(kwargs)
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise TypeError(f"missing ONNX input(s) {missing}")
        return {name: _to_numpy(value) for name, value in feeds.items()}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        outputs = self.session.run(None, self._feeds(args, kwargs))
        tensors = tuple(torch.from_numpy(out) for out in outputs)
        return tensors[0] if len(tensors) == 1 else tensors

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, inputs={self.input_names}, " \
               f"providers={self.providers})"


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous().numpy()
    return value


def onnx_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for a run on ``device``: CUDA first when asked and present."""
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _load_onnx(path: Path, device: str) -> LoadedModel:
    files = {path.name: sha256_file(path)}
    try:
        import onnx
    except ImportError:
        raise ModelLoadError(f"loading ONNX models needs onnx: {_ONNX_HINT}") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a readable ONNX model (corrupt or truncated?): "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None
    for location in external_locations(proto):
        data = path.parent / location
        if not data.is_file():
            raise ModelLoadError(f"{path} keeps weights in {location}, which is missing; "
                                 "copy it next to the .onnx file")
        files[location] = sha256_file(data)
    return LoadedModel(OnnxModel(path, device), None, "onnx", str(path), files)


def external_locations(proto: Any) -> list[str]:
    locations: set[str] = set()
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                locations.add(entry.value)
    return sorted(locations)


# --------------------------------------------------------------------------- factories


def _import_factory(spec: str) -> Callable[..., Any]:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelLoadError(f"--model {spec!r}: expected a file path or "
                             "package.module:factory")
    if target.endswith(".py") or "/" in target:
        file = Path(target)
        if not file.is_file():
            raise ModelLoadError(f"--model {spec!r}: no such file {file}")
        # A name of its own: registered under its stem, ``models.py`` would shadow (or be
        # shadowed by) every other module called ``models`` for the rest of the process.
        name = f"_tb_model_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, file)
        if module_spec is None or module_spec.loader is None:
            raise ModelLoadError(f"--model {spec!r}: cannot import {file}")
        module = importlib.util.module_from_spec(module_spec)
        # dataclasses and pickling look the module up while it executes
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise ModelLoadError(f"--model {spec!r}: importing {file} failed: "
                                 f"{type(exc).__name__}: {_first_line(exc)}") from None
    else:
        # Like uvicorn and gunicorn: a module path resolves from the working directory.
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelLoadError(f"--model {spec!r}: cannot import {target!r} ({exc}); is "
                                 "the package installed or on PYTHONPATH?") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        public = sorted(n for n in vars(module) if callable(getattr(module, n))
                        and not n.startswith("_"))[:12]
        raise ModelLoadError(f"--model {spec!r}: {target} has no callable {attr!r}; "
                             f"callables there: {', '.join(public) or 'none'}")
    return factory


def _load_weights_checkpoint(weights: Path, allow_pickle: bool,
                             allowed: Sequence[str]) -> Any:
    """A ``torch.save`` weights file, scanned; a refusal says what the file holds and
    which option lets it in."""
    from torchbridge.security.policy import UNRESOLVED, denylisted_path, describe_globals
    from torchbridge.security.safe_load import UnsafeModelError

    try:
        return _load_checkpoint(weights, weights_only=not allow_pickle,
                                allowed_globals=allowed)
    except UnsafeModelError as exc:
        names = exc.globals
        if not names or exc.verdict.verdict.value not in ("code", "unsafe") or \
                any(denylisted_path(n) or n == UNRESOLVED for n in names):
            raise ModelLoadError(f"--weights {weights}: {exc}") from None
        flags = " ".join(f"--allow-global {n}" for n in names[:4])
        rebuild = " (or --allow-pickle to rebuild the classes)" \
            if exc.verdict.verdict.value == "code" else ""
        raise ModelLoadError(
            f"--weights {weights} is not a plain state dict: besides tensors it holds "
            f"{describe_globals(names)}. If you trust them, pass {flags}{rebuild}; "
            "better, save model.state_dict() as safetensors") from None
    except ModelLoadError as exc:
        raise ModelLoadError(f"--weights {weights}: {exc}") from None


def _load_weights(model: torch.nn.Module, weights: Path, allow_pickle: bool = False,
                  allowed: Sequence[str] = ()) -> dict[str, str]:
    if not weights.is_file():
        raise ModelLoadError(f"--weights {weights}: no such file")
    kind = detect_kind(weights)
    if kind == "safetensors":
        from safetensors.torch import load_model as load_safetensors

        _check_safetensors(weights)
        try:
            load_safetensors(model, str(weights), strict=True)
        except Exception as exc:
            raise ModelLoadError(f"--weights {weights} do not fit the model "
                                 f"{type(model).__name__}: {_flat(exc)}") from None
    elif kind == "torch-save":
        state = _load_weights_checkpoint(weights, allow_pickle, allowed)
        if not isinstance(state, Mapping):
            raise ModelLoadError(f"--weights {weights} holds a {_describe(state)}, "
                                 "not a state dict")
        try:
            model.load_state_dict(state, strict=True)
        except Exception as exc:
            raise ModelLoadError(f"--weights {weights} do not fit the model "
                                 f"{type(model).__name__}: {_flat(exc)}") from None
    else:
        raise ModelLoadError(f"--weights {weights}: expected a .safetensors file or a "
                             f".pt/.pth state dict, found {kind}")
    return {weights.name: sha256_file(weights)}


def _check_safetensors(path: Path) -> None:
    """Open the header (and the data size it declares) before loading into a model, so a
    truncated or corrupt file is reported as such and not as a key mismatch."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as exc:
        raise ModelLoadError(f"--weights {path} is not a valid safetensors file (truncated or "
                             f"corrupt?): {_flat(exc)}") from None


def _load_factory(spec: str, weights: str | None, device: str, allow_pickle: bool = False,
                  allowed: Sequence[str] = ()) -> LoadedModel:
    factory = _import_factory(spec)
    try:
        model = factory()
    except Exception as exc:
        raise ModelLoadError(f"--model {spec!r}: calling the factory failed: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"--model {spec!r}: the factory returned a "
                             f"{type(model).__name__}, expected a torch.nn.Module")
    files = _load_weights(model, Path(weights), allow_pickle, allowed) if weights else {}
    model.to(device).eval()
    return LoadedModel(model, None, "factory", spec, files)


# --------------------------------------------------------------------------- entry point


def load_model(spec: str, weights: str | None = None, *, allow_pickle: bool = False,
               device: str = "cpu", allowed_globals: Sequence[str] = ()) -> LoadedModel:
    """Load the model named by ``spec`` (see the module docstring) onto ``device``.

    Every file is scanned first and judged by the allowlist
    (:mod:`torchbridge.security.policy`); ``allowed_globals`` (``module.Name`` or
    ``module.*``) extends it for this load; ``allow_pickle`` lets trusted classes be
    rebuilt (never a call the scanner does not know to be safe).

    Raises :class:`ModelLoadError` for a missing file, an unreadable, corrupt or unsafe
    file, weights that do not fit, and a pickled whole module when ``allow_pickle`` is
    false.
    """
    allowed = tuple(allowed_globals)
    path = Path(spec)
    if path.is_file():
        if weights:
            raise ModelLoadError(f"--weights applies to --model package.module:factory only; "
                                 f"{spec} already holds its weights")
        return _load_file(path, allow_pickle, device, allowed)
    if ":" in spec and not path.exists():
        return _load_factory(spec, weights, device, allow_pickle, allowed)
    if path.is_dir():
        raise ModelLoadError(f"--model {spec}: is a directory; give a model file or "
                             "package.module:factory")
    raise ModelLoadError(f"--model {spec}: no such file. Give a .pt2, TorchScript or ONNX "
                         "file, or package.module:factory")


def _load_file(path: Path, allow_pickle: bool, device: str,
               allowed: Sequence[str] = ()) -> LoadedModel:
    kind = detect_kind(path)
    if kind == "pt2":
        return _load_pt2(path, device, allowed)
    if kind == "torchscript":
        return _load_torchscript(path, device)
    if kind == "onnx":
        return _load_onnx(path, device)
    if kind == "torch-save":
        model, source = _load_torch_save(path, allow_pickle, allowed)
        model.to(device).eval()
        return LoadedModel(model, None, source, str(path), {path.name: sha256_file(path)})
    if kind == "safetensors":
        raise ModelLoadError(f"{path} holds weights only; pass the architecture with "
                             f"--model package.module:factory --weights {path.name}")
    raise ModelLoadError(f"{path}: not a recognised model file (expected a torch.export .pt2, "
                         "a TorchScript archive, an ONNX file or a torch.save checkpoint); "
                         "it may be corrupt or truncated")
