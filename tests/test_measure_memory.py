"""Estimated and measured peak memory of real models."""

from __future__ import annotations

import pytest
import torch

import torchbridge
from torchbridge.errors import ConfigError
from torchbridge.measure.estimate import estimate_memory
from torchbridge.measure.memory import cpu_allocator_peak, is_out_of_memory, measure_peak


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 10)).eval()


def test_estimate_counts_parameters_inputs_and_the_largest_live_activations() -> None:
    model = mlp()
    est = estimate_memory(model, batch_size=32, sample_input=torch.randn(1, 64))
    params = sum(p.numel() for p in model.parameters()) * 4
    assert est.parameters == params
    assert est.inputs == 32 * 64 * 4
    # linear1 output and its ReLU copy are alive together at the peak
    assert est.activations == 2 * 32 * 256 * 4
    assert int(est) == params + est.inputs + est.activations


def test_estimate_allocates_nothing_even_for_an_impossible_batch() -> None:
    model = torch.nn.Linear(4096, 4096)
    est = estimate_memory(model, batch_size=10_000_000, sample_input=torch.randn(1, 4096))
    assert est.activations == 10_000_000 * 4096 * 4  # 164 GB, never allocated


def test_estimate_without_input_uses_the_first_linear_layer() -> None:
    est = torchbridge.get_manager().estimate_memory(mlp(), batch_size=8)
    assert est.inputs == 8 * 64 * 4
    assert isinstance(est, int)


def test_estimate_without_input_for_a_conv_model_asks_for_one() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    with pytest.raises(ConfigError, match="sample_input"):
        estimate_memory(model, batch_size=2)


def test_measured_cpu_peak_sees_torch_allocations() -> None:
    class Scratch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            big = torch.ones(16 * 2**20 // 4)  # 16 MiB, touched
            return x + big[:1]

    peak = measure_peak(Scratch(), torch.ones(1), "cpu")
    assert peak.method == "cpu-allocator"
    assert peak.forward_bytes >= 16 * 2**20, peak.to_dict()
    assert peak.details["rss_method"] == "rss-fork"


def test_allocator_peak_is_the_most_the_call_held_at_once() -> None:
    def two_steps() -> None:
        first = torch.ones(3 * 2**20 // 4)
        second = first + first  # 6 MiB held here
        del first, second
        torch.ones(2**20 // 4)

    assert cpu_allocator_peak(two_steps) == 6 * 2**20


def test_allocator_peak_is_not_offset_by_freeing_memory_from_before_the_call() -> None:
    held = [torch.ones(8 * 2**20 // 4)]

    def swap() -> None:
        held.pop()
        held.append(torch.ones(2 * 2**20 // 4))

    assert cpu_allocator_peak(swap) == 2 * 2**20


def test_measuring_inside_a_running_profiler_leaves_it_running_and_says_so() -> None:
    model = torch.nn.Linear(64, 64)
    with torch.profiler.profile() as prof:
        peak = measure_peak(model, torch.randn(1024, 64), "cpu")
        assert torch.autograd.profiler._is_profiler_enabled
        model(torch.randn(2, 64))
    assert peak.method == "rss-fork"  # the resident-set fallback, named as such
    assert any(e.name == "aten::addmm" for e in prof.events())


def test_cpu_process_view_sees_memory_torch_allocates() -> None:
    class Scratch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.ones(16 * 2**20 // 4)[:1]

    peak = measure_peak(Scratch(), torch.ones(1), "cpu")
    assert peak.rss_forward_bytes is not None
    assert peak.rss_forward_bytes >= 15 * 2**20, peak.to_dict()
    assert peak.process_forward_bytes >= peak.forward_bytes


def test_estimate_matches_measured_peak_within_a_fifth_for_an_mlp() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 10)).eval()
    x = torch.randn(32, 256)
    est = estimate_memory(model, 32, x)
    measured = measure_peak(model, x, "cpu")
    assert 0.8 <= int(est) / measured.peak_bytes <= 1.2


def test_a_failed_cpu_allocation_counts_as_out_of_memory() -> None:
    with pytest.raises(RuntimeError) as info:
        torch.empty(2**60, dtype=torch.uint8)
    assert is_out_of_memory(info.value)
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_measured_cpu_peak_is_not_hidden_by_memory_cached_from_earlier_work() -> None:
    class Scratch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.ones(16 * 2**20 // 4)[:1]

    with pytest.raises(RuntimeError):  # a failed allocation moves glibc to another arena
        torch.empty(2**60, dtype=torch.uint8)
    cached = torch.ones(24 * 2**20 // 4)  # raises glibc's mmap threshold when freed
    del cached
    peak = measure_peak(Scratch(), torch.ones(1), "cpu")
    assert peak.forward_bytes >= 16 * 2**20, peak.to_dict()


def test_estimate_of_a_fast_path_transformer_layer_matches_its_fused_kernel() -> None:
    layer = torch.nn.TransformerEncoderLayer(64, 4, dim_feedforward=256,
                                             batch_first=True).eval()
    x = torch.randn(8, 16, 64)
    est = estimate_memory(layer, 8, x)
    measured = measure_peak(layer, x, "cpu")
    # The op-by-op path would also count a second 8*16*256 hidden layer (the activation's
    # copy) that the fused kernel never allocates.
    assert abs(int(est) - measured.peak_bytes) <= 0.05 * measured.peak_bytes, \
        (est.to_dict(), measured.to_dict())


def test_estimate_leaves_the_transformer_fast_path_as_it_was() -> None:
    layer = torch.nn.TransformerEncoderLayer(64, 4, batch_first=True).eval()
    estimate_memory(layer, 2, torch.randn(2, 8, 64))
    assert torch.backends.mha.get_fastpath_enabled()
    assert "_ff_block" not in vars(layer)


def test_manager_says_whether_a_batch_fits_in_free_memory() -> None:
    manager = torchbridge.get_manager()
    model = torch.nn.Linear(4096, 4096)
    x = torch.randn(1, 4096)
    assert manager.fits(model, batch_size=8, sample_input=x)
    assert not manager.fits(model, batch_size=10**9, sample_input=x)  # 16 TB of output
