"""Per-call timing: ``perf_counter_ns`` on CPU, CUDA events with a synchronise on GPUs.

Every call is timed on its own, so tails (p99) are real per-call latencies and not block
averages. The timed loop runs under ``torch.inference_mode`` with the garbage collector
switched off (a collection inside a timed call would be charged to the model), and it
records what the numbers depend on: thread count, device, batch size and clocks.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from torchbridge.measure.interference import PROBE_INTERVAL_NS, Probes, Split, split

#: Warm-up stops once the median of one window of calls is within this fraction of the
#: previous window's median (the first calls pay for allocator, caches, autotuning).
SETTLE_TOLERANCE = 0.10
WARMUP_WINDOW = 8
#: A deadline no run reaches: probing switched off.
NEVER = 1 << 62


@dataclass
class Environment:
    """What a measurement depends on, recorded with every result."""

    device: str
    threads: int
    batch_size: int | None
    torch_version: str
    clock: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "threads": self.threads, "batch_size": self.batch_size,
                "torch_version": self.torch_version, "clock": self.clock}


@dataclass
class Warmup:
    calls: int
    seconds: float
    settled: bool


def is_cuda(device: str) -> bool:
    return device.split(":")[0] == "cuda"


def cpu_clock() -> dict[str, Any]:
    """Current CPU frequency and governor where Linux exposes them."""
    info: dict[str, Any] = {"source": "cpufreq"}
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    for key, name in (("scaling_cur_freq", "cur_khz"), ("scaling_max_freq", "max_khz"),
                      ("scaling_governor", "governor")):
        with contextlib.suppress(OSError):
            with open(base + key) as fh:
                text = fh.read().strip()
            info[name] = int(text) if text.isdigit() else text
    if len(info) == 1:
        info = {"source": "unavailable", "reason": "no cpufreq in /sys (VM or container)"}
    return info


def cuda_clock(device: str) -> dict[str, Any]:
    """SM and memory clocks (current and maximum) and throttle reasons from NVML."""
    import torch

    try:
        import pynvml
    except ImportError:
        return {"source": "unavailable", "reason": "nvidia-ml-py is not installed "
                "(pip install 'pytest-torchbridge[nvidia]')"}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # any NVMLError means no clocks here
        return {"source": "unavailable", "reason": f"NVML could not initialise: {exc}"}
    try:
        index = torch.device(device).index
        handle = nvml_handle(pynvml, torch.cuda.current_device() if index is None else index)
        info: dict[str, Any] = {
            "source": "nvml",
            "sm_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "mem_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            "sm_max_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "mem_max_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM),
        }
        with contextlib.suppress(Exception):
            info["throttle_reasons"] = int(
                pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle))
        with contextlib.suppress(Exception):
            info["temperature_c"] = pynvml.nvmlDeviceGetTemperature(
                handle, pynvml.NVML_TEMPERATURE_GPU)
        return info
    except Exception as exc:
        return {"source": "unavailable", "reason": f"NVML query failed: {exc}"}
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def nvml_handle(pynvml: Any, torch_index: int) -> Any:
    """The NVML handle of torch's device ``torch_index``, matched by PCI address so that
    ``CUDA_VISIBLE_DEVICES`` reordering cannot pick the wrong GPU."""
    import torch

    try:
        props = torch.cuda.get_device_properties(torch_index)
        domain, bus, dev = (int(getattr(props, name)) for name in
                            ("pci_domain_id", "pci_bus_id", "pci_device_id"))
        address = f"{domain:08x}:{bus:02x}:{dev:02x}.0"
        return pynvml.nvmlDeviceGetHandleByPciBusId(address.encode())
    except Exception:
        return pynvml.nvmlDeviceGetHandleByIndex(torch_index)


def environment(device: str, batch_size: int | None) -> Environment:
    import torch

    clock = cuda_clock(device) if is_cuda(device) else cpu_clock()
    return Environment(device, torch.get_num_threads(), batch_size, str(torch.__version__),
                       clock)


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[int]:
    """Run with ``count`` intra-op threads (``None``: leave as is); restore afterwards."""
    import torch

    before = torch.get_num_threads()
    if count is not None and count != before:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def quiet_region() -> Iterator[None]:
    """``inference_mode`` with the garbage collector off, collected once beforehand."""
    import torch

    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with torch.inference_mode():
            yield
    finally:
        if enabled:
            gc.enable()


class Timer:
    """Times single calls of ``fn`` on ``device``.

    On CPU each call is bracketed by ``time.perf_counter_ns``. On CUDA each call is
    bracketed by two CUDA events and followed by a synchronise, so a sample is the time
    until the GPU finished the work, not the time to launch it.
    """

    def __init__(self, fn: Callable[[], Any], device: str = "cpu") -> None:
        self.fn = fn
        self.device = device
        self.cuda = is_cuda(device)
        self._events: list[tuple[Any, Any]] = []
        #: Probe times between CPU calls; see :mod:`torchbridge.measure.interference`.
        self.probes = Probes()
        self.probing = True
        self.calls = 0

    def _cuda_events(self, count: int) -> list[tuple[Any, Any]]:
        import torch

        while len(self._events) < count:
            self._events.append((torch.cuda.Event(enable_timing=True),
                                 torch.cuda.Event(enable_timing=True)))
        return self._events[:count]

    def sample(self, count: int, deadline_ns: int | None = None) -> list[int]:
        """Time up to ``count`` calls; stop early at ``deadline_ns`` (perf_counter_ns)."""
        if self.cuda:
            return self._sample_cuda(count, deadline_ns)
        fn, clock, probes = self.fn, time.perf_counter_ns, self.probes
        out: list[int] = []
        append = out.append
        interval = PROBE_INTERVAL_NS if self.probing else NEVER
        next_probe = clock() + interval
        for _ in range(count):
            start = clock()
            fn()
            end = clock()
            append(end - start)
            if end >= next_probe:
                probes.record(self.calls + len(out))
                next_probe = clock() + interval
            if deadline_ns is not None and end >= deadline_ns:
                break
        self.calls += len(out)
        return out

    def start_probing(self, enabled: bool = True) -> None:
        """Forget earlier calls and probes, and probe once before the first call.

        Only CPU calls are probed: a CUDA sample is the GPU's time, which a slow host CPU
        does not stretch the same way."""
        self.calls = 0
        self.probes.clear()
        self.probing = enabled and not self.cuda
        if self.probing:
            self.probes.record(0)

    def _sample_cuda(self, count: int, deadline_ns: int | None) -> list[int]:
        import torch

        stream = torch.cuda.current_stream(torch.device(self.device))
        out: list[int] = []
        with torch.cuda.device(torch.device(self.device)):
            for start, end in self._cuda_events(count):
                start.record(stream)
                self.fn()
                end.record(stream)
                end.synchronize()
                out.append(round(start.elapsed_time(end) * 1e6))  # ms -> ns
                if deadline_ns is not None and time.perf_counter_ns() >= deadline_ns:
                    break
        return out

    def warm_up(self, max_seconds: float = 1.0, max_calls: int = 200,
                min_calls: int = 2 * WARMUP_WINDOW) -> Warmup:
        """Call until two consecutive windows' medians agree within 10 %, bounded by
        ``max_seconds`` and ``max_calls``."""
        begin = time.perf_counter()
        deadline = time.perf_counter_ns() + int(max_seconds * 1e9)
        calls, previous = 0, None
        while calls < max_calls:
            window = self.sample(min(WARMUP_WINDOW, max_calls - calls), deadline)
            calls += len(window)
            current = statistics.median(window)
            if previous is not None and calls >= min_calls and \
                    abs(current - previous) <= SETTLE_TOLERANCE * max(previous, 1):
                return Warmup(calls, time.perf_counter() - begin, True)
            previous = current
            if time.perf_counter_ns() >= deadline:
                break
        return Warmup(calls, time.perf_counter() - begin, False)


@dataclass
class Measurement:
    """Raw per-call samples (ns) with how and where they were taken."""

    samples_ns: list[int]
    env: Environment
    warmup: Warmup
    seconds: float
    stopped_early: bool = False
    stop_reason: str = ""
    #: The calls set aside as slowed by the host (not part of ``samples_ns``), with the
    #: probe statistics that decided it.
    interference: Split | None = None


def measure(fn: Callable[[], Any], device: str = "cpu", *, max_time: float = 1.0,
            max_samples: int = 100_000, min_samples: int = 1, batch_size: int | None = None,
            stop: Callable[[list[int]], bool] | None = None,
            next_look: Callable[[int], int] | None = None,
            warmup_seconds: float | None = None, host_filter: bool = True) -> Measurement:
    """Time ``fn`` call by call until ``stop(samples)`` says so, or a cap is reached.

    ``stop`` is consulted whenever the sample count reaches ``next_look(n)`` (by default
    every 10 % more samples), so deciding costs little against timing. On CPU, calls the
    host slowed down are set aside (``host_filter=False`` keeps them); ``stop`` and
    ``samples_ns`` see the kept calls. Caps count every call.
    """
    timer = Timer(fn, device)
    look = next_look or (lambda n: max(n + 8, int(n * 1.1)))
    with quiet_region():
        warm = timer.warm_up(max_seconds=warmup_seconds if warmup_seconds is not None
                             else min(1.0, max(0.05, max_time * 0.2)))
        timer.start_probing(host_filter)
        begin = time.perf_counter_ns()
        deadline = begin + int(max_time * 1e9)
        calls: list[int] = []
        checkpoint = max(min_samples, look(0))
        aside = 0  # set-aside calls at the last look: the schedule counts kept calls
        reason, early = "max_time", False
        while True:
            want = min(checkpoint, max_samples) - len(calls)
            calls.extend(timer.sample(want, deadline))
            if stop is not None and len(calls) >= min_samples:
                kept = split(calls, timer.probes, enabled=host_filter).kept_ns
                aside = len(calls) - len(kept)
                if len(kept) >= min_samples and stop(kept):
                    reason, early = "decided", True
                    break
            if len(calls) >= max_samples:
                reason = "max_samples"
                break
            if time.perf_counter_ns() >= deadline:
                break
            checkpoint = look(len(calls) - aside) + aside
        seconds = (time.perf_counter_ns() - begin) / 1e9
    parts = split(calls, timer.probes, enabled=host_filter)
    return Measurement(parts.kept_ns, environment(device, batch_size), warm, seconds, early,
                       reason, parts)
