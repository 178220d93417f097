"""The security audit behind ``@tb.security``: safe loading and scanning of artifacts,
no secrets (in artifacts and in the live model), checksums, and a safetensors
round-trip of the model's state dict.

Example::

    report = audit(model, ["model.safetensors", "model.onnx"], checksum="model.sha256",
                   base_dir="exports")
    assert report.ok, report.problems
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchbridge.security.checksum import ChecksumError, verify_checksums
from torchbridge.security.safe_load import (
    UnsafeModelError,
    load_checkpoint,
    load_pt2,
    load_safetensors,
    load_torchscript,
)
from torchbridge.security.safetensors_header import read_header
from torchbridge.security.scan import scan_file
from torchbridge.security.secrets import scan_model
from torchbridge.security.verdict import FileVerdict, SecretFinding


@dataclass
class AuditReport:
    """Everything the audit found; ``problems`` empty means it passed."""

    problems: list[str] = field(default_factory=list)
    verdicts: list[FileVerdict] = field(default_factory=list)
    model_secrets: list[SecretFinding] = field(default_factory=list)
    checksums: dict[str, str] = field(default_factory=dict)
    roundtrip_tensors: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def open_safely(path: Path, verdict: FileVerdict, allowed_globals: Sequence[Any] = ()) -> str:
    """Open an artifact the safe way for its format; a short description of what it holds.

    Raises :class:`~torchbridge.errors.ModelLoadError` or
    :class:`~torchbridge.security.safe_load.UnsafeModelError` (or the format's own error)
    when it cannot be opened safely. ``.pt2`` and TorchScript archives go through the
    loaders that scan every member torch would unpickle first; nothing here calls
    ``torch.export.load`` or ``torch.jit.load`` directly.
    """
    if verdict.format == "safetensors":
        return f"{len(load_safetensors(path))} tensors"
    if verdict.format in ("torch-zip", "torch-legacy", "pickle"):
        obj = load_checkpoint(path, allowed_globals=allowed_globals)
        return f"{type(obj).__name__} with weights_only=True"
    if verdict.format == "onnx":
        import onnx

        onnx.checker.check_model(str(path))
        return "ONNX model passes onnx.checker"
    if verdict.format == "pt2":
        program = load_pt2(path, allowed_globals=allowed_globals)
        return f"ExportedProgram with {len(program.state_dict)} weights"
    if verdict.format == "torchscript":
        load_torchscript(path)
        return "TorchScript archive"
    return f"{verdict.format}: scanned only"


def _audit_artifact(path: Path, name: str, report: AuditReport, secrets: bool,
                    allowed_globals: Sequence[Any]) -> None:
    if not path.is_file():
        report.problems.append(f"artifact {name} not found (looked at {path})")
        return
    names = [g if isinstance(g, str) else f"{g.__module__}.{g.__qualname__}"
             for g in allowed_globals]
    verdict = scan_file(path, secrets=secrets, allowed_globals=names)
    report.verdicts.append(verdict)
    if verdict.failed(strict=True) and not verdict.secrets:
        report.problems.append(f"{name}: {verdict.verdict.value}: "
                               + "; ".join(verdict.reasons[:4]))
        return
    if verdict.secrets:
        report.problems.append(f"{name}: {len(verdict.secrets)} secret(s): "
                               + "; ".join(s.describe() for s in verdict.secrets[:5]))
    try:
        report.notes.append(f"{name}: {open_safely(path, verdict, allowed_globals)}")
    except UnsafeModelError as exc:
        report.problems.append(f"{name}: {exc}")
    except Exception as exc:  # a corrupt artifact fails the audit; it must not crash it
        report.problems.append(f"{name}: cannot be opened safely: {type(exc).__name__}: "
                               f"{str(exc)[:300]}")


def _audit_checksum(checksum: Path, artifacts: Iterable[Path], report: AuditReport) -> None:
    try:
        results = verify_checksums(checksum)
    except ChecksumError as exc:
        report.problems.append(str(exc))
        return
    report.checksums = {r.path or f"line {r.line}": r.status for r in results}
    report.problems += [f"checksum {checksum.name}: {r.describe()}" for r in results
                        if not r.ok]
    listed = {(checksum.parent / r.path).resolve() for r in results if r.path}
    for artifact in artifacts:
        if artifact.is_file() and artifact.resolve() not in listed:
            report.problems.append(f"{artifact.name} is not listed in {checksum.name}; "
                                   f"regenerate it (tb-checksum create ... -o {checksum.name})")


def safetensors_roundtrip(model: Any, fresh: Any) -> int:
    """Save ``model`` with safetensors (shared weights handled), load it into ``fresh``
    and return how many tensors came back bit-identical; raises AssertionError naming the
    first tensor that did not."""
    import torch
    from safetensors.torch import load_model, save_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roundtrip.safetensors"
        save_model(model, str(path))
        read_header(path)
        missing, unexpected = load_model(fresh, str(path), strict=True)
    if missing or unexpected:
        raise AssertionError(f"state dict keys differ after reload: missing {missing}, "
                             f"unexpected {unexpected}")
    before, after = model.state_dict(), fresh.state_dict()
    for key, tensor in before.items():
        other = after[key]
        if tensor.dtype != other.dtype or not torch.equal(tensor.cpu(), other.cpu()):
            raise AssertionError(f"tensor {key!r} differs after the safetensors round-trip")
    return len(before)


def audit(model: Any, artifacts: Sequence[str | Path] = (), *, checksum: str | Path | None = None,
          base_dir: str | Path = ".", secrets: bool = True, roundtrip: bool = True,
          fresh_model: Any = None, allowed_globals: Sequence[Any] = ()) -> AuditReport:
    """Audit ``model`` and its artifacts (paths relative to ``base_dir``).

    ``fresh_model`` receives the round-trip weights (a deep copy of ``model`` if absent).
    """
    import copy

    import torch

    base = Path(base_dir)
    report = AuditReport()
    paths = [base / a for a in artifacts]
    for name, path in zip(artifacts, paths, strict=True):
        _audit_artifact(path, str(name), report, secrets, allowed_globals)
    if secrets:
        report.model_secrets = scan_model(model)
        report.problems += [f"model: {s.describe()}" for s in report.model_secrets[:10]]
    if checksum is not None:
        _audit_checksum(base / checksum, paths, report)
    if roundtrip and isinstance(model, torch.nn.Module):
        target = fresh_model if fresh_model is not None else copy.deepcopy(model)
        try:
            report.roundtrip_tensors = safetensors_roundtrip(model, target)
        except Exception as exc:  # the round-trip failing is the finding
            report.problems.append(f"safetensors round-trip: {type(exc).__name__}: "
                                   f"{str(exc)[:400]}")
    elif roundtrip:
        report.notes.append(f"round-trip skipped: {type(model).__name__} is not an nn.Module")
    return report
