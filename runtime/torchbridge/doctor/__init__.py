"""``tb-doctor``: is this machine fit to run TorchBridge checks, and what to fix if not.

Example::

    from torchbridge.doctor import run_diagnostics, exit_code
    diagnostics = run_diagnostics()
    print([d.summary for d in diagnostics if d.status.value != "ok"])
"""

from __future__ import annotations

from torchbridge.doctor.checks import run_diagnostics
from torchbridge.doctor.model import Diagnostic, Health, exit_code, overall

__all__ = ["Diagnostic", "Health", "exit_code", "overall", "run_diagnostics"]
