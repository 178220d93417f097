"""The ``token_latency`` sub-check of ``@tb.serving``: time to first token (TTFT) and
inter-token latency (ITL) of ``/generate`` for models with ``stream``/``generate``.

Measured as a client sees it, one streamed request after another, by
:func:`torchbridge.serving.token_latency.measure_token_latency`. The p50/p99 values are
metrics of the item; they gate only when the test gives ``ttft_p99``/``itl_p99`` budgets
(timings on a shared CI machine are not a verdict unless someone asked for one).
"""

from __future__ import annotations

from typing import Any

import torch

from torchbridge.core.subject import Subject, named_inputs
from torchbridge.smoke.result import Step
from torchbridge.units import format_duration

NAME = "token_latency"


def generates(model: Any) -> bool:
    """Whether the server mounts ``/generate`` for ``model`` (the server's own rule)."""
    # imported here: the serving stack needs the optional `serve` extra (orjson, fastapi)
    from torchbridge.serving.state import has_generate

    return has_generate(model)


def prompt(subject: Subject) -> list[int] | None:
    """Row 0 of the sample's first integer input, as the prompt's token ids."""
    for _, value in named_inputs(subject.inputs):
        if isinstance(value, torch.Tensor) and not value.dtype.is_floating_point \
                and value.dtype != torch.bool and value.ndim >= 1 and value.numel():
            row = value[0] if value.ndim > 1 else value
            return [int(t) for t in row.flatten().tolist()]
    return None


def token_latency(server: Any, subject: Subject, *, requests: int, max_new_tokens: int,
                  ttft_p99: float | None, itl_p99: float | None) -> Step:
    """Stream ``requests`` generations and compare the p99s with the budgets (seconds)."""
    from torchbridge.serving.token_latency import measure_token_latency

    ids = prompt(subject)
    if ids is None:
        return Step.not_exercised(NAME, "the sample holds no integer input to use as a "
                                        "prompt for /generate")
    measured = measure_token_latency(server.client, [ids], max_new_tokens=max_new_tokens,
                                     requests=requests)
    metrics = measured.metrics()
    text = ", ".join(f"{k.removesuffix('_ms').replace('_', ' ')} "
                     f"{format_duration(v / 1e3)}" for k, v in metrics.items())
    over = [f"{label} p99 {format_duration(metrics[key] / 1e3)} > budget "
            f"{format_duration(budget)}"
            for label, key, budget in (("TTFT", "ttft_p99_ms", ttft_p99),
                                       ("inter-token", "itl_p99_ms", itl_p99))
            if budget is not None and key in metrics and metrics[key] / 1e3 > budget]
    missing = itl_p99 is not None and "itl_p99_ms" not in metrics
    if missing:
        over.append("no inter-token gap was measured (each request produced one token), so "
                    "the inter-token budget could not be checked")
    where = f"{requests} streamed requests of {max_new_tokens} new tokens"
    if over:
        return Step(NAME, False, f"{'; '.join(over)} ({where})", metrics)
    return Step(NAME, True, f"{text} ({where})", metrics)
