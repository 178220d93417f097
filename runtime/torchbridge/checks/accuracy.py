"""``accuracy``: outputs match golden outputs stored next to the test, or a reference.

The golden workflow is pytest-regressions': a missing golden fails and says how to create
it; ``--tb-update-golden`` (``RunContext.update_golden``) writes it; review and commit it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torchbridge.checks import _goldens, _tolerances
from torchbridge.checks.base import Check, RunContext
from torchbridge.checks.options import option, optional
from torchbridge.checks.registry import register
from torchbridge.core.compare import (
    LeafComparison,
    OutputComparison,
    Tolerance,
    _tolerance_for,
    compare_outputs,
)
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.signal import no_signal_note
from torchbridge.core.subject import Subject, call_model, to_device
from torchbridge.errors import ConfigError

UPDATE_HINT = "run `pytest --tb-update-golden` to create it, then review and commit it"


def _file_path(value: object, what: str) -> str:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ConfigError(f"{what} must be a file path, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class AccuracyConfig(_tolerances.ToleranceConfig):
    """``golden``: safetensors file of expected outputs, relative to the test's folder.
    ``rtol``/``atol``: tolerance for every output (default: per dtype, as torch.testing).
    ``per_output``: ``{"logits": (rtol, atol)}`` overrides for outputs by path or suffix.
    A reference model instead of (or as well as) a golden: marker keyword
    ``reference_fixture="name"``."""

    positional = ("golden",)

    golden: str | None = option(None, optional(_file_path))



def golden_path(config: AccuracyConfig, context: RunContext) -> Path:
    path = Path(str(config.golden))
    return path if path.is_absolute() else context.golden_dir / path


def _compare_flat(actual: _goldens.Golden, expected: _goldens.Golden, config: AccuracyConfig,
                  per_output: Mapping[str, Tolerance]) -> OutputComparison:
    result = OutputComparison()
    for path in expected.paths:
        want, got = expected.tensors.get(path), actual.tensors.get(path)
        if want is not None and got is not None:
            rtol, atol = _tolerance_for(path, want.dtype, config.rtol, config.atol, per_output)
            leaf = compare_outputs(got, want, rtol=rtol, atol=atol).leaves[0]
            leaf.path = path
            result.leaves.append(leaf)
        else:
            a = json.loads(json.dumps(actual.values.get(path), default=repr))
            e = expected.values.get(path)
            result.leaves.append(LeafComparison(path, a == e,
                                                reason="" if a == e else f"value {a!r} != {e!r}"))
    return result


def _reference_output(subject: Subject) -> Any:
    reference = subject.reference
    device = subject.device
    if isinstance(reference, torch.nn.Module):
        param = next(iter(reference.parameters()), None)
        device = str(param.device) if param is not None else device
    with torch.inference_mode():
        return call_model(reference, to_device(subject.inputs, device))  # type: ignore[arg-type]


@register
class AccuracyCheck(Check[AccuracyConfig]):
    name = "accuracy"
    summary = "Outputs match stored golden outputs or a reference model within tolerance."

    def run(self, subject: Subject, config: AccuracyConfig, context: RunContext) -> CheckResult:
        result = self.result_for(subject)
        if config.golden is None and subject.reference is None:
            result.status = Status.FAILED
            result.message = ("nothing to compare with: give golden='goldens/<name>.safetensors' "
                              "or reference_fixture='<fixture returning a reference model>'")
            return result
        model, _ = subject.placed()
        output = subject.run(model=model)
        compared: list[tuple[str, OutputComparison]] = []
        problems: list[str] = []
        notes: list[str] = []
        if config.golden is not None:
            self._golden(subject, config, context, output, compared, problems, notes)
        if subject.reference is not None and subject.reference is subject.model:
            problems.append("the reference is the model under test itself, so the comparison "
                            "cannot fail; give an independent reference (a model built or "
                            "loaded separately, or the previous release)")
        elif subject.reference is not None:
            expected = _reference_output(subject)
            compared.append(("against the reference", compare_outputs(
                output, expected, rtol=config.rtol, atol=config.atol,
                per_output=config.per_output)))
        result = self._conclude(result, compared, problems, notes)
        if result.passed and compared:  # matching an output without signal proves little
            result.message += no_signal_note(output)
        return result

    def _golden(self, subject: Subject, config: AccuracyConfig, context: RunContext,
                output: Any, compared: list[tuple[str, OutputComparison]], problems: list[str],
                notes: list[str]) -> None:
        path = golden_path(config, context)
        refused = _goldens.unstorable(output)
        if refused:
            problems.append(f"the output cannot be stored as a golden: {'; '.join(refused)}")
            return
        actual = _goldens.from_output(output, subject.inputs)
        actual.metadata["device"] = torch.device(subject.device).type
        if context.update_golden:
            _goldens.save(actual, path)
            notes.append(f"golden written to {path}")
            return
        if not path.exists():
            problems.append(f"golden file {path} does not exist; {UPDATE_HINT}")
            return
        try:
            expected = _goldens.load(path)
        except Exception as exc:  # safetensors raises its own error types for bad files
            problems.append(f"golden {path} is not a readable safetensors file "
                            f"({type(exc).__name__}: {exc}); rerun with --tb-update-golden "
                            "to rewrite it")
            return
        mismatch = _goldens.structure_problems(actual, expected)
        if mismatch:
            shapes = expected.input_shapes
            now = _goldens.input_shapes(subject.inputs)
            if shapes and shapes != now:
                mismatch.append(f"the golden was recorded for input shapes {shapes}, "
                                f"the sample input now has {now}")
            problems.append(f"golden {path} does not match the model's outputs: "
                            f"{'; '.join(mismatch)}. If the change is intended, rerun with "
                            "--tb-update-golden")
            return
        other_device = expected.metadata.get("device", "cpu") != actual.metadata["device"]
        per_output = _tolerances.effective_per_output(
            output, subject.device if other_device else "cpu", config.rtol, config.atol,
            config.per_output, loosen=other_device)
        compared.append((f"against golden {config.golden}",
                         _compare_flat(actual, expected, config, per_output)))

    def _conclude(self, result: CheckResult, compared: list[tuple[str, OutputComparison]],
                  problems: list[str], notes: list[str]) -> CheckResult:
        result.metric("max_abs_error", max((c.max_abs for _, c in compared), default=0.0))
        result.metric("max_rel_error", max((c.max_rel for _, c in compared), default=0.0))
        result.metric("outputs", max((len(c.leaves) for _, c in compared), default=0))
        result.details["comparisons"] = {what: c.to_dict() for what, c in compared}
        failures = problems + [f"{what}: {c.describe()}" for what, c in compared if not c.ok]
        if failures:
            result.status = Status.FAILED
            result.message = " | ".join(failures)
            return result
        passed = [f"matches {what.removeprefix('against ')} "
                  f"(max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g})" for what, c in compared]
        result.message = "; ".join(notes + passed)
        return result
