"""Secret scanning of model files and live models.

Detectors are the regular expressions detect-secrets and gitleaks use (AWS, GitHub,
Slack, Stripe, OpenAI, Hugging Face, private keys, JWTs, credentials in URLs) plus two
Shannon-entropy detectors (base64-like and hex strings). Places scanned: state-dict
keys, safetensors ``__metadata__``, ONNX ``metadata_props`` and every ``doc_string``
(model, graph, nodes), ``.pt2`` extra files and other text members of archives, string
constants inside pickles, and the string attributes and config objects of a model.

Findings carry a location and a redacted value; the secret itself is never stored.

Example::

    find_secrets("token: ghp_" + "a" * 36, "notes")
    # [SecretFinding(kind='github-token', location='notes', redacted='ghp_**** (40 chars)')]
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchbridge.security.verdict import SecretFinding


@dataclass(frozen=True)
class Detector:
    """A named pattern; ``public_prefix`` characters of a match may be shown (``AKIA``)."""

    kind: str
    pattern: re.Pattern[str]
    public_prefix: int = 0


DETECTORS: tuple[Detector, ...] = (
    Detector("aws-access-key-id",
             re.compile(r"\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})\b"), 4),
    Detector("aws-secret-access-key", re.compile(
        r"(?i)aws.{0,20}?(?:secret|key).{0,20}?[\s'\"=:]+([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])")),
    Detector("github-token", re.compile(r"\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36,255})\b"), 4),
    Detector("github-token", re.compile(r"\b(github_pat_[A-Za-z0-9_]{82})\b"), 11),
    Detector("slack-token", re.compile(r"\b(xox[abposr]-[0-9A-Za-z-]{10,250})"), 5),
    Detector("slack-webhook", re.compile(
        r"(https://hooks\.slack\.com/services/T[A-Z0-9_]+/B[A-Z0-9_]+/[A-Za-z0-9_]+)"), 33),
    Detector("stripe-key", re.compile(r"\b([rs]k_live_[0-9a-zA-Z]{16,247})\b"), 8),
    Detector("openai-key", re.compile(
        r"\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,})"), 3),
    Detector("openai-key", re.compile(r"\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,})"), 3),
    Detector("huggingface-token", re.compile(r"\b(hf_[A-Za-z0-9]{34})\b"), 3),
    Detector("private-key", re.compile(
        r"(-----BEGIN (?:(?:RSA|DSA|EC|OPENSSH|PGP|ENCRYPTED) )?PRIVATE KEY(?: BLOCK)?-----)"),
        0),
    Detector("jwt", re.compile(
        r"\b(eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})")),
    Detector("url-credentials", re.compile(
        r"\b([a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s/:@'\"]{1,100}:[^\s/@'\"]{3,100}@"
        r"[A-Za-z0-9.-]+)")),
)

_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{20,}")
_HEX_TOKEN = re.compile(r"\b[0-9a-fA-F]{32,}\b")
BASE64_ENTROPY = 4.5
HEX_ENTROPY = 3.0
_HASH_CONTEXT = re.compile(r"(?i)(sha\d*|md5|blake\w*|hash|digest|commit|revision|rev|git|"
                           r"checksum|etag|uuid|id)\W{0,3}$")
_PLACEHOLDERS = re.compile(r"(?i)(example|placeholder|changeme|dummy|xxxx|\*\*\*|<|\$\{)")


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``."""
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def redact(value: str, public_prefix: int = 0) -> str:
    """``ghp_**** (40 chars)``: the type prefix at most, never the secret part."""
    return f"{value[:public_prefix]}**** ({len(value)} chars)"


def _valid_jwt(token: str) -> bool:
    head = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded)


def _high_entropy(text: str, location: str, taken: set[str]) -> list[SecretFinding]:
    found = []
    for match in _HEX_TOKEN.finditer(text):
        token = match.group(0)
        # A hex secret mixes digits and letters; digit-only ids (torch's serialization
        # id) are not secrets, nor are digests labelled as such (commit, sha256: ...).
        if _HASH_CONTEXT.search(text[max(0, match.start() - 16):match.start()]):
            continue
        if token not in taken and re.search(r"[a-fA-F]", token) and re.search(r"\d", token) \
                and shannon_entropy(token) > HEX_ENTROPY:
            taken.add(token)
            found.append(SecretFinding("high-entropy-hex", location, redact(token)))
    for match in _BASE64_TOKEN.finditer(text):
        token = match.group(0)
        if any(token in t or t in token for t in taken) or _PLACEHOLDERS.search(token):
            continue
        classes = sum(bool(re.search(p, token)) for p in ("[a-z]", "[A-Z]", "[0-9]"))
        if classes == 3 and shannon_entropy(token) > BASE64_ENTROPY:
            taken.add(token)
            found.append(SecretFinding("high-entropy-string", location, redact(token)))
    return found


def find_secrets(text: str, location: str, *, entropy: bool = True) -> list[SecretFinding]:
    """Secrets in one string. ``location`` says where the string came from."""
    if len(text) < 8:
        return []
    findings: list[SecretFinding] = []
    taken: set[str] = set()
    for detector in DETECTORS:
        for match in detector.pattern.finditer(text):
            value = match.group(1)
            if value in taken or (detector.kind == "jwt" and not _valid_jwt(value)):
                continue
            if detector.kind == "url-credentials" and _PLACEHOLDERS.search(value):
                continue
            taken.add(value)
            findings.append(SecretFinding(detector.kind, location,
                                          redact(value, detector.public_prefix)))
    if entropy:
        findings.extend(_high_entropy(text, location, taken))
    return findings


