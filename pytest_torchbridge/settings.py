"""Every TorchBridge option, resolved once per session into one typed :class:`Settings`.

Precedence: marker > command line > environment > ini. The options themselves are
declared where their feature lives (``options``, ``performance``, ``summary``,
``checklist``); this module reads them all in ``pytest_configure`` (through
:func:`settings`, which caches the result in the config's stash), and the rest of the
plugin reads the typed object, never ``config.getoption``. The runtime receives typed
values on :class:`torchbridge.checks.RunContext` and never sees pytest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

HARDWARE_ENV = "TB_HARDWARE"
BASELINE_REF_ENV = "TB_BASELINE_REF"
#: The saved-baseline and base-ref gates' threshold when none is given.
DEFAULT_THRESHOLD = 0.10

SETTINGS_KEY = pytest.StashKey["Settings"]()


@dataclass(frozen=True)
class Settings:
    """The session's effective TorchBridge settings."""

    hardware: str
    hardware_explicit: bool
    fail_on_skip: bool
    update_golden: bool
    seed: int
    gpu_pinning: bool
    model_fixture: str
    input_fixture: str
    factory_fixture: str
    spec_fixture: str
    json_path: str | None = None
    benchmark_json: str | None = None
    github_benchmark_json: str | None = None
    markdown: str | None = None
    html: str | None = None
    checklist_pyproject: bool = False
    save_baseline: str | None = None
    baseline: str | None = None
    regression_threshold: float = DEFAULT_THRESHOLD
    #: ``--tb-baseline-ref``: measure every performance item against this git ref too.
    baseline_ref: str | None = None
    #: Extra import paths for the base side, relative to the base worktree's root.
    baseline_pythonpath: tuple[str, ...] = ()
    #: Internal: this session is a base-side worker serving timing blocks (``R,W`` fds).
    ab_serve: str | None = None

    def header(self) -> str:
        """One line for ``pytest_report_header``: what this session will do."""
        parts = [f"hardware={self.hardware}", f"seed={self.seed}"]
        if self.baseline:
            parts.append(f"baseline={self.baseline}")
        if self.baseline_ref:
            parts.append(f"baseline-ref={self.baseline_ref}")
        if self.baseline or self.baseline_ref:
            parts.append(f"regression-threshold={self.regression_threshold * 100:g}%")
        outputs = [f"{name}={path}" for name, path in (
            ("json", self.json_path), ("benchmark-json", self.benchmark_json),
            ("github-benchmark-json", self.github_benchmark_json),
            ("save-baseline", self.save_baseline), ("markdown", self.markdown),
            ("html", self.html)) if path]
        flags = [name for name, on in (("fail-on-skip", self.fail_on_skip),
                                       ("update-golden", self.update_golden)) if on]
        return "torchbridge: " + ", ".join(parts + outputs + flags)


def parse_threshold(text: str) -> float:
    """``'10%'`` or ``0.1`` → 0.1; anything else is a usage error."""
    value = str(text).strip()
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise pytest.UsageError(f"--tb-regression-threshold: cannot read {text!r}; write "
                                "e.g. '10%' or 0.1") from None
    if not 0 < number < 10:
        raise pytest.UsageError(f"--tb-regression-threshold: {text!r} must be a positive "
                                "fraction such as 0.1 or '10%'")
    return number


def _option(config: pytest.Config, name: str) -> object:
    """An option that a feature module may not have registered (e.g. ``-p no:...``)."""
    try:
        return config.getoption(name)
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return str(value) if value else None


def _baseline_ref(config: pytest.Config) -> str | None:
    cli = _option(config, "--tb-baseline-ref")
    if cli is not None:  # an explicit empty value switches the env/ini default off
        return str(cli) or None
    try:
        ini = str(config.getini("tb_baseline_ref"))
    except ValueError:
        ini = ""
    return os.environ.get(BASELINE_REF_ENV) or ini or None


def resolve(config: pytest.Config) -> Settings:
    """Read every option once; bad values raise :class:`pytest.UsageError`."""
    cli = _option(config, "--tb-hardware")
    env = os.environ.get(HARDWARE_ENV)
    ini = str(config.getini("tb_hardware"))
    threshold = _option(config, "--tb-regression-threshold")
    pythonpath = _option(config, "--tb-baseline-pythonpath") or []
    return Settings(
        hardware=str(cli or env or ini or "auto"),
        hardware_explicit=bool(cli or env or ini not in ("", "auto")),
        fail_on_skip=bool(_option(config, "--tb-fail-on-skip")),
        update_golden=bool(_option(config, "--tb-update-golden")),
        seed=int(_option(config, "--tb-seed") or 0),  # type: ignore[call-overload]
        gpu_pinning=_option(config, "--tb-gpu-pinning") != "off",
        model_fixture=str(config.getini("tb_model_fixture")),
        input_fixture=str(config.getini("tb_input_fixture")),
        factory_fixture=str(config.getini("tb_factory_fixture")),
        spec_fixture=str(config.getini("tb_spec_fixture")),
        json_path=_text(_option(config, "--tb-json")),
        benchmark_json=_text(_option(config, "--tb-benchmark-json")),
        github_benchmark_json=_text(_option(config, "--tb-github-benchmark-json")),
        markdown=_text(_option(config, "--tb-markdown")),
        html=_text(_option(config, "--tb-html")),
        checklist_pyproject=bool(_option(config, "--tb-checklist-pyproject")
                                 or config.getini("tb_checklist_pyproject")),
        save_baseline=_text(_option(config, "--tb-save-baseline")),
        baseline=_text(_option(config, "--tb-baseline")),
        regression_threshold=DEFAULT_THRESHOLD if threshold is None
        else parse_threshold(str(threshold)),
        baseline_ref=_baseline_ref(config),
        baseline_pythonpath=tuple(p for entry in pythonpath  # type: ignore[attr-defined]
                                  for p in str(entry).split(os.pathsep) if p),
        ab_serve=_text(_option(config, "--tb-ab-serve")),
    )


def settings(config: pytest.Config) -> Settings:
    """The session's settings, resolved on first use (``pytest_configure``) and cached."""
    if SETTINGS_KEY not in config.stash:
        config.stash[SETTINGS_KEY] = resolve(config)
    return config.stash[SETTINGS_KEY]
