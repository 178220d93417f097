"""``security``: artifacts load safely and hold no malicious pickles or secrets, the
model holds no secrets, checksums verify, and the state dict round-trips through
safetensors.

    @tb.security(artifacts=["model.safetensors", "model.onnx"], checksum="model.sha256")
    def test_artifacts_are_safe(model): ...

Paths are relative to the test file's folder (``context.golden_dir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torchbridge.checks.base import Check, CheckConfig, RunContext
from torchbridge.checks.options import flag, option, optional
from torchbridge.checks.registry import register
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import Subject
from torchbridge.errors import ConfigError
from torchbridge.security.audit import audit


def _names(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{what} must be a path or a list of paths (strings), got {value!r}")
    return tuple(value)


def _checksum_file(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be the path of a sha256sum file, got {value!r}")
    return value


@dataclass(frozen=True)
class SecurityConfig(CheckConfig):
    """``artifacts``: files to scan and open safely; ``checksum``: a sha256sum file that
    must verify and list every artifact; ``secrets``: scan for credentials;
    ``roundtrip``: save and reload the state dict through safetensors;
    ``allowed_globals``: ``module.name`` globals to treat as safe in checkpoints."""

    artifacts: tuple[str, ...] = option((), _names)
    checksum: str | None = option(None, optional(_checksum_file))
    secrets: bool = option(True, flag)
    roundtrip: bool = option(True, flag)
    allowed_globals: tuple[str, ...] = option((), _names)


@register
class SecurityCheck(Check[SecurityConfig]):
    name = "security"
    family = "security"
    summary = "Artifacts load safely, no malicious pickles or secrets, checksums verify."

    def run(self, subject: Subject, config: SecurityConfig, context: RunContext) -> CheckResult:
        fresh = subject.fresh_model() if config.roundtrip else None
        report = audit(subject.model, config.artifacts, checksum=config.checksum,
                       base_dir=context.golden_dir, secrets=config.secrets,
                       roundtrip=config.roundtrip, fresh_model=fresh,
                       allowed_globals=config.allowed_globals)
        result = self.result_for(subject)
        result.metric("artifacts", len(report.verdicts), "")
        result.metric("secrets", sum(len(v.secrets) for v in report.verdicts)
                      + len(report.model_secrets), "")
        result.metric("dangerous_globals",
                      sum(len(v.dangerous_globals) for v in report.verdicts), "")
        result.metric("roundtrip_tensors", report.roundtrip_tensors, "")
        result.details.update({
            "files": [v.to_dict() for v in report.verdicts],
            "model_secrets": [s.to_dict() for s in report.model_secrets],
            "checksums": report.checksums, "notes": report.notes})
        if report.problems:
            result.status = Status.FAILED
            result.message = "; ".join(report.problems)
        else:
            parts = [f"{len(report.verdicts)} artifact(s) safe"]
            if config.checksum:
                parts.append(f"{len(report.checksums)} checksum(s) verified")
            if config.secrets:
                parts.append("no secrets")
            if report.roundtrip_tensors:
                parts.append(f"{report.roundtrip_tensors} tensors round-trip through "
                             "safetensors")
            result.message = "; ".join(parts)
        return result
