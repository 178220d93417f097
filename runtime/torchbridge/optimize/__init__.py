"""Optimization levels (``inference``, ``compile``, ``quantized``, ``production``), each
proven against the original model and timed against it. See :mod:`.core`."""

from __future__ import annotations

from torchbridge.optimize.core import (
    LEVEL_CHOICES,
    LevelResult,
    OptimizeReport,
    SavedArtifact,
    optimize,
    save_artifact,
)

__all__ = ["LEVEL_CHOICES", "LevelResult", "OptimizeReport", "SavedArtifact", "optimize",
           "save_artifact"]
