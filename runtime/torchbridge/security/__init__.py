"""Model security: malicious-pickle and secret scanning, safe loading, checksums.

Example::

    from torchbridge.security import load_state_dict, scan_path, write_checksums

    bad = [v for v in scan_path("exports/") if v.failed()]
    state = load_state_dict("exports/model.safetensors")
    write_checksums(["exports/"], "exports.sha256")

See ``docs/security.md`` for verdicts, limits and the loading policy.
"""

from __future__ import annotations

from torchbridge.security.checksum import verify_checksums, write_checksums
from torchbridge.security.limits import ScanLimits
from torchbridge.security.safe_load import (
    UnsafeModelError,
    load_checkpoint,
    load_safetensors,
    load_state_dict,
)
from torchbridge.security.scan import scan_file, scan_path
from torchbridge.security.secrets import find_secrets, scan_model
from torchbridge.security.verdict import FileVerdict, SecretFinding, Verdict

__all__ = [
    "FileVerdict", "ScanLimits", "SecretFinding", "UnsafeModelError", "Verdict",
    "find_secrets", "load_checkpoint", "load_safetensors", "load_state_dict", "scan_file",
    "scan_model", "scan_path", "verify_checksums", "write_checksums",
]
