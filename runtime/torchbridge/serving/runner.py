"""Running one batch: join the requests' arrays, one forward pass, split the outputs back.

Runs on the batcher's worker thread. Inputs arrive as numpy arrays (parsed on the event
loop) and become tensors with ``torch.from_numpy`` (no copy); outputs leave as numpy views,
one slice per request, so serialisation needs no further copies.

Which output leaves carry the batch is not guessed from shapes: :class:`OutputLayout` is
learned at warm-up (see :func:`learn_layout`), and only those leaves are split; a leaf
whose row count differs from the request's is a 500 naming it, never a 200.

Output encoding rule (documented in ``docs/serving.md``): outputs are walked as a tree --
mappings (Hugging Face ``ModelOutput`` included), named tuples, dataclasses, lists, tuples,
any type registered with ``torch.utils._pytree``, and what
:mod:`torchbridge.core.trees` knows how to expand (Hugging Face caches: a
``DynamicCache`` becomes ``{"layers": [{"keys": ..., "values": ...}, ...]}``). Tensors
(and numpy arrays) are encoded, Python numbers become 0-d arrays, ``None`` and strings are
kept as they are, and any other object (a PIL image, an opaque handle) is *dropped*: left
out of a mapping, ``null`` inside a list (so the other items keep their positions). Warm-up
names every dropped output in a warning.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from torchbridge.core.subject import call_model
from torchbridge.core.trees import to_plain
from torchbridge.serving.batcher import Work
from torchbridge.serving.errors import ModelFault, OutputInvalid
from torchbridge.serving.padding import Padding, pad_batch
from torchbridge.serving.schemas import Signature

log = logging.getLogger("torchbridge.serving")
_STANDARD_NODES = (dict, list, tuple)


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _child(prefix: str, key: str | int) -> str:
    """The name of a leaf below ``prefix`` (``output_0`` style at the top).

    Names are unique within one output: a key that is not a plain word (``a.b``, ``x[0]``,
    ``""``) is written quoted, ``["a.b"]``, so ``{"a.b": s, "a": {"b": t}}`` gives ``["a.b"]``
    and ``a.b`` -- two leaves can never share a name, and so never share a batch layout.
    """
    if isinstance(key, int):
        return f"{prefix}[{key}]" if prefix else f"output_{key}"
    if not _PLAIN_KEY.match(key):
        return f"{prefix}[{json.dumps(key)}]"
    return f"{prefix}.{key}" if prefix else key


def to_tree(obj: Any, dropped: list[str] | None = None, prefix: str = "") -> Any:
    """Model outputs as plain data (see the module docstring for the rule).

    Tensors become C-contiguous numpy arrays (bfloat16 as float32); tuples become lists;
    mappings, named tuples and dataclasses become dicts. ``dropped`` collects the names of
    the objects left out.
    """
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if tensor.dtype is torch.bfloat16:
            tensor = tensor.float()
        return contiguous(tensor.numpy())
    if isinstance(obj, np.ndarray):
        return contiguous(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, bool | int | float | np.generic):
        return np.asarray(obj)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if str(key) in out:  # {0: a, "0": b}: one would silently replace the other
                raise TypeError(f"output keys {key!r} and {str(key)!r} are the same in JSON "
                                f"({_child(prefix, str(key))!r}); give the outputs distinct "
                                "names")
            item = to_tree(value, dropped, _child(prefix, str(key)))
            if item is not _DROPPED:
                out[str(key)] = item
        return out
    if hasattr(obj, "_asdict"):
        return to_tree(obj._asdict(), dropped, prefix)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_tree({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)},
                       dropped, prefix)
    if isinstance(obj, list | tuple):
        items = [to_tree(v, dropped, _child(prefix, i)) for i, v in enumerate(obj)]
        return [None if item is _DROPPED else item for item in items]
    node = pytree.SUPPORTED_NODES.get(type(obj))
    if node is not None and type(obj) not in _STANDARD_NODES:
        children, _ = node.flatten_fn(obj)
        return to_tree(list(children), dropped, prefix)
    try:  # objects the project's output trees can expand (Hugging Face caches)
        plain = to_plain(obj, lambda tensor: tensor)
    except TypeError:
        plain = None
    if isinstance(plain, dict | list):
        return to_tree(plain, dropped, prefix)
    if dropped is not None:
        dropped.append(f"{prefix or 'output_0'} ({type(obj).__name__})")
    return _DROPPED


def contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` in C order (orjson serialises only that), keeping its shape: unlike
    ``np.ascontiguousarray``, a 0-d array (a scalar loss) stays 0-d, not ``[x]``."""
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def json_default(obj: Any) -> Any:
    """orjson's ``default`` for output trees: a 0-d array (a scalar output) as its numpy
    scalar, which orjson's numpy support writes and its array support refuses."""
    if isinstance(obj, np.ndarray) and obj.ndim == 0:
        return obj[()]
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


