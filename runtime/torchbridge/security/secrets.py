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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchbridge.security.verdict import SecretFinding


@dataclass(frozen=True)
class Detector:
    """A named pattern; ``public_prefix`` characters of a match may be shown (``AKIA``).

    ``hints``: literal substrings every match contains (compared with the text
    lower-cased when ``fold``); a text holding none of them is not searched, which keeps
    a megabyte of ordinary text to a few milliseconds.
    """

    kind: str
    pattern: re.Pattern[str]
    public_prefix: int = 0
    hints: tuple[str, ...] = ()
    fold: bool = False

    def could_match(self, text: str, lower: str) -> bool:
        """Whether ``text`` (``lower``: the same, lower-cased) holds one of the hints."""
        haystack = lower if self.fold else text
        return not self.hints or any(h in haystack for h in self.hints)


DETECTORS: tuple[Detector, ...] = (
    Detector("aws-access-key-id",
             re.compile(r"\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})\b"), 4,
             ("A3T", "AKIA", "ASIA", "ABIA", "ACCA")),
    Detector("aws-secret-access-key", re.compile(
        r"(?i)aws.{0,20}?(?:secret|key).{0,20}?[\s'\"=:]+([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"),
        0, ("aws",), True),
    Detector("github-token", re.compile(r"\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36,255})\b"),
             4, ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    Detector("github-token", re.compile(r"\b(github_pat_[A-Za-z0-9_]{82})\b"), 11,
             ("github_pat_",)),
    Detector("slack-token", re.compile(r"\b(xox[abposr]-[0-9A-Za-z-]{10,250})"), 5, ("xox",)),
    Detector("slack-webhook", re.compile(
        r"(https://hooks\.slack\.com/services/T[A-Z0-9_]+/B[A-Z0-9_]+/[A-Za-z0-9_]+)"), 33,
        ("hooks.slack.com",)),
    Detector("stripe-key", re.compile(r"\b([rs]k_live_[0-9a-zA-Z]{16,247})\b"), 8,
             ("k_live_",)),
    Detector("openai-key", re.compile(
        r"\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,})"), 3,
        ("T3BlbkFJ",)),
    Detector("openai-key", re.compile(r"\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,})"), 3,
             ("sk-proj-", "sk-svcacct-", "sk-admin-")),
    Detector("huggingface-token", re.compile(r"\b(hf_[A-Za-z0-9]{34})\b"), 3, ("hf_",)),
    Detector("private-key", re.compile(
        r"(-----BEGIN (?:(?:RSA|DSA|EC|OPENSSH|PGP|ENCRYPTED) )?PRIVATE KEY(?: BLOCK)?-----)"),
        0, ("PRIVATE KEY",)),
    Detector("jwt", re.compile(
        r"\b(eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"), 0, ("eyJ",)),
    Detector("url-credentials", re.compile(
        r"\b([a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s/:@'\"]{1,100}:[^\s/@'\"]{3,100}@"
        r"[A-Za-z0-9.-]+)"), 0, ("://",)),
)

#: Every literal hint at once: one regex pass per string instead of one substring
#: search per hint (hints do not overlap one another, so none hides another).
_HINTS = re.compile("|".join(sorted(
    {re.escape(h) for d in DETECTORS if not d.fold for h in d.hints},
    key=len, reverse=True)))
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{20,}")
_HEX_TOKEN = re.compile(r"\b[0-9a-fA-F]{32,}\b")
BASE64_ENTROPY = 4.5
HEX_ENTROPY = 3.0
_HASH_CONTEXT = re.compile(r"(?i)(sha\d*|md5|blake\w*|hash|digest|commit|revision|rev|git|"
                           r"checksum|etag|uuid|guid|fingerprint|id)\W{0,5}$")
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


#: Keys whose values are identifiers or digests, not credentials (``_commit_hash``,
#: ``run_id``, ``data_fingerprint``, ``sha256``): high-entropy values under them are not
#: reported. Keys that name a credential win over these (``secret_id`` is still scanned).
_ID_KEY = re.compile(r"(?i)(^|[^a-z])(sha\d*|md5|blake\w*|hash(es)?|digest|commit|revision|"
                     r"rev|git|checksum|etag|uuid|guid|ids?|fingerprint|crc\d*|version|"
                     r"nonce|seed|run|name_or_path)($|[^a-z])")
_CREDENTIAL_KEY = re.compile(r"(?i)(secret|token|passw|pwd|api.?key|private|credential|auth)")
#: Lengths of the usual hex digests: md5 / uuid hex, sha1 / git, sha224, sha256, sha384,
#: sha512.
_DIGEST_LENGTHS = frozenset({32, 40, 56, 64, 96, 128})
_DIGEST_VALUE = re.compile(r"(?i)^(?:(?:sha\d+|md5|blake2b|git)[:=-])?([0-9a-f]+)$")


def is_identifier_key(key: str) -> bool:
    """Whether a dict key / label names a hash, id or fingerprint and not a credential."""
    return bool(_ID_KEY.search(key)) and not _CREDENTIAL_KEY.search(key)


def is_digest(value: str) -> bool:
    """Whether ``value`` is one hex digest of a standard length (optionally ``sha256:``)."""
    match = _DIGEST_VALUE.match(value.strip())
    return match is not None and len(match.group(1)) in _DIGEST_LENGTHS


def _labelled_as_id(text: str, start: int) -> bool:
    """Whether the 24 characters before ``start`` end in a hash / id label
    (``"data_hash": "``, ``commit ``) that does not name a credential."""
    before = text[max(0, start - 24):start]
    return bool(_HASH_CONTEXT.search(before)) and not _CREDENTIAL_KEY.search(before)


def _high_entropy(text: str, taken: set[str]) -> Iterator[tuple[str, str, int]]:
    for match in _HEX_TOKEN.finditer(text):
        token = match.group(0)
        # A hex secret mixes digits and letters; digit-only ids (torch's serialization
        # id) are not secrets, nor are digests labelled as such (commit, sha256: ...).
        if _labelled_as_id(text, match.start()) or len(token) in _DIGEST_LENGTHS:
            continue  # a labelled or whole digest: git sha, uuid hex, sha256
        if token not in taken and re.search(r"[a-fA-F]", token) and re.search(r"\d", token) \
                and shannon_entropy(token) > HEX_ENTROPY:
            taken.add(token)
            yield "high-entropy-hex", token, 0
    for match in _BASE64_TOKEN.finditer(text):
        token = match.group(0)
        if any(token in t or t in token for t in taken) or _PLACEHOLDERS.search(token) or \
                _labelled_as_id(text, match.start()):
            continue
        classes = sum(bool(re.search(p, token)) for p in ("[a-z]", "[A-Z]", "[0-9]"))
        if classes == 3 and shannon_entropy(token) > BASE64_ENTROPY:
            taken.add(token)
            yield "high-entropy-string", token, 0


def _matches(text: str, entropy: bool, context: str) -> Iterator[tuple[str, str, int]]:
    """(kind, secret value, public prefix length) of every secret in ``text``."""
    if len(text) < 8:
        return
    taken: set[str] = set()
    present = set(_HINTS.findall(text))
    if "aws" in text.lower():
        present.add("aws")
    for detector in DETECTORS:
        if detector.hints and present.isdisjoint(detector.hints):
            continue
        for match in detector.pattern.finditer(text):
            value = match.group(1)
            if value in taken or (detector.kind == "jwt" and not _valid_jwt(value)):
                continue
            if _PLACEHOLDERS.search(value) or (detector.kind != "private-key" and
                                               shannon_entropy(value) < 2.5):
                continue  # AKIAIOSFODNN7EXAMPLE, hf_XXXXXXXX..., ${DB_PASSWORD}
            taken.add(value)
            yield detector.kind, value, detector.public_prefix
    if entropy and not (context and is_identifier_key(context)) and not is_digest(text):
        yield from _high_entropy(text, taken)


def find_secrets(text: str, location: str, *, entropy: bool = True,
                 context: str = "") -> list[SecretFinding]:
    """Secrets in one string. ``location`` says where the string came from; ``context``
    is the dict key it is stored under (or the string just before it in a pickle), if
    known. Known credential shapes (AWS, GitHub, ...) are always reported; high-entropy
    strings are not when the context names a hash / id / fingerprint or the whole value
    is a hex digest of a standard length (a git sha, a ``uuid4().hex``, a sha256)."""
    return [SecretFinding(kind, location, redact(value, prefix))
            for kind, value, prefix in _matches(text, entropy, context)]


def redact_secrets(text: str) -> str:
    """``text`` with every credential-shaped substring replaced by its redacted form:
    the last guard on reasons and locations, which quote names and library messages."""
    for _, value, prefix in list(_matches(text, False, "")):
        text = text.replace(value, redact(value, prefix))
    return text


def scan_strings(pairs: Iterable[tuple[str, str]]) -> list[SecretFinding]:
    """Secrets in (location, text) pairs in the order a pickle holds them. A pickled dict
    holds each key just before its value, so the string before a value (from the same
    location) is its context: ``{"_commit_hash": "3f78..."}`` is a digest, not a secret.
    """
    findings: list[SecretFinding] = []
    previous: tuple[str, str] = ("", "")
    for location, text in pairs:
        context = previous[1] if previous[0] == location and len(previous[1]) <= 64 else ""
        findings += find_secrets(text, location, context=context)
        previous = (location, text)
    return findings


def name_findings(name: str, location: str) -> list[SecretFinding]:
    """Secrets in a name (a member, tensor or key name), also where ``_`` glues a
    secret to the rest (``AKIA..._notes.txt``), in one pass."""
    if len(name) < 10:
        return []
    text = name if "_" not in name else f"{name}\n{name.replace('_', ' ')}"
    return list(dict.fromkeys(find_secrets(text, location)))


def safe_name(value: object, width: int = 60) -> str:
    """A name (tensor name, dict key, member name) fit for a location or a message:
    ``repr`` of it, cut to ``width`` characters, or ``<redacted name, N chars>`` when it
    holds a secret. Locations and reasons must never print a secret in clear."""
    text = value if isinstance(value, str) else str(value)
    if name_findings(text, ""):
        return f"<redacted name, {len(text)} chars>"
    shown = text if len(text) <= width else text[:width] + "..."
    return repr(shown)


_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{8,}")


def decode_text(raw: bytes, runs: bool = True) -> str | None:
    """Text of a file or member for secret scanning: UTF-8, or UTF-16/32 when a byte
    order mark or the pattern of NUL bytes says so; for binary data, its printable runs of
    8+ characters with ``runs`` (``None`` if there are none, or without ``runs``)."""
    for bom, codec in ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
                       (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if raw.startswith(bom):
            return raw[len(bom):].decode(codec, "replace")
    sample = raw[:4096]
    half = len(sample) // 2
    if half >= 4:
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        # UTF-16 text of mostly ASCII: one byte of each pair is NUL, the other is not
        # (all-NUL or NUL-scattered binary is neither).
        if odd > 0.9 * half and even < 0.1 * half:
            return raw[: len(raw) // 2 * 2].decode("utf-16-le", "replace")
        if even > 0.9 * half and odd < 0.1 * half:
            return raw[: len(raw) // 2 * 2].decode("utf-16-be", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(raw) - 4:  # a character cut by a read limit
            return raw[: exc.start].decode("utf-8")
    if not runs:
        return None
    # Binary: the printable runs in it, as ``strings`` prints them.
    found = _PRINTABLE_RUN.findall(raw)
    return b"\n".join(found).decode("ascii") if found else None


# --------------------------------------------------------------------------- formats


def scan_safetensors_header(header: Mapping[str, Any], where: str) -> list[SecretFinding]:
    """Secrets in a safetensors header: tensor names and ``__metadata__`` keys and values
    (keys and names appear redacted in locations)."""
    findings = []
    for key, value in header.items():
        if key == "__metadata__" and isinstance(value, Mapping):
            for meta_key, meta_value in value.items():
                findings += find_secrets(str(meta_key), f"{where}: __metadata__ key")
                findings += find_secrets(str(meta_value),
                                         f"{where}: __metadata__[{safe_name(meta_key)}]",
                                         context=str(meta_key))
        else:
            findings += find_secrets(key, f"{where}: tensor name")
    return findings


#: Protobuf fields that hold tensor bytes, not text.
_ONNX_BINARY_FIELDS = frozenset({"raw_data", "float_data", "int32_data", "int64_data",
                                 "double_data", "uint64_data"})
_ONNX_MAX_STRINGS = 200_000


def scan_onnx(path: str | Path) -> list[SecretFinding]:
    """Secrets in every text field of an ONNX model: ``metadata_props`` keys and values,
    doc strings, producer name and version, domains, graph / node / input / output /
    initializer / value_info names, string attributes and string tensors, in subgraphs
    and functions too (external data is not read: it holds tensor bytes only).
    Locations name fields by path and index (``graph.node[3].name``), never by a name
    that could itself be the secret."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    where = Path(path).name
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    _proto_strings(model, "model", pairs, seen)
    findings = []
    for location, text, context in _with_context(pairs):
        findings += find_secrets(text, f"{where}: {location}", context=context)
    return findings


def _with_context(pairs: list[tuple[str, str]]) -> Iterable[tuple[str, str, str]]:
    """metadata_props ``value`` fields get their ``key`` as context."""
    previous = ("", "")
    for location, text in pairs:
        key_location = location[: -len("value")] + "key"
        context = previous[1] if location.endswith(".value") and \
            previous[0] == key_location else ""
        yield location, text, context
        previous = (location, text)


def _proto_strings(message: Any, where: str, out: list[tuple[str, str]],
                   seen: set[str]) -> None:
    """Append (location, text) for every string in a protobuf message tree."""
    for descriptor, value in message.ListFields():
        name = descriptor.name
        if name in _ONNX_BINARY_FIELDS or len(out) >= _ONNX_MAX_STRINGS:
            continue
        repeated = getattr(descriptor, "is_repeated", None)
        if repeated is None:  # protobuf < 5.28
            repeated = descriptor.label == descriptor.LABEL_REPEATED
        items = list(value) if repeated else [value]
        for index, item in enumerate(items):
            location = f"{where}.{name}[{index}]" if repeated else f"{where}.{name}"
            if descriptor.type == descriptor.TYPE_MESSAGE:
                _proto_strings(item, location, out, seen)
            elif isinstance(item, bytes | str):
                text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
                if len(text) >= 8 and (text not in seen or location.endswith(".value")):
                    seen.add(text)
                    out.append((location, text))


# --------------------------------------------------------------------------- live models

_MODULE_INTERNALS = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
                     "_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks",
                     "_state_dict_pre_hooks", "_load_state_dict_post_hooks",
                     "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                     "_forward_pre_hooks_with_kwargs", "_is_full_backward_hook"}
_MAX_DEPTH = 5
_MAX_ITEMS = 2000


def _bare(name: str) -> str:
    """An attribute or key name for a dotted location, or ``<redacted>`` if it is a
    secret itself."""
    return name if not safe_name(name).startswith("<redacted") else "<redacted>"


def scan_model(model: Any) -> list[SecretFinding]:
    """Secrets in a live model: state-dict keys, string attributes of every submodule, and
    config objects (dataclasses, dicts, objects with ``to_dict()``, and whatever their
    ``__dict__`` holds beyond declared fields) hanging off them. Locations never print a
    key or attribute name that is itself a secret."""
    import torch

    findings: list[SecretFinding] = []
    if not isinstance(model, torch.nn.Module):
        return _walk(model, "model", 0, set())
    for key in model.state_dict():
        findings += find_secrets(key, f"state_dict key {safe_name(key)}")
    seen: set[int] = set()
    for name, module in model.named_modules():
        prefix = f"model.{_bare(name)}" if name else "model"
        for attr, value in vars(module).items():
            if attr in _MODULE_INTERNALS or isinstance(value, torch.Tensor):
                continue
            findings += _walk(value, f"{prefix}.{_bare(attr)}", 0, seen, attr)
    return findings


def _walk(value: Any, where: str, depth: int, seen: set[int], key: str = ""
          ) -> list[SecretFinding]:
    import torch

    if isinstance(value, str):
        return find_secrets(value, f"{where} (attribute)", context=key)
    if isinstance(value, bytes) and value.isascii():
        return find_secrets(value.decode("ascii"), f"{where} (attribute)", context=key)
    if depth >= _MAX_DEPTH or id(value) in seen or value is None or \
            isinstance(value, int | float | bool | torch.Tensor | torch.nn.Module | type):
        return []
    seen.add(id(value))
    if isinstance(value, Mapping):
        return _walk_mapping(value, where, depth, seen, "[{}]")
    if isinstance(value, list | tuple | set | frozenset):
        findings: list[SecretFinding] = []
        for index, item in enumerate(value):
            if index >= _MAX_ITEMS:
                break
            findings += _walk(item, f"{where}[{index}]", depth + 1, seen, key)
        return findings
    return _walk_object(value, where, depth, seen)


def _walk_mapping(value: Mapping[Any, Any], where: str, depth: int, seen: set[int],
                  spelling: str) -> list[SecretFinding]:
    """Keys and values of a dict (``spelling`` ``[{}]``) or of an object's attributes
    (``.{}``)."""
    findings: list[SecretFinding] = []
    for index, (key, item) in enumerate(value.items()):
        if index >= _MAX_ITEMS:
            break
        text = key if isinstance(key, str) else str(key)
        if isinstance(key, str):
            findings += find_secrets(key, f"{where} key")
        label = spelling.format(safe_name(text) if spelling == "[{}]" else _bare(text))
        findings += _walk(item, f"{where}{label}", depth + 1, seen, text)
    return findings


def _walk_object(value: Any, where: str, depth: int, seen: set[int]) -> list[SecretFinding]:
    """A config object: declared dataclass fields, ``to_dict()`` and ``__dict__`` (a
    transformers config keeps extra keyword arguments as plain attributes)."""
    try:
        data = _config_attributes(value)
    except Exception:  # a property or to_dict that raises: what was read is scanned
        return []
    return _walk_mapping(data, where, depth, seen, ".{}")


def _config_attributes(value: Any) -> dict[str, Any]:
    import torch

    data: dict[str, Any] = {}
    if dataclasses.is_dataclass(value):
        data.update({f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)})
    if callable(getattr(value, "to_dict", None)):
        try:
            produced = value.to_dict()
        except Exception:  # a broken to_dict is not a secret; the attributes still are
            produced = {}
        if isinstance(produced, Mapping):
            data.update({str(k): v for k, v in produced.items() if str(k) not in data})
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, Mapping) and not callable(value) and \
            type(value).__module__ not in ("builtins", "torch") and \
            not isinstance(value, torch.nn.Module):
        data.update({str(k): v for k, v in attrs.items() if str(k) not in data})
    return data
