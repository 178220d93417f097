"""``gpu_utilization``: how busy NVML sees the GPU while the model runs back to back.

Example::

    @tb.gpu_utilization(min_percent=60, batch_size=64)

Skipped, with the reason, on a device that is not a CUDA GPU or without NVML.
"""

from __future__ import annotations

from dataclasses import dataclass

from torchbridge.checks.base import CheckConfig, PerformanceCheck, RunContext
from torchbridge.checks.options import option, optional, positive_int
from torchbridge.checks.registry import register
from torchbridge.core.result import CheckResult, Status
from torchbridge.core.subject import Subject
from torchbridge.errors import CheckSkipped, ConfigError, HardwareSkipped
from torchbridge.measure.gpu import UtilizationSampler, nvml_unavailable
from torchbridge.measure.throughput import measure_batch
from torchbridge.units import parse_duration


def _percent(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        raise ConfigError(f"{what} must be a number in (0, 100], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class GpuUtilizationConfig(CheckConfig):
    """``min_percent`` mean utilisation (0-100), ``duration`` of the run, ``batch_size``."""
    min_percent: float | None = option(None, optional(_percent))
    duration: float = option("2s", parse_duration)
    batch_size: int | None = option(None, positive_int)


@register
class GpuUtilizationCheck(PerformanceCheck[GpuUtilizationConfig]):
    name = "gpu_utilization"
    summary = "Mean NVML GPU utilisation while running back to back at or above a floor."

    def run(self, subject: Subject, config: GpuUtilizationConfig, context: RunContext
            ) -> CheckResult:
        if subject.device.split(":")[0] != "cuda":
            raise HardwareSkipped(f"GPU utilisation needs a CUDA device; this run uses "
                                  f"{subject.device}")
        reason = nvml_unavailable(subject.device)  # the NVML package or driver
        if reason:
            raise CheckSkipped(reason)
        result = self.result_for(subject)
        call = self.bound(subject, config.batch_size, result)
        if call is None:
            return result
        size = call.batch_size or 1
        with UtilizationSampler(subject.device, interval=0.02) as sampler:
            rate = measure_batch(call.fn, size, subject.device, config.duration)
        samples = sampler.samples
        mean = samples.mean_gpu_percent
        result.details.update({"gpu_utilization": samples.to_dict(), "batch_size": size,
                               "samples_per_s": rate.samples_per_s})
        if mean is None:
            raise CheckSkipped("NVML returned no utilisation samples during the run")
        result.metric("gpu_utilization_pct", mean, "%")
        result.metric("samples_per_s", rate.samples_per_s, "samples/s")
        if config.min_percent is not None:
            result.budget("gpu_utilization_pct", float(config.min_percent), "%")
        text = f"mean GPU utilisation {mean:.0f} % over {len(samples.gpu_percent)} samples " \
               f"(batch {size}, {rate.samples_per_s:,.0f} samples/s)"
        if config.min_percent is not None and mean < config.min_percent:
            result.status = Status.FAILED
            result.message = f"{text} < floor {config.min_percent} %; raise the batch size " \
                             "or feed the GPU faster"
        else:
            result.message = text
        return result
