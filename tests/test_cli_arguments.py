"""One vocabulary of model, input and device options across every command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch

from torchbridge.cli import benchmark, export, optimize, profile, serve
from torchbridge.cli.arguments import inputs_from_args, parse_args, spec_from_args
from torchbridge.cli.main import main as tb
from torchbridge.errors import ConfigError, HardwareUnavailable
from torchbridge.hardware import check_device

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "benchmark": benchmark.build_parser, "export": export.build_parser,
    "optimize": optimize.build_parser, "profile": profile.build_parser,
    "serve": serve._parser,
}
SHARED = ["--model", "m.pt2", "--weights", "w.safetensors", "--allow-global", "a.B",
          "--input-shape", "input_ids=2,8", "--input-shape", "attention_mask=2,8",
          "--dtype", "int64", "--device", "cpu"]

TEXT_MODEL = '''
import torch

class Text(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask):
        hidden = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        return self.head(hidden.sum(dim=1))

def build():
    torch.manual_seed(0)
    return Text().eval()
'''


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_command_reads_the_shared_model_input_and_device_options(command: str) -> None:
    args = PARSERS[command]().parse_args(SHARED)
    assert (args.model, args.weights, args.allow_global, args.input_shape, args.dtype,
            args.device) == ("m.pt2", "w.safetensors", ["a.B"],
                             ["input_ids=2,8", "attention_mask=2,8"], ["int64"], "cpu")


@pytest.mark.parametrize("command", ["export", "optimize", "serve"])
def test_commands_that_keep_a_spec_read_shared_dims(command: str) -> None:
    args = PARSERS[command]().parse_args(
        [*SHARED, "--dim", "seq=input_ids:1,attention_mask:1:1-512"])
    dim = spec_from_args(args).dims["seq"]
    assert (dim.axes, dim.min, dim.max) == ({"input_ids": 1, "attention_mask": 1}, 1, 512)


def test_named_shapes_give_keyword_inputs_with_per_name_dtypes() -> None:
    args = argparse.Namespace(input_shape=["ids=2,8", "scale=2,1"],
                              dtype=["ids=int64", "scale=float32"])
    inputs = inputs_from_args(args, torch.nn.Embedding(30, 4))
    assert {k: (tuple(v.shape), v.dtype) for k, v in inputs.items()} == {
        "ids": ((2, 8), torch.int64), "scale": ((2, 1), torch.float32)}
    assert int(inputs["ids"].max()) < 30


def test_named_and_unnamed_shapes_do_not_mix() -> None:
    args = argparse.Namespace(input_shape=["ids=2,8", "2,8"], dtype=None)
    with pytest.raises(ConfigError, match="name every input"):
        inputs_from_args(args, torch.nn.Identity())


def test_one_device_validator_knows_xpu() -> None:
    if torch.xpu.is_available():
        pytest.skip("an XPU is present here")
    with pytest.raises(HardwareUnavailable, match="XPU is not available here"):
        check_device("xpu")
    with pytest.raises(HardwareUnavailable, match="not a device name"):
        check_device("gpu0")


@pytest.mark.parametrize("command", ["benchmark", "export", "optimize", "profile", "serve"])
def test_every_command_refuses_an_absent_device_the_same_way(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.xpu.is_available():
        pytest.skip("an XPU is present here")
    assert tb([command, "--model", "x:y", "--device", "xpu"]) == 2
    assert "--device xpu: XPU is not available here" in capsys.readouterr().err


def test_the_old_serve_dtype_spelling_still_works_with_a_note(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args(serve._parser(), ["--model", "m", "--input-dtype", "int64"])
    assert args.dtype == ["int64"]
    assert "--input-dtype is deprecated; use --dtype" in capsys.readouterr().err


def test_served_text_model_takes_named_inputs_of_any_declared_length(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchbridge.serving import ServerConfig
    from torchbridge.serving.loader import build_app
    from torchbridge.serving.server import ServerThread

    (tmp_path / "textmodels.py").write_text(TEXT_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = parse_args(serve._parser(), [
        "--model", "textmodels:build", "--input-shape", "input_ids=1,8",
        "--input-shape", "attention_mask=1,8", "--dtype", "int64",
        "--dim", "seq=input_ids:1,attention_mask:1:1-64"])
    app = build_app(args.model, None, ServerConfig(), input_shapes=[(1, 8), (1, 8)],
                    input_names=["input_ids", "attention_mask"], input_dtypes=args.dtype,
                    input_spec=spec_from_args(args))
    with ServerThread(app) as server:
        response = httpx.post(f"{server.url}/predict", timeout=30, json={
            "inputs": {"input_ids": [[1, 2, 3, 4, 5]], "attention_mask": [[1, 1, 1, 1, 0]]}})
    assert response.status_code == 200, response.text
