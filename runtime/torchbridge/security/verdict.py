"""Verdicts: what a scan says about one file, in a form both people and CI can read."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Verdict(str, enum.Enum):
    """The verdict on one file, most severe first.

    * ``unsafe``: names a pickle global that is neither a known-safe reconstructor nor a
      trusted class (:mod:`torchbridge.security.policy`): any call off the allowlist.
    * ``invalid``: cannot be trusted as parsed (truncated, corrupt, a polyglot, a scan
      limit crossed).
    * ``secrets``: safe to load, but holds credentials.
    * ``code``: rebuilds classes from trusted modules (a pickled whole ``torch.nn``
      module); loaders refuse it unless code is allowed (``--allow-pickle``).
    * ``safe``: nothing found.
    * ``not-a-model``: not a model format; nothing to judge.
    """

    UNSAFE = "unsafe"
    INVALID = "invalid"
    SECRETS = "secrets"
    CODE = "code"
    SAFE = "safe"
    NOT_A_MODEL = "not-a-model"


@dataclass(frozen=True)
class SecretFinding:
    """One secret: its kind, where it is, and a redacted value (never the secret)."""

    kind: str
    location: str
    redacted: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "location": self.location, "redacted": self.redacted}

    def describe(self) -> str:
        return f"{self.kind} at {self.location}: {self.redacted}"


@dataclass
class FileVerdict:
    """The scan of one file. ``reasons`` say why, in words a person can act on."""

    path: str
    format: str
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    dangerous_globals: list[str] = field(default_factory=list)
    code_globals: list[str] = field(default_factory=list)
    secrets: list[SecretFinding] = field(default_factory=list)
    size: int = 0
    duration_s: float = 0.0

    def failed(self, strict: bool = False) -> bool:
        """Whether this verdict should fail a scan (``code`` only when ``strict``)."""
        bad = {Verdict.UNSAFE, Verdict.INVALID, Verdict.SECRETS}
        return self.verdict in bad or (strict and self.verdict is Verdict.CODE)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "verdict": self.verdict.value,
                "reasons": list(self.reasons), "dangerous_globals": self.dangerous_globals,
                "code_globals": self.code_globals,
                "secrets": [s.to_dict() for s in self.secrets], "size": self.size,
                "duration_s": round(self.duration_s, 6)}
