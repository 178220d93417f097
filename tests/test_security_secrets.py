"""Secret scanning: every planted kind is found in every place; real models report none.

Fake secrets are generated at run time (never committed), with the shapes real ones have.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from security_corpus import example_models

from torchbridge.security.scan import scan_file
from torchbridge.security.secrets import find_secrets, scan_model
from torchbridge.security.verdict import Verdict

_rng = random.Random(7)


def _pick(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _b64url(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


UPPER_DIGITS = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits
SECRETS = {
    "aws-access-key-id": "AKIA" + _pick(UPPER_DIGITS, 16),
    "github-token": "ghp_" + _pick(ALNUM, 36),
    "slack-token": "xoxb-" + _pick(string.digits, 11) + "-" + _pick(ALNUM, 24),
    "stripe-key": "sk_live_" + _pick(ALNUM, 24),
    "openai-key": "sk-proj-" + _pick(ALNUM, 20) + "T3BlbkFJ" + _pick(ALNUM, 20),
    "huggingface-token": "hf_" + _pick(string.ascii_letters, 34),
    "private-key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + _pick(ALNUM, 60)
                   + "\n-----END RSA PRIVATE KEY-----",
    "jwt": _b64url({"alg": "HS256", "typ": "JWT"}) + "." + _b64url({"sub": "42"}) + "."
           + _pick(ALNUM + "-_", 43),
    "url-credentials": "postgres://trainer:" + _pick(ALNUM, 14) + "@db.internal.corp:5432/m",
    "high-entropy-string": "Zq" + _pick(ALNUM, 46) + "9a",
}


def _assert_all_found(findings: list, place: str, text_of_report: str) -> None:
    kinds = {f.kind for f in findings}
    missing = set(SECRETS) - kinds
    assert not missing, f"not found in {place}: {missing}"
    for secret in SECRETS.values():
        core = secret.split("\n")[1] if "\n" in secret else secret
        assert core[8:] not in text_of_report, "a secret leaked into the report"


def _report(verdict_or_findings: object) -> str:
    if hasattr(verdict_or_findings, "to_dict"):
        return json.dumps(verdict_or_findings.to_dict())  # type: ignore[attr-defined]
    return json.dumps([f.to_dict() for f in verdict_or_findings])  # type: ignore[attr-defined]


def test_each_kind_found_in_state_dict_keys_of_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "keys.pt"
    torch.save({secret: torch.zeros(1) for secret in SECRETS.values()}, path)
    verdict = scan_file(path)
    assert verdict.verdict is Verdict.SECRETS
    assert all("data.pkl" in f.location for f in verdict.secrets)
    _assert_all_found(verdict.secrets, "pickle string constants", _report(verdict))


def test_each_kind_found_in_safetensors_metadata_and_tensor_names(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "meta.safetensors"
    save_file({"w": torch.zeros(2)}, str(path),
              metadata={f"note{i}": s for i, s in enumerate(SECRETS.values())})
    verdict = scan_file(path)
    assert verdict.verdict is Verdict.SECRETS
    assert all("__metadata__" in f.location for f in verdict.secrets)
    _assert_all_found(verdict.secrets, "__metadata__", _report(verdict))

    names = tmp_path / "names.safetensors"
    save_file({s: torch.zeros(1) for s in SECRETS.values()}, str(names))
    found = scan_file(names).secrets
    assert all("tensor name" in f.location for f in found)
    _assert_all_found(found, "tensor names", _report(found))


def _onnx_model(place: str, secret: str) -> object:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"], name="id0",
                            doc_string=secret if place == "node" else "")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1])], doc_string=secret if place == "graph" else "")
    model = helper.make_model(graph, doc_string=secret if place == "model" else "")
    if place == "metadata_props":
        onnx.helper.set_model_props(model, {"author_token": secret})
    return model


@pytest.mark.parametrize("place", ["metadata_props", "model", "graph", "node"])
def test_each_kind_found_in_onnx(tmp_path: Path, place: str) -> None:
    import onnx

    findings = []
    for index, secret in enumerate(SECRETS.values()):
        path = tmp_path / f"m{index}.onnx"
        onnx.save(_onnx_model(place, secret), str(path))  # type: ignore[arg-type]
        verdict = scan_file(path)
        assert verdict.verdict is Verdict.SECRETS, (place, verdict.reasons)
        findings += verdict.secrets
    label = "metadata_props" if place == "metadata_props" else "doc_string"
    assert all(label in f.location for f in findings)
    _assert_all_found(findings, f"onnx {place}", _report(findings))


def test_each_kind_found_in_pt2_extra_files(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2).eval()
    program = torch.export.export(model, (torch.randn(1, 2),))
    path = tmp_path / "model.pt2"
    torch.export.save(program, str(path),
                      extra_files={f"note{i}.txt": s for i, s in enumerate(SECRETS.values())})
    verdict = scan_file(path)
    assert verdict.format == "pt2" and verdict.verdict is Verdict.SECRETS
    assert all("note" in f.location for f in verdict.secrets)
    _assert_all_found(verdict.secrets, ".pt2 extra files", _report(verdict))


@dataclass
class HubConfig:
    repo: str
    token: str


class Leaky(torch.nn.Module):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)
        half = len(secrets) // 2
        self.fc.api_key = secrets[0]
        self.config = HubConfig("org/model", secrets[1])
        self.settings = {"tokens": secrets[2:half]}
        self.notes = secrets[half:]


def test_each_kind_found_in_live_model_attributes_and_configs() -> None:
    values = list(SECRETS.values())
    findings = scan_model(Leaky(values))
    locations = " ".join(f.location for f in findings)
    assert "model.fc.api_key" in locations and "model.config.token" in locations
    assert "model.settings" in locations
    _assert_all_found(findings, "live model", _report(findings))


def test_state_dict_keys_of_a_live_model_are_scanned() -> None:
    model = torch.nn.Module()
    model.register_buffer(SECRETS["github-token"], torch.zeros(1))
    [finding] = scan_model(model)
    assert finding.kind == "github-token" and "state_dict key" in finding.location


def test_redaction_shows_only_the_public_prefix() -> None:
    [finding] = find_secrets("token=" + SECRETS["github-token"], "x")
    assert finding.redacted == "ghp_**** (40 chars)"


def test_example_models_report_no_secrets(tmp_path: Path) -> None:
    from safetensors.torch import save_model

    for name, model in example_models().items():
        assert scan_model(model) == [], name
        for suffix in (".pt", ".safetensors"):
            path = tmp_path / f"{name}{suffix}"
            if suffix == ".pt":
                torch.save(model.state_dict(), path)
            else:
                save_model(model, str(path))
            verdict = scan_file(path)
            assert verdict.verdict is Verdict.SAFE, (path.name, verdict.reasons)


def test_exported_example_model_reports_no_secrets(tmp_path: Path) -> None:
    model = example_models()["mlp"]
    program = torch.export.export(model, (torch.randn(2, 256),))
    torch.export.save(program, str(tmp_path / "mlp.pt2"))
    torch.onnx.export(model, (torch.randn(2, 256),), str(tmp_path / "mlp.onnx"), dynamo=True,
                      verbose=False)
    for path in sorted(tmp_path.iterdir()):
        verdict = scan_file(path)
        assert verdict.verdict is Verdict.SAFE, (path.name, verdict.reasons)


@pytest.mark.parametrize("text", [
    "encoder.layers.11.self_attn.in_proj_weight",
    "0561108523619670529407770689069318267501",  # torch's serialization id
    "https://huggingface.co/org/model/resolve/main/config.json",
    "postgres://user:${DB_PASSWORD}@localhost/db",
    "sha256:3f786850e387550fdab836ed7e6dc881de23001b",
])
def test_ordinary_model_strings_are_not_secrets(text: str) -> None:
    assert find_secrets(text, "x") == []
