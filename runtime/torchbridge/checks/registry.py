"""The one registry of checks. Every front end looks checks up here.

Built-in checks live in the modules of this package and register themselves on import;
third-party packages can add checks through the ``torchbridge.checks`` entry-point group.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from torchbridge.checks.base import Check, CheckConfig
from torchbridge.errors import ConfigError

#: modules of this package that hold no check
_NOT_CHECKS = {"base", "options", "registry"}
_CHECKS: dict[str, type[Check[Any]]] = {}
_loaded = False

CheckT = TypeVar("CheckT", bound=type[Check[Any]])


def register(cls: CheckT) -> CheckT:
    """Class decorator adding a check to the registry under ``cls.name``."""
    existing = _CHECKS.get(cls.name)
    if existing is not None and existing is not cls and not _same_definition(existing, cls):
        raise ValueError(f"check {cls.name!r} registered twice ({existing} and {cls})")
    _CHECKS[cls.name] = cls
    return cls


def _same_definition(a: type, b: type) -> bool:
    """Whether ``b`` is ``a`` defined again by re-importing its module.

    A module imported afresh (``importlib.reload``, or pytester unloading the modules an
    inner session imported) re-runs its ``@register``; the newer class replaces the old.
    Two different classes claiming one name are still an error.
    """
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import torchbridge.checks as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _NOT_CHECKS and not info.name.startswith("_"):
            importlib.import_module(f"torchbridge.checks.{info.name}")
    for ep in entry_points(group="torchbridge.checks"):
        ep.load()


def names() -> list[str]:
    """Names of every registered check, sorted."""
    _load_builtin()
    return sorted(_CHECKS)


def builtin_names() -> list[str]:
    """Names of the checks TorchBridge ships (those defined in this package), sorted."""
    _load_builtin()
    return sorted(name for name, cls in _CHECKS.items()
                  if cls.__module__.startswith(f"{__package__}."))


def get(name: str) -> Check[Any]:
    """An instance of the check registered as ``name``; a clear error for unknown names."""
    _load_builtin()
    try:
        return _CHECKS[name]()
    except KeyError:
        raise ConfigError(f"unknown check {name!r}; known checks: {', '.join(names())}") \
            from None


def parse_config(name: str, args: tuple[Any, ...] = (),
                 kwargs: Mapping[str, Any] | None = None) -> CheckConfig:
    """Validate arguments for check ``name`` as a marker, fixture method or file gives them."""
    check = get(name)
    try:
        return check.parse(args, kwargs)
    except ConfigError as exc:
        raise ConfigError(f"tb.{name}: {exc}") from None
