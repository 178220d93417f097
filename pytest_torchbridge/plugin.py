"""The pytest11 entry point: options, markers, collection, fixtures and report glue.

Importing this module imports neither torch nor the runtime; sessions that use no
TorchBridge marker, fixture or option never pay for them.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_torchbridge import base_ref, devices, expansion, options, results
from pytest_torchbridge.execution import HARDWARE_SKIP
from pytest_torchbridge.markers import CASE_FIXTURE, mark_lines
from pytest_torchbridge.results import pytest_runtest_makereport
from pytest_torchbridge.settings import settings

# Feature modules register their own hooks, options and fixtures; none imports torch.
pytest_plugins = [
    "pytest_torchbridge.performance",
    "pytest_torchbridge.fixtures",
    "pytest_torchbridge.summary",
    "pytest_torchbridge.checklist",
    "pytest_torchbridge.server_fixture",
]

__all__ = ["pytest_runtest_makereport"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    # Registering the feature modules before pytest reads ``pytest_plugins`` spares one
    # scan of every installed distribution's entry points per module (pytest looks each
    # ``pytest_plugins`` name up as an entry point first): ~6 ms each, paid by every
    # session, tb features used or not (benchmarks/bench_collection_overhead.py).
    for name in pytest_plugins:
        pluginmanager.import_plugin(name)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoption(parser)


def pytest_configure(config: pytest.Config) -> None:
    settings(config)  # every option read once, here; bad values are usage errors now
    if results.is_controller(config):
        config.pluginmanager.register(results.Gatherer(config), "torchbridge-gatherer")
    for line in mark_lines():
        config.addinivalue_line("markers", line)
    devices.validate_at_startup(config)
    base_ref.configure(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [settings(config).header()]
    tree = base_ref.header(config)
    return [*lines, tree] if tree else lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if CASE_FIXTURE in metafunc.fixturenames:
        expansion.parametrize(metafunc, devices.session_devices(metafunc.config))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    base_ref.remember_files(config, items)


def pytest_runtest_setup(item: pytest.Item) -> None:
    mark = item.get_closest_marker("tb_requires")
    if mark is None:
        return
    from torchbridge.requirements import unmet

    case = expansion.check_case(item)
    device = case.device if case is not None else devices.session_devices(item.config)[0]
    reason = unmet(mark.kwargs, devices.runtime_device(item.config, device))
    if reason:
        item.user_properties.append(HARDWARE_SKIP)
        pytest.skip(f"tb.requires: {reason}")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    case = expansion.check_case(pyfuncitem)
    if case is None:
        return None
    from pytest_torchbridge.execution import run_case

    run_case(pyfuncitem, case)
    return True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not results.is_controller(config):
        return
    results.write_reports(config)
    skips = config.stash.get(results.SKIPS_KEY, [])
    if settings(config).fail_on_skip and skips:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    skips = config.stash.get(results.SKIPS_KEY, [])
    if skips and settings(config).fail_on_skip:
        terminalreporter.write_line(
            f"TorchBridge: {len(skips)} item(s) skipped for hardware reasons and "
            "--tb-fail-on-skip is set; failing the session.", red=True)
