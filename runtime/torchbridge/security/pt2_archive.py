"""Which members of a ``torch.export`` (``.pt2``) archive torch unpickles, and their scan.

``torch.export.load`` calls ``torch.load(..., weights_only=False)`` on every weight and
tensor constant whose payload config says ``use_pickle: true``, ``pickle.loads`` on
opaque constants, ``torch.load`` on sample inputs and on legacy ``{model}.pt`` weight
files, and loads AOTInductor shared libraries. Only members a config declares raw
(``use_pickle: false``, and not also named by a pickled entry) and the JSON/text members
are never unpickled; everything else is scanned here, as ``torch.load`` would read it
(a ``torch.save`` zip: its ``.pkl`` records; anything else: a run of pickles from byte
0), and must be ``safe`` under the allowlist verdict.

Example::

    with zipfile.ZipFile("model.pt2") as archive:
        problems = check_archive(archive, allowed=["mypkg.Config"])
"""

from __future__ import annotations

import json
import posixpath
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from typing import IO

from torchbridge.security.limits import DEFAULT_LIMITS, LimitExceeded, ScanLimits
from torchbridge.security.pickles import PickleFindings, scan_pickle_stream
from torchbridge.security.policy import classify, explain
from torchbridge.security.pt2_program import check_program

_TEXT = {"archive_format", "archive_version", "version", ".data/version", "byteorder",
         ".data/serialization_id"}
_PAYLOAD_DIRS = {"weights": "data/weights/", "constants": "data/constants/"}
AOTI_DIR = "data/aotinductor/"
_ZIP_MAGIC = b"PK\x03\x04"
#: JSON objects/arrays a program may hold (a large exported LLM has well under a million;
#: 100 MiB of "{}," would be 33 million dicts, gigabytes once parsed).
_MAX_JSON_CONTAINERS = 4_000_000


def tail(name: str) -> str:
    """A member name without the archive's root folder (``m/data/x`` → ``data/x``)."""
    return name.split("/", 1)[1] if "/" in name else name


def _payload_paths(config_text: bytes, base: str) -> tuple[set[str], set[str]]:
    """(raw paths, pickled paths) a payload config names, joined as torch joins them.
    Raises ValueError for a config that is not the JSON torch expects."""
    data = json.loads(config_text)
    entries = data.get("config") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ValueError("payload config without a 'config' mapping")
    raw: set[str] = set()
    pickled: set[str] = set()
    for meta in entries.values():
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise ValueError("payload config entry without a path_name")
        path = posixpath.join(base, meta["path_name"])
        (pickled if meta.get("use_pickle") is not False else raw).add(path)
    return raw, pickled


def unpickled_members(names: Iterable[str], read: Callable[[str], bytes]) -> list[str]:
    """The members (full names, as listed) that ``torch.export.load`` may unpickle.

    ``read(name)`` returns a member's bytes (used for the small JSON payload configs).
    A config that cannot be parsed declares nothing raw, so every payload is listed.
    """
    names = list(names)
    raw: set[str] = set()
    pickled: set[str] = set()
    for name in names:
        short = tail(name)
        for base in _PAYLOAD_DIRS.values():
            if short.startswith(base) and short.endswith("_config.json"):
                try:
                    found_raw, found_pickled = _payload_paths(read(name), base)
                except (ValueError, KeyError, UnicodeDecodeError):
                    continue
                raw |= found_raw
                pickled |= found_pickled
    # torch finds members case-insensitively (miniz's default lookup), so a path named by
    # a pickled entry is unpickled in any letter case, whatever else says it is raw.
    pickled_lower = {p.lower() for p in pickled}
    raw_lower = {r.lower() for r in raw} - pickled_lower
    out = []
    for name in names:
        short = tail(name)
        named_pickled = short.lower() in pickled_lower  # even when named like JSON/text
        if not named_pickled and (name.endswith("/") or short in _TEXT or
                                  short.endswith(".json") or short.startswith("extra/") or
                                  short.lower() in raw_lower):
            continue
        out.append(name)
    return out