class _Dropped:
    def __repr__(self) -> str:
        return "<dropped>"


_DROPPED: Any = _Dropped()


def map_leaves(tree: Any, fn: Callable[[str, np.ndarray], Any], prefix: str = "") -> Any:
    """``tree`` with every array leaf replaced by ``fn(name, array)`` (names as
    :func:`leaves` gives them)."""
    if isinstance(tree, np.ndarray):
        return fn(prefix or "output_0", tree)
    if isinstance(tree, dict):
        return {k: map_leaves(v, fn, _child(prefix, k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [map_leaves(v, fn, _child(prefix, i)) for i, v in enumerate(tree)]
    return tree


def leaves(tree: Any, prefix: str = "") -> list[tuple[str, np.ndarray]]:
    """Named array leaves: ``output_0`` for a lone tensor or list items, keys for dicts."""
    if isinstance(tree, np.ndarray):
        return [(prefix or "output_0", tree)]
    if isinstance(tree, dict):
        return [leaf for k, v in tree.items() for leaf in leaves(v, _child(prefix, k))]
    if isinstance(tree, list):
        return [leaf for i, v in enumerate(tree) for leaf in leaves(v, _child(prefix, i))]
    return []


def check_finite(tree: Any) -> None:
    """Raise :class:`OutputInvalid` (500, reason ``non_finite``) naming the first floating
    output that holds NaN or an infinity, and the position (within the request) of the
    value. JSON has no spelling for them; they are never sent as ``null``."""
    for name, array in leaves(tree):
        if array.dtype.kind not in "fc" or array.size == 0:
            continue
        finite = np.isfinite(array)
        if finite.all():
            continue
        position = [int(i) for i in np.argwhere(~finite)[0]]
        value = array[tuple(position)] if position else array[()]
        raise OutputInvalid(f"output {name!r} holds a non-finite value ({value}) at position "
                            f"{position}; JSON cannot carry it", "non_finite")


@dataclass(frozen=True)
class OutputLayout:
    """Which output leaves carry the batch, and on which axis, learned at warm-up.

    ``batch``: leaf name -> the axis that carries the batch (0 for most outputs; 1 for an
    RNN's final state ``(layers, batch, hidden)``). A leaf that keeps one row at every batch
    size is listed with axis 0 too, so its row count is checked (see
    :func:`learn_layout`). ``batched``: whether requests may share a forward pass -- only
    when every leaf carries the batch and no row's values depend on its batch mates at
    any batch size tried. ``reason`` says why not, for the start-up log.
    """

    batch: Mapping[str, int]
    batched: bool
    reason: str = ""
    #: the output with every array replaced by ``ARRAY``: what a batch's non-tensor parts
    #: (strings, None, list lengths) must be to be handed to every request unchanged
    skeleton: Any = None


def batch_axis(one: np.ndarray, many: np.ndarray | None, rows: int) -> int | None:
    """The axis of a leaf that is 1 at one row and ``rows`` at ``rows`` rows, all other
    dims unchanged; ``None`` when there is no such axis (a batch-level output)."""
    return following_axis(one, many, 1, rows)


def following_axis(one: np.ndarray, other: np.ndarray | None, size: int, changed: int
                   ) -> int | None:
    """The one axis on which a leaf is ``size`` in one run and ``changed`` in another run
    whose input differs only in that size, all other dims unchanged; ``None`` when there
    is none. Learned this way, never from a size equal by coincidence."""
    if other is None or one.ndim != other.ndim or size == changed:
        return None
    for axis in range(one.ndim):
        rest = one.shape[:axis] + one.shape[axis + 1:]
        if one.shape[axis] == size and other.shape[axis] == changed and \
                rest == other.shape[:axis] + other.shape[axis + 1:]:
            return axis
    return None


def _pairs_rows(one: np.ndarray, many: np.ndarray | None, rows: int) -> bool:
    """Whether a leaf is 1 on two or more axes at one row and ``rows`` on each of them at
    ``rows`` rows, other dims unchanged: an in-batch pairwise output ((B, B) scores)."""
    if many is None or one.ndim != many.ndim or rows < 2:
        return False
    grown = [a for a in range(one.ndim) if one.shape[a] == 1 and many.shape[a] == rows]
    same = all(one.shape[a] == many.shape[a] for a in range(one.ndim) if a not in grown)
    return len(grown) >= 2 and same


class _ArrayMark:
    def __repr__(self) -> str:
        return "<array>"


#: stands for an array in a :func:`skeleton`
ARRAY: Any = _ArrayMark()


def skeleton(tree: Any) -> Any:
    """``tree`` with its arrays replaced by :data:`ARRAY`: what is left (strings, None,
    the lengths of lists, the keys) cannot be split by request, so a batch may share it
    only when it is the same at every batch size."""
    if isinstance(tree, np.ndarray):
        return ARRAY
    if isinstance(tree, dict):
        return {k: skeleton(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [skeleton(v) for v in tree]
    return tree


def _strings(tree: Any, prefix: str = "") -> list[str]:
    """Names of the string leaves of a skeleton."""
    if isinstance(tree, str):
        return [prefix or "output_0"]
    if isinstance(tree, dict):
        return [n for k, v in tree.items() for n in _strings(v, _child(prefix, k))]
    if isinstance(tree, list):
        return [n for i, v in enumerate(tree) for n in _strings(v, _child(prefix, i))]
    return []


def learn_layout(alone: Sequence[Any], runs: Mapping[int, Any], flipped: Any = None,
                 rtol: float = 1e-3, atol: float = 1e-4) -> OutputLayout:
    """The layout from warm-up outputs: ``alone[j]`` is row ``j`` run alone (``alone[0]``
    the sample's first row), ``runs[k]`` rows ``0..k-1`` run together, ``flipped`` the
    largest run with its rows reversed.

    A leaf carries the batch on the axis found by :func:`batch_axis` between ``alone[0]``
    and the largest run. Batching is allowed when every leaf does, every run has its size
    on that axis for every leaf, every row of every run agrees with that row run alone
    (for as many rows as ``alone`` holds) and the reversed run gives the same rows reversed
    (within ``rtol``/``atol``; exactly for integers and booleans) -- otherwise a row's
    answer would depend on which other requests shared its batch, how many, or where it
    sat in it. Trying every batch size matters: a model may misbehave at three rows only.

    Every leaf with one row at one row has its row count checked on every answer, also one
    that did not follow the row count: a leaf of one row at any batch size is either a
    batch-level output kept with ``keepdim`` or a model that drops rows, and a client cannot
    tell which, so a multi-row request then answers 500 naming it rather than a 200 with
    fewer rows than it sent.
    """
    one = dict(leaves(alone[0]))
    if not runs:  # a batch holds one row, so one request: nothing is ever split
        return OutputLayout({n: 0 for n, a in one.items() if a.ndim and a.shape[0] == 1}, True)
    rows = max(runs)
    many = dict(leaves(runs[rows]))
    axes = {n: axis for n, a in one.items()
            if (axis := batch_axis(a, many.get(n), rows)) is not None}
    other = sorted(set(one) - set(axes))
    if other or set(many) != set(one):
        pairwise = [n for n in other if _pairs_rows(one[n], many.get(n), rows)]
        ambiguous = [n for n in other if one[n].ndim and one[n].shape[0] == 1
                     and n not in pairwise]
        shapes = ", ".join(f"{n} {list(one[n].shape)} at 1 row, "
                           f"{list(many[n].shape) if n in many else 'absent'} at {rows}"
                           for n in other) or "the outputs differ between the runs"
        note = "" if not pairwise else (
            f"; {', '.join(pairwise)} pair(s) every row with every other row of its batch "
            "(the batch size on several axes, like CLIP's logits_per_image), so requests "
            "batched together would see each other's rows; each request is run alone (to "
            "batch, serve per-row outputs such as the embeddings and pair them in the "
            "client)")
        note += "" if not ambiguous else (
            f"; {', '.join(ambiguous)} keep(s) one row at any batch size, so requests of "
            "more than one row answer 500 (return a batch-level output without a batch "
            "dim, e.g. mean(0) without keepdim, to serve them)")
        return OutputLayout({**axes, **dict.fromkeys([*pairwise, *ambiguous], 0)}, False,
                            f"output(s) that do not carry the batch: {shapes}{note}")
    shared = skeleton(alone[0])
    texts = _strings(shared)
    if texts:  # a string cannot carry the batch: one per batch would go to every request
        return OutputLayout(axes, False, f"output(s) {', '.join(texts)} are strings; a "
                                         "string cannot be split between requests")
    for size in sorted(runs):
        if skeleton(runs[size]) != shared:
            return OutputLayout(axes, False, f"outputs that are not tensors (strings, "
                                             f"None, list lengths) differ at {size} rows "
                                             "from 1 row (one string per row?); they "
                                             "cannot be split between requests")
    by_row = [dict(leaves(tree)) for tree in alone]
    for size in sorted(runs):
        reason = _run_differs(dict(leaves(runs[size])), by_row, axes, size, rtol, atol)
        if reason:
            return OutputLayout(axes, False, reason)
    back = dict(leaves(flipped)) if flipped is not None else {}
    for name, axis in sorted(axes.items()):
        if name in back and not (back[name].shape == many[name].shape and _close(
                np.flip(back[name], axis), many[name], rtol, atol)):
            return OutputLayout(axes, False, f"output {name!r} of a row changes with its "
                                             "place in the batch")
    return OutputLayout(axes, True, skeleton=shared)


def _run_differs(got: Mapping[str, np.ndarray], by_row: Sequence[Mapping[str, np.ndarray]],
                 axes: Mapping[str, int], size: int, rtol: float, atol: float) -> str:
    """Why a run of ``size`` rows cannot be split into its rows ("" when it can)."""
    if set(got) != set(axes):
        return f"the outputs at {size} rows are not those at 1 row"
    for name, axis in sorted(axes.items()):
        array = got[name]
        if array.ndim <= axis or array.shape[axis] != size:
            return f"output {name!r} does not carry the batch at {size} rows " \
                   f"({list(array.shape)})"
        for row, alone in enumerate(by_row[:size]):
            if not _close(np.take(array, row, axis), np.take(alone[name], 0, axis),
                          rtol, atol):
                return f"output {name!r} of a row changes with its batch mates " \
                       f"(row {row} at {size} rows)"
    return ""


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    if a.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))
    return bool(np.array_equal(a, b))


class ModelRunner:
    """The batcher's compute function for one model on one device."""

    def __init__(self, model: Any, sig: Signature, device: str = "cpu",
                 on_failure: Callable[[BaseException], None] | None = None,
                 padding: Padding | None = None) -> None:
        self.model = model
        self.sig = sig
        self.device = device
        self.padding = padding
        self._on_failure = on_failure
        #: set by warm-up; ``None`` until then (requests are then served alone, unchecked)
        self.layout: OutputLayout | None = None
        #: with padding: leaf name -> the axis that carries the padded length, learned at
        #: warm-up; only these are cut back to a request's own length
        self.padded: Mapping[str, int] = {}
        self._warned: set[str] = set()

    def tensors(self, requests: Sequence[Sequence[np.ndarray]]) -> list[torch.Tensor]:
        out = []
        for index, spec in enumerate(self.sig.inputs):
            if len(requests) == 1 or spec.batch_axis is None:
                array = requests[0][index]
            else:
                array = np.concatenate([r[index] for r in requests], axis=spec.batch_axis)
            tensor = torch.from_numpy(array)
            if spec.dtype is torch.bfloat16:
                tensor = tensor.to(torch.bfloat16)
            if self.device != "cpu":
                tensor = tensor.to(self.device, non_blocking=True)
            out.append(tensor)
        return out

    def forward(self, requests: Sequence[Sequence[np.ndarray]]) -> Any:
        """One forward pass over the joined requests; the output as a plain tree.

        A ``BaseException`` that is not an ``Exception`` becomes :class:`ModelFault`, so
        the worker thread survives a model that calls ``sys.exit``.
        """
        try:
            with torch.inference_mode():
                output = call_model(self.model, self.sig.rebuild(self.tensors(requests)))
            dropped: list[str] = []
            tree = to_tree(output, dropped)
        except Exception as exc:
            if self._on_failure is not None:
                self._on_failure(exc)
            raise
        except BaseException as exc:
            fault = ModelFault(exc)
            if self._on_failure is not None:
                self._on_failure(fault)
            raise fault from exc
        new = [name for name in dropped if name not in self._warned]
        if new:
            self._warned.update(new)
            log.warning("output(s) %s are not tensors and are left out of responses "
                        "(return tensors, or e.g. use_cache=False for a KV cache)",
                        ", ".join(new))
        return tree

    def __call__(self, batch: list[Work]) -> list[Any]:
        requests: Sequence[Sequence[np.ndarray]] = [w.inputs for w in batch]
        lengths: list[int] = []
        if self.padding is not None and len(batch) > 1:
            requests, lengths = pad_batch(requests, self.padding)
        tree = self.forward(requests)
        try:
            parts = self.split(tree, [w.rows for w in batch])
        except OutputInvalid as exc:
            if self._on_failure is not None:
                self._on_failure(exc)
            raise
        if lengths:
            longest = max(lengths)
            parts = [map_leaves(part, _unpad(self.padded, longest, length))
                     for part, length in zip(parts, lengths, strict=True)]
        return parts

    def split(self, tree: Any, rows: Sequence[int]) -> list[Any]:
        """One tree per request, cutting the batch leaves by the requests' row counts.

        Every batch leaf must hold exactly the batch's rows (checked for a lone request
        too); a leaf not known to carry the batch may appear only when the request ran
        alone. Raises :class:`OutputInvalid` (500, reason ``row_count``) naming the leaf.
        """
        layout = self.layout
        total = sum(rows)
        if layout is None:  # not learned (no warm-up): requests run alone, as they are
            if len(rows) > 1:
                raise OutputInvalid("outputs cannot be split by request before warm-up has "
                                    "learned which carry the batch", "row_count")
            return [tree]
        for name, array in leaves(tree):
            axis = layout.batch.get(name)
            if axis is not None:
                if array.ndim <= axis or array.shape[axis] != total:
                    got = array.shape[axis] if array.ndim > axis else "no batch dim"
                    raise OutputInvalid(f"output {name!r} has {got} row(s) for "
                                        f"{total} input row(s)", "row_count")
            elif len(rows) > 1:
                raise OutputInvalid(f"output {name!r} does not carry the batch; it cannot be "
                                    "split between requests", "row_count")
        if len(rows) == 1:
            return [tree]
        if skeleton(tree) != layout.skeleton:  # every request would get all of it
            raise OutputInvalid("outputs that are not tensors differ from warm-up's; they "
                                "cannot be split between requests", "row_count")
        parts = []
        start = 0
        for count in rows:
            stop = start + count
            parts.append(map_leaves(tree, _cut(layout.batch, start, stop)))
            start = stop
        return parts


def _cut(batch: Mapping[str, int], start: int, stop: int
         ) -> Callable[[str, np.ndarray], np.ndarray]:
    def cut(name: str, array: np.ndarray) -> np.ndarray:
        axis = batch.get(name)
        if axis is None:
            return array
        if axis == 0:
            return array[start:stop]
        # orjson serialises C-contiguous arrays only
        return np.ascontiguousarray(np.take(array, range(start, stop), axis))

    return cut


def _unpad(padded: Mapping[str, int], longest: int, length: int
           ) -> Callable[[str, np.ndarray], np.ndarray]:
    """Cut the leaves that carry the padded length back to a request's ``length``."""
    def cut(name: str, array: np.ndarray) -> np.ndarray:
        axis = padded.get(name)
        if axis is None or length == longest or array.shape[axis] != longest:
            return array
        return np.ascontiguousarray(np.take(array, range(length), axis))

    return cut
