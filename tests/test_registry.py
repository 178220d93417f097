"""The one list of built-in checks: the plugin's decorators and the runtime's registry."""

from __future__ import annotations

import pytest_torchbridge as tb
from pytest_torchbridge.markers import BUILTIN_CHECKS
from torchbridge.checks import registry


def test_the_plugin_names_exactly_the_checks_the_registry_ships() -> None:
    assert sorted(BUILTIN_CHECKS) == registry.builtin_names()


def test_every_built_in_check_has_its_decorator() -> None:
    assert [getattr(tb, name).check for name in BUILTIN_CHECKS] == list(BUILTIN_CHECKS)
    assert set(BUILTIN_CHECKS) <= set(tb.__all__) and set(BUILTIN_CHECKS) <= set(dir(tb))


def test_every_check_takes_the_config_type_it_is_parametrized_with() -> None:
    for name in registry.builtin_names():
        check = registry.get(name)
        generic = type(check).__orig_bases__[0]  # type: ignore[attr-defined]
        assert check.config_type is generic.__args__[0], name
