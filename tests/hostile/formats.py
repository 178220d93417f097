"""Container kinds of the hostile corpus (issue 12, items 4-9), built by code.

* 12.4 format detection: pickles any loader would read whatever the name or first
  bytes say (protocol 0, no ``PROTO``, ``.p`` / ``.sav`` / no suffix, ``model.onnx.data``),
  pickles inside zip members, tar, ``.tar.gz``, ``.pkl.gz``, zlib / xz streams,
  ``.npy`` / ``.npz`` object arrays, and polyglots (pickle + zip, safetensors + zip).
* 12.5 limits: many-member and nested zips that inflate far beyond their size, deep
  nesting, a FIFO named ``*.pkl``.
* 12.6 malformed safetensors headers, each a defect safetensors itself refuses.
* 12.7 / 12.8 secrets: used as names (which must be redacted in locations and reasons)
  and in places the scanner used to skip (ONNX names and versions, npz member names,
  numpy string arrays, UTF-16 text, tar.gz members). ``PLANTED[case]`` is the secret a
  case holds, so tests can check it never appears in clear in any output.
* 12.9 benign: digests and ids that are not secrets, numeric npz / npy, a gzip of a
  state dict, ONNX external data, archives of ordinary text.

Fake secrets are generated from a seeded RNG at build time (none is committed); every
malicious pickle calls ``os.system("touch <marker>")``, which nothing here runs.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import pickle
import random
import shlex
import string
import struct
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import Case

UNSAFE = frozenset({"unsafe"})
INVALID = frozenset({"invalid"})
REFUSED = frozenset({"unsafe", "invalid"})
SECRETS = frozenset({"secrets"})
SAFE = frozenset({"safe"})
Build = Callable[[Path, Path], Path]

_rng = random.Random(1212)
_UPPER = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits


def _aws_key() -> str:
    return "AKIA" + "".join(_rng.choice(_UPPER) for _ in range(16))


def _github_token() -> str:
    return "ghp_" + "".join(_rng.choice(_ALNUM) for _ in range(36))


#: case name → the secret planted in it (never to appear in clear in any report).
PLANTED: dict[str, str] = {}


class Reduce:
    """Pickles as ``func(*args)``; pickling only records the call."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def payload(marker: Path, protocol: int = 2) -> bytes:
    """A pickle that would run ``touch marker`` through ``os.system``."""
    return pickle.dumps(Reduce(os.system, f"touch {shlex.quote(str(marker))}"), protocol)


def _write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def _zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_bytes(members: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _state_dict_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.nn.Linear(4, 2).state_dict(), buffer)
    return buffer.getvalue()


def _safetensors_bytes(header: dict[str, Any] | None = None, data: bytes = b"\0" * 16,
                       raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(
        header if header is not None else
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(text)) + text + data


# --------------------------------------------------------------------------- 12.4


def _file(name: str, make: Callable[[Path], bytes]) -> Build:
    def build(directory: Path, marker: Path) -> Path:
        return _write(directory, name, make(marker))
    return build


def _legacy_protocol0(marker: Path) -> bytes:
    """A legacy torch.save layout with every pickle in protocol 0; the payload is the
    fourth (the main object), where a walker that stops after one pickle never looks."""
    parts = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001,
                                           "little_endian": True}]
    head = b"".join(pickle.dumps(p, protocol=0) for p in parts)
    return head + payload(marker, 0) + pickle.dumps([], protocol=0)


def _pickle_then_zip(marker: Path) -> bytes:
    return payload(marker, 4) + _state_dict_bytes()


def _safetensors_then_zip(marker: Path) -> bytes:
    return _safetensors_bytes() + _zip_bytes({"archive/data.pkl": payload(marker),
                                              "archive/version": b"3\n"})


def _no_proto(marker: Path) -> bytes:
    data = payload(marker, 2)
    assert data[:1] == b"\x80"
    return data[2:]


def _npy_object(marker: Path) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([Reduce(os.system, f"touch {shlex.quote(str(marker))}"), 1],
                             dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _npz_object(marker: Path) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.arange(4.0),
             extra=np.array([Reduce(os.system, f"touch {shlex.quote(str(marker))}")],
                            dtype=object))
    return buffer.getvalue()


def _legacy_tar(marker: Path) -> bytes:
    return _tar_bytes({"sys_info": pickle.dumps({"protocol_version": 1001}, 2),
                       "pickle": payload(marker), "storages": pickle.dumps(0, 2),
                       "tensors": pickle.dumps(0, 2)})


