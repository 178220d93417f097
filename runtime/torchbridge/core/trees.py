"""Output trees: every model output flattened to ``(path, leaf)`` pairs by one rule.

Compare, goldens, export, serving and smoke tests all walk model outputs; they do it
here, so a named tuple, a dataclass, a Hugging Face ``ModelOutput`` or a KV cache has
the same leaves and the same paths everywhere.

The rule, in order:

1. tensors, ``None``, numbers, strings, numpy arrays, dtypes and devices are leaves;
2. types with a flattener registered here (:func:`register_flattener`) — built in: HF
   caches (``DynamicCache``'s ``layers[i].keys``/``values``, ``EncoderDecoderCache``'s
   self- and cross-attention caches) — expand through it;
3. everything torch's pytree knows (tuples, lists, dicts, named tuples, ``torch.return_types``,
   and what libraries register: transformers registers every ``ModelOutput``) expands
   through ``torch.utils._pytree``;
4. other dataclass instances expand field by field;
5. anything else is an :class:`Opaque` leaf: it cannot be compared, and
   :func:`opaque_reason` says how to make it comparable (never ``==`` on identities).

Paths read like Python: ``output``, ``output[0]``, ``output.logits``,
``output.cache.layers[0].keys``. Mapping keys always print as ``.key`` (golden files
written by earlier versions use that form).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

#: One child of an expanded node: its key (``str`` prints ``.key``, ``int`` prints ``[i]``)
#: and its value.
Child = tuple[str | int, Any]
Children = Callable[[Any], Iterable[Child]]

_PLAIN = (torch.Tensor, bool, int, float, complex, str, bytes, np.ndarray, np.generic,
          torch.dtype, torch.device, torch.Size)


class Flat(dict[str, Any]):
    """An output already flattened: path → leaf. :func:`flatten` returns its items as they
    are, so a check can cut or map leaves (a cache's keys included) and still compare."""


@dataclass(frozen=True)
class Opaque:
    """A leaf that nothing knows how to flatten; compared, it is a failure with a hint."""

    value: Any

    @property
    def type_name(self) -> str:
        kind = type(self.value)
        return f"{kind.__module__}.{kind.__qualname__}"


@dataclass(frozen=True)
class _Flattener:
    match: Callable[[Any], bool]
    children: Children
    name: str


_FLATTENERS: list[_Flattener] = []


def register_flattener(match: type | Callable[[Any], bool], children: Children, *,
                       name: str = "") -> None:
    """Teach every output walker to expand objects matched by ``match`` (a type, or a
    predicate on the object) into ``children(obj)``: ``(key, value)`` pairs.

    Registered flatteners win over torch's pytree registrations, so an object's paths do
    not change when some library registers it later (transformers registers caches as
    pytree nodes with positional keys during ``torch.export``)."""
    predicate = (lambda obj: isinstance(obj, match)) if isinstance(match, type) else match
    label = name or getattr(match, "__name__", repr(match))
    _FLATTENERS.insert(0, _Flattener(predicate, children, label))


def _flattener(obj: Any) -> _Flattener | None:
    if isinstance(obj, _PLAIN) or obj is None:
        return None
    return next((f for f in _FLATTENERS if f.match(obj)), None)


def _is_dataclass_instance(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _stops_pytree(obj: Any) -> bool:
    """Where torch's pytree must stop: plain leaves, ``None`` (a pytree node with no
    children, kept as a leaf so a missing output still shows), and objects expanded here."""
    if obj is None or isinstance(obj, _PLAIN):
        return True
    if _flattener(obj) is not None:
        return True
    return pytree.tree_is_leaf(obj) and _is_dataclass_instance(obj)


def _key_text(entry: Any) -> str:
    if isinstance(entry, pytree.SequenceKey):
        return f"[{entry.idx}]"
    if isinstance(entry, pytree.MappingKey):
        return f".{entry.key}"
    if isinstance(entry, pytree.GetAttrKey):
        return f".{entry.name}"
    return str(entry)


def _child_text(key: str | int) -> str:
    return f"[{key}]" if isinstance(key, int) else f".{key}"


def _expand(obj: Any) -> list[tuple[str, Any]] | None:
    """One level of ``obj``'s children as (path suffix, value), or ``None`` for a leaf."""
    found = _flattener(obj)
    if found is not None:
        return [(_child_text(key), value) for key, value in found.children(obj)]
    if _is_dataclass_instance(obj) and pytree.tree_is_leaf(obj):
        return [(f".{f.name}", getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    return None


def _walk(obj: Any, path: str, out: list[tuple[str, Any]], depth: int) -> None:
    if depth > 64:
        raise ValueError(f"{path}: output nests deeper than 64 levels (a cycle?)")
    pairs, _ = pytree.tree_flatten_with_path(obj, is_leaf=_stops_pytree)
    for keypath, leaf in pairs:
        here = path + "".join(_key_text(k) for k in keypath)
        children = _expand(leaf)
        if children is None:
            out.append((here, leaf if _is_plain(leaf) else Opaque(leaf)))
            continue
        for suffix, child in children:
            _walk(child, here + suffix, out, depth + 1)


def _is_plain(leaf: Any) -> bool:
    return leaf is None or isinstance(leaf, _PLAIN)


def flatten(obj: Any, prefix: str = "output") -> list[tuple[str, Any]]:
    """``(path, leaf)`` pairs of ``obj`` in a stable order (see the module doc for the rule).

    Leaves are tensors, plain values, numpy arrays, or :class:`Opaque` wrappers around
    objects that could not be expanded. A :class:`Flat` comes back as its own items.

    >>> flatten({"logits": torch.zeros(1), "extra": (1, None)})[1:]
    [('output.extra[0]', 1), ('output.extra[1]', None)]
    """
    if isinstance(obj, Flat):
        return list(obj.items())
    out: list[tuple[str, Any]] = []
    _walk(obj, prefix, out, 0)
    return out


def tensor_leaves(obj: Any, prefix: str = "output") -> list[tuple[str, torch.Tensor]]:
    """The tensor leaves of ``obj`` with their paths."""
    return [(path, leaf) for path, leaf in flatten(obj, prefix)
            if isinstance(leaf, torch.Tensor)]


def map_tensors(obj: Any, fn: Callable[[str, torch.Tensor], Any]) -> Flat:
    """``obj`` flattened, with ``fn(path, tensor)`` applied to every tensor leaf; other
    leaves unchanged. The result compares like the original output."""
    return Flat((path, fn(path, leaf) if isinstance(leaf, torch.Tensor) else leaf)
                for path, leaf in flatten(obj))


def opaque_leaves(obj: Any) -> list[tuple[str, Opaque]]:
    """Leaves that could not be flattened, with their paths."""
    return [(path, leaf) for path, leaf in flatten(obj) if isinstance(leaf, Opaque)]


#: How to switch a transformers model's KV cache off so that it holds. Setting
#: ``model.config.use_cache = False`` on a built model misses the config copies some
#: models keep (T5's decoder stack still returns an ``EncoderDecoderCache``).
CACHE_OFF_HINT = ("build the model with the cache off: from_pretrained(..., use_cache=False) "
                  "or use_cache=False in the config it is built from (setting "
                  "model.config.use_cache afterwards misses the copy T5's decoder keeps)")


def opaque_reason(leaf: Opaque) -> str:
    """Why ``leaf`` cannot be compared and how to make it comparable."""
    name = type(leaf.value).__name__
    hint = (f"return plain tensors: {CACHE_OFF_HINT}" if "cache" in name.lower() else
            "return tensors, or register the type with torch.utils._pytree."
            "register_pytree_node or torchbridge.core.trees.register_flattener")
    return (f"cannot compare a {leaf.type_name} (not a tensor, container, dataclass or "
            f"registered pytree node, so its contents are unknown); {hint}")


def to_plain(obj: Any, leaf: Callable[[torch.Tensor], Any]) -> Any:
    """``obj`` as plain nested data for JSON: ``leaf(tensor)`` for tensors, dicts for
    mappings, named tuples, dataclasses and expanded objects (an HF cache becomes
    ``{"layers": [{"keys": ..., "values": ...}]}``), lists for sequences.

    Raises ``TypeError`` naming the path of an object that cannot be expanded."""
    return _plain(obj, leaf, "output")


def _plain(obj: Any, leaf: Callable[[torch.Tensor], Any], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        return leaf(obj)
    if _is_plain(obj):
        return obj
    children = _expand(obj)
    if children is None and not pytree.tree_is_leaf(obj):
        pairs, _ = pytree.tree_flatten_with_path(obj, is_leaf=lambda x: x is not obj)
        children = [(_key_text(keypath[0]), value) for keypath, value in pairs]
    if children is None:
        raise TypeError(f"{path}: {opaque_reason(Opaque(obj))}")
    if children and all(suffix.startswith("[") for suffix, _ in children):
        return [_plain(value, leaf, path + suffix) for suffix, value in children]
    return {suffix.lstrip("."): _plain(value, leaf, path + suffix) for suffix, value in children}


# --------------------------------------------------------------------------- HF caches


def _is_cache_layer(obj: Any) -> bool:
    return hasattr(obj, "keys") and hasattr(obj, "values") and not callable(obj.keys)


def _is_layered_cache(obj: Any) -> bool:
    """A transformers ``Cache`` (``DynamicCache``, ``StaticCache``, …): per-layer objects
    holding ``keys``/``values`` tensors. Matched by shape, so torchbridge needs no import of
    transformers."""
    layers = getattr(obj, "layers", None)
    return (type(obj).__name__.endswith("Cache") and isinstance(layers, list | tuple)
            and all(_is_cache_layer(layer) for layer in layers))


def _cache_children(cache: Any) -> Iterable[Child]:
    return [("layers", list(cache.layers))]


def _layer_children(layer: Any) -> Iterable[Child]:
    names = ["keys", "values"] + [n for n in ("conv_states", "recurrent_states")
                                  if getattr(layer, n, None) is not None]
    return [(name, _dict_or_value(getattr(layer, name))) for name in names]


def _dict_or_value(value: Any) -> Any:
    # Linear-attention layers keep states in dicts keyed by int; as lists they read [i].
    if isinstance(value, dict) and all(isinstance(k, int) for k in value):
        return [value[k] for k in sorted(value)]
    return value


def _is_encoder_decoder_cache(obj: Any) -> bool:
    return hasattr(obj, "self_attention_cache") and hasattr(obj, "cross_attention_cache")


def _encoder_decoder_children(cache: Any) -> Iterable[Child]:
    return [("self_attention_cache", cache.self_attention_cache),
            ("cross_attention_cache", cache.cross_attention_cache)]


register_flattener(_is_layered_cache, _cache_children, name="HF layered cache")
register_flattener(lambda obj: _is_cache_layer(obj) and type(obj).__name__.endswith("Layer"),
                   _layer_children, name="HF cache layer")
register_flattener(_is_encoder_decoder_cache, _encoder_decoder_children,
                   name="HF EncoderDecoderCache")


__all__ = ["Flat", "Opaque", "flatten", "map_tensors", "opaque_leaves", "opaque_reason",
           "register_flattener", "tensor_leaves", "to_plain"]
