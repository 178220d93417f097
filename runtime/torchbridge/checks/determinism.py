"""``determinism``: repeated runs, and a freshly built model, give the same outputs.

Runs are compared bitwise unless a tolerance is given. Torch is deliberately *not*
reseeded between runs: dropout left on or a random op must show up as a difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from torchbridge.checks import _tolerances
from torchbridge.checks.base import Check, CheckConfig, RunContext
from torchbridge.checks.forward import in_training_mode, training_modules
from torchbridge.checks.options import option
from torchbridge.checks.registry import register
from torchbridge.core.compare import OutputComparison, compare_outputs
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.signal import no_signal_note
from torchbridge.core.subject import Subject
from torchbridge.errors import ConfigError


@dataclass(frozen=True)
class DeterminismConfig(CheckConfig):
    """``runs``: forward passes compared (>= 2). ``rtol``/``atol``: accept differences up to
    this tolerance instead of demanding bitwise equality. ``across_instances``: also compare
    a model freshly built by the ``model_factory`` fixture (default: when one exists)."""

    runs: int = 3
    rtol: float | None = option(None, _tolerances.tolerance_option)
    atol: float | None = option(None, _tolerances.tolerance_option)
    across_instances: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or self.runs < 2:
            raise ConfigError(f"runs must be a whole number >= 2, got {self.runs!r}")
        if self.across_instances not in (None, True, False):
            raise ConfigError(f"across_instances must be True or False, "
                              f"got {self.across_instances!r}")

    @property
    def bitwise(self) -> bool:
        return self.rtol is None and self.atol is None


def _compare(actual: Any, expected: Any, config: DeterminismConfig) -> OutputComparison:
    if config.bitwise:
        # rtol=atol=0 is bitwise equality for numbers, and still reports max abs/rel and
        # the tolerance that would pass, which a plain equality test would not.
        return compare_outputs(actual, expected, rtol=0.0, atol=0.0)
    return compare_outputs(actual, expected, rtol=config.rtol, atol=config.atol)


def _hint(model: Any) -> str:
    modules = training_modules(model)
    if not modules and in_training_mode(model):
        return (" The model is in training mode (its forward may read self.training, e.g. "
                "functional dropout in attention); call model.eval() before serving.")
    if not modules:
        return ""
    return (f" The model is in training mode ({', '.join(modules[:3])}); call model.eval() "
            "before serving.")


def _not_fresh(fresh: Any, *models: Any) -> str:
    """Why the model from ``model_factory`` is not a fresh instance ("" when it is): the
    model under test itself, or a wrapper whose every parameter is one of its tensors."""
    if any(fresh is model for model in models):
        return "model_factory returned the model under test itself"
    if not isinstance(fresh, torch.nn.Module):
        return ""
    own = {p.data_ptr() for m in models if isinstance(m, torch.nn.Module)
           for p in m.parameters()}
    params = [p.data_ptr() for p in fresh.parameters()]
    if params and own and all(ptr in own for ptr in params):
        return "model_factory returned a model that shares every parameter with the model " \
               "under test"
    return ""


@register
class DeterminismCheck(Check[DeterminismConfig]):
    name = "determinism"
    summary = "Repeated runs and a fresh model instance produce identical outputs."

    def run(self, subject: Subject, config: DeterminismConfig, context: RunContext) -> CheckResult:
        across = config.across_instances
        if across and subject.factory is None:
            raise ConfigError("across_instances=True needs a fixture named 'model_factory' "
                              "(or factory_fixture=...) returning a freshly built model")
        model, _ = subject.placed()
        first = subject.run(model=model)
        compared: list[tuple[str, OutputComparison]] = []
        for index in range(2, config.runs + 1):
            compared.append((f"run {index} of {config.runs} vs run 1",
                             _compare(subject.run(model=model), first, config)))
        if across is None:
            across = subject.factory is not None
        if across:
            fresh = subject.fresh_model()
            reused = _not_fresh(fresh, model, subject.model)
            if reused:
                result = self.result_for(subject)
                result.status = Status.FAILED
                result.message = (f"{reused}, so no fresh instance was compared; return a "
                                  "newly built model from model_factory (e.g. the function "
                                  "that builds or loads it, not lambda: model)")
                return result
            compared.append(("a fresh model from model_factory vs the fixture's model",
                             _compare(subject.run(model=fresh), first, config)))
        result = self._result(subject, config, model, compared, across)
        if result.passed:  # identical runs of an output without signal prove little
            result.message += no_signal_note(first)
        return result

    def _result(self, subject: Subject, config: DeterminismConfig, model: Any,
                compared: list[tuple[str, OutputComparison]], across: bool) -> CheckResult:
        result = self.result_for(subject)
        worst = max((c.max_abs for _, c in compared), default=0.0)
        result.metric("runs", config.runs)
        result.metric("max_abs_error", worst)
        result.metric("diverging_runs", sum(not c.ok for _, c in compared))
        result.details["compared"] = [{"what": what, "ok": c.ok, "max_abs": c.max_abs}
                                      for what, c in compared]
        mode = "bitwise" if config.bitwise else f"rtol={config.rtol}, atol={config.atol}"
        diverging = next(((what, c) for what, c in compared if not c.ok), None)
        if diverging is None:
            result.details["comparison"] = compared[-1][1].to_dict() if compared else []
            extra = " and a fresh instance" if across else ""
            result.message = f"{config.runs} runs{extra} identical ({mode})"
            return result
        what, comparison = diverging
        first_bad = comparison.first_mismatch
        result.status = Status.FAILED
        result.details["comparison"] = comparison.to_dict()
        result.details["first_diverging_output"] = first_bad.path if first_bad else ""
        result.message = (f"not deterministic ({mode}): {what} differs; "
                          f"{comparison.describe()}.{_hint(model)}")
        return result
