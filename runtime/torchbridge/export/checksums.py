"""``sha256sum``-compatible checksum files next to exported artifacts.

``model.onnx.sha256`` holds one ``<hex>  <name>`` line per file of the artifact (the ONNX
file and its external-data file, when there is one), with names relative to the folder,
so ``cd exports && sha256sum -c model.onnx.sha256`` verifies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torchbridge.loading import sha256_file


def write_checksum(artifact: Path, files: Sequence[Path]) -> Path:
    """Write ``<artifact>.sha256`` covering ``files``; returns its path."""
    target = artifact.with_name(artifact.name + ".sha256")
    lines = []
    for file in files:
        name = file.relative_to(artifact.parent) if file.is_relative_to(artifact.parent) \
            else file
        lines.append(f"{sha256_file(file)}  {name}\n")
    target.write_text("".join(lines), encoding="utf-8")
    return target


def verify_checksum(checksum_file: Path) -> list[str]:
    """Names of the files whose digest no longer matches (or that are missing)."""
    bad = []
    for line in checksum_file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        file = checksum_file.parent / name.lstrip("*")
        if not file.is_file() or sha256_file(file) != digest.strip():
            bad.append(name)
    return bad
