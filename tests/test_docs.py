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
