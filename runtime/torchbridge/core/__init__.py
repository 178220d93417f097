"""The core layer: what every engine and check shares, importing nothing above it.

* :mod:`~torchbridge.core.subject` — the subject under test: model, sample inputs,
  device and input spec (batch dim, named dynamic dims, dims shared by several inputs);
* :mod:`~torchbridge.core.trees` — every model output flattened to ``(path, leaf)``
  pairs by one rule (pytree nodes, dataclasses, HF caches; opaque objects flagged);
* :mod:`~torchbridge.core.compare` — two outputs compared leaf by leaf with per-dtype
  tolerances;
* :mod:`~torchbridge.core.result` — the check result: status, message, metrics, details.

Engines (``measure``, ``export``, ``serving``, ``security``, ``optimize``, ``reporting``,
``smoke``) import from here; they never import :mod:`torchbridge.checks`, which sits
above them (see ``docs/architecture.md``).
"""
