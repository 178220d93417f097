"""Served outputs against eager PyTorch, for requests the server really batched.

The serving check holds the server's worker inside a forward pass (:class:`Gate`), queues
the requests to compare, then releases the worker, so the queued requests reach the model
together. The gate also records every forward pass the server makes (its rows and whether
it raised), which is the evidence that a batch really ran batched: a batch that raised and
was re-run one request at a time shows as a raised multi-row pass followed by single-row
passes, and is never counted as batched.

* :func:`batched_parity`: distinct single-row requests (a 1-row sample is grown with
  changed copies of its row) served in one batch, each answer compared with the row alone;
* :func:`padded_parity`: for a model that declares ``serving_padding``, requests of mixed
  lengths within the padded dim's range served in one padded batch, each answer compared
  with the request run alone — a model whose pooling ignores the mask fails here, naming
  the row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from torchbridge.core.compare import compare_outputs
from torchbridge.core.subject import InputKey, Inputs, Subject, named_inputs, rebuild
from torchbridge.core.variants import distinct_rows
from torchbridge.smoke.result import Step


@dataclass(frozen=True)
class Pass:
    """One forward pass the server made: rows in it, and the exception if it raised."""

    rows: int
    error: str | None = None


class Gate:
    """Wraps the served model: holds the worker inside a forward pass while ``open`` is
    cleared, and records every forward pass in ``passes``."""

    def __init__(self, model: Any, rows_of: Callable[[tuple[Any, ...], dict[str, Any]], int]
                 ) -> None:
        self.model = model
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.passes: list[Pass] = []
        self._rows_of = rows_of
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        self.open.wait(60.0)
        rows = self._rows_of(args, kwargs)
        try:
            out = self.model(*args, **kwargs)
        except Exception as exc:
            self._record(Pass(rows, f"{type(exc).__name__}: {exc}"))
            raise
        self._record(Pass(rows))
        return out

    def _record(self, one: Pass) -> None:
        with self._lock:
            self.passes.append(one)

    def since(self, mark: int) -> list[Pass]:
        """The passes made after ``mark`` (a former ``len(gate.passes)``)."""
        with self._lock:
            return list(self.passes[mark:])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def rows_counter(subject: Subject) -> Callable[[tuple[Any, ...], dict[str, Any]], int]:
    """Rows of a forward pass: the batch-axis length of its first batched tensor input."""

    def rows(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        pairs: list[tuple[InputKey, Any]] = [*enumerate(args), *kwargs.items()]
        for key, value in pairs:
            axis = subject.spec.batch_axis(key)
            if isinstance(value, torch.Tensor) and axis is not None and value.ndim > axis:
                return int(value.shape[axis])
        return 1

    return rows


def body(inputs: Inputs) -> dict[str, Any]:
    """The ``/predict`` JSON body for ``inputs``."""
    pairs = named_inputs(inputs)
    if len(pairs) == 1:
        return {"inputs": pairs[0][1].detach().cpu().tolist()}
    return {"inputs": {k if isinstance(k, str) else f"input_{k}": v.detach().cpu().tolist()
                       for k, v in pairs}}


def like(expected: Any, value: Any) -> Any:
    """The JSON output rebuilt in the structure of the eager output, as tensors."""
    if isinstance(expected, torch.Tensor):
        return torch.tensor(value, dtype=expected.dtype)
    if isinstance(expected, Mapping):
        return {k: like(v, value[str(k)]) for k, v in expected.items()}
    if hasattr(expected, "_fields"):
        return {k: like(getattr(expected, k), value[k]) for k in expected._fields}
    if isinstance(expected, list | tuple):
        return type(expected)(like(e, v) for e, v in zip(expected, value, strict=True))
    return value


def served_form(output: Any) -> tuple[Any, list[str]]:
    """The eager ``output`` as the server answers it (its own rule: mappings, named tuples
    and dataclasses as dicts, tuples as lists, caches expanded), with tensors on the CPU,
    and the names of the objects the server leaves out (not tensors)."""
    from torchbridge.serving.runner import to_tree

    dropped: list[str] = []
    return _as_tensors(to_tree(output, dropped)), dropped


def on_cpu(output: Any) -> Any:
    """The eager ``output`` as the server answers it, tensors on the CPU."""
    return served_form(output)[0]


def _as_tensors(tree: Any) -> Any:
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(tree))
    if isinstance(tree, dict):
        return {k: _as_tensors(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_as_tensors(v) for v in tree]
    return tree


@dataclass(frozen=True)
class ParityTolerance:
    """``rtol``/``atol`` for comparing served outputs (``None``: the per-dtype default)."""

    rtol: float | None
    atol: float | None


class Held:
    """Send requests while the worker is held, so they queue and run as one batch."""

    def __init__(self, server: Any, gate: Gate) -> None:
        self.server = server
        self.gate = gate

    def send(self, bodies: list[dict[str, Any]], blocker: dict[str, Any]) -> list[Any]:
        """Post ``bodies`` while a ``blocker`` request holds the worker; the responses in
        order. The blocker's forward pass runs alone before the queued ones."""
        return asyncio.run(self._send(bodies, blocker))

    async def _send(self, bodies: list[dict[str, Any]], blocker: dict[str, Any]) -> list[Any]:
        import httpx

        state, gate = self.server.state, self.gate
        gate.open.clear()
        gate.entered.clear()
        try:
            async with httpx.AsyncClient(base_url=self.server.url,
                                         headers=self.server.client.headers,
                                         timeout=60.0) as client:
                held = asyncio.ensure_future(client.post("/predict", json=blocker))
                await until(gate.entered.is_set)
                queued = [asyncio.ensure_future(client.post("/predict", json=b))
                          for b in bodies]
                # All queued, or one answered already (refused): its status is reported.
                await until(lambda: state.batcher.depth >= len(bodies)
                            or any(q.done() for q in queued))
                gate.open.set()
                await held
                return list(await asyncio.gather(*queued))
        finally:
            gate.open.set()


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait (polling every 5 ms) until ``condition()`` holds; ``TimeoutError`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not reach the expected state in time")
        await asyncio.sleep(0.005)


def _batched_evidence(passes: list[Pass]) -> tuple[int, str | None]:
    """(rows of the largest multi-row pass that completed, error of a multi-row pass that
    raised); a pass re-run request by request shows as single-row passes only."""
    ran = max((p.rows for p in passes if p.rows >= 2 and p.error is None), default=0)
    raised = next((p.error for p in passes if p.rows >= 2 and p.error is not None), None)
    return ran, raised


@dataclass(frozen=True)
class _Raised:
    """Eager PyTorch raised on a request's inputs (the reference is missing)."""

    error: str


def _reference(subject: Subject, model: Any, inputs: Inputs) -> Any:
    """The eager answer for ``inputs`` in the server's form, or :class:`_Raised`."""
    try:
        return on_cpu(subject.run(inputs, model=model))
    except Exception as exc:  # named per row by the comparison, not a crash of the step
        return _Raised(f"{type(exc).__name__}: {exc}")


def _compare_answers(responses: list[Any], wanted: list[Any], labels: list[str],
                     tol: ParityTolerance) -> list[str]:
    failures = []
    for response, want, label in zip(responses, wanted, labels, strict=True):
        if isinstance(want, _Raised):
            failures.append(f"{label}: the eager reference raised {want.error}, so the answer "
                            "could not be compared")
            continue
        if response.status_code != 200:
            failures.append(f"{label}: /predict answered {response.status_code}: "
                            f"{response.text[:200]}")
            continue
        comparison = compare_outputs(like(want, response.json()["outputs"]), want,
                                     rtol=tol.rtol, atol=tol.atol)
        if not comparison.ok:
            failures.append(f"{label}: {comparison.describe()}")
    return failures


def _judge(name: str, held: Held, mark: int, responses: list[Any], wanted: list[Any],
           labels: list[str], tol: ParityTolerance, what: str) -> Step:
    failures = _compare_answers(responses, wanted, labels, tol)
    ran, raised = _batched_evidence(held.gate.since(mark))
    shared = _batched_with(responses)
    if shared and max(shared) < 2:
        ran = 0  # the server says every answer came from a forward pass of its own
    if raised is not None and ran == 0:
        return Step(name, False, f"the batch of {len(responses)} {what} raised {raised}; the "
                                 "server re-ran each request alone, so the model does not "
                                 "run batched" + (f"; {'; '.join(failures)}" if failures
                                                  else ""))
    if failures:
        return Step(name, False, "; ".join(failures))
    if ran == 0:
        why = getattr(held.server.state, "unbatched_reason", "")
        return Step.not_exercised(name, f"the server ran each of the {len(responses)} {what} "
                                        "alone, so no answer came from a batch"
                                        + (f" (it serves this model unbatched: {why})"
                                           if why else ""))
    return Step(name, True, f"{len(responses)} {what} served batched (largest forward pass "
                            f"{ran} rows) matched each request run alone",
                {"batch_rows": ran, "batched_with": shared})


def _batched_with(responses: list[Any]) -> list[int]:
    """The server's ``X-Batched-With`` per answer (requests that shared its forward pass),
    or ``[]`` when the server does not send the header."""
    values = [r.headers.get("x-batched-with") for r in responses if r.status_code == 200]
    if not values or any(v is None or not v.isdigit() for v in values):
        return []
    return [int(v) for v in values]


def batched_parity(server: Any, gate: Gate, subject: Subject, model: Any, count: int,
                   tol: ParityTolerance) -> Step:
    """Distinct single-row requests served as one batch, each compared with its row run
    alone in eager PyTorch (``count`` requests; at least 2 are needed)."""
    name = "batched_parity"
    if count < 2:
        return Step.not_exercised(name, f"only {count} request can be batched (raise "
                                        "concurrent_requests, max_batch_size and "
                                        "max_queue_size to 2 or more)")
    grown = dataclasses.replace(subject, inputs=distinct_rows(subject.inputs, subject.spec,
                                                               count))
    rows = [grown.row(i) for i in range(count)]
    wanted = [_reference(subject, model, row) for row in rows]
    held = Held(server, gate)
    mark = len(gate.passes)
    responses = held.send([body(row) for row in rows], blocker=body(rows[0]))
    return _judge(name, held, mark, responses, wanted,
                  [f"row {i}" for i in range(count)], tol, "single-row requests")


def padding_of(model: Any) -> Mapping[str, Any] | None:
    """The model's ``serving_padding`` declaration, if it makes one."""
    declared = getattr(model, "serving_padding", None)
    return declared if isinstance(declared, Mapping) else None


def padded_lengths(subject: Subject, name: str, cap: int) -> list[int]:
    """Distinct lengths across the padded dim's range: its min, the sample's, the middle
    and its max (twice the sample's when no max is declared), at most ``cap``."""
    dim = subject.spec.dims[name]
    sample = subject.dim_size(name)
    low = max(1, dim.min)
    high = min(dim.max if dim.max is not None else 2 * sample, cap)
    return sorted({n for n in (low, sample, (low + high) // 2, high) if low <= n <= high})


def resized(inputs: Inputs, axes: Mapping[InputKey, int], size: int) -> Inputs:
    """``inputs`` with each listed input cut or tiled to ``size`` along its axis."""
    values = []
    for key, value in named_inputs(inputs):
        if key in axes and isinstance(value, torch.Tensor):
            axis = axes[key]
            index = torch.arange(size, device=value.device) % int(value.shape[axis])
            value = value.index_select(axis, index)
        values.append(value)
    return rebuild(inputs, values)


def padded_parity(server: Any, gate: Gate, subject: Subject, model: Any,
                  declared: Mapping[str, Any], tol: ParityTolerance, *, limit: int,
                  cap: int = 1024) -> Step:
    """Requests of mixed lengths (at most ``limit``, each at most ``cap`` long) served in
    one padded batch, each compared with the same request run alone in eager PyTorch; a
    mismatch names the row and its length."""
    name = "padded_parity"
    dim_name = str(declared.get("dim"))
    if dim_name not in subject.spec.dims:
        return Step(name, False, f"serving_padding names dim {dim_name!r}, which the input "
                                 f"spec does not declare ({', '.join(subject.spec.dims)})")
    dim = subject.spec.dims[dim_name]
    axes = dict(dim.axes)
    mask = declared.get("mask")
    first_axis = next(iter(axes.values()))
    if isinstance(mask, str) and mask not in axes:
        axes[mask] = first_axis  # the mask runs along the padded dim, as the server pads it
    lengths = padded_lengths(subject, dim_name, cap)
    if len(lengths) < 2:
        return Step.not_exercised(name, f"dim {dim_name!r} allows one length only "
                                        f"({lengths}), so nothing is padded")
    if limit < 2:
        return Step.not_exercised(name, f"only {limit} request can be batched (raise "
                                        "concurrent_requests, max_batch_size and "
                                        "max_queue_size to 2 or more)")
    if len(lengths) > limit:  # keep the shortest and the longest
        lengths = [*lengths[:limit - 1], lengths[-1]]
    grown = distinct_rows(subject.inputs, subject.spec, len(lengths))
    rows = dataclasses.replace(subject, inputs=grown)
    requests = [resized(rows.row(i), axes, n) for i, n in enumerate(lengths)]
    wanted = [_reference(subject, model, r) for r in requests]
    held = Held(server, gate)
    mark = len(gate.passes)
    responses = held.send([body(r) for r in requests], blocker=body(requests[-1]))
    labels = [f"row {i} ({dim_name}={n})" for i, n in enumerate(lengths)]
    return _judge(name, held, mark, responses, wanted, labels, tol,
                  f"requests of {dim_name} lengths {lengths}")
