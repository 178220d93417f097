"""An app from a model reference: what ``tb-serve`` runs, callable from Python too."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from torchbridge.core.subject import InputSpec
from torchbridge.errors import ConfigError
from torchbridge.inputs import synthesize_named
from torchbridge.loading import load_model
from torchbridge.serving.app import create_fastapi_server
from torchbridge.serving.config import ServerConfig

log = logging.getLogger("torchbridge.serving")


def build_app(model: str, weights: str | None = None, config: ServerConfig | None = None, *,
              input_shapes: Sequence[tuple[int, ...]] = (),
              input_dtypes: Sequence[str] = ("float32",),
              input_names: Sequence[str] | None = None,
              input_spec: InputSpec | Mapping[str, Any] | None = None,
              allow_pickle: bool = False, allowed_globals: Sequence[str] = ()) -> Any:
    """Load ``model`` (``pkg.module:factory``, ``.pt2``, TorchScript; see
    :func:`torchbridge.loading.load_model`) and return the FastAPI app serving it.

    The sample input for validation and warm-up comes from the archive (``.pt2`` keeps
    its example inputs) or is synthesized from ``input_shapes`` and ``input_dtypes`` (one
    for all or one per input, as :func:`~torchbridge.inputs.synthesize_named` reads them),
    passed by keyword when ``input_names`` are given. ``input_spec`` declares the batch
    dim and named dynamic dims (``seq``) requests may vary. The weights' sha256 goes into the
    model-info metric and the audit log. A model that cannot be loaded raises
    :class:`~torchbridge.errors.ModelLoadError`; nothing is ever substituted.
    """
    config = config or ServerConfig()
    loaded = load_model(model, weights, allow_pickle=allow_pickle, device=config.device,
                        allowed_globals=allowed_globals)
    if not loaded.is_torch:
        raise ConfigError(f"{model}: tb-serve serves PyTorch models (a factory, .pt2 or "
                          "TorchScript archive), not ONNX files")
    sample = synthesize_named(input_names, input_shapes, input_dtypes, model=loaded.model,
                              device=config.device) if input_shapes else loaded.example_inputs
    if isinstance(sample, list):
        sample = tuple(sample)
    if sample is None:
        log.warning("no sample input (give --input-shape): requests are not validated "
                    "against a signature and the model is not warmed up")
    digest = next(iter(loaded.sha256.values()), "") if weights is None else \
        loaded.sha256.get(_name(weights), next(iter(loaded.sha256.values()), ""))
    if not config.weights_sha256 and digest:
        config = replace(config, weights_sha256=digest)
    return create_fastapi_server(loaded.model, config, sample_input=sample,
                                 input_spec=input_spec)


def _name(path: str) -> str:
    from pathlib import Path

    return Path(path).name
