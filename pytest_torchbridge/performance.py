"""Performance glue: benchmark JSON, baselines, and exclusive measurements under xdist.

Options::

    --tb-benchmark-json PATH          pytest-benchmark 5.x JSON of the latency items
    --tb-github-benchmark-json PATH   github-action-benchmark customSmallerIsBetter list
    --tb-save-baseline PATH           save this run's performance results as a baseline
    --tb-baseline PATH                compare with a saved baseline (or any --tb-json report)
    --tb-regression-threshold PCT     regression threshold, '10%' or 0.1 (default 10 %)
    --tb-baseline-ref REF             also measure each item on git REF, interleaved
    --tb-baseline-pythonpath PATHS    import paths of the base side (see ``base_ref``)

**Exclusivity under xdist.** The controller creates one lock directory per session and
hands its path to every worker (``workerinput["tb_lock_dir"]``). Every test holds a
cross-process reader/writer lock *shared* from setup to teardown; an item of an
``exclusive`` check (latency, throughput, memory, gpu_utilization) holds it
*exclusively*, so while it measures no other test runs on any worker. Waiting writers
go first. Measurements made imperatively through ``tb_checks`` inside an ordinary test
are not exclusive; use the markers for numbers you gate on.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Generator
from typing import Any

import pytest

from pytest_torchbridge import base_ref
from pytest_torchbridge.expansion import check_case
from pytest_torchbridge.results import collected, is_controller
from pytest_torchbridge.settings import BASELINE_REF_ENV, settings

LOCK_DIR_KEY = "tb_lock_dir"
_LOCK_DIR = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchbridge")
    group.addoption("--tb-benchmark-json", default=None, metavar="PATH",
                    help="write latency results in pytest-benchmark's JSON schema (with "
                         "percentiles); readable by 'pytest-benchmark compare'")
    group.addoption("--tb-github-benchmark-json", default=None, metavar="PATH",
                    help="write github-action-benchmark customSmallerIsBetter entries")
    group.addoption("--tb-save-baseline", default=None, metavar="PATH",
                    help="save this run's performance results (with raw samples) as a baseline")
    group.addoption("--tb-baseline", default=None, metavar="PATH",
                    help="compare performance results with a saved baseline: an item fails "
                         "only on a regression beyond the threshold that is also significant")
    group.addoption("--tb-regression-threshold", default=None, metavar="PCT",
                    help="relative change counted as a regression (default 10%%)")
    group.addoption("--tb-baseline-ref", default=None, metavar="REF",
                    help="also measure every latency/throughput item on the code at git REF, "
                         "interleaved in this run; a regression is a paired ratio above the "
                         f"threshold whose lower bound is above 1 (default: ${BASELINE_REF_ENV}, "
                         "then ini tb_baseline_ref)")
    group.addoption("--tb-baseline-pythonpath", action="append", default=[], metavar="PATHS",
                    help="import paths for the base side, relative to its worktree's root "
                         "(os.pathsep-separated, repeatable); src/ and the root follow")
    group.addoption("--tb-ab-serve", default=None, help=argparse.SUPPRESS)
    parser.addini("tb_baseline_ref", "default for --tb-baseline-ref", default="")


def pytest_configure(config: pytest.Config) -> None:
    baseline = settings(config).baseline
    if baseline:
        from torchbridge.errors import ConfigError
        from torchbridge.measure.baseline import load_baseline

        try:
            load_baseline(baseline)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    if config.pluginmanager.hasplugin("xdist") and is_controller(config):
        config.pluginmanager.register(_XdistController(config), "torchbridge-xdist-lock")


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.stash.get(_LOCK_DIR, None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


class _XdistController:
    """Controller side: one lock directory per session, handed to each worker."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if _LOCK_DIR not in self.config.stash:
            self.config.stash[_LOCK_DIR] = tempfile.mkdtemp(prefix="torchbridge-lock-")
        node.workerinput[LOCK_DIR_KEY] = self.config.stash[_LOCK_DIR]
        base_ref.configure_node(self.config, node)


def is_exclusive(item: pytest.Item) -> bool:
    """Whether ``item`` runs a check that must not overlap other tests."""
    case = check_case(item)
    if case is None:
        return False
    from torchbridge.checks import registry

    return bool(registry.get(case.check).exclusive)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, object, object]:
    directory = getattr(item.config, "workerinput", {}).get(LOCK_DIR_KEY)
    if not directory:
        return (yield)
    from pytest_torchbridge.perflock import RWFileLock

    lock = RWFileLock(directory)
    with lock.exclusive() if is_exclusive(item) else lock.shared():
        return (yield)


def _performance(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from torchbridge.checks import registry

    names = {n for n in registry.names() if registry.get(n).family == "performance"}
    return [r for r in results if r.get("check") in names]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not is_controller(config):
        return
    opts = settings(config)
    if not (opts.benchmark_json or opts.github_benchmark_json or opts.save_baseline):
        return
    from torchbridge.measure import benchmark_json
    from torchbridge.reporting.document import build_report, write_json

    results = _performance(collected(config))
    if opts.benchmark_json:
        write_json(opts.benchmark_json, benchmark_json.pytest_benchmark_document(results))
    if opts.github_benchmark_json:
        write_json(opts.github_benchmark_json,
                   benchmark_json.github_benchmark_entries(results))  # type: ignore[arg-type]
    if opts.save_baseline:
        write_json(opts.save_baseline, build_report(results))
