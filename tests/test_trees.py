"""The one output-tree utility: the same leaves and paths for every kind of model output."""

from __future__ import annotations

import collections
import dataclasses

import pytest
import torch

from torchbridge.core import trees
from torchbridge.core.compare import compare_outputs

Pair = collections.namedtuple("Pair", "logits hidden")


@dataclasses.dataclass
class Detections:
    boxes: torch.Tensor
    count: int


class KVLayer:
    """Shaped like a transformers cache layer (``keys``/``values`` attributes)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys, self.values, self.is_initialized = keys, values, True


class ToyCache:
    """Shaped like ``transformers.DynamicCache``: a list of layers, and no ``__eq__``."""

    def __init__(self, *layers: KVLayer) -> None:
        self.layers = list(layers)


class ToyEncoderDecoderCache:
    def __init__(self, own: ToyCache, cross: ToyCache) -> None:
        self.self_attention_cache, self.cross_attention_cache = own, cross


def cache(seed: int = 0, layers: int = 2) -> ToyCache:
    g = torch.Generator().manual_seed(seed)
    return ToyCache(*(KVLayer(torch.randn(2, 2, 3, 4, generator=g),
                              torch.randn(2, 2, 3, 4, generator=g)) for _ in range(layers)))


def paths(obj: object) -> list[str]:
    return [path for path, _ in trees.flatten(obj)]


def test_plain_containers_keep_the_python_spelling_of_paths() -> None:
    output = {"logits": torch.zeros(1), "extra": (torch.ones(1), [2, None])}
    assert paths(output) == ["output.logits", "output.extra[0]", "output.extra[1][0]",
                             "output.extra[1][1]"]


def test_named_tuple_fields_are_attribute_paths() -> None:
    assert paths(Pair(torch.zeros(1), torch.ones(1))) == ["output.logits", "output.hidden"]


def test_dataclass_fields_are_attribute_paths() -> None:
    leaves = trees.flatten(Detections(torch.zeros(3, 4), 3))
    assert [p for p, _ in leaves] == ["output.boxes", "output.count"]
    assert leaves[1][1] == 3


def test_cache_expands_to_per_layer_key_and_value_tensors() -> None:
    assert paths({"cache": cache()}) == [
        "output.cache.layers[0].keys", "output.cache.layers[0].values",
        "output.cache.layers[1].keys", "output.cache.layers[1].values"]


def test_encoder_decoder_cache_names_both_attention_caches() -> None:
    found = paths(ToyEncoderDecoderCache(cache(layers=1), cache(layers=1)))
    assert found == ["output.self_attention_cache.layers[0].keys",
                     "output.self_attention_cache.layers[0].values",
                     "output.cross_attention_cache.layers[0].keys",
                     "output.cross_attention_cache.layers[0].values"]


def test_unknown_object_is_an_opaque_leaf_with_a_use_cache_hint() -> None:
    class SomeCache:
        pass

    (path, leaf), = trees.flatten({"past": SomeCache()})
    assert path == "output.past" and isinstance(leaf, trees.Opaque)
    assert "use_cache=False" in trees.opaque_reason(leaf)


def test_equal_caches_compare_equal_leaf_by_leaf() -> None:
    comparison = compare_outputs({"cache": cache(0)}, {"cache": cache(0)}, rtol=0, atol=0)
    assert comparison.ok, comparison.describe()
    assert len(comparison.leaves) == 4


def test_a_changed_cache_value_is_named_by_its_path() -> None:
    changed = cache(0)
    changed.layers[1].values = changed.layers[1].values + 1e-3
    comparison = compare_outputs({"cache": changed}, {"cache": cache(0)}, rtol=0, atol=0)
    assert not comparison.ok
    assert comparison.first_mismatch is not None
    assert comparison.first_mismatch.path == "output.cache.layers[1].values"


def test_unflattenable_objects_never_compare_equal_by_identity() -> None:
    thing = object()
    comparison = compare_outputs({"x": thing}, {"x": thing})
    assert not comparison.ok
    assert "cannot compare a builtins.object" in comparison.describe()


def test_missing_output_names_the_path() -> None:
    comparison = compare_outputs({"a": torch.ones(1)}, {"a": torch.ones(1), "b": torch.ones(1)})
    assert "missing output.b" in comparison.describe()


def test_registered_flattener_wins_over_the_opaque_fallback() -> None:
    class Boxes:
        def __init__(self, data: torch.Tensor) -> None:
            self.data = data

    trees.register_flattener(Boxes, lambda b: [("data", b.data)])
    assert paths(Boxes(torch.zeros(2))) == ["output.data"]


def test_map_tensors_result_compares_like_the_original_output() -> None:
    original = {"cache": cache(0), "logits": torch.randn(2, 5)}
    first_row = trees.map_tensors(original, lambda _, t: t[:1])
    assert compare_outputs(first_row, trees.map_tensors(original, lambda _, t: t[:1])).ok
    assert all(leaf.shape[0] == 1 for _, leaf in trees.flatten(first_row))


def test_hf_model_output_uses_the_pytree_node_transformers_registers() -> None:
    pytest.importorskip("transformers")
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    output = BaseModelOutputWithPooling(last_hidden_state=torch.zeros(1, 2, 3),
                                        pooler_output=torch.ones(1, 3))
    assert paths(output) == ["output.last_hidden_state", "output.pooler_output"]


def test_to_plain_turns_caches_and_records_into_json_ready_data() -> None:
    plain = trees.to_plain((Pair(torch.ones(1), None), {"cache": cache(layers=1)}),
                           lambda t: list(t.shape))
    assert plain[0] == {"logits": [1], "hidden": None}
    assert plain[1]["cache"] == {"layers": [{"keys": [2, 2, 3, 4], "values": [2, 2, 3, 4]}]}


def test_to_plain_refuses_an_object_it_cannot_expand() -> None:
    with pytest.raises(TypeError, match=r"output\[0\]: cannot compare"):
        trees.to_plain([object()], lambda t: t)
