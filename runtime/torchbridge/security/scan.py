"""One entry point for scanning files and directories: :func:`scan_path`.

A file is judged by its content, whatever its name: :mod:`torchbridge.security.archives`
finds every format its bytes open as (pickle, zip, tar, compressed streams, npy,
safetensors; ONNX by suffix) and every pickle global and string inside, within
:class:`ScanLimits`; :func:`torchbridge.security.policy.classify` judges the globals (an
allowlist); secrets come from :mod:`torchbridge.security.secrets`. Only regular files are
opened (a FIFO named ``*.pkl`` would block a reader forever).

Example::

    for v in scan_path("exports/"):
        print(v.path, v.verdict.value, v.reasons)
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from torchbridge.security.archives import (
    PICKLE_SUFFIXES,
    TORCH_SUFFIXES,
    ZIP_SUFFIXES,
    ContentScan,
    scan_content,
)
from torchbridge.security.limits import DEFAULT_LIMITS, ScanLimits
from torchbridge.security.policy import classify
from torchbridge.security.secrets import redact_secrets, scan_onnx, scan_strings
from torchbridge.security.verdict import FileVerdict, SecretFinding, Verdict

MODEL_SUFFIXES = PICKLE_SUFFIXES | TORCH_SUFFIXES | ZIP_SUFFIXES | \
    {".safetensors", ".onnx", ".npy", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".lzma", ".z"}


def _explain(name: str) -> str:
    try:
        from torchbridge.security.policy import explain
    except ImportError:  # an older policy module: the plain wording
        return f"imports dangerous global {name}"
    return explain(name)


def _global_reasons(content: ContentScan, unsafe: list[str], code: list[str]) -> list[str]:
    reasons = []
    for name in unsafe:
        where = ", ".join(content.globals.get(name, [])[:3])
        reasons.append(f"{_explain(name)} ({where})")
    if code:
        shown = ", ".join(code[:8]) + (f" and {len(code) - 8} more" if len(code) > 8 else "")
        reasons.append(f"loading runs code from the file: it rebuilds {shown} "
                       "(torch.load(weights_only=True) refuses these)")
    return reasons


def _verdict(reasons_unsafe: list[str], invalid: list[str], secrets: list[SecretFinding],
             code: list[str]) -> Verdict:
    if reasons_unsafe:
        return Verdict.UNSAFE
    if invalid:
        return Verdict.INVALID
    if secrets:
        return Verdict.SECRETS
    return Verdict.CODE if code else Verdict.SAFE


def _classify(content: ContentScan, allowed: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(unsafe, code) globals. ``__torch__.*`` names are TorchScript's own only inside a
    TorchScript archive; in any other pickle Python would import them from a
    ``__torch__.py`` beside the file, so there they are judged like any global."""
    scripted = {name: locs for name, locs in content.globals.items()
                if locs and all(content.in_torchscript(loc) for loc in locs)}
    plain = [name for name in content.globals if name not in scripted]
    unsafe, code = classify(plain, allowed, torchscript=False)
    more_unsafe, more_code = classify(scripted, allowed, torchscript=True)
    return sorted({*unsafe, *more_unsafe}), sorted({*code, *more_code})


def _judge(path: Path, content: ContentScan, secrets: bool, allowed: Iterable[str]
           ) -> FileVerdict:
    """The verdict on a file whose content parsed as at least one format."""
    unsafe_globals, code = _classify(content, tuple(allowed))
    found = list(dict.fromkeys(scan_strings(content.strings) + content.findings)) \
        if secrets else []
    unsafe = list(content.unsafe) + _global_reasons(content, unsafe_globals, [])
    verdict = _verdict(unsafe, content.invalid, found, code)
    reasons = unsafe + list(content.invalid) + [f.describe() for f in found] + \
        _global_reasons(content, [], code)
    if verdict is Verdict.SAFE:
        reasons.append(_safe_summary(content))
    return FileVerdict(str(path), content.format, verdict, reasons, unsafe_globals, code,
                       found)


def _safe_summary(content: ContentScan) -> str:
    if content.kinds == ["safetensors"] and content.header is not None:
        tensors = len([k for k in content.header if k != "__metadata__"])
        return f"{tensors} tensors; safetensors runs no code"
    if not content.pickles:
        return f"{content.format}: no pickle in {content.members or 1} member(s); nothing runs"
    return (f"{content.pickles} pickle(s) in {content.members or 1} member(s): only "
            "known-safe reconstructors")


