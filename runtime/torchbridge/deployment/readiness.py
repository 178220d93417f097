"""``validate_production_readiness``: run registered checks on a model and report.

The same registry and the same check code as the pytest markers: a requirement
``{"determinism": {"runs": 5}}`` here behaves exactly like ``@tb.determinism(runs=5)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchbridge.checks import registry
from torchbridge.checks.base import CheckConfig, RunContext, execute
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import InputSpec, Subject
from torchbridge.errors import ConfigError
from torchbridge.hardware import resolve_devices

#: What is checked when no requirements are given.
DEFAULT_REQUIREMENTS: Mapping[str, Mapping[str, Any]] = {
    "forward": {},
    "determinism": {},
    "edge_cases": {},
}

_MARKS = {Status.PASSED: "PASS", Status.FAILED: "FAIL", Status.SKIPPED: "SKIP",
          Status.ERROR: "ERROR"}

Requirements = Mapping[str, Mapping[str, Any] | bool | None] | Iterable[str]


@dataclass
class ReadinessReport:
    """Results of every requested check. ``passed`` when none failed or errored (and, with
    ``fail_on_skip``, none was skipped)."""

    checks: list[CheckResult]
    device: str = "cpu"
    fail_on_skip: bool = False
    model_name: str = "model"
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {status.value: sum(r.status is status for r in self.checks)
                       for status in Status}

    @property
    def passed(self) -> bool:
        bad = {Status.FAILED, Status.ERROR} | ({Status.SKIPPED} if self.fail_on_skip else set())
        return not any(result.status in bad for result in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        """Results that make the report fail."""
        bad = {Status.FAILED, Status.ERROR} | ({Status.SKIPPED} if self.fail_on_skip else set())
        return [result for result in self.checks if result.status in bad]

    def result(self, check: str) -> CheckResult:
        """The result of ``check``; ``KeyError`` naming the checks run if it was not run."""
        for result in self.checks:
            if result.check == check:
                return result
        raise KeyError(f"{check!r} was not run; ran: {', '.join(r.check for r in self.checks)}")

    def summary(self) -> str:
        """A readable multi-line verdict: one line per check with its message."""
        verdict = "READY" if self.passed else "NOT READY"
        counts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n)
        lines = [f"Production readiness of {self.model_name} on {self.device}: {verdict} "
                 f"({counts or 'no checks'})"]
        width = max((len(r.check) for r in self.checks), default=0)
        for result in self.checks:
            lines.append(f"  [{_MARKS[result.status]:<5}] {result.check:<{width}}  "
                         f"{result.message}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "device": self.device, "model": self.model_name,
                "counts": self.counts, "checks": [r.to_dict() for r in self.checks]}

    def __str__(self) -> str:
        return self.summary()


def _normalise(requirements: Requirements | None) -> dict[str, dict[str, Any]]:
    if requirements is None:
        return {name: dict(kwargs) for name, kwargs in DEFAULT_REQUIREMENTS.items()}
    if isinstance(requirements, str):
        raise ConfigError("requirements is a dict {check: {keyword: value}} or a list of "
                          f"check names, got the string {requirements!r}")
    if not isinstance(requirements, Mapping):
        return {str(name): {} for name in requirements}
    wanted: dict[str, dict[str, Any]] = {}
    for name, kwargs in requirements.items():
        if kwargs is False:
            continue
        if kwargs is None or kwargs is True:
            kwargs = {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f"requirements[{name!r}] must be a dict of the check's keywords "
                              f"(as its marker takes them), got {kwargs!r}")
        wanted[str(name)] = dict(kwargs)
    return wanted


def _configs(wanted: dict[str, dict[str, Any]]) -> list[tuple[str, CheckConfig]]:
    """Validate every requirement before anything runs: bad input fails fast."""
    configs = []
    for name, kwargs in wanted.items():
        args = kwargs.pop("args", ())
        configs.append((name, registry.parse_config(name, tuple(args), kwargs)))
    return configs


def _device(device: str) -> str:
    devices = resolve_devices(device)
    if len(devices) != 1:
        raise ConfigError(f"device names one device, got {device!r}")
    return devices[0]


def validate_production_readiness(
        model: Any, sample_input: Any, requirements: Requirements | None = None,
        device: str = "cpu", *, input_spec: InputSpec | Mapping[str, Any] | None = None,
        model_factory: Callable[[], Any] | None = None,
        reference: Callable[..., Any] | None = None,
        golden_dir: str | Path | None = None, update_golden: bool = False,
        seed: int | None = 0, fail_on_skip: bool = False) -> ReadinessReport:
    """Run TorchBridge checks on ``model`` with ``sample_input`` and report.

    ``requirements`` maps check names to the keywords their markers take, e.g.
    ``{"determinism": {"runs": 5}, "accuracy": {"golden": "clf.safetensors"}}`` (default:
    forward, determinism and edge_cases with their defaults); a list of names runs those
    checks with defaults. ``device`` is ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"``...;
    the model is moved there. ``input_spec``, ``model_factory`` and ``reference`` play the
    roles of the fixtures of the same names; golden paths resolve against ``golden_dir``
    (default: the working directory). Torch's global RNG state is restored afterwards.

    Unknown checks, bad keywords and absent devices raise :class:`ConfigError` /
    :class:`HardwareUnavailable` before any check runs; a check that fails or raises
    becomes a result in the report.
    """
    configs = _configs(_normalise(requirements))
    target = _device(device)
    subject = Subject(model=model, inputs=sample_input, device=target,
                      spec=InputSpec.coerce(input_spec), factory=model_factory,
                      reference=reference, name=type(model).__name__)
    cuda = [torch.device(target).index or 0] if target.startswith("cuda") else []
    results = []
    with torch.random.fork_rng(devices=cuda):
        for name, config in configs:
            context = RunContext(test_id=f"validate_production_readiness::{name}",
                                 golden_dir=Path(golden_dir) if golden_dir else Path.cwd(),
                                 update_golden=update_golden, seed=seed)
            results.append(execute(registry.get(name), subject, config, context))
    return ReadinessReport(results, target, fail_on_skip, subject.name)
