"""Smoke-testing a deployed model server: probes, a prediction against expected outputs,
latency, canary parity, and watching ``/metrics`` for a while (``tb-smoke``).

>>> from torchbridge.smoke import SmokeConfig, run_smoke
>>> report = run_smoke(SmokeConfig("http://127.0.0.1:8000", sample={"inputs": [[0.0] * 4]}))
... # doctest: +SKIP
>>> report.passed                                                   # doctest: +SKIP
True
"""

from __future__ import annotations

from torchbridge.smoke.client import Client, RequestFailed
from torchbridge.smoke.probe import SmokeConfig, run_smoke
from torchbridge.smoke.result import SmokeReport, Step
from torchbridge.smoke.watch import WatchConfig, histogram_quantile, watch

__all__ = ["Client", "RequestFailed", "SmokeConfig", "SmokeReport", "Step", "WatchConfig",
           "histogram_quantile", "run_smoke", "watch"]
