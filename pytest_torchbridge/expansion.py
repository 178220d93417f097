"""Collection: one test item per check marker, plus one for the test's own body."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_torchbridge.markers import CASE_FIXTURE, CHECK_MARK, FIXTURE_KEYWORDS

BODY_ID = "body"


@dataclass(frozen=True)
class CheckCase:
    """One check to run as a test item: the check, its validated config, the device."""

    check: str
    config: Any
    device: str
    item_id: str
    fixtures: dict[str, str] = field(default_factory=dict)


def check_case(item: pytest.Item) -> CheckCase | None:
    """The check an item runs: a marker item's ``tb_check_case`` parameter, or the case a
    checklist-file item carries; ``None`` for a test body or an ordinary test."""
    case = getattr(item, "tb_check_case", None)
    if case is None:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get(CASE_FIXTURE) if callspec is not None else None
    return case if isinstance(case, CheckCase) else None


def _split_fixture_keywords(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    own = {k: v for k, v in kwargs.items() if k not in FIXTURE_KEYWORDS}
    fixtures = {k: str(v) for k, v in kwargs.items() if k in FIXTURE_KEYWORDS}
    return own, fixtures


def _cases_for_mark(mark: pytest.Mark, devices: list[str], test: str) -> list[CheckCase]:
    from torchbridge.checks import registry
    from torchbridge.errors import ConfigError

    if not mark.args:
        pytest.fail(f"{test}: a torchbridge mark needs a check name; use tb.<check>",
                    pytrace=False)
    name, args = str(mark.args[0]), tuple(mark.args[1:])
    own, fixtures = _split_fixture_keywords(dict(mark.kwargs))
    try:
        check = registry.get(name)
        config = registry.parse_config(name, args, own)
    except ConfigError as exc:
        pytest.fail(f"{test}: {exc}", pytrace=False)
    base_id = check.item_id(config)
    suffix = len(devices) > 1
    return [CheckCase(name, config, device, f"{base_id}-{device}" if suffix else base_id,
                      fixtures) for device in devices]


def ensure_mark(config: pytest.Config, check: str) -> None:
    """Register ``tb_<check>`` for checks from other packages, so --strict-markers accepts it."""
    names = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    if f"tb_{check}" not in names:
        config.addinivalue_line("markers", f"tb_{check}: TorchBridge {check} check items")


def check_params(metafunc: pytest.Metafunc, devices: list[str]) -> list[Any] | None:
    """The parameter list for ``tb_check_case``, or ``None`` when the test has no checks."""
    marks = list(metafunc.definition.iter_markers(CHECK_MARK))
    if not marks:
        return None
    marks.reverse()  # decorators apply bottom-up; report checks in source order
    test = metafunc.definition.nodeid
    cases = [case for mark in marks for case in _cases_for_mark(mark, devices, test)]
    seen: dict[str, int] = {}
    params = [pytest.param(None, id=BODY_ID)]
    for case in cases:
        seen[case.item_id] = seen.get(case.item_id, 0) + 1
        item_id = case.item_id if seen[case.item_id] == 1 else \
            f"{case.item_id}-{seen[case.item_id]}"
        ensure_mark(metafunc.config, case.check)
        marks_for_item = [pytest.mark.tb, getattr(pytest.mark, f"tb_{case.check}")]
        params.append(pytest.param(case, id=item_id, marks=marks_for_item))
    return params


def parametrize(metafunc: pytest.Metafunc, devices: list[str]) -> None:
    if CASE_FIXTURE not in metafunc.fixturenames:
        return
    params = check_params(metafunc, devices)
    if params is not None:
        metafunc.parametrize(CASE_FIXTURE, params)
