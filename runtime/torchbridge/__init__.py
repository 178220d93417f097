"""TorchBridge runtime: production-readiness checks, measurement, export, serving, security.

The checks live in :mod:`torchbridge.checks`; every front end (pytest plugin, CLI,
:func:`torchbridge.deployment.validate_production_readiness`) draws from its registry.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_manager"]


def get_manager() -> Any:
    """Return the memory/device manager, spelled as the production checklist spells it.

    Example::

        from torchbridge import get_manager
        bytes_needed = get_manager().estimate_memory(model, batch_size=32)
    """
    from torchbridge.manager import get_manager as _get_manager

    return _get_manager()
