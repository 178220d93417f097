"""The documentation stays true to the code it describes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_operations_api_reference_lists_exactly_the_servers_routes() -> None:
    spec_path = ROOT / "scripts" / "api_reference.py"
    spec = importlib.util.spec_from_file_location("api_reference", spec_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    routes = {(method.upper(), path) for path, ops in module.schema()["paths"].items()
              for method in ops}
    documented = set(re.findall(r"^#### (GET|POST|PUT|DELETE) `([^`]+)`$",
                                (ROOT / "docs" / "operations.md").read_text(), re.M))
    assert documented == routes, "run: .venv/bin/python scripts/api_reference.py"


def test_the_runbook_has_an_entry_for_every_shipped_alert() -> None:
    import yaml

    rules = yaml.safe_load((ROOT / "ci" / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]
              if "alert" in rule}
    runbook = (ROOT / "docs" / "operations.md").read_text()
    assert alerts and {a for a in alerts if f"### {a}\n" not in runbook} == set()


CHECKLIST = ROOT.parent / "shared" / "reference" / "production_checklist.md"


def checklist_items(text: str) -> list[str]:
    """The name of every checkbox item: its bold title, or its whole text."""
    items = []
    for line in text.splitlines():
        match = re.match(r"^\s*(?:-|\d+\.)\s*\[ \]\s*(.*)$", line)
        if match:
            bold = re.match(r"\*\*(.+?)\*\*", match.group(1))
            items.append((bold.group(1) if bold else match.group(1)).strip())
    return items


def test_the_coverage_table_names_every_checklist_item() -> None:
    import pytest

    if not CHECKLIST.is_file():
        pytest.skip(f"the reference checklist is not at {CHECKLIST}")
    items = checklist_items(CHECKLIST.read_text())
    table = (ROOT / "docs" / "checklist-coverage.md").read_text().replace("`", "").lower()
    assert len(items) > 70
    assert [i for i in items if i.replace("`", "").lower() not in table] == []
