"""Running a check item: fixtures → Subject → registry check → pass, fail or skip."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest

from pytest_torchbridge import base_ref
from pytest_torchbridge.devices import runtime_device
from pytest_torchbridge.expansion import CheckCase
from pytest_torchbridge.settings import Settings, settings

RESULTS_KEY = pytest.StashKey[list[dict[str, Any]]]()
#: The JUnit property that marks an item skipped because this machine lacks hardware it
#: needs (``tb.requires``, or a check's ``HardwareSkipped``); it travels with the report to
#: the xdist controller, where ``--tb-fail-on-skip`` counts it.
HARDWARE_SKIP = ("tb.skip", "hardware")


def optional_fixture(request: pytest.FixtureRequest, name: str) -> Any:
    """The value of fixture ``name``, or ``None`` when no such fixture is defined."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None


def required_fixture(request: pytest.FixtureRequest, name: str, role: str, keyword: str) -> Any:
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        pytest.fail(
            f"{request.node.nodeid}: TorchBridge needs the {role} from a fixture named {name!r}, "
            f"and none is defined. Define `@pytest.fixture def {name}(): ...` in conftest.py, "
            f"or name another fixture with the marker keyword {keyword}=... or the ini option "
            f"tb_{keyword}.", pytrace=False)


def item_seed(base: int, nodeid: str) -> int:
    """A seed that depends on the item, not on the order tests run in."""
    return (base * 1_000_003 + zlib.crc32(nodeid.encode())) % (2**31)


def build_subject(request: pytest.FixtureRequest, device: str, fixtures: dict[str, str],
                  opts: Settings, model: Any = None, inputs: Any = None) -> Any:
    from torchbridge.checks import Subject

    if model is None:
        model = required_fixture(request, fixtures.get("model_fixture", opts.model_fixture),
                                 "model", "model_fixture")
    if inputs is None:
        inputs = required_fixture(request, fixtures.get("input_fixture", opts.input_fixture),
                                  "sample input", "input_fixture")
    factory = optional_fixture(request, fixtures.get("factory_fixture", opts.factory_fixture))
    spec = optional_fixture(request, fixtures.get("spec_fixture", opts.spec_fixture))
    reference_name = fixtures.get("reference_fixture")
    reference = required_fixture(request, reference_name, "reference", "reference_fixture") \
        if reference_name else None
    return Subject(model=model, inputs=inputs, device=device, spec=spec, factory=factory,
                   reference=reference, name=type(model).__name__)


def run_context(item: pytest.Item, opts: Settings, compare: bool = False) -> Any:
    """The typed run context of ``item``: the runtime sees settings, never pytest.

    ``compare``: measure against ``--tb-baseline-ref`` too. Only marker items can: a side
    worker re-collects the item by node id and serves its case, which a ``tb_checks`` call
    inside a test body or a checklist-file item does not have.
    """
    from torchbridge.checks import RunContext
    from torchbridge.measure.baseline import BaselineSettings

    baseline = BaselineSettings(opts.baseline, opts.regression_threshold) \
        if opts.baseline else None
    return RunContext(test_id=item.nodeid, golden_dir=Path(str(item.path)).parent,
                      update_golden=opts.update_golden,
                      seed=item_seed(opts.seed, item.nodeid), baseline=baseline,
                      compare_with=base_ref.paired_baseline(item.config) if compare else None,
                      size_for_threshold=opts.regression_threshold
                      if opts.baseline or opts.save_baseline else None)


def record(item: pytest.Item, result: Any) -> None:
    """Keep the result for the reports and expose its metrics as JUnit properties."""
    item.stash.setdefault(RESULTS_KEY, []).append(result.to_dict())
    item.user_properties.append(("tb.check", result.check))
    item.user_properties.append(("tb.device", result.device))
    item.user_properties.append(("tb.status", result.status.value))
    if result.hardware_skip:
        item.user_properties.append(HARDWARE_SKIP)
    for name, metric in result.metrics.items():
        item.user_properties.append((f"tb.{result.check}.{name}", metric.value))
    for name, metric in result.budgets.items():
        item.user_properties.append((f"tb.{result.check}.budget.{name}", metric.value))


def conclude(result: Any) -> Any:
    """Turn a result into pytest's outcome: return on pass, fail/skip otherwise."""
    from torchbridge.checks import Status

    if result.status is Status.FAILED:
        pytest.fail(f"{result.check} [{result.device}]: {result.message}", pytrace=False)
    if result.status is Status.SKIPPED:
        pytest.skip(f"{result.check} [{result.device}]: {result.message}")
    if result.status is Status.ERROR:
        trace = result.details.get("traceback", "")
        pytest.fail(f"{result.check} [{result.device}] raised {result.message}\n\n{trace}",
                    pytrace=False)
    return result


def run_case(item: pytest.Function, case: CheckCase) -> None:
    from torchbridge.checks import execute, registry

    opts = settings(item.config)
    device = runtime_device(item.config, case.device)
    subject = build_subject(item._request, device, case.fixtures, opts)
    served = base_ref.reporter(item.config)
    if served is not None:  # this session is a --tb-baseline-ref base worker
        from pytest_torchbridge.base_worker import serve

        serve(item, subject, served)
        return
    result = execute(registry.get(case.check), subject, case.config,
                     run_context(item, opts, compare=True))
    record(item, result)
    conclude(result)
