"""The pickle-level hostile corpus (issue 12): verdicts by the allowlist, globals resolved
the way pickle resolves them, and ``allow_code`` never letting an unknown call in.

Nothing here runs a payload: files are scanned, and every load goes through the
product's loaders, which must refuse them (the marker files are checked after each).
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path

import pytest
import torch
from hostile import Built, build_all
from hostile.pickles import CASES, Reduce

from torchbridge.cli.scan import main as scan_main
from torchbridge.security.pickles import scan_pickle_stream
from torchbridge.security.policy import classify
from torchbridge.security.safe_load import (
    UnsafeModelError,
    guarded_pickle_module,
    load_checkpoint,
)
from torchbridge.security.scan import scan_file
from torchbridge.security.verdict import Verdict

BUILT = Built


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BUILT:
    """Every case built once, each in its own folder: name → (case, file, marker)."""
    return build_all(CASES, tmp_path_factory.mktemp("hostile-pickles"))


def test_every_case_gets_its_verdict_and_runs_nothing(built: BUILT) -> None:
    wrong = {}
    for name, (case, path, marker) in built.items():
        verdict = scan_file(path)
        if verdict.verdict.value not in case.verdicts:
            wrong[name] = (verdict.verdict.value, verdict.reasons[:3])
        assert not marker.exists(), name
    assert not wrong, wrong
    assert sum(c.malicious for c, _, _ in built.values()) >= 20


def test_tb_scan_fails_every_malicious_file_and_passes_the_benign_ones(
        built: BUILT, capsys: pytest.CaptureFixture[str]) -> None:
    for name, (case, path, _) in built.items():
        code = scan_main([str(path), "--no-secrets"])
        assert code == (1 if case.malicious else 0), (name, capsys.readouterr().out[-600:])
    capsys.readouterr()


def test_allow_code_never_lets_an_unknown_or_denylisted_call_in(built: BUILT) -> None:
    for name, (case, path, marker) in built.items():
        if not case.malicious:
            continue
        with pytest.raises(UnsafeModelError):
            load_checkpoint(path, allow_code=True)
        assert not marker.exists(), name


@pytest.mark.parametrize(("data", "expected"), [
    (b"\x80\x04\x8c\x13torch.serialization\x8c\tos.system\x93\x8c\x01x\x85R.",
     "torch.serialization.os.system"),
    (b"\x80\x04clogging\nos.system\n\x8c\x01x\x85R.", "logging.os.system"),
    (b"S'\\x70osix'\nS'sys\\x74em'\n\x93S'x'\n\x85R.", "posix.system"),
    (b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x01x\x85R.",
     "posix.system"),
    (b"\x80\x02c__builtin__\neval\n\x8c\x01x\x85R.", "builtins.eval"),
])
def test_globals_are_named_the_way_pickle_resolves_them(data: bytes, expected: str) -> None:
    found = scan_pickle_stream(io.BytesIO(data))
    assert expected in found.globals and expected in found.calls
    unsafe, _ = classify(found.globals)
    assert expected in unsafe


def test_every_pickle_of_a_stream_is_walked_whatever_its_protocol() -> None:
    benign = pickle.dumps({"a": 1}, protocol=2)
    evil = b"cposix\nsystem\n(S'x'\ntR."
    found = scan_pickle_stream(io.BytesIO(benign * 3 + evil))
    assert found.pickles == 4 and "posix.system" in found.globals


def test_the_full_unpickle_refuses_at_run_time_what_is_not_allowed(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    data = pickle.dumps(Reduce(print, f"would touch {marker}"), protocol=2)
    module = guarded_pickle_module()
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.print"):
        module.load(io.BytesIO(data))
    buffer = io.BytesIO()
    torch.save({"w": torch.nn.Linear(2, 2)}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False, pickle_module=module)
    assert isinstance(loaded["w"], torch.nn.Linear)  # a trusted class is rebuilt


class Settings:
    """A user class a checkpoint may carry."""

    def __init__(self, width: int) -> None:
        self.width = width


def test_allow_global_makes_a_class_safe_and_module_star_makes_it_code(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"settings": Settings(3)}, path)
    name = f"{__name__}.Settings"
    assert scan_file(path).verdict is Verdict.UNSAFE
    assert scan_file(path, allowed_globals=[name]).verdict is Verdict.SAFE
    assert scan_file(path, allowed_globals=[f"{__name__}.*"]).verdict is Verdict.CODE
    assert load_checkpoint(path, allowed_globals=[name])["settings"].width == 3
    with pytest.raises(UnsafeModelError, match="--allow-global"):
        load_checkpoint(path, allowed_globals=[f"{__name__}.*"])
    with caplog.at_level(logging.WARNING, logger="torchbridge.security"):
        loaded = load_checkpoint(path, allowed_globals=[f"{__name__}.*"], allow_code=True)
    assert loaded["settings"].width == 3


def test_numpy_extra_state_loads_and_tb_export_weights_takes_allow_global(
        built: BUILT, tmp_path: Path) -> None:
    _, path, _ = built["numpy_extra_state"]
    state = load_checkpoint(path)
    assert int(state["_extra_state"]["step"]) == 3
    from torchbridge.cli.export import build_parser

    args = build_parser().parse_args(["--model", "m:f", "--allow-global", "a.B",
                                      "--allow-global", "c.*", "--allow-pickle"])
    assert args.allow_global == ["a.B", "c.*"] and args.allow_pickle


def test_benign_files_load_through_the_product_loaders(built: BUILT) -> None:
    from torchbridge.loading import load_model

    for name in ("pt2_tb_export", "torchscript_tb_export"):
        loaded = load_model(str(built[name][1]))
        assert loaded.model(torch.randn(2, 4)).shape == (2, 2), name
    for name in ("state_dict_zip", "state_dict_legacy", "optimizer_state",
                 "trainer_checkpoint", "numpy_extra_state"):
        assert load_checkpoint(built[name][1]), name
    assert load_model(str(built["whole_torch_module"][1]), allow_pickle=True).source == \
        "pickle"


_EXTRA_MODULE = '''
import torch


class Settings:
    def __init__(self, width):
        self.width = width


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def get_extra_state(self):
        return Settings(3)

    def set_extra_state(self, state):
        self.settings = state

    def forward(self, x):
        return self.linear(x)


def build():
    return Net()
'''


def test_tb_export_weights_says_what_the_file_holds_and_takes_allow_global(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 12.10: the refusal names the objects and a way out the CLI has.
    import importlib
    import sys

    from torchbridge.cli.export import main as export_main
    from torchbridge.errors import ModelLoadError

    module_file = tmp_path / "tb_extra_mod.py"
    module_file.write_text(_EXTRA_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tb_extra_mod", raising=False)
    torch.save(importlib.import_module("tb_extra_mod").build().state_dict(),
               tmp_path / "w.pt")
    argv = ["--model", f"{module_file}:build", "--weights", str(tmp_path / "w.pt"),
            "--input-shape", "1,4", "--format", "safetensors", "--no-validate",
            "--output-dir", str(tmp_path / "out"), "--json"]
    with pytest.raises(ModelLoadError, match=r"holds other objects \(tb_extra_mod\.Settings\)"
                       r".*--allow-global tb_extra_mod\.Settings"):
        export_main(argv)
    from torchbridge.cli.arguments import load_from_args
    from torchbridge.cli.export import build_parser

    args = build_parser().parse_args([*argv, "--allow-global", "tb_extra_mod.Settings"])
    assert load_from_args(args).model.settings.width == 3


@pytest.mark.parametrize(("data", "stand_in"), [
    # collections.OrderedDict() called, then its result called: a gadget-chain shape.
    (b"\x80\x02ccollections\nOrderedDict\n)R)R.", "<call of a computed value>"),
    # BUILD on the class object itself sets attributes on argparse.Namespace.
    (b"\x80\x02cargparse\nNamespace\n}\x8c\x08__init__K\x01sb.",
     "<BUILD on a class or function>"),
    # list(range(2**31 - 1)): a type pickle has opcodes for, called.
    (b"\x80\x02cbuiltins\nlist\ncbuiltins\nrange\nJ\xff\xff\xff\x7f\x85R\x85R.",
     "<call of builtins.list>"),
])
def test_operations_no_saved_model_performs_are_unsafe(data: bytes, stand_in: str) -> None:
    found = scan_pickle_stream(io.BytesIO(data))
    assert stand_in in found.globals
    assert classify(found.globals)[0] == [stand_in]


def test_tb_check_and_checklists_take_allow_globals(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from torchbridge.checklist import load_checklist
    from torchbridge.checklist import load_model as checklist_model
    from torchbridge.checklist.loader import ALLOW_GLOBALS_ENV
    from torchbridge.cli.check import split_allow_globals
    from torchbridge.errors import ModelLoadError

    assert split_allow_globals(["--allow-global", "a.B", "-x", "--allow-global=c.*"]) == \
        (["a.B", "c.*"], ["-x"])
    (tmp_path / "tb_extra_mod.py").write_text(_EXTRA_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tb_extra_mod", raising=False)
    torch.save(importlib.import_module("tb_extra_mod").build().state_dict(),
               tmp_path / "w.pt")
    toml = ('[model]\nfactory = "tb_extra_mod.py:build"\nweights = "w.pt"\n{extra}'
            '[input]\nshape = [1, 4]\n[checks]\nforward = true\n')
    (tmp_path / "torchbridge.toml").write_text(toml.format(extra=""))
    plain = load_checklist(tmp_path / "torchbridge.toml")
    with pytest.raises(ModelLoadError, match=r"--allow-global tb_extra_mod\.Settings"):
        checklist_model(plain)
    monkeypatch.setenv(ALLOW_GLOBALS_ENV, "tb_extra_mod.Settings")  # what tb-check sets
    assert checklist_model(plain).settings.width == 3
    monkeypatch.delenv(ALLOW_GLOBALS_ENV)
    (tmp_path / "torchbridge.toml").write_text(
        toml.format(extra='allow_globals = ["tb_extra_mod.Settings"]\n'))
    assert checklist_model(load_checklist(tmp_path / "torchbridge.toml")).settings.width == 3


def test_builtin_types_named_as_values_are_safe(tmp_path: Path) -> None:
    import collections

    path = tmp_path / "stats.pt"
    torch.save({"counts": collections.defaultdict(list, {"a": [1]}), "w": torch.ones(2)},
               path)
    assert scan_file(path).verdict is Verdict.SAFE
    # torch's weights_only unpickler cannot SETITEM into a defaultdict: the refusal says
    # so, and the guarded full unpickle (allowlist enforced at run time) reads it.
    from torchbridge.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"SETITEM.*--allow-pickle"):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_code=True)["counts"]["a"] == [1]
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    torch.save(optimizer, tmp_path / "optimizer.pt")  # a whole optimizer: defaultdict(dict)
    assert scan_file(tmp_path / "optimizer.pt").verdict is Verdict.CODE


def test_an_alias_of_an_allowlisted_object_is_resolved_not_guessed() -> None:
    # Followed statically in already-imported torch/numpy modules: the object it names.
    assert classify(["torch.nn.Parameter"]) == ([], [])
    assert classify(["torch._utils.os.system"])[0] == ["torch._utils.os.system"]


def test_dicts_keyed_by_globals_and_odd_protocol0_lines_are_walked(tmp_path: Path) -> None:
    path = tmp_path / "dtypes.pt"
    torch.save({torch.float32: 1, torch.int64: 2}, path)
    assert scan_file(path).verdict is Verdict.SAFE
    # A non-decimal PUT argument: pickle fails there, and so does the walk (no crash),
    # keeping the global it saw first.
    found = scan_pickle_stream(io.BytesIO(b"cposix\nsystem\npx1\n."))
    assert found.error and "posix.system" in found.globals


def test_a_pt2_with_aotinductor_native_code_is_refused(built: BUILT, tmp_path: Path) -> None:
    import shutil
    import zipfile

    from torchbridge.security.safe_load import load_pt2

    path = tmp_path / "aoti.pt2"
    shutil.copy(built["pt2_tb_export"][1], path)
    with zipfile.ZipFile(path, "a") as archive:
        root = archive.namelist()[0].split("/", 1)[0]
        archive.writestr(f"{root}/data/aotinductor/model/model.so", b"\x7fELF")
    from torchbridge.security.pt2_archive import check_archive

    with pytest.raises(UnsafeModelError, match="refused"):
        load_pt2(path)
    with zipfile.ZipFile(path) as archive:
        assert any("AOTInductor native code" in p for p in check_archive(archive))


def test_allowing_one_name_trusts_its_module_not_its_whole_package(tmp_path: Path) -> None:
    # --allow-global torch.Size used to trust every class under torch., and
    # torch.package.PackageExporter(path) creates the file it is given.
    from torch.package.package_exporter import PackageExporter

    marker = tmp_path / "MARKER"
    path = tmp_path / "exporter.pkl"
    path.write_bytes(pickle.dumps(Reduce(PackageExporter, str(marker)), protocol=4))
    exporter = "torch.package.package_exporter.PackageExporter"
    assert classify([exporter], ["torch.Size"])[0] == [exporter]
    with pytest.raises(UnsafeModelError):
        load_checkpoint(path, allowed_globals=["torch.Size"], allow_code=True)
    assert not marker.exists()
    assert classify([exporter], ["torch.*"]) == ([], [exporter])  # asked for, explicitly


@pytest.mark.parametrize("text", ["2**(10**10)", "Pow(Integer(10), Integer(10**12))",
                                  "1 << 10**9", "S(\"Symbol('a')\")", "s0.func(s1)"])
def test_pt2_sympy_strings_that_cost_or_run_more_than_arithmetic_are_refused(
        text: str) -> None:
    from torchbridge.security.pt2_program import sympy_problem

    assert sympy_problem(text)


@pytest.mark.parametrize("text", ["Mul(Integer(2), Symbol('s74', positive=True, integer=True))",
                                  "2*s74", "Max(1, s0)", "FloorDiv(s0, 2)", "s0**2"])
def test_pt2_sympy_strings_torch_writes_pass(text: str) -> None:
    from torchbridge.security.pt2_program import sympy_problem

    assert sympy_problem(text) is None
