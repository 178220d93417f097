"""Comparing a new measurement with a saved one, without flapping on noisy runners.

A change is a **regression** only when both hold:

1. it is larger than the threshold (default 10 %) on the compared statistic, and
2. it is statistically significant on the raw samples stored in both reports: the
   one-sided bootstrap confidence bound of the relative change lies beyond zero.

An improvement, or a change that is large but not significant (noise), passes; the
comparison is reported either way. The Mann-Whitney U p-value (does the whole
distribution shift?) is reported alongside for context.

Any TorchBridge JSON report (``--tb-json``) is a valid baseline; ``--tb-save-baseline``
writes one holding the performance results only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from torchbridge.core.result import CheckResult, Status
from torchbridge.errors import ConfigError
from torchbridge.measure.stats import parse_percentile

DEFAULT_THRESHOLD = 0.10
BOOTSTRAP_RESAMPLES = 1000
#: Bootstrapping resamples at most this many samples per side (evenly thinned beyond).
BOOTSTRAP_MAX_N = 4000


@dataclass(frozen=True)
class BaselineComparison:
    """One statistic, old against new. ``change`` is relative: +0.12 = 12 % larger."""

    statistic: str
    old: float
    new: float
    change: float
    change_low: float
    change_high: float
    p_value: float
    threshold: float
    higher_is_better: bool = False

    @property
    def worse(self) -> float:
        """The change in the bad direction (positive = worse)."""
        return -self.change if self.higher_is_better else self.change

    @property
    def significant(self) -> bool:
        bound = -self.change_high if self.higher_is_better else self.change_low
        return bound > 0

    @property
    def regression(self) -> bool:
        return self.worse > self.threshold and self.significant

    @property
    def verdict(self) -> str:
        if self.regression:
            return "regression"
        if self.worse > self.threshold:
            return "noise"  # large but not significant
        if -self.worse > self.threshold and (
                (self.change_high < 0) if not self.higher_is_better else (self.change_low > 0)):
            return "improvement"
        return "unchanged"

    def describe(self, unit: str = "", scale: float = 1.0) -> str:
        """One line for messages; ``scale`` converts the samples' unit to ``unit``."""
        sign = "+" if self.change >= 0 else ""
        old, new = self.old * scale, self.new * scale
        return (f"{self.statistic} {old:.4g}{unit} → {new:.4g}{unit} "
                f"({sign}{self.change * 100:.1f} %, bootstrap bounds "
                f"{self.change_low * 100:+.1f}…{self.change_high * 100:+.1f} %, "
                f"Mann-Whitney p={self.p_value:.2g}, threshold {self.threshold * 100:g} %): "
                f"{self.verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "old": self.old, "new": self.new,
                "change": self.change, "change_ci": [self.change_low, self.change_high],
                "p_value": self.p_value, "threshold": self.threshold,
                "significant": self.significant, "verdict": self.verdict}


def _statistic(sorted_rows: np.ndarray, p: float | None) -> np.ndarray:
    if p is None:
        return sorted_rows.mean(axis=-1)
    n = sorted_rows.shape[-1]
    rank = max(1, min(n, math.ceil(round(n * p, 9))))
    return sorted_rows[..., rank - 1]


def _thin(values: np.ndarray) -> np.ndarray:
    if values.size <= BOOTSTRAP_MAX_N:
        return values
    step = values.size / BOOTSTRAP_MAX_N
    return np.sort(values)[(np.arange(BOOTSTRAP_MAX_N) * step).astype(int)]