def scan_strings(pairs: Iterable[tuple[str, str]]) -> list[SecretFinding]:
    """Secrets in (location, text) pairs, e.g. a pickle's string constants."""
    return [f for location, text in pairs for f in find_secrets(text, location)]


# --------------------------------------------------------------------------- formats


def scan_safetensors_header(header: Mapping[str, Any], where: str) -> list[SecretFinding]:
    """Secrets in a safetensors header: tensor names and ``__metadata__``."""
    findings = []
    for key, value in header.items():
        if key == "__metadata__" and isinstance(value, Mapping):
            for meta_key, meta_value in value.items():
                findings += find_secrets(str(meta_key), f"{where}: __metadata__ key")
                findings += find_secrets(str(meta_value),
                                         f"{where}: __metadata__[{meta_key!r}]")
        else:
            findings += find_secrets(key, f"{where}: tensor name")
    return findings


def scan_onnx(path: str | Path) -> list[SecretFinding]:
    """Secrets in an ONNX model's metadata_props, doc strings and names (external data is
    not read: it holds tensor bytes only)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    where = Path(path).name
    findings = find_secrets(model.doc_string, f"{where}: model.doc_string")
    findings += find_secrets(model.producer_name, f"{where}: model.producer_name")
    for prop in model.metadata_props:
        findings += find_secrets(prop.key, f"{where}: metadata_props key")
        findings += find_secrets(prop.value, f"{where}: metadata_props[{prop.key!r}]")
    findings += _onnx_graph(model.graph, f"{where}: graph")
    for function in model.functions:
        findings += find_secrets(function.doc_string, f"{where}: function "
                                                      f"{function.name!r}.doc_string")
    return findings


def _onnx_graph(graph: Any, where: str) -> list[SecretFinding]:
    findings = find_secrets(graph.doc_string, f"{where}.doc_string")
    for init in graph.initializer:
        findings += find_secrets(init.name, f"{where}.initializer name")
        findings += find_secrets(init.doc_string, f"{where}.initializer {init.name!r}"
                                                  ".doc_string")
    for index, node in enumerate(graph.node):
        label = f"{where}.node[{index}] {node.name or node.op_type!r}"
        findings += find_secrets(node.doc_string, f"{label}.doc_string")
        for attr in node.attribute:
            if attr.type == attr.STRING:
                findings += find_secrets(attr.s.decode("utf-8", "replace"),
                                         f"{label}.attribute {attr.name!r}")
            if attr.type == attr.GRAPH:
                findings += _onnx_graph(attr.g, f"{label}.{attr.name}")
        for prop in getattr(node, "metadata_props", ()):
            findings += find_secrets(prop.value, f"{label}.metadata_props[{prop.key!r}]")
    return findings


# --------------------------------------------------------------------------- live models

_MODULE_INTERNALS = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
                     "_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks",
                     "_state_dict_pre_hooks", "_load_state_dict_post_hooks",
                     "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                     "_forward_pre_hooks_with_kwargs", "_is_full_backward_hook"}
_MAX_DEPTH = 5
_MAX_ITEMS = 2000


def scan_model(model: Any) -> list[SecretFinding]:
    """Secrets in a live model: state-dict keys, string attributes of every submodule, and
    config objects (dataclasses, dicts, objects with ``to_dict()``) hanging off them."""
    import torch

    findings: list[SecretFinding] = []
    if not isinstance(model, torch.nn.Module):
        return _walk(model, "model", 0, set())
    for key in model.state_dict():
        findings += find_secrets(key, f"state_dict key {key!r}")
    seen: set[int] = set()
    for name, module in model.named_modules():
        prefix = f"model.{name}" if name else "model"
        for attr, value in vars(module).items():
            if attr in _MODULE_INTERNALS or isinstance(value, torch.Tensor):
                continue
            findings += _walk(value, f"{prefix}.{attr}", 0, seen)
    return findings


def _walk(value: Any, where: str, depth: int, seen: set[int]) -> list[SecretFinding]:
    import torch

    if isinstance(value, str):
        return find_secrets(value, f"{where} (attribute)")
    if isinstance(value, bytes) and value.isascii():
        return find_secrets(value.decode("ascii"), f"{where} (attribute)")
    if depth >= _MAX_DEPTH or id(value) in seen or value is None or \
            isinstance(value, int | float | bool | torch.Tensor | torch.nn.Module):
        return []
    seen.add(id(value))
    findings: list[SecretFinding] = []
    if isinstance(value, Mapping):
        for index, (key, item) in enumerate(value.items()):
            if index >= _MAX_ITEMS:
                break
            findings += find_secrets(str(key), f"{where} key") if isinstance(key, str) else []
            findings += _walk(item, f"{where}[{key!r}]", depth + 1, seen)
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            if index >= _MAX_ITEMS:
                break
            findings += _walk(item, f"{where}[{index}]", depth + 1, seen)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            findings += _walk(getattr(value, f.name, None), f"{where}.{f.name}", depth + 1,
                              seen)
    elif callable(getattr(value, "to_dict", None)) and not isinstance(value, type):
        try:
            data = value.to_dict()
        except Exception:  # a broken to_dict is not a secret; the attributes still are
            data = getattr(value, "__dict__", {})
        findings += _walk(data, where, depth + 1, seen)
    elif hasattr(value, "__dict__") and not callable(value) and \
            type(value).__module__ not in ("builtins", "torch"):
        findings += _walk(vars(value), where, depth + 1, seen)
    return findings
