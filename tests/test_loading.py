"""Model loading for ``--model``: every supported form, and a clear error for everything else."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_model

from torchbridge import loading
from torchbridge.errors import ConfigError, ModelLoadError
from torchbridge.inputs import (
    check_inputs_fit,
    parse_shape,
    parse_shapes,
    synthesize_inputs,
    vocab_size,
)
from torchbridge.loading import OnnxModel, detect_kind, load_model

FACTORY_MODULE = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                        torch.nn.Linear(16, 4))

    def forward(self, x):
        return self.body(x)

def build():
    torch.manual_seed(0)
    return Net().eval()

def build_other_seed():
    torch.manual_seed(1)
    return Net().eval()

NOT_CALLABLE = 3
'''


def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 4)).eval()


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "netmod.py"
    path.write_text(FACTORY_MODULE)
    return path


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 8, generator=torch.Generator().manual_seed(2))


def test_pt2_archive_loads_with_its_example_inputs(tmp_path: Path, x: torch.Tensor) -> None:
    net = make_net()
    torch.export.save(torch.export.export(net, (x,)), str(tmp_path / "net.pt2"))
    loaded = load_model(str(tmp_path / "net.pt2"))
    assert loaded.source == "pt2"
    torch.testing.assert_close(loaded.model(x), net(x))
    assert isinstance(loaded.example_inputs, tuple)
    assert loaded.example_inputs[0].shape == (3, 8)
    assert len(loaded.sha256["net.pt2"]) == 64


def test_torchscript_is_recognised_by_content_whatever_the_suffix(tmp_path: Path,
                                                                   x: torch.Tensor) -> None:
    net = make_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(net, x), str(tmp_path / "weights.bin"))
    loaded = load_model(str(tmp_path / "weights.bin"))
    assert loaded.source == "torchscript"
    torch.testing.assert_close(loaded.model(x), net(x))


def test_onnx_file_loads_as_a_callable_onnxruntime_session(tmp_path: Path,
                                                            x: torch.Tensor) -> None:
    net = make_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp_path / "net.onnx"), dynamo=False,
                          input_names=["features"], dynamic_axes={"features": {0: "batch"}})
    loaded = load_model(str(tmp_path / "net.onnx"))
    assert loaded.source == "onnx"
    assert isinstance(loaded.model, OnnxModel)
    assert loaded.model.input_names == ["features"]
    torch.testing.assert_close(loaded.model(x), net(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loaded.model(features=x[:1]), net(x[:1]), rtol=1e-4, atol=1e-5)


def test_factory_with_safetensors_weights_gets_those_weights(factory_file: Path, tmp_path: Path,
                                                             x: torch.Tensor) -> None:
    other = load_model(f"{factory_file}:build_other_seed").model
    save_model(other, str(tmp_path / "w.safetensors"))
    loaded = load_model(f"{factory_file}:build", str(tmp_path / "w.safetensors"))
    assert loaded.source == "factory"
    torch.testing.assert_close(loaded.model(x), other(x), rtol=0, atol=0)
    assert set(loaded.sha256) == {"w.safetensors"}


def test_factory_with_a_state_dict_file_loads_it_weights_only(factory_file: Path,
                                                              tmp_path: Path,
                                                              x: torch.Tensor) -> None:
    other = load_model(f"{factory_file}:build_other_seed").model
    torch.save(other.state_dict(), tmp_path / "w.pt")
    loaded = load_model(f"{factory_file}:build", str(tmp_path / "w.pt"))
    torch.testing.assert_close(loaded.model(x), other(x), rtol=0, atol=0)


def test_weights_that_do_not_fit_name_the_offending_keys(factory_file: Path,
                                                         tmp_path: Path) -> None:
    save_model(torch.nn.Linear(8, 4), str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelLoadError, match=r"do not fit the model Net.*(Missing|Unexpected)"):
        load_model(f"{factory_file}:build", str(tmp_path / "w.safetensors"))


def test_truncated_safetensors_weights_are_reported_as_corrupt(factory_file: Path,
                                                               tmp_path: Path) -> None:
    save_model(load_model(f"{factory_file}:build").model, str(tmp_path / "w.safetensors"))
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[:-100])
    with pytest.raises(ModelLoadError, match="not a valid safetensors file"):
        load_model(f"{factory_file}:build", str(tmp_path / "w.safetensors"))


def test_pickled_whole_module_is_refused_naming_what_it_imports(tmp_path: Path) -> None:
    torch.save(make_net(), tmp_path / "model.pt")
    with pytest.raises(ModelLoadError) as excinfo:
        load_model(str(tmp_path / "model.pt"))
    message = str(excinfo.value)
    assert "runs arbitrary code" in message
    assert "torch.nn.modules.container.Sequential" in message
    assert "--allow-pickle" in message


def test_allow_pickle_loads_the_module_and_logs_that_it_runs_code(
        tmp_path: Path, x: torch.Tensor, caplog: pytest.LogCaptureFixture) -> None:
    net = make_net()
    torch.save(net, tmp_path / "model.pt")
    with caplog.at_level(logging.WARNING, logger="torchbridge.loading"):
        loaded = load_model(str(tmp_path / "model.pt"), allow_pickle=True)
    assert loaded.source == "pickle"
    torch.testing.assert_close(loaded.model(x), net(x))
    assert "runs code" in caplog.text


def test_every_checkpoint_read_goes_through_load_checkpoint(
        tmp_path: Path, factory_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, bool]] = []
    real = loading._load_checkpoint

    def spy(path: str | Path, *, weights_only: bool = True,
            allowed_globals: tuple[str, ...] = ()) -> object:
        seen.append((Path(path).name, weights_only))
        return real(path, weights_only=weights_only, allowed_globals=allowed_globals)

    monkeypatch.setattr(loading, "_load_checkpoint", spy)
    torch.save(make_net(), tmp_path / "model.pt")
    torch.save(load_model(f"{factory_file}:build").model.state_dict(), tmp_path / "w.pt")
    load_model(str(tmp_path / "model.pt"), allow_pickle=True)
    load_model(f"{factory_file}:build", str(tmp_path / "w.pt"))
    assert seen == [("model.pt", True), ("model.pt", False), ("w.pt", True)]


def test_a_state_dict_given_as_the_model_asks_for_its_architecture(tmp_path: Path) -> None:
    torch.save(make_net().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match=r"state dict .*--model package.module:factory"):
        load_model(str(tmp_path / "sd.pt"))


def test_nonexistent_model_path_is_an_error_not_a_substitute(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(str(tmp_path / "missing.pt2"))


def test_corrupt_onnx_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage that is not protobuf" * 10)
    with pytest.raises(ModelLoadError, match=r"bad\.onnx is not a readable ONNX model"):
        load_model(str(tmp_path / "bad.onnx"))


def test_random_bytes_are_not_mistaken_for_a_model(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"PK\x03\x04 not really a zip")
    assert detect_kind(tmp_path / "blob.bin") == "unknown"
    with pytest.raises(ModelLoadError, match="not a recognised model file"):
        load_model(str(tmp_path / "blob.bin"))


def test_missing_factory_lists_what_the_module_offers(factory_file: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no callable 'biuld'.*build"):
        load_model(f"{factory_file}:biuld")


def test_unimportable_module_says_so() -> None:
    with pytest.raises(ModelLoadError, match=r"cannot import 'no_such_pkg\.models'"):
        load_model("no_such_pkg.models:build")


def test_factory_returning_something_else_is_refused(factory_file: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"NOT_CALLABLE"):
        load_model(f"{factory_file}:NOT_CALLABLE")


# --------------------------------------------------------------------------- inputs


def test_input_shapes_parse_and_bad_ones_say_what_to_write() -> None:
    assert parse_shape("8,128") == (8, 128)
    assert parse_shapes(["2,3;2,5", "4"]) == [(2, 3), (2, 5), (4,)]
    with pytest.raises(ConfigError, match="such as 8,128"):
        parse_shape("8,abc")
    with pytest.raises(ConfigError, match="positive"):
        parse_shape("0,4")


def test_integer_inputs_stay_below_the_smallest_embedding_table() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(7, 4))
    ids = synthesize_inputs([(64, 32)], ["int64"], int_high=vocab_size(model))
    assert isinstance(ids, torch.Tensor)
    assert ids.dtype == torch.int64
    assert int(ids.max()) < 7
    check_inputs_fit(model, ids, "ids")


def test_synthesized_inputs_are_reproducible() -> None:
    a = synthesize_inputs([(2, 3), (2, 5)], ["float32", "int64"])
    b = synthesize_inputs([(2, 3), (2, 5)], ["float32", "int64"])
    assert isinstance(a, tuple)
    assert isinstance(b, tuple)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_input_shape_that_does_not_fit_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"does not accept inputs of \(8, 5\).*--input-shape"):
        check_inputs_fit(make_net(), torch.randn(8, 5), "(8, 5)")