def mann_whitney_p(old: Sequence[float] | np.ndarray, new: Sequence[float] | np.ndarray
                   ) -> float:
    """One-sided p-value that ``new`` tends to be larger than ``old`` (normal
    approximation with tie correction)."""
    a, b = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return 1.0
    both = np.concatenate([a, b])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(both.size)
    sorted_vals = both[order]
    # average ranks over ties
    _, start, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u_new = ranks[n1:].sum() - n2 * (n2 + 1) / 2.0
    mean = n1 * n2 / 2.0
    ties = (counts**3 - counts).sum()
    n = n1 + n2
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 0.5
    z = (u_new - mean - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def compare_samples(old: Sequence[float], new: Sequence[float], statistic: str = "p50",
                    threshold: float = DEFAULT_THRESHOLD, confidence: float = 0.95,
                    higher_is_better: bool = False, seed: int = 0,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> BaselineComparison:
    """Compare ``statistic`` (``"mean"`` or a percentile name like ``"p99"``) of two sample
    sets with a percentile bootstrap of the relative change."""
    if not old or not new:
        raise ConfigError("baseline comparison needs samples on both sides")
    p = None if statistic == "mean" else parse_percentile(statistic)
    a, b = _thin(np.asarray(old, dtype=float)), _thin(np.asarray(new, dtype=float))
    old_value = float(_statistic(np.sort(a), p))
    new_value = float(_statistic(np.sort(b), p))
    rng = np.random.default_rng(seed)
    boot_a = _statistic(np.sort(rng.choice(a, (resamples, a.size)), axis=1), p)
    boot_b = _statistic(np.sort(rng.choice(b, (resamples, b.size)), axis=1), p)
    ratio = boot_b / np.where(boot_a == 0, np.nan, boot_a) - 1.0
    ratio = ratio[np.isfinite(ratio)]
    alpha = 1.0 - confidence
    low, high = (np.quantile(ratio, [alpha, 1.0 - alpha]) if ratio.size else (0.0, 0.0))
    change = new_value / old_value - 1.0 if old_value else 0.0
    p_value = mann_whitney_p(b, a) if higher_is_better else mann_whitney_p(a, b)
    return BaselineComparison(statistic, old_value, new_value, change, float(low), float(high),
                      p_value, threshold, higher_is_better)


def precise_enough(samples: Sequence[float], threshold: float, confidence: float = 0.95
                   ) -> bool:
    """Whether the median of ``samples`` is pinned down well enough to compare with a
    saved baseline at ``threshold``: its distribution-free interval (binomial order
    statistics) spans at most half the threshold, relative to the median. Both runs'
    uncertainties add up in the comparison, so each must be well inside the threshold
    for a change of that size to show as significant."""
    from torchbridge.measure.stats import interval_ranks

    n = len(samples)
    low, high = interval_ranks(n, 0.5, confidence)
    if not n or low is None or high is None:
        return False
    ordered = sorted(samples)
    middle = ordered[math.ceil(n / 2) - 1]
    return middle > 0 and (ordered[high - 1] - ordered[low - 1]) <= threshold / 2 * middle


def sized_stop(stop: Callable[[list[int]], bool] | None, threshold: float,
               confidence: float = 0.95) -> Callable[[list[int]], bool]:
    """A stopping rule for a run compared with a saved baseline: ``stop`` (the budgets'
    decision, if any) *and* :func:`precise_enough` at ``threshold``, rather than the
    fewest samples a budget needs (299 for p99)."""
    def decide(samples: list[int]) -> bool:
        return (stop is None or stop(samples)) and precise_enough(samples, threshold,
                                                                   confidence)

    return decide


# ----------------------------------------------------------------------------- files

def result_key(test_id: str, check: str, device: str) -> str:
    return f"{test_id}::{check}::{device.split(':')[0]}"


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> dict[str, dict[str, Any]]:
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--tb-baseline {path}: cannot read it as a TorchBridge JSON "
                          f"report ({exc})") from None
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list):
        raise ConfigError(f"--tb-baseline {path}: not a TorchBridge report (no 'results' "
                          "list); write one with --tb-save-baseline or --tb-json")
    return {result_key(r.get("test_id", ""), r.get("check", ""), r.get("device", "cpu")): r
            for r in results if isinstance(r, dict)}


def load_baseline(path: str | Path) -> dict[str, dict[str, Any]]:
    """Results of a saved report, keyed by test id, check and device kind."""
    target = Path(path)
    if not target.is_file():
        raise ConfigError(f"--tb-baseline {target}: no such file; save one first with "
                          "--tb-save-baseline")
    return _load(str(target.resolve()), target.stat().st_mtime)


@dataclass(frozen=True)
class BaselineSettings:
    """A saved report to compare with (``--tb-baseline``) and the regression threshold
    (a fraction: 0.1 = 10 %)."""

    path: str
    threshold: float = DEFAULT_THRESHOLD


def apply_baseline(result: CheckResult, test_id: str, chosen: BaselineSettings | None,
                   statistics: Sequence[str],
                   samples_of: Callable[[dict[str, Any]], Any] | None = None,
                   higher_is_better: bool = False,
                   unit: str = "", scale: float = 1.0) -> None:
    """Compare ``result`` with its entry in the saved baseline ``chosen`` (none: no-op).

    ``samples_of(details)`` picks the raw samples from a result's details (default:
    ``samples_ns``). A significant regression beyond the threshold fails a passing result;
    the comparison is added to the message and to ``details["baseline"]`` either way.
    """
    if chosen is None:
        return
    pick = samples_of or (lambda details: details.get("samples_ns"))
    entry = load_baseline(chosen.path).get(result_key(test_id, result.check, result.device))
    old = pick(entry.get("details", {})) if entry else None
    new = pick(result.details)
    if not old or not new:
        result.details["baseline"] = {"path": chosen.path, "found": False}
        result.message += f"; baseline {chosen.path}: no samples for this item, not compared"
        return
    # dict.fromkeys: a p50 budget must not compare (and report) p50 twice
    comparisons = [compare_samples(old, new, stat, chosen.threshold,
                                   higher_is_better=higher_is_better)
                   for stat in dict.fromkeys(statistics)]
    result.details["baseline"] = {"path": chosen.path, "found": True,
                                  "comparisons": [c.to_dict() for c in comparisons]}
    regressions = [c for c in comparisons if c.regression]
    text = "; ".join(c.describe(unit, scale) for c in (regressions or comparisons))
    if regressions and result.status is Status.PASSED:
        result.status = Status.FAILED
        result.message = f"regression against baseline {chosen.path}: {text}"
    else:
        result.message += f"; baseline: {text}"