def _truncated_protocol0(marker: Path) -> bytes:
    return payload(marker, 0)[:-6]


# --------------------------------------------------------------------------- 12.5


def _many_text_members(directory: Path, marker: Path) -> Path:
    line = b"model card: the quick brown fox jumps over the lazy dog, nothing secret.\n"
    text = (line * (1 + (1 << 20) // len(line)))[: 1 << 20]
    return _write(directory, "docs.zip", _zip_bytes({f"notes/{i}.txt": text
                                                     for i in range(100)}))


def _nested_zips(directory: Path, marker: Path) -> Path:
    inner = _zip_bytes({f"blob{i}.bin": bytes(16 << 20) for i in range(8)})
    return _write(directory, "bundle.zip", _zip_bytes({f"inner{i}.zip": inner
                                                       for i in range(4)}))


def _deep_nesting(directory: Path, marker: Path) -> Path:
    data = payload(marker)
    name = "payload.pkl"
    for level in range(6):
        data, name = _zip_bytes({name: data}), f"level{level}.zip"
    return _write(directory, "deep.zip", data)


def _fifo(directory: Path, marker: Path) -> Path:
    path = directory / "model.pkl"
    os.mkfifo(path)
    return path


# --------------------------------------------------------------------------- 12.6

_W = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
BAD_HEADERS: dict[str, dict[str, Any] | bytes] = {
    "string_shape": {"w": {**_W, "shape": "4"}},
    "three_offsets": {"w": {**_W, "data_offsets": [0, 8, 16]}},
    "list_dtype": {"w": {**_W, "dtype": ["F32"]}},
    "deep_json": b'{"w": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "negative_dim": {"w": {**_W, "shape": [-4]}},
    "overlapping_offsets": {"w": _W, "v": {**_W, "shape": [2], "data_offsets": [8, 16]}},
    "float_shape": {"w": {**_W, "shape": [4.0]}},
    "unknown_dtype": {"w": {**_W, "dtype": "F33"}},
    "bool_shape": {"w": {**_W, "shape": [True, 4]}},
    "gap_before_tensor": {"w": {**_W, "shape": [2], "data_offsets": [8, 16]}},
    "size_mismatch": {"w": {**_W, "shape": [3]}},
    "offsets_past_end": {"w": {**_W, "shape": [8], "data_offsets": [0, 32]}},
    "metadata_not_strings": {"__metadata__": {"epoch": 3}, "w": _W},
    "header_not_object": b"[1, 2, 3]",
    "entry_not_object": {"w": 7},
    # JSON Python's parser takes and safetensors' serde_json refuses:
    "repeated_field": b'{"w": {"dtype": "F32", "shape": [4], "shape": [4], '
                      b'"data_offsets": [0, 16]}}',
    "negative_zero_offset": b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [-0, 16]}}',
    "lone_surrogate_name": b'{"\\ud800": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}',
}


def _bad_safetensors(key: str) -> Build:
    def build(directory: Path, marker: Path) -> Path:
        spec = BAD_HEADERS[key]
        data = _safetensors_bytes(raw=spec) if isinstance(spec, bytes) else \
            _safetensors_bytes(spec)
        return _write(directory, f"{key}.safetensors", data)
    return build


# --------------------------------------------------------------------------- 12.7 / 12.8


def _planted(case: str, secret: str) -> str:
    PLANTED[case] = secret
    return secret


