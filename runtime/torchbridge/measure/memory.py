"""Peak memory of a forward pass, measured and estimated.

**Measured peak** = the model's resident state (parameters and buffers) + the inputs +
the high-water mark of what one forward pass allocates above what was held before it.
One warm-up call runs first so that one-time allocations (cuBLAS workspaces, lazily
created caches) are not charged to every call.

* CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated`` (the
  caching allocator's own accounting, method ``cuda-allocator``).
* CPU (Linux): the resident-set high-water mark (``VmHWM``), reset by writing ``5`` to
  ``/proc/self/clear_refs``, of a forked child that runs the forward pass once with an
  allocator that maps every block above 64 KiB afresh (method ``rss-fork``), so memory
  cached from earlier work cannot hide the peak. Unlike ``tracemalloc`` it sees torch's
  allocations. Where fork is unavailable, the same high-water mark in this process
  (``rss-hwm``); elsewhere RSS sampled every millisecond (``rss-sampled``, can miss short
  spikes). The report says which method ran.

**Estimated peak** (:func:`estimate_memory`) runs the forward pass under
``FakeTensorMode``: no real memory is allocated, while every op's outputs are tracked
to find the largest amount live at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import statistics
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torchbridge.errors import ConfigError

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


@dataclass
class PeakMemory:
    """A measured peak and what it is made of."""

    peak_bytes: int
    state_bytes: int
    input_bytes: int
    forward_bytes: int
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "state_bytes": self.state_bytes,
                "input_bytes": self.input_bytes, "forward_bytes": self.forward_bytes,
                "method": self.method, **self.details}


# ----------------------------------------------------------------------------- sizes

def _storage_key(tensor: Any) -> tuple[int, int]:
    storage = tensor.untyped_storage()
    return storage._cdata, storage.nbytes()


def tensor_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages behind the tensors in a nested structure."""
    import torch

    seen: dict[int, int] = {}

    def visit(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            key, size = _storage_key(obj)
            seen[key] = size
        elif isinstance(obj, dict):
            for value in obj.values():
                visit(value)
        elif isinstance(obj, list | tuple):
            for value in obj:
                visit(value)

    visit(tensors)
    return sum(seen.values())


def state_bytes(model: Any) -> tuple[int, int]:
    """(parameter bytes, buffer bytes) of a module, shared storages counted once."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return 0, 0
    params = tensor_bytes(list(model.parameters()))
    buffers = tensor_bytes([b for b in model.buffers() if b is not None])
    return params, buffers


# ----------------------------------------------------------------------------- estimate

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
        key, size = _storage_key(tensor)
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


@contextlib.contextmanager
def _python_attention() -> Any:
    """Route ``nn.MultiheadAttention`` / ``TransformerEncoderLayer`` through their
    op-by-op path: the fused inference kernel allocates its temporaries inside one op,
    where the tracker cannot see them; the op-by-op path makes the same temporaries."""
    import torch

    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


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

    from torchbridge.checks.subject import (
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
        external.add(_storage_key(fake)[0])
    with mode:
        # Growing the sample to batch_size happens on fake tensors too: nothing real.
        fakes = [_fake_like(mode, value, home) for _, value in named_inputs(sample_input)]
        inputs = Subject(model, rebuild(sample_input, fakes),
                         spec=InputSpec(batch_dim=batch_dim)).with_batch(batch_size)
    leaves = [v for _, v in named_inputs(inputs) if isinstance(v, torch.Tensor)]
    external.update(_storage_key(v)[0] for v in leaves)
    input_bytes = tensor_bytes(leaves)
    fake_inputs = inputs
    tracker = _LiveTracker(external, block)
    try:
        with mode, torch.no_grad(), _python_attention(), _tracking_mode(tracker):
            output = call_model(model, fake_inputs)
            del output
    except Exception as exc:
        raise ConfigError(f"estimate_memory: the model cannot run on fake tensors "
                          f"({type(exc).__name__}: {exc}); data-dependent control flow or "
                          "custom kernels need a measured peak instead (tb.memory measures "
                          "one)") from exc
    return MemoryEstimate(params, buffers, input_bytes, tracker.peak, batch_size,
                          time.perf_counter() - begin)


# ----------------------------------------------------------------------------- measure

def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _read_status(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.001) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)


#: Forked measurements per CPU peak; the smallest is reported.
FORK_REPEATS = 3
#: mallopt parameter number of M_MMAP_THRESHOLD in glibc.
_M_MMAP_THRESHOLD = -3


def _hwm_delta(fn: Callable[[], Any]) -> int | None:
    _malloc_trim()
    if not _reset_hwm():
        return None
    before = _read_status("VmHWM")  # right after the reset it equals the resident set
    if before is None:
        return None
    fn()
    after = _read_status("VmHWM")
    return None if after is None else max(0, after - before)


def _forked_hwm_delta(fn: Callable[[], Any], timeout: float = 120.0) -> int | None:
    """Run ``fn`` once in a forked child whose allocator maps every block above 64 KiB
    afresh, and return the child's resident high-water-mark growth.

    In this process, memory the allocator kept from earlier tests (glibc arenas, a
    raised mmap threshold) can be reused without touching new pages, hiding part of the
    peak; a child with a fixed low mmap threshold sees every allocation. The child runs
    one intra-op thread (OpenMP is not fork-safe with a live pool)."""
    if not hasattr(os, "fork") or not os.path.exists("/proc/self/clear_refs"):
        return None
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns about fork in a process with threads (OpenMP's pool); the
        # child only runs one forward pass on one thread and exits without cleanup.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            os.close(read_end)
            import torch

            torch.set_num_threads(1)
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
            # Shared-library code is not copied by fork; the first call faults it in.
            fn()
            # Free heap memory inherited from the parent is still resident (shared
            # copy-on-write pages): reusing it would not grow the RSS. Hand it back first.
            _malloc_trim()
            delta = _hwm_delta(fn)
            os.write(write_end, str(-1 if delta is None else delta).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.005)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(read_end)
        return None
    with os.fdopen(read_end) as pipe:
        text = pipe.read().strip()
    if code != 0 or not text or int(text) < 0:
        return None
    return int(text)


def cpu_forward_peak(fn: Callable[[], Any]) -> tuple[int, str]:
    """Bytes the call ``fn()`` adds to the resident set at its peak, and the method:
    ``rss-fork`` (the median of three forked children, see :func:`_forked_hwm_delta`),
    ``rss-hwm`` (this
    process's reset high-water mark) or ``rss-sampled`` (psutil every millisecond)."""
    # Noise mostly adds pages (the interpreter's own heap growing), but a child has also
    # been seen to read no growth at all for a 16 MiB allocation (one CI run in eight):
    # the median of three discards one outlier in either direction, the least would not.
    deltas = [_forked_hwm_delta(fn) for _ in range(FORK_REPEATS)]
    if all(d is not None for d in deltas):
        return int(statistics.median(d for d in deltas if d is not None)), "rss-fork"
    delta = _hwm_delta(fn)
    if delta is not None:
        return delta, "rss-hwm"
    sampler = _RssSampler()
    before = sampler.peak
    sampler.start()
    try:
        fn()
    finally:
        sampler.done.set()
        sampler.join()
    return max(0, sampler.peak - before), "rss-sampled"


def cuda_forward_peak(fn: Callable[[], Any], device: str) -> tuple[int, dict[str, Any]]:
    """Bytes the call ``fn()`` allocates above what was held before, at its peak."""
    import torch

    dev = torch.device(device)
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    fn()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev)
    return max(0, peak - before), {"allocated_before": before, "max_allocated": peak,
                                   "reserved": torch.cuda.memory_reserved(dev)}


def measure_peak(model: Any, inputs: Any, device: str = "cpu") -> PeakMemory:
    """Measured peak of one forward pass of ``model`` on ``inputs`` (see module docs)."""
    import torch

    from torchbridge.checks.subject import call_model

    params, buffers = state_bytes(model)
    in_bytes = tensor_bytes(inputs)

    def forward() -> None:
        with torch.inference_mode():
            out = call_model(model, inputs)
        del out

    forward()  # warm-up: one-time workspaces and lazy caches
    if device.split(":")[0] == "cuda":
        extra, info = cuda_forward_peak(forward, device)
        method = "cuda-allocator"
    else:
        extra, method = cpu_forward_peak(forward)
        info = {"pid": os.getpid()}
    return PeakMemory(params + buffers + in_bytes + extra, params + buffers, in_bytes, extra,
                      method, info)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (CUDA OOM or a failed CPU allocation)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower()
                                              or "can't allocate memory" in text
                                              or "not enough memory" in text)


def free_memory(device: str) -> int | None:
    """Free bytes on ``device``: ``mem_get_info`` on CUDA, available RAM on CPU."""
    import torch

    if device.split(":")[0] == "cuda":
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    with contextlib.suppress(ImportError):
        import psutil

        return int(psutil.virtual_memory().available)
    return None
