"""Deployment helpers in the production checklist's spelling.

>>> from torchbridge.deployment import validate_production_readiness
>>> report = validate_production_readiness(model, sample_input)      # doctest: +SKIP
>>> print(report.summary())                                          # doctest: +SKIP

``torchbridge.deployment.serving`` re-exports the server API (import it explicitly; it
needs the ``serve`` extra).
"""

from __future__ import annotations

from torchbridge.deployment.readiness import (
    DEFAULT_REQUIREMENTS,
    ReadinessReport,
    validate_production_readiness,
)

__all__ = ["DEFAULT_REQUIREMENTS", "ReadinessReport", "validate_production_readiness"]
