"""The memory/device manager, spelled as the production checklist spells it.

Example::

    from torchbridge import get_manager

    manager = get_manager()
    needed = manager.estimate_memory(model, batch_size=32, sample_input=x)  # an int (bytes)
    if not manager.fits(model, batch_size=32, sample_input=x, device="cuda"):
        ...
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from torchbridge import hardware
from torchbridge.core.subject import to_device
from torchbridge.measure.estimate import MemoryEstimate, estimate_memory
from torchbridge.measure.memory import PeakMemory, free_memory, measure_peak


class Manager:
    """Memory estimates and measurements, and device facts, for one process."""

    def estimate_memory(self, model: Any, batch_size: int = 32, sample_input: Any = None, *,
                        device: str = "cpu") -> MemoryEstimate:
        """Predicted peak bytes of one inference forward pass, without allocating memory.

        See :func:`torchbridge.measure.estimate.estimate_memory`.
        """
        return estimate_memory(model, batch_size, sample_input, device=device)

    def measure_memory(self, model: Any, sample_input: Any, device: str = "cpu"
                       ) -> PeakMemory:
        """Measured peak of one forward pass on ``device``."""
        return measure_peak(model, to_device(sample_input, device), device)

    def free_memory(self, device: str = "cpu") -> int | None:
        """Free bytes on ``device`` (``mem_get_info`` on CUDA, available RAM on CPU)."""
        return free_memory(device)

    def fits(self, model: Any, batch_size: int = 32, sample_input: Any = None, *,
             device: str = "cpu", headroom: float = 0.1) -> bool:
        """Whether the estimated peak fits in ``device``'s free memory, keeping a fraction
        ``headroom`` of it free."""
        free = self.free_memory(device)
        if free is None:
            return True
        need = self.estimate_memory(model, batch_size, sample_input, device=device)
        return int(need) <= free * (1.0 - headroom)

    def best_device(self) -> str:
        """The fastest device available here (cuda, then mps, then xpu, then cpu)."""
        return hardware.best_device()


@lru_cache(maxsize=1)
def get_manager() -> Manager:
    """The process-wide :class:`Manager`."""
    return Manager()