def _scan_onnx(path: Path, secrets: bool) -> FileVerdict:
    try:
        import onnx
    except ImportError:
        return FileVerdict(str(path), "onnx", Verdict.INVALID,
                           ["scanning ONNX files needs onnx: "
                            "pip install 'pytest-torchbridge[onnx]'"])
    try:
        found = scan_onnx(path) if secrets else []
        if not secrets:
            onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: a broken file
        return FileVerdict(str(path), "onnx", Verdict.INVALID,
                           [f"{path.name} is not a readable ONNX model: "
                            f"{type(exc).__name__}: {str(exc)[:200]}"])
    reasons = [f.describe() for f in found] or ["ONNX graph: no code, no secrets"]
    return FileVerdict(str(path), "onnx", Verdict.SECRETS if found else Verdict.SAFE,
                       reasons, secrets=found)


def is_onnx_external_data(path: Path) -> bool:
    """``model.onnx.data`` / ``model.onnx_data``, or ``x.data`` beside ``x.onnx``: named
    as tensor bytes that onnxruntime memory-maps. The name decides nothing: the content
    is scanned like any file's, and only bytes that parse as no format are let through
    as raw tensor data."""
    name = path.name.lower()
    return name.endswith((".onnx.data", ".onnx_data")) or \
        (path.suffix.lower() == ".data" and path.with_suffix(".onnx").is_file())


def _unparsed(path: Path, content: ContentScan, secrets: bool) -> FileVerdict:
    """A file whose bytes parse as no pickle / archive / stream / safetensors."""
    suffix = path.suffix.lower()
    if content.invalid:
        fmt = "safetensors" if suffix == ".safetensors" else "unknown"
        return FileVerdict(str(path), fmt, Verdict.INVALID, list(content.invalid))
    if suffix == ".onnx":
        return _scan_onnx(path, secrets)
    if is_onnx_external_data(path):
        return FileVerdict(str(path), "onnx-external-data", Verdict.SAFE,
                           ["raw tensor bytes of an ONNX model; nothing in it parses as "
                            "a pickle or archive"])
    if suffix in MODEL_SUFFIXES:
        return FileVerdict(str(path), "unknown", Verdict.INVALID,
                           [f"{path.name} has a model suffix but parses as no model format "
                            "(corrupt, truncated or mislabelled)"])
    found = list(dict.fromkeys(scan_strings(content.strings))) if secrets else []
    if found:
        return FileVerdict(str(path), "text", Verdict.SECRETS,
                           [f.describe() for f in found], secrets=found)
    return FileVerdict(str(path), "unknown", Verdict.NOT_A_MODEL,
                       [f"not a model format (suffix {suffix or 'none'!r})"])


def _open_regular(path: Path) -> tuple[IO[bytes] | None, int, str]:
    """(handle, size, problem): a regular file opened without blocking, or why not."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | \
        getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return None, 0, f"cannot read {path}: {exc.strerror or exc}"
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else \
            "a directory" if stat.S_ISDIR(info.st_mode) else "a device or socket"
        return None, 0, (f"{path.name} is {kind}, not a regular file: refused unread "
                         "(a loader would block on it or read without end)")
    return os.fdopen(fd, "rb"), info.st_size, ""


def scan_file(path: str | Path, *, limits: ScanLimits = DEFAULT_LIMITS, secrets: bool = True,
              allowed_globals: Iterable[str] = ()) -> FileVerdict:
    """Scan one file by content. Never raises for a hostile or broken file: every
    problem is a verdict with its reasons."""
    path = Path(path)
    start = time.perf_counter()
    handle, size, problem = _open_regular(path)
    if handle is None:
        return FileVerdict(str(path), "unknown", Verdict.INVALID, [problem])
    try:
        with handle:
            content = scan_content(path, limits, secrets=secrets, handle=handle)
    except Exception as exc:  # a scanner defect must not end a folder scan: refuse the file
        return FileVerdict(str(path), "unknown", Verdict.INVALID,
                           [f"{path.name}: could not be scanned ({type(exc).__name__}: "
                            f"{str(exc)[:200]}); not trusted"], size=size)
    if content.kinds:
        verdict = _judge(path, content, secrets, tuple(allowed_globals))
    else:
        verdict = _unparsed(path, content, secrets)
    verdict.reasons = [redact_secrets(r) for r in verdict.reasons]
    verdict.size = size
    verdict.duration_s = time.perf_counter() - start
    return verdict


def iter_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, and files under directories named, in a stable order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                files.extend(Path(root) / n for n in sorted(names))
        else:
            files.append(path)
    return files


def scan_path(path: str | Path, *, limits: ScanLimits = DEFAULT_LIMITS, secrets: bool = True,
              allowed_globals: Iterable[str] = ()) -> list[FileVerdict]:
    """Verdicts for a file, or for every file under a directory (missing path: one
    ``invalid`` verdict that says so). A bad file never stops the walk."""
    path = Path(path)
    if not path.exists():
        return [FileVerdict(str(path), "unknown", Verdict.INVALID, [f"{path}: no such file"])]
    allowed = tuple(allowed_globals)
    return [scan_file(f, limits=limits, secrets=secrets, allowed_globals=allowed)
            for f in iter_files([path])]
