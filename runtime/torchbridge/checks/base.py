"""The check contract: a named, pure function of a subject and a validated configuration."""

from __future__ import annotations

import abc
import dataclasses
import time
import traceback
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import Subject
from torchbridge.errors import CheckSkipped, ConfigError, HardwareSkipped
from torchbridge.measure.ab import PairedBaseline
from torchbridge.measure.baseline import BaselineSettings
from torchbridge.measure.runner import BoundCall, ModelRejected, bind


@dataclass(frozen=True)
class CheckConfig:
    """Base of every check's configuration.

    Subclasses are frozen dataclasses whose fields name their parser with
    :func:`~torchbridge.checks.options.option`: ``__post_init__`` turns each raw marker
    value (``"5ms"``, ``{"cuda": "8ms"}``) into the typed value the field's annotation
    names, and raises :class:`ConfigError` on anything impossible. A subclass checking one
    field against another extends ``__post_init__`` (calling this one first).
    ``positional`` names the fields that positional marker arguments fill, e.g.
    ``("format",)`` for ``@tb.export("onnx")``.
    """

    positional: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            parse = spec.metadata.get("parse")
            if parse is not None:  # frozen: the one place a parsed value is stored
                object.__setattr__(self, spec.name, parse(getattr(self, spec.name), spec.name))

    @classmethod
    def from_args(cls, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
                  ) -> CheckConfig:
        kwargs = dict(kwargs or {})
        if len(args) > len(cls.positional):
            raise ConfigError(f"takes at most {len(cls.positional)} positional argument(s) "
                              f"({', '.join(cls.positional) or 'none'}), got {len(args)}")
        for name, value in zip(cls.positional, args, strict=False):
            if name in kwargs:
                raise ConfigError(f"argument {name!r} given twice")
            kwargs[name] = value
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"unknown keyword(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(known)) or 'none'}")
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise ConfigError(str(exc)) from None


@dataclass
class RunContext:
    """Where and how a check runs, beyond the subject itself.

    ``golden_dir`` is where relative golden/artifact paths resolve (the test file's folder
    under pytest); ``work_dir`` is a scratch folder for exports. The front end resolves
    its options and passes them here typed: ``baseline`` compares performance results
    with a saved report, ``compare_with`` measures the same item on another side (the
    code at a git ref, another model) interleaved with this one.
    """

    test_id: str = ""
    golden_dir: Path = field(default_factory=Path.cwd)
    work_dir: Path | None = None
    update_golden: bool = False
    seed: int | None = 0
    baseline: BaselineSettings | None = None
    compare_with: PairedBaseline | None = None
    #: Measure until the median resolves a change of this size (a fraction); set when a
    #: baseline is saved or compared with, so that both runs can show a change that big.
    size_for_threshold: float | None = None


C = TypeVar("C", bound=CheckConfig)


class Check(abc.ABC, Generic[C]):
    """A checklist item. Subclasses set ``name``, ``summary`` and ``run``; the config type
    is the one they are parametrized with (``class LatencyCheck(Check[LatencyConfig])``).

    ``exclusive`` checks (performance measurements) must not overlap other tests.
    """

    name: ClassVar[str]
    config_type: ClassVar[type[CheckConfig]] = CheckConfig
    family: ClassVar[str] = "correctness"
    exclusive: ClassVar[bool] = False
    summary: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Check[LatencyConfig] names the config once: no config_type line to keep in step
        for base in getattr(cls, "__orig_bases__", ()):
            found = [arg for arg in typing.get_args(base)
                     if isinstance(arg, type) and issubclass(arg, CheckConfig)]
            if found:
                cls.config_type = found[0]

    def result_for(self, subject: Subject) -> CheckResult:
        """A passing result of this check on ``subject``, for ``run`` to fill in (metrics,
        budgets) and to turn failed with the reason."""
        return CheckResult(self.name, Status.PASSED, "", subject.device)

    def parse(self, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None) -> C:
        return self.config_type.from_args(args, kwargs)  # type: ignore[return-value]

    def item_id(self, config: C) -> str:
        """The id of this check's test item, ``tb-<name>`` unless a check refines it."""
        return f"tb-{self.name.replace('_', '-')}"

    @abc.abstractmethod
    def run(self, subject: Subject, config: C, context: RunContext) -> CheckResult:
        """Run the check. Raise :class:`CheckSkipped` when it cannot run here."""


class PerformanceCheck(Check[C]):
    """A measurement: its family is ``performance`` and it runs alone (``exclusive``), never
    beside other tests under xdist."""

    family: ClassVar[str] = "performance"
    exclusive: ClassVar[bool] = True

    @staticmethod
    def bound(subject: Subject, batch_size: int | None, result: CheckResult
              ) -> BoundCall | None:
        """The subject's model and inputs bound for timing at ``batch_size``; ``None``, with
        ``result`` failed and saying why, when the model rejects that batch."""
        try:
            return bind(subject, batch_size)
        except ModelRejected as exc:
            result.status = Status.FAILED
            result.message = str(exc)
            return None


def execute(check: Check[Any], subject: Subject, config: CheckConfig,
            context: RunContext | None = None) -> CheckResult:
    """Run ``check`` and always return a result: exceptions become an ``error`` result
    carrying the traceback, :class:`CheckSkipped` becomes ``skipped`` with its reason.
    """
    context = context or RunContext()
    if context.seed is not None:
        import torch

        torch.manual_seed(context.seed)
    start = time.perf_counter()
    try:
        result = check.run(subject, config, context)
    except CheckSkipped as exc:
        result = CheckResult(check.name, Status.SKIPPED, str(exc), subject.device,
                             hardware_skip=isinstance(exc, HardwareSkipped))
    except Exception as exc:  # a broken check or model must not crash the session
        result = CheckResult(check.name, Status.ERROR, f"{type(exc).__name__}: {exc}",
                             subject.device, details={"traceback": traceback.format_exc()})
    result.duration_s = time.perf_counter() - start
    result.test_id = result.test_id or context.test_id
    return result
