"""Checklist files as pytest items: ``torchbridge.toml`` (and, when enabled, the rootdir
``pyproject.toml``'s ``[tool.torchbridge]``) become one item per check, with the ids and
marks the markers give (``<file>::<name>[tb-latency]``, marks ``tb`` and ``tb_latency``),
run by the same code path (registry → ``execute`` → ``record`` → ``conclude``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_torchbridge.devices import runtime_device, session_devices
from pytest_torchbridge.execution import conclude, record, run_context
from pytest_torchbridge.expansion import CheckCase, ensure_mark
from pytest_torchbridge.settings import settings

CHECKLIST_FILE = "torchbridge.toml"
COLLECTED_KEY = pytest.StashKey[set[Path]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchbridge")
    group.addoption("--tb-checklist-pyproject", action="store_true", default=False,
                    help="also collect the [tool.torchbridge] checklist of the rootdir's "
                         "pyproject.toml (ini: tb_checklist_pyproject = true)")
    parser.addini("tb_checklist_pyproject", "collect [tool.torchbridge] from pyproject.toml",
                  type="bool", default=False)


def _pyproject_enabled(config: pytest.Config) -> bool:
    return settings(config).checklist_pyproject


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == CHECKLIST_FILE:
        return ChecklistFile.from_parent(parent, path=file_path)
    if file_path.name == "pyproject.toml" and _pyproject_enabled(parent.config):
        from torchbridge.checklist import has_section

        if has_section(file_path):
            return ChecklistFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """The rootdir pyproject.toml lies outside ``testpaths``; collect it here when enabled."""
    pyproject = config.rootpath / "pyproject.toml"
    if not _pyproject_enabled(config) or pyproject in config.stash.get(COLLECTED_KEY, set()) \
            or not pyproject.is_file():
        return
    from torchbridge.checklist import ChecklistError, has_section

    if not has_section(pyproject):
        raise pytest.UsageError(f"--tb-checklist-pyproject: {pyproject} has no "
                                "[tool.torchbridge] table")
    node = ChecklistFile.from_parent(session, path=pyproject)
    try:
        items.extend(node.collect())
    except ChecklistError as exc:
        raise pytest.UsageError(str(exc)) from None


class ChecklistFile(pytest.File):
    """A checklist file; its items are the checks it declares, per session device."""

    def collect(self) -> list[pytest.Item]:
        from torchbridge.checklist import load_checklist
        from torchbridge.checks import registry

        self.config.stash.setdefault(COLLECTED_KEY, set()).add(self.path)
        checklist = load_checklist(self.path)
        self.checklist = checklist
        self._models: dict[str, Any] = {}
        devices = session_devices(self.config)
        seen: dict[str, int] = {}
        items: list[pytest.Item] = []
        for entry in checklist.checks:
            base = registry.get(entry.check).item_id(entry.config)
            for device in devices:
                item_id = f"{base}-{device}" if len(devices) > 1 else base
                seen[item_id] = seen.get(item_id, 0) + 1
                if seen[item_id] > 1:
                    item_id = f"{item_id}-{seen[item_id]}"
                case = CheckCase(entry.check, entry.config, device, item_id)
                item = ChecklistItem.from_parent(self, name=f"{checklist.name}[{item_id}]",
                                                 case=case, line=entry.line)
                ensure_mark(self.config, entry.check)
                item.add_marker(pytest.mark.tb)
                item.add_marker(getattr(pytest.mark, f"tb_{entry.check}"))
                items.append(item)
        return items

    def model(self, device: str) -> Any:
        """The checklist's model on ``device``, loaded once per file and device (like a
        module-scoped fixture)."""
        if device not in self._models:
            from torchbridge.checklist import load_model

            self._models[device] = load_model(self.checklist, device)
        return self._models[device]

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        from torchbridge.errors import ConfigError

        if isinstance(excinfo.value, ConfigError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class ChecklistItem(pytest.Item):
    """One check of a checklist file on one device."""

    def __init__(self, *, case: CheckCase, line: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Read through expansion.check_case, as for marker items (the xdist lock, requires).
        self.tb_check_case = case
        self.line = line

    def runtest(self) -> None:
        from torchbridge.checklist import build_subject
        from torchbridge.checks import execute, registry

        case = self.tb_check_case
        parent = self.parent
        assert isinstance(parent, ChecklistFile)
        device = runtime_device(self.config, case.device)
        subject = build_subject(parent.checklist, device, parent.model(device))
        result = execute(registry.get(case.check), subject, case.config,
                         run_context(self, settings(self.config)))
        record(self, result)
        conclude(result)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.line - 1, f"{self.name} ({self.path.name}:{self.line})"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        from torchbridge.errors import TorchBridgeError

        if isinstance(excinfo.value, TorchBridgeError):
            return f"{self.path}:{self.line}: {excinfo.value}"
        return super().repr_failure(excinfo, style)
