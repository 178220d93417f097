"""Peak memory of a forward pass predicted without allocating it.

:func:`estimate_memory` runs the forward pass under ``FakeTensorMode``: shapes and
dtypes propagate, no real memory is allocated, and a dispatch mode tracks the storage
every op creates and frees to find the largest amount live at once. Two corrections model
kernels whose memory the op-by-op trace cannot see or over-counts: CPU convolution
scratch, and the fused feed-forward of ``nn.TransformerEncoderLayer``'s inference path.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import weakref
from collections.abc import Iterator
from typing import Any

from torchbridge.errors import ConfigError
from torchbridge.measure.memory import state_bytes, storage_key, tensor_bytes

#: CUDA's caching allocator hands out blocks in multiples of 512 bytes.
CUDA_BLOCK = 512


class MemoryEstimate(int):
    """Predicted peak bytes (an ``int``) with its breakdown as attributes.

    >>> est = estimate_memory(model, batch_size=32, sample_input=x)   # doctest: +SKIP
    >>> int(est), est.parameters, est.activations                     # doctest: +SKIP
    """

    parameters: int
    buffers: int
    inputs: int
    activations: int
    batch_size: int
    seconds: float

    def __new__(cls, parameters: int, buffers: int, inputs: int, activations: int,
                batch_size: int, seconds: float = 0.0) -> MemoryEstimate:
        self = super().__new__(cls, parameters + buffers + inputs + activations)
        self.parameters, self.buffers, self.inputs = parameters, buffers, inputs
        self.activations, self.batch_size, self.seconds = activations, batch_size, seconds
        return self

    @property
    def total(self) -> int:
        return int(self)

    def to_dict(self) -> dict[str, Any]:
        return {"total": int(self), "parameters": self.parameters, "buffers": self.buffers,
                "inputs": self.inputs, "activations": self.activations,
                "batch_size": self.batch_size, "seconds": self.seconds}

    def __str__(self) -> str:
        return str(int(self))

    def __repr__(self) -> str:
        return (f"MemoryEstimate(total={int(self)}, parameters={self.parameters}, "
                f"buffers={self.buffers}, inputs={self.inputs}, "
                f"activations={self.activations}, batch_size={self.batch_size})")



class _LiveTracker:
    """Counts bytes of storages created by ops while any tensor using them is alive."""

    def __init__(self, external: set[int], block: int) -> None:
        self.external = external
        self.block = block
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= self.sizes.pop(key)

    def transient(self, extra: int) -> None:
        """An op's scratch memory, alive only while the op runs."""
        self.peak = max(self.peak, self.live + extra)

    def track(self, tensor: Any) -> None:
        key, size = storage_key(tensor)
        if key in self.external:
            return
        if key not in self.refs:
            rounded = -(-size // self.block) * self.block if self.block > 1 else size
            self.refs[key], self.sizes[key] = 0, rounded
            self.live += rounded
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1
        weakref.finalize(tensor, self._release, key)


def _conv_scratch(func: Any, args: Any, out: Any) -> int:
    """Scratch bytes of a CPU convolution, by the backend torch picks for these shapes:
    the slow path unfolds the whole batch (im2col) into one buffer; oneDNN writes into a
    blocked-layout buffer the size of the output and reorders it into the result
    (both measured on torch 2.13)."""
    import torch

    if func.overloadpacket is not torch.ops.aten.convolution or \
            not isinstance(out, torch.Tensor) or out.device.type != "cpu":
        return 0
    source, weight, bias, stride, padding, dilation, transposed, output_padding, groups = \
        args[:9]
    try:
        backend = torch._C._select_conv_backend(source, weight, bias, stride, padding,
                                                dilation, transposed, output_padding, groups,
                                                None)
    except Exception:  # a private API: without it, assume no scratch
        return 0
    kind = getattr(backend, "name", str(backend)).split(".")[-1]
    elem = out.element_size()
    if kind == "Mkldnn":
        return int(out.numel() * elem)
    if kind in ("Slow2d", "Slow3d"):
        kernel = list(weight.shape[2:])
        unit = all(k == 1 for k in kernel) and all(s == 1 for s in stride) and \
            not any(padding)
        if unit:
            return 0
        rows = int(weight.shape[1]) * math.prod(int(k) for k in kernel)
        spatial = math.prod(int(d) for d in out.shape[2:])
        return int(out.shape[0]) * rows * spatial * elem
    return 0


def _tracking_mode(tracker: _LiveTracker) -> Any:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for leaf in tree_flatten(out)[0]:
                if isinstance(leaf, torch.Tensor):
                    tracker.track(leaf)
            tracker.transient(_conv_scratch(func, args, out))
            return out

    return Track()


def _takes_fast_path(layer: Any) -> bool:
    """Whether ``nn.TransformerEncoderLayer`` takes torch's fused inference kernel for a
    real input: the static conditions of its ``forward`` (the per-call ones, such as no
    gradient and a CPU or CUDA input, hold for the measured inference call)."""
    import torch

    attn = layer.self_attn
    return (torch.backends.mha.get_fastpath_enabled() and not layer.training
            and attn.batch_first and attn._qkv_same_embed_dim
            and attn.in_proj_bias is not None and attn.num_heads % 2 == 0
            and layer.linear1.bias is not None and bool(layer.activation_relu_or_gelu)
            and layer.norm1.eps == layer.norm2.eps)


@contextlib.contextmanager
def _traceable_transformer_layers(model: Any) -> Iterator[None]:
    """Run ``nn.TransformerEncoderLayer`` op by op, as its fused inference kernel would
    allocate.

    The fused kernel (``_transformer_encoder_layer_fwd``) allocates its temporaries
    inside one op, where the tracker sees only its output, so the fast path is switched
    off for the trace. The op-by-op path holds the same tensors at the attention's peak,
    but its feed-forward block copies the whole hidden layer for the activation, which
    the kernel applies inside one ``_addmm_activation``: layers that take the fast path
    get that feed-forward instead (both measured on torch 2.13).
    """
    import torch

    mha = torch.backends.mha
    layers = [m for m in model.modules() if isinstance(m, torch.nn.TransformerEncoderLayer)
              and _takes_fast_path(m)] if isinstance(model, torch.nn.Module) else []
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    for layer in layers:
        layer._ff_block = functools.partial(_fused_ff_block, layer)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for layer in layers:
            del layer._ff_block
        mha.set_fastpath_enabled(before)


def _fused_ff_block(layer: Any, x: Any) -> Any:
    """``linear2(activation(linear1(x)))`` with the activation inside the first matmul,
    as the fused kernel computes it (dropout is the identity in eval mode)."""
    import torch

    flat = x.reshape(-1, x.shape[-1])
    hidden = torch._addmm_activation(layer.linear1.bias, flat, layer.linear1.weight.t(),
                                     use_gelu=layer.activation_relu_or_gelu == 2)
    return layer.linear2(hidden).reshape(*x.shape[:-1], -1)


def _first_layer_input(model: Any, batch_size: int) -> Any:
    import torch

    if isinstance(model, torch.nn.Module):
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                weight = module.weight
                return torch.zeros(batch_size, module.in_features, dtype=weight.dtype,
                                   device="meta")
            if not isinstance(module, torch.nn.Sequential | torch.nn.ModuleList) and \
                    module is not model:
                break
    raise ConfigError("estimate_memory: cannot tell the input shape from the model's first "
                      "layer; pass sample_input=<a tensor, tuple or dict like the model "
                      "takes>")


def _fake_like(mode: Any, value: Any, home: Any) -> Any:
    import torch

    if not isinstance(value, torch.Tensor):
        return value
    if value.device.type == "meta":
        return torch.empty(value.shape, dtype=value.dtype, device=home)
    return mode.from_tensor(value)


def estimate_memory(model: Any, batch_size: int = 32, sample_input: Any = None, *,
                    device: str = "cpu", batch_dim: int = 0) -> MemoryEstimate:
    """Predict the peak bytes of one inference forward pass at ``batch_size``.

    Parameters + buffers + inputs + the largest amount of intermediate tensors alive at
    once, found by running the model under ``FakeTensorMode`` — shapes and dtypes are
    propagated, no memory is allocated. ``sample_input`` is grown or cut to
    ``batch_size`` along ``batch_dim``; without one, a model whose first layer is an
    ``nn.Linear`` gets a matching input. ``device="cuda"`` rounds each tensor up to the
    caching allocator's 512-byte blocks.
    """
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from torchbridge.core.subject import (
        InputSpec,
        Subject,
        call_model,
        named_inputs,
        rebuild,
    )

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"estimate_memory: batch_size must be a positive int, got "
                          f"{batch_size!r}")
    begin = time.perf_counter()
    if sample_input is None:
        sample_input = _first_layer_input(model, batch_size)
    params, buffers = state_bytes(model)
    block = CUDA_BLOCK if device.split(":")[0] == "cuda" else 1
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    keep: list[Any] = []
    external: set[int] = set()
    state = list(model.parameters()) + list(model.buffers()) \
        if isinstance(model, torch.nn.Module) else []
    home = state[0].device if state else torch.device("cpu")
    for tensor in state:
        fake = mode.from_tensor(tensor)
        keep.append(fake)
        external.add(storage_key(fake)[0])
    with mode:
        # Growing the sample to batch_size happens on fake tensors too: nothing real.
        fakes = [_fake_like(mode, value, home) for _, value in named_inputs(sample_input)]
        inputs = Subject(model, rebuild(sample_input, fakes),
                         spec=InputSpec(batch_dim=batch_dim)).with_batch(batch_size)
    leaves = [v for _, v in named_inputs(inputs) if isinstance(v, torch.Tensor)]
    external.update(storage_key(v)[0] for v in leaves)
    input_bytes = tensor_bytes(leaves)
    fake_inputs = inputs
    tracker = _LiveTracker(external, block)
    try:
        with mode, torch.no_grad(), _traceable_transformer_layers(model), _tracking_mode(tracker):
            output = call_model(model, fake_inputs)
            del output
    except Exception as exc:
        raise ConfigError(f"estimate_memory: the model cannot run on fake tensors "
                          f"({type(exc).__name__}: {exc}); data-dependent control flow or "
                          "custom kernels need a measured peak instead (tb.memory measures "
                          "one)") from exc
    return MemoryEstimate(params, buffers, input_bytes, tracker.peak, batch_size,
                          time.perf_counter() - begin)
