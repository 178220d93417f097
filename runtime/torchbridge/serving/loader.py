"""An app from a model reference: what ``tb-serve`` runs, callable from Python too."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from torchbridge.errors import ConfigError
from torchbridge.loading import load_model
from torchbridge.serving.app import create_fastapi_server
from torchbridge.serving.config import ServerConfig

log = logging.getLogger("torchbridge.serving")


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,256"`` → ``(1, 256)``; a clear error for anything else."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--input-shape {text!r}: expected comma-separated sizes such as "
                          "1,256") from None
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"--input-shape {text!r}: sizes must be positive integers")
    return shape


def sample_from_shapes(shapes: Sequence[tuple[int, ...]], dtype: str = "float32") -> Any:
    """Zeros of the given shapes: one tensor, or a tuple for several inputs."""
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ConfigError(f"--input-dtype {dtype!r} is not a torch dtype (e.g. float32, int64)")
    tensors = tuple(torch.zeros(shape, dtype=torch_dtype) for shape in shapes)
    return tensors[0] if len(tensors) == 1 else tensors


def build_app(model: str, weights: str | None = None, config: ServerConfig | None = None, *,
              input_shapes: Sequence[tuple[int, ...]] = (), input_dtype: str = "float32",
              allow_pickle: bool = False, allowed_globals: Sequence[str] = ()) -> Any:
    """Load ``model`` (``pkg.module:factory``, ``.pt2``, TorchScript; see
    :func:`torchbridge.loading.load_model`) and return the FastAPI app serving it.

    The sample input for validation and warm-up comes from the archive (``.pt2`` keeps
    its example inputs) or from ``input_shapes``. The weights' sha256 goes into the
    model-info metric and the audit log. A model that cannot be loaded raises
    :class:`~torchbridge.errors.ModelLoadError`; nothing is ever substituted.
    """
    config = config or ServerConfig()
    loaded = load_model(model, weights, allow_pickle=allow_pickle, device=config.device,
                        allowed_globals=allowed_globals)
    if not loaded.is_torch:
        raise ConfigError(f"{model}: tb-serve serves PyTorch models (a factory, .pt2 or "
                          "TorchScript archive), not ONNX files")
    sample = sample_from_shapes(input_shapes, input_dtype) if input_shapes \
        else loaded.example_inputs
    if isinstance(sample, list):
        sample = tuple(sample)
    if sample is None:
        log.warning("no sample input (give --input-shape): requests are not validated "
                    "against a signature and the model is not warmed up")
    digest = next(iter(loaded.sha256.values()), "") if weights is None else \
        loaded.sha256.get(_name(weights), next(iter(loaded.sha256.values()), ""))
    if not config.weights_sha256 and digest:
        config = replace(config, weights_sha256=digest)
    return create_fastapi_server(loaded.model, config, sample_input=sample)


def _name(path: str) -> str:
    from pathlib import Path

    return Path(path).name
