"""The general command-line and ini options; :mod:`pytest_torchbridge.settings` resolves
them (precedence: marker > command line > environment > ini)."""

from __future__ import annotations

import pytest

from pytest_torchbridge.settings import HARDWARE_ENV


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