def _onnx_bytes(**names: str) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", [names.get("input", "x")],
                            [names.get("output", "y")], name=names.get("node", "id0"),
                            domain="")
    graph = helper.make_graph(
        [node], names.get("graph", "g"),
        [helper.make_tensor_value_info(names.get("input", "x"), TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(names.get("output", "y"), TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, producer_version=names.get("producer_version", "1.0"),
                              domain=names.get("domain", ""))
    if "props_key" in names:
        onnx.helper.set_model_props(model, {names["props_key"]: "value"})
    return bytes(model.SerializeToString())


def _onnx_secret(case: str, field: str) -> Build:
    def build(directory: Path, marker: Path) -> Path:
        secret = _planted(case, _github_token() if field != "domain" else _aws_key())
        return _write(directory, f"{case}.onnx", _onnx_bytes(**{field: secret}))
    return build


def _metadata_key_secret(directory: Path, marker: Path) -> Path:
    secret = _planted("safetensors_metadata_key_secret", _aws_key())
    header = {"__metadata__": {secret: "x"}, "w": _W}
    return _write(directory, "meta.safetensors", _safetensors_bytes(header))


def _bad_tensor_name_secret(directory: Path, marker: Path) -> Path:
    secret = _planted("malformed_tensor_named_by_secret", _github_token())
    header = {secret: {**_W, "dtype": "F99"}}
    return _write(directory, "named.safetensors", _safetensors_bytes(header))


def _zip_member_name_secret(directory: Path, marker: Path) -> Path:
    secret = _planted("zip_member_named_by_secret", _github_token())
    return _write(directory, "bundle.zip", _zip_bytes({f"{secret}.txt": b"hello world"}))


def _npz_member_name_secret(directory: Path, marker: Path) -> Path:
    secret = _planted("npz_member_named_by_secret", _aws_key())
    buffer = io.BytesIO()
    np.savez(buffer, **{secret: np.arange(3)})  # type: ignore[arg-type]
    return _write(directory, "arrays.npz", buffer.getvalue())


def _numpy_unicode(directory: Path, marker: Path) -> Path:
    secret = _planted("numpy_unicode_array_secret", _github_token())
    buffer = io.BytesIO()
    np.save(buffer, np.array(["label-a", f"token={secret}", "label-b"]))
    return _write(directory, "labels.npy", buffer.getvalue())


def _utf16_member(directory: Path, marker: Path) -> Path:
    secret = _planted("utf16_text_member_secret", _aws_key())
    text = f"deployment notes\naws_access_key_id = {secret}\n".encode("utf-16")
    return _write(directory, "bundle.zip", _zip_bytes({"notes.txt": text}))


def _targz_member(directory: Path, marker: Path) -> Path:
    secret = _planted("tar_gz_member_secret", _github_token())
    data = _tar_bytes({"model/config.json": json.dumps({"hub_token": secret}).encode(),
                       "model/weights.bin": bytes(64)}, mode="w:gz")
    return _write(directory, "model.tar.gz", data)


def _tar_pax_header_secret(directory: Path, marker: Path) -> Path:
    # A PAX record (here ``comment``) travels in the member's header, not its data.
    secret = _planted("tar_pax_header_secret", _github_token())
    data = pickle.dumps({"w": [1.0, 2.0]}, protocol=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("model/state.pkl")
        info.size = len(data)
        info.pax_headers = {"comment": f"uploaded with token {secret}"}
        archive.addfile(info, io.BytesIO(data))
    return _write(directory, "model.tar", buffer.getvalue())


def _zip_member_comment_secret(directory: Path, marker: Path) -> Path:
    # Each zip member has its own comment (and extra field), apart from the archive's.
    secret = _planted("zip_member_comment_secret", _github_token())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("model/state.pkl")
        info.comment = f"pushed with {secret}".encode()
        archive.writestr(info, pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    return _write(directory, "model.zip", buffer.getvalue())


def _gzip_header_secret(directory: Path, marker: Path) -> Path:
    # gzip's header carries an original file name (FNAME) that gzip.open never returns.
    secret = _planted("gzip_header_name_secret", _github_token())
    buffer = io.BytesIO()
    with gzip.GzipFile(filename=f"state {secret}.pkl", mode="wb", fileobj=buffer,
                       mtime=0) as stream:
        stream.write(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    return _write(directory, "state.pkl.gz", buffer.getvalue())


def _npy_field_name_secret(directory: Path, marker: Path) -> Path:
    # A structured dtype's field names live in the .npy header, not in the data.
    import numpy as np

    secret = _planted("npy_field_name_secret", _github_token())
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(2, dtype=[(f"token {secret}", "f4"), ("step", "i4")]))
    return _write(directory, "stats.npy", buffer.getvalue())


def _long_pickle_secret(directory: Path, marker: Path) -> Path:
    secret = _planted("secret_deep_in_long_pickle", _github_token())
    data = {"vocab": [f"tok{i}" for i in range(20_000)],
            "doc": "x" * 6000 + f" token: {secret}"}
    return _write(directory, "tokenizer.pkl", pickle.dumps(data, protocol=4))


def _config_json_secret(directory: Path, marker: Path) -> Path:
    secret = _planted("config_json_beside_model_secret", _github_token())
    text = json.dumps({"model_type": "bert", "hub_token": secret}, indent=2)
    return _write(directory, "config.json", text.encode())


def _utf16_notes_secret(directory: Path, marker: Path) -> Path:
    secret = _planted("utf16_notes_file_secret", _aws_key())
    return _write(directory, "NOTES.txt",
                  f"deploy with key {secret}\n".encode("utf-16"))


def _long_first_string(marker: Path) -> bytes:
    """Protocol 1, no PROTO: a 100 kB string first, so the sniff window ends inside it."""
    return pickle.dumps(("w" * 100_000, Reduce(os.system,
                                                f"touch {shlex.quote(str(marker))}")), 1)


# --------------------------------------------------------------------------- 12.9 benign


def _hf_config_json(directory: Path, marker: Path) -> Path:
    text = json.dumps({"_name_or_path": "org/model", "architectures": ["BertModel"],
                       "_commit_hash": hashlib.sha1(b"rev").hexdigest(),
                       "transformers_version": "5.0.0",
                       "data_fingerprint": hashlib.sha256(b"d").hexdigest()}, indent=2)
    return _write(directory, "config.json", text.encode())



def _trainer_state(directory: Path, marker: Path) -> Path:
    run = uuid.UUID(int=_rng.getrandbits(128)).hex
    logs = [{"step": i, "run_id": run, "loss": 1.0 / (i + 1)} for i in range(3)]
    data = {"_commit_hash": hashlib.sha1(b"cfg").hexdigest(), "run_id": run,
            "data_fingerprint": hashlib.sha256(b"data").hexdigest(),
            "log_history": logs, "best_model_checkpoint": "out/checkpoint-120",
            "eval_sha": "sha256:" + hashlib.sha256(b"eval").hexdigest()}
    return _write(directory, "trainer_state.pkl", pickle.dumps(data, protocol=4))


def _npz_numeric(directory: Path, marker: Path) -> Path:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, w=np.arange(64, dtype=np.float32), b=np.zeros(3))
    return _write(directory, "weights.npz", buffer.getvalue())


def _npy_numeric(directory: Path, marker: Path) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, np.linspace(0, 1, 256, dtype=np.float32))
    return _write(directory, "weights.npy", buffer.getvalue())


def _gz_state_dict(directory: Path, marker: Path) -> Path:
    raw = io.BytesIO()
    torch.save(torch.nn.Linear(4, 2).state_dict(), raw, _use_new_zipfile_serialization=False)
    return _write(directory, "linear.pt.gz", gzip.compress(raw.getvalue()))


def _onnx_external_data(directory: Path, marker: Path) -> Path:
    data = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32).tobytes()
    return _write(directory, "model.onnx.data", data)


def _text_bundle(directory: Path, marker: Path) -> Path:
    members = {f"docs/page{i}.md": f"# Page {i}\nUsage notes.\n".encode() for i in range(50)}
    members["docs/readme_utf16.txt"] = "Model card, UTF-16 encoded.\n".encode("utf-16")
    return _write(directory, "docs.zip", _zip_bytes(members))


def _benign_safetensors(directory: Path, marker: Path) -> Path:
    from safetensors.torch import save_file

    path = directory / "model.safetensors"
    save_file({"w": torch.zeros(2, 3), "b": torch.zeros(0), "h": torch.zeros(3,
                                                                           dtype=torch.float16)},
              str(path), metadata={"format": "pt", "commit": hashlib.sha1(b"x").hexdigest()})
    return path


def _cases() -> list[Case]:
    detect, limits, header, leak, missed, benign = (
        "12.4 format detection", "12.5 limits", "12.6 safetensors header",
        "12.7 secret in a name", "12.8 secret missed", "12.9 benign")
    cases = [
        Case("legacy_torch_all_protocol0", detect, True, UNSAFE,
             _file("legacy_p0.pth", _legacy_protocol0)),
        Case("pickle_with_zip_appended", detect, True, UNSAFE,
             _file("polyglot.pt", _pickle_then_zip)),
        Case("safetensors_with_zip_appended", detect, True, REFUSED,
             _file("model.safetensors", _safetensors_then_zip)),
        Case("npy_object_array", detect, True, UNSAFE, _file("array.npy", _npy_object)),
        Case("npz_object_array", detect, True, UNSAFE, _file("arrays.npz", _npz_object)),
        Case("pickle_named_onnx_data", detect, True, UNSAFE,
             _file("model.onnx.data", lambda m: payload(m, 4))),
        Case("zip_member_payload_p_protocol0", detect, True, UNSAFE,
             _file("bundle.zip", lambda m: _zip_bytes({"payload.p": payload(m, 0)}))),
        Case("protocol0_named_p", detect, True, UNSAFE,
             _file("model.p", lambda m: payload(m, 0))),
        Case("protocol0_named_sav", detect, True, UNSAFE,
             _file("model.sav", lambda m: payload(m, 0))),
        Case("protocol0_no_suffix", detect, True, UNSAFE,
             _file("model", lambda m: payload(m, 0))),
        Case("protocol1_named_txt", detect, True, UNSAFE,
             _file("notes.txt", lambda m: payload(m, 1))),
        Case("binary_pickle_without_proto", detect, True, UNSAFE,
             _file("weights", _no_proto)),
        Case("legacy_torch_tar", detect, True, UNSAFE, _file("model.tar", _legacy_tar)),
        Case("tar_gz_holding_pickle", detect, True, UNSAFE,
             _file("model.tar.gz", lambda m: _tar_bytes({"model/payload.pkl": payload(m)},
                                                        "w:gz"))),
        Case("pkl_gz", detect, True, UNSAFE,
             _file("model.pkl.gz", lambda m: gzip.compress(payload(m)))),
        Case("joblib_zlib_compressed", detect, True, UNSAFE,
             _file("model.joblib", lambda m: zlib.compress(payload(m, 4)))),
        Case("pickle_xz", detect, True, UNSAFE,
             _file("model.pkl.xz", lambda m: lzma.compress(payload(m, 4)))),
        Case("pickle_bz2", detect, True, UNSAFE,
             _file("model.pkl.bz2", lambda m: bz2.compress(payload(m, 4)))),
        Case("truncated_protocol0_unknown_name", detect, True, REFUSED,
             _file("blob", _truncated_protocol0)),
        Case("long_first_string_no_suffix", detect, True, UNSAFE,
             _file("state", _long_first_string)),
        Case("zip_1mib_text_members", limits, True, INVALID, _many_text_members),
        Case("nested_zip_bomb", limits, True, INVALID, _nested_zips),
        Case("zips_nested_six_deep", limits, True, REFUSED, _deep_nesting),
        Case("fifo_named_pkl", limits, True, INVALID, _fifo),
        *[Case(f"safetensors_{key}", header, True, INVALID, _bad_safetensors(key))
          for key in BAD_HEADERS],
        Case("safetensors_metadata_key_secret", leak, True, SECRETS, _metadata_key_secret),
        Case("malformed_tensor_named_by_secret", leak, True, INVALID,
             _bad_tensor_name_secret),
        Case("zip_member_named_by_secret", leak, True, SECRETS, _zip_member_name_secret),
        Case("onnx_node_name_secret", leak, True, SECRETS,
             _onnx_secret("onnx_node_name_secret", "node")),
        Case("onnx_metadata_props_key_secret", leak, True, SECRETS,
             _onnx_secret("onnx_metadata_props_key_secret", "props_key")),
        *[Case(f"onnx_{field}_secret", missed, True, SECRETS,
               _onnx_secret(f"onnx_{field}_secret", field))
          for field in ("input", "output", "graph", "producer_version", "domain")],
        Case("npz_member_named_by_secret", missed, True, SECRETS, _npz_member_name_secret),
        Case("numpy_unicode_array_secret", missed, True, SECRETS, _numpy_unicode),
        Case("utf16_text_member_secret", missed, True, SECRETS, _utf16_member),
        Case("tar_gz_member_secret", missed, True, SECRETS, _targz_member),
        Case("tar_pax_header_secret", missed, True, SECRETS, _tar_pax_header_secret),
        Case("zip_member_comment_secret", missed, True, SECRETS, _zip_member_comment_secret),
        Case("gzip_header_name_secret", missed, True, SECRETS, _gzip_header_secret),
        Case("npy_field_name_secret", missed, True, SECRETS, _npy_field_name_secret),
        Case("secret_deep_in_long_pickle", missed, True, SECRETS, _long_pickle_secret),
        Case("config_json_beside_model_secret", missed, True, SECRETS, _config_json_secret),
        Case("utf16_notes_file_secret", missed, True, SECRETS, _utf16_notes_secret),
        Case("trainer_state_digests_and_ids", benign, False, SAFE, _trainer_state),
        Case("npz_numeric", benign, False, SAFE, _npz_numeric),
        Case("npy_numeric", benign, False, SAFE, _npy_numeric),
        Case("gzip_legacy_state_dict", benign, False, SAFE, _gz_state_dict),
        Case("onnx_external_data_floats", benign, False, SAFE, _onnx_external_data),
        Case("zip_of_text_and_utf16", benign, False, SAFE, _text_bundle),
        Case("safetensors_with_metadata", benign, False, SAFE, _benign_safetensors),
        Case("hf_config_json_digests", benign, False, frozenset({"not-a-model"}),
             _hf_config_json),
    ]
    return cases


CASES: list[Case] = _cases()
