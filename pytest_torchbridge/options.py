"""Command-line and ini options. Precedence: marker > command line > environment > ini."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

HARDWARE_ENV = "TB_HARDWARE"


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchbridge", "TorchBridge production-readiness checks")
    group.addoption("--tb-hardware", default=None, metavar="DEVICES",
                    help="where checks run: auto, cpu, cuda, cuda:N, mps, xpu, or a comma list "
                         f"(default: ${HARDWARE_ENV}, then ini tb_hardware, then auto)")
    group.addoption("--tb-fail-on-skip", action="store_true", default=False,
                    help="fail the session when any check was skipped for lack of hardware, "
                         "so a CI job on the wrong runner cannot go green")
    group.addoption("--tb-update-golden", action="store_true", default=False,
                    help="write golden outputs for tb.accuracy instead of comparing")
    group.addoption("--tb-seed", type=int, default=None,
                    help="base seed; each item seeds torch from it and its node id (default 0)")
    group.addoption("--tb-gpu-pinning", choices=("auto", "off"), default="auto",
                    help="under xdist, pin each worker to its own GPU (auto) or not (off)")
    group.addoption("--tb-json", default=None, metavar="PATH",
                    help="write the full TorchBridge report (every result, metrics, samples, "
                         "hardware, versions, commit) as JSON")
    parser.addini("tb_hardware", "default for --tb-hardware", default="auto")
    parser.addini("tb_model_fixture", "fixture providing the model", default="model")
    parser.addini("tb_input_fixture", "fixture providing the sample input",
                  default="sample_input")
    parser.addini("tb_factory_fixture", "optional fixture building a fresh model",
                  default="model_factory")
    parser.addini("tb_spec_fixture", "optional fixture giving the input spec",
                  default="input_spec")


@dataclass(frozen=True)
class Settings:
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


def settings(config: pytest.Config) -> Settings:
    cli = config.getoption("--tb-hardware")
    env = os.environ.get(HARDWARE_ENV)
    ini = str(config.getini("tb_hardware"))
    return Settings(
        hardware=cli or env or ini or "auto",
        hardware_explicit=bool(cli or env or ini not in ("", "auto")),
        fail_on_skip=bool(config.getoption("--tb-fail-on-skip")),
        update_golden=bool(config.getoption("--tb-update-golden")),
        seed=config.getoption("--tb-seed") or 0,
        gpu_pinning=config.getoption("--tb-gpu-pinning") == "auto",
        model_fixture=str(config.getini("tb_model_fixture")),
        input_fixture=str(config.getini("tb_input_fixture")),
        factory_fixture=str(config.getini("tb_factory_fixture")),
        spec_fixture=str(config.getini("tb_spec_fixture")),
    )
