"""Comparing JSON outputs leaf by leaf with the same code the checks use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchbridge.core.compare import OutputComparison, compare_outputs


def outputs_of(body: Any) -> Any:
    """The outputs in a response body (``{"outputs": ..., "model_version": ...}``), or the
    body itself when it has no ``outputs`` key."""
    if isinstance(body, Mapping) and "outputs" in body:
        return body["outputs"]
    return body


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, list) and bool(value) and all(_numeric(v) for v in value)


def to_tensors(tree: Any) -> Any:
    """Nested JSON with numeric arrays turned into float64 tensors (ragged lists stay
    lists of tensors; strings and booleans stay as they are)."""
    import torch

    if isinstance(tree, Mapping):
        return {key: to_tensors(value) for key, value in tree.items()}
    if _numeric(tree):
        try:
            return torch.tensor(tree, dtype=torch.float64)
        except (ValueError, TypeError):  # ragged: compare row by row
            return [to_tensors(v) for v in tree]
    if isinstance(tree, list):
        return [to_tensors(v) for v in tree]
    return tree


def compare_trees(actual: Any, expected: Any, rtol: float, atol: float) -> OutputComparison:
    """Compare two JSON output trees with :func:`compare_outputs`."""
    return compare_outputs(to_tensors(actual), to_tensors(expected), rtol=rtol, atol=atol)
