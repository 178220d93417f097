"""``sha256sum``-compatible checksum files next to exported artifacts.

``model.onnx.sha256`` holds one ``<hex>  <name>`` line per file of the artifact (the ONNX
file and its external-data file, when there is one), with names relative to the folder,
so ``cd exports && sha256sum -c model.onnx.sha256`` verifies them. The format and the
verification are :mod:`torchbridge.security.checksum`'s; this module only names the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torchbridge.security.checksum import write_checksums


def write_checksum(artifact: Path, files: Sequence[Path]) -> Path:
    """Write ``<artifact>.sha256`` covering ``files``; returns its path."""
    target = artifact.with_name(artifact.name + ".sha256")
    write_checksums(files, target)
    return target
