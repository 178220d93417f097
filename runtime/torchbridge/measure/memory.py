"""Peak memory of a forward pass, measured (the estimate is in :mod:`.estimate`).

**Measured peak** = the model's resident state (parameters and buffers) + the inputs +
the high-water mark of what one forward pass allocates above what was held before it.
One warm-up call runs first so that one-time allocations (cuBLAS workspaces, lazily
created caches) are not charged to every call. The forward part is torch's own
accounting on both kinds of device, so a budget means the same thing on each:

* CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated`` (the
  caching allocator's accounting, method ``cuda-allocator``).
* CPU: every allocation and free of torch's CPU allocator during the call, as
  ``torch.profiler`` records them (``profile_memory=True``), summed in order; the
  largest running total is the peak (method ``cpu-allocator``). Exact and repeatable,
  which a resident-set reading is not at this scale, and unlike ``tracemalloc`` it sees
  tensor memory.

On CPU the process view is measured too (``rss_forward_bytes``): the resident-set
high-water-mark growth (``VmHWM``, reset through ``/proc/self/clear_refs``) of a forked
child running the call (``rss-fork``). It also holds what libraries allocate outside
torch (oneDNN reorder buffers) and malloc's page-level overhead, and decides whether a
call fits in free RAM. Where fork is unavailable: the same high-water mark in this
process (``rss-hwm``), else RSS sampled every millisecond (``rss-sampled``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PeakMemory:
    """A measured peak and what it is made of."""

    peak_bytes: int
    state_bytes: int
    input_bytes: int
    forward_bytes: int
    method: str
    details: dict[str, Any] = field(default_factory=dict)
    #: CPU only: the forward pass's resident-set growth (library buffers included).
    rss_forward_bytes: int | None = None

    @property
    def process_forward_bytes(self) -> int:
        """What the forward pass needs from free memory: the larger of torch's accounting
        and the process's resident-set growth."""
        return max(self.forward_bytes, self.rss_forward_bytes or 0)

    def to_dict(self) -> dict[str, Any]:
        out = {"peak_bytes": self.peak_bytes, "state_bytes": self.state_bytes,
               "input_bytes": self.input_bytes, "forward_bytes": self.forward_bytes,
               "method": self.method, **self.details}
        if self.rss_forward_bytes is not None:
            out["rss_forward_bytes"] = self.rss_forward_bytes
        return out


# ----------------------------------------------------------------------------- sizes

def storage_key(tensor: Any) -> tuple[int, int]:
    storage = tensor.untyped_storage()
    return storage._cdata, storage.nbytes()


def tensor_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages behind the tensors in a nested structure."""
    import torch

    seen: dict[int, int] = {}

    def visit(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            key, size = storage_key(obj)
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


#: Forked measurements per resident-set peak; the median is reported.
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
    ``rss-hwm`` (this process's reset high-water mark) or ``rss-sampled`` (psutil every
    millisecond)."""
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


def cpu_allocator_peak(fn: Callable[[], Any]) -> int | None:
    """The most bytes of torch's CPU allocator that ``fn()`` held at once: what it
    allocated, less what it freed of that, at the worst moment (memory from before the
    call that it frees does not offset it). From the allocation events ``torch.profiler``
    records; ``None`` where the profiler cannot run (another profiler active, a build
    without Kineto)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    if torch._C._autograd._profiler_enabled():
        # A nested profile would end the caller's session when it exits.
        return None
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = prof.profiler.kineto_results.events()
    except (RuntimeError, AttributeError):
        return None
    cpu = torch.autograd.DeviceType.CPU
    changes = sorted((e.start_ns(), e.nbytes()) for e in events
                     if e.name() == "[memory]" and e.device_type() == cpu)
    live = peak = 0
    for _, nbytes in changes:
        live += nbytes  # the profiler records no free of memory allocated before it began
        peak = max(peak, live)
    return peak


def measure_peak(model: Any, inputs: Any, device: str = "cpu") -> PeakMemory:
    """Measured peak of one forward pass of ``model`` on ``inputs`` (see module docs)."""
    import torch

    from torchbridge.core.subject import call_model

    params, buffers = state_bytes(model)
    in_bytes = tensor_bytes(inputs)

    def forward() -> None:
        with torch.inference_mode():
            out = call_model(model, inputs)
        del out

    forward()  # warm-up: one-time workspaces and lazy caches
    rss: int | None = None
    if device.split(":")[0] == "cuda":
        extra, info = cuda_forward_peak(forward, device)
        method = "cuda-allocator"
    else:
        rss, rss_method = cpu_forward_peak(forward)
        info = {"pid": os.getpid(), "rss_method": rss_method}
        allocated = cpu_allocator_peak(forward)
        extra, method = (rss, rss_method) if allocated is None else \
            (allocated, "cpu-allocator")
    return PeakMemory(params + buffers + in_bytes + extra, params + buffers, in_bytes, extra,
                      method, info, rss)


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