def _findings_of_zip(stream: IO[bytes], limits: ScanLimits) -> list[PickleFindings]:
    """A ``torch.save`` zip held in a member: scan every ``.pkl`` record in it."""
    found = []
    with zipfile.ZipFile(stream) as inner:
        for info in inner.infolist():
            if info.filename.endswith(".pkl"):
                if info.file_size > limits.max_member_bytes:
                    raise LimitExceeded(f"{info.filename}: {info.file_size} bytes > "
                                        f"max_member_bytes {limits.max_member_bytes}")
                with inner.open(info) as member:
                    found.append(scan_pickle_stream(member, limits, multiple=True))
    if not found:
        raise zipfile.BadZipFile("a torch.save zip without a .pkl record")
    return found


def scan_torch_load_member(archive: zipfile.ZipFile, name: str,
                           limits: ScanLimits = DEFAULT_LIMITS) -> list[PickleFindings]:
    """Scan member ``name`` the way ``torch.load`` would read its bytes.

    Raises :class:`LimitExceeded` for a member over ``max_member_bytes`` and
    ``zipfile.BadZipFile`` for a broken inner zip.
    """
    info = archive.getinfo(name)
    if info.file_size > limits.max_member_bytes:
        raise LimitExceeded(f"{name}: {info.file_size} bytes > max_member_bytes "
                            f"{limits.max_member_bytes}")
    with archive.open(info) as member:
        head = member.read(4)
    if head == _ZIP_MAGIC:  # torch.load's own test: a zip only if it opens with one
        with archive.open(info) as member, \
                tempfile.SpooledTemporaryFile(max_size=32 << 20) as spool:
            shutil.copyfileobj(member, spool, 1 << 20)
            spool.seek(0)
            return _findings_of_zip(spool, limits)
    with archive.open(info) as member:
        return [scan_pickle_stream(member, limits, multiple=True)]


def program_problems(archive: zipfile.ZipFile, limits: ScanLimits = DEFAULT_LIMITS
                     ) -> list[str]:
    """Why the serialized programs (the ``.json`` members) of this ``.pt2`` would run code
    when torch loads or runs them (:func:`~torchbridge.security.pt2_program.check_program`):
    sympy expressions, guards and node targets are code, not data."""
    problems = []
    for info in archive.infolist():
        if not info.filename.lower().endswith(".json"):  # torch's lookup ignores case
            continue
        if info.file_size > limits.max_header_bytes:  # the JSON bound, as for safetensors
            problems.append(f"{info.filename}: {info.file_size} bytes > max_header_bytes "
                            f"{limits.max_header_bytes}; the program cannot be checked")
            continue
        data = archive.read(info)
        containers = data.count(b"{") + data.count(b"[")
        if containers > _MAX_JSON_CONTAINERS:  # json.loads would build them all first
            problems.append(f"{info.filename}: {containers} JSON objects and arrays > "
                            f"{_MAX_JSON_CONTAINERS}; the program cannot be checked")
            continue
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            if tail(info.filename).lower().startswith("models/"):
                problems.append(f"{info.filename}: not readable JSON "
                                f"({type(exc).__name__}); the program cannot be checked")
            continue
        problems += [f"{info.filename}: {why}" for why in check_program(doc)]
    return problems


def check_archive(archive: zipfile.ZipFile, allowed: Iterable[str] = (),
                  limits: ScanLimits = DEFAULT_LIMITS) -> list[str]:
    """Why loading this ``.pt2`` archive with ``torch.export.load`` is not safe: one
    reason per problem (empty: every member torch unpickles is allowlist-``safe`` and the
    programs hold no code, see :func:`program_problems`)."""
    allowed = tuple(allowed)
    names = [i.filename for i in archive.infolist()]
    problems = [f"{n}: AOTInductor native code (a shared library runs when loaded)"
                for n in names if tail(n).startswith(AOTI_DIR)][:1]
    problems += program_problems(archive, limits)
    for name in unpickled_members(names, archive.read):
        if tail(name).startswith(AOTI_DIR):
            continue
        try:
            found = scan_torch_load_member(archive, name, limits)
        except (LimitExceeded, zipfile.BadZipFile, OSError, EOFError) as exc:
            problems.append(f"{name}: cannot be scanned ({exc})")
            continue
        for findings in found:
            if findings.error:
                problems.append(f"{name}: torch would unpickle it, but it is not a "
                                f"complete pickle ({findings.error})")
            unsafe, code = classify(findings.globals, allowed, torchscript=False)
            problems += [f"{name}: {explain(g)}" for g in unsafe]
            problems += [f"{name}: rebuilds class {g} (torch.export.load would run it)"
                         for g in code]
    return problems
