"""The core layer: what every engine and check shares, importing nothing above it.

* :mod:`~torchbridge.core.subject` — the subject under test: model, sample inputs,
  device and input spec (batch dim, named dynamic dims);
* :mod:`~torchbridge.core.compare` — output trees flattened leaf by leaf and compared
  with per-dtype tolerances;
* :mod:`~torchbridge.core.result` — the check result: status, message, metrics, details.

Engines (``measure``, ``export``, ``serving``, ``security``, ``optimize``, ``reporting``,
``smoke``) import from here; they never import :mod:`torchbridge.checks`, which sits
above them (see ``docs/architecture.md``).
"""
