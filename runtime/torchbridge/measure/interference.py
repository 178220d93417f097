"""Host interference: calls that the machine slowed down, told apart from the model's own.

On a shared host (a cloud VM, a CI runner) the whole CPU sometimes runs slower for a few
milliseconds: a neighbour on the same physical core or cache. Calls caught in such a
stretch land in the tail, and how many stretches a one-second run happens to catch moves
its p99 by 10 % or more from run to run, with the model unchanged.

The timer therefore times a fixed piece of work, the *probe*, between calls (at most
every :data:`PROBE_INTERVAL_NS`, so it costs a few per cent of the run). The probe copies
half a megabyte: models slow down with the host mostly through memory (cache and bandwidth
shared with neighbours), and a pure-arithmetic loop missed most of those stretches.

A call is set aside when the probes on **both** sides of it ran more than
:data:`THRESHOLD` times their median for the run: the machine was slow before and after
the call, whatever the model did, and the thread kept running through it (see
:data:`BUSY`). A model that is slow on its own leaves the probes alone, so its slow calls
are kept. Set-aside calls are reported with their times, never dropped silently, and
``host_filter=False`` keeps them in the statistics.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

#: A probe slower than this multiple of the run's median probe marks the CPU as slowed
#: (chosen on the development VM between 1.1 and 1.3; docs/performance.md).
THRESHOLD = 1.25
#: At most one probe per this much time; calls longer than it get a probe after each.
PROBE_INTERVAL_NS = 250_000
#: Below this many probes their median is not trusted, and nothing is set aside.
MIN_PROBES = 16
#: A span between probes is only judged when the thread ran on the CPU for at least this
#: share of it. A call that sleeps or waits (I/O, a lock, another thread) leaves the CPU
#: idle, and an idle CPU comes back with cold caches: the next probe is slow because of the
#: model, not the host. The host's slow stretches keep the thread running, only slower.
BUSY = 0.9
#: Bytes the probe copies: about 20 µs, within a core's L2 cache on current server CPUs.
PROBE_BYTES = 512 * 1024
# Non-zero content: the copy must read distinct pages, never one shared zero page.
_SOURCE = bytearray(range(256)) * (PROBE_BYTES // 256)
_TARGET = bytearray(PROBE_BYTES)


def probe() -> int:
    """Time one copy of :data:`PROBE_BYTES`; nanoseconds."""
    clock = time.perf_counter_ns
    start = clock()
    _TARGET[:] = _SOURCE
    return clock() - start


@dataclass
class Probes:
    """Probe times and where they fell: ``positions[j]`` calls had been timed before
    probe ``j`` ran, at wall clock ``wall_ns[j]`` and thread CPU time ``cpu_ns[j]``."""

    times_ns: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    wall_ns: list[int] = field(default_factory=list)
    cpu_ns: list[int] = field(default_factory=list)

    def record(self, position: int) -> None:
        self.times_ns.append(probe())
        self.positions.append(position)
        self.wall_ns.append(time.perf_counter_ns())
        self.cpu_ns.append(time.thread_time_ns())

    def clear(self) -> None:
        for values in (self.times_ns, self.positions, self.wall_ns, self.cpu_ns):
            values.clear()

    def busy(self, j: int) -> bool:
        """Whether the thread ran on the CPU for most of the span after probe ``j``."""
        if not self.wall_ns:  # built from times alone: no clock readings to judge by
            return True
        wall = self.wall_ns[j + 1] - self.wall_ns[j]
        return self.cpu_ns[j + 1] - self.cpu_ns[j] >= BUSY * wall

    def slowed_spans(self, threshold: float = THRESHOLD) -> list[tuple[int, int]]:
        """``[start, stop)`` index ranges of calls with a slow probe on each side, in a
        span the thread spent running."""
        if len(self.times_ns) < MIN_PROBES:
            return []
        limit = threshold * statistics.median(self.times_ns)
        slow = [t > limit for t in self.times_ns]
        return [(self.positions[j], self.positions[j + 1]) for j in range(len(slow) - 1)
                if slow[j] and slow[j + 1] and self.positions[j + 1] > self.positions[j]
                and self.busy(j)]


@dataclass
class Split:
    """Samples kept for the statistics and those set aside as slowed by the host."""

    kept_ns: list[int]
    set_aside_ns: list[int]
    probes: int
    probe_median_ns: float | None
    threshold: float

    @property
    def fraction(self) -> float:
        """Share of all timed calls that were set aside."""
        total = len(self.kept_ns) + len(self.set_aside_ns)
        return len(self.set_aside_ns) / total if total else 0.0

    def to_dict(self) -> dict[str, object]:
        return {"set_aside": len(self.set_aside_ns), "fraction": self.fraction,
                "set_aside_ns": self.set_aside_ns, "probes": self.probes,
                "probe_median_ns": self.probe_median_ns, "threshold": self.threshold}


def split(samples_ns: list[int], probes: Probes, threshold: float = THRESHOLD,
          enabled: bool = True) -> Split:
    """Separate the calls that slowed-probe spans cover from the rest.

    >>> p = Probes([7000] * 20 + [10000, 10000], list(range(22)))
    >>> split(list(range(100, 122)), p).set_aside_ns
    [120]
    """
    median = statistics.median(probes.times_ns) if probes.times_ns else None
    spans = probes.slowed_spans(threshold) if enabled else []
    kept: list[int] = []
    aside: list[int] = []
    start = 0
    for low, high in spans:
        kept.extend(samples_ns[start:low])
        aside.extend(samples_ns[low:high])
        start = high
    kept.extend(samples_ns[start:])
    return Split(kept, aside, len(probes.times_ns), median, threshold)
