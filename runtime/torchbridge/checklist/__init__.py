"""Checklist files: a model's production checklist in ``torchbridge.toml`` or
``[tool.torchbridge]`` of ``pyproject.toml``, collected by pytest into the same items the
markers produce and run by ``tb-check``. The schema is documented in
:mod:`torchbridge.checklist.schema` and ``docs/user-guide.md``."""

from __future__ import annotations

from torchbridge.checklist.loader import build_subject, has_section, load_checklist, load_model
from torchbridge.checklist.schema import CheckEntry, Checklist, ChecklistError

__all__ = ["CheckEntry", "Checklist", "ChecklistError", "build_subject", "has_section",
           "load_checklist", "load_model"]
