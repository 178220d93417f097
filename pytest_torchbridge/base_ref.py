"""``--tb-baseline-ref=REF``: every performance item also measured on the code at ``REF``.

The controller checks ``REF`` out once per session into a temporary git worktree
(``git worktree add --detach``; removed at the end) and hands its path to xdist workers.
Each process that runs latency or throughput items (the session, or each xdist worker)
starts, at its first such item, two **side workers** that it keeps until the session ends:
``python -m pytest <test files>`` in that worktree (the base) and in the working tree (the
head), each with its tree's own ``conftest.py``, test modules and package source first on
its import path. After an item's own measurement, both sides are asked for that item:
each builds the model and inputs through its own fixtures
(:mod:`pytest_torchbridge.base_worker`), and the two take turns timing short blocks
(:mod:`torchbridge.measure.ab`); only one side runs at a time, and under xdist the item's
exclusive lock covers both.

Import path of a side worker, first to last: each ``--tb-baseline-pythonpath`` entry
(relative to the tree's root), ``<tree>/src`` when it exists (src layout), the tree's root
(flat layout), then the session's own ``PYTHONPATH``. A package installed in editable mode
(``pip install -e .``) is thus imported from each tree; one installed normally into
site-packages is imported from there on both sides (so both measure the same package)
unless one of these paths holds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_torchbridge.channel import Channel, ChannelClosed
from pytest_torchbridge.settings import BASELINE_REF_ENV, Settings, settings

TREE_KEY = "tb_base_tree"
_TREE = pytest.StashKey["BaseTree"]()
_REPORTER = pytest.StashKey[Any]()
_POOL = pytest.StashKey["SidePool"]()
_FILES = pytest.StashKey[list[str]]()
#: The checks a side worker can serve.
COMPARED = ("latency", "throughput")
#: A base worker must reach its first answer within this time (imports, collection,
#: fixtures), and answer each later request within ``ANSWER_TIMEOUT_S``.
START_TIMEOUT_S = 300.0
ANSWER_TIMEOUT_S = 120.0


@dataclasses.dataclass(frozen=True)
class BaseTree:
    """The base ref checked out: ``path`` is the worktree, ``rootdir`` the base session's
    rootdir inside it (the head's rootdir, relative to the repository, applied there)."""

    ref: str
    sha: str
    path: str
    rootdir: str
    temp: str
    repo: str

    @property
    def label(self) -> str:
        return self.ref


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise pytest.UsageError(f"--tb-baseline-ref: cannot run git ({exc})") from None
    if done.returncode != 0:
        raise pytest.UsageError(f"--tb-baseline-ref: git {' '.join(args)} failed: "
                                f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def create_tree(ref: str, rootdir: Path) -> BaseTree:
    """Check ``ref`` out into a fresh temporary worktree; a usage error when ``rootdir``
    is not in a git repository or ``ref`` names no commit (fetch it first in CI)."""
    top = Path(_git(rootdir, "rev-parse", "--show-toplevel")).resolve()
    sha = _git(rootdir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    temp = tempfile.mkdtemp(prefix="torchbridge-base-")
    path = Path(temp) / "tree"
    _git(top, "worktree", "add", "--detach", "--force", str(path), sha)
    inner = path / rootdir.resolve().relative_to(top)
    return BaseTree(ref, sha, str(path), str(inner), temp, str(top))


def remove_tree(tree: BaseTree) -> None:
    with contextlib.suppress(pytest.UsageError):
        _git(Path(tree.repo), "worktree", "remove", "--force", tree.path)
    shutil.rmtree(tree.temp, ignore_errors=True)
    with contextlib.suppress(pytest.UsageError):
        _git(Path(tree.repo), "worktree", "prune")


def configure(config: pytest.Config) -> None:
    """Controller: create the worktree; worker of an inner base session: serve."""
    opts = settings(config)
    if opts.ab_serve:
        from pytest_torchbridge.base_worker import WorkerReporter, channel_from

        reporter = WorkerReporter(channel_from(opts.ab_serve))
        config.stash[_REPORTER] = reporter
        config.pluginmanager.register(reporter, "torchbridge-base-worker")
        return
    if not opts.baseline_ref:
        return
    given = getattr(config, "workerinput", {}).get(TREE_KEY)
    if given:  # an xdist worker: the controller made the tree
        config.stash[_TREE] = BaseTree(**json.loads(given))
        return
    config.stash[_TREE] = create_tree(opts.baseline_ref, config.rootpath)
    config.add_cleanup(lambda: remove_tree(config.stash[_TREE]))


def configure_node(config: pytest.Config, node: Any) -> None:
    """Controller under xdist: hand the worktree to each worker."""
    tree = config.stash.get(_TREE, None)
    if tree is not None:
        node.workerinput[TREE_KEY] = json.dumps(dataclasses.asdict(tree))


def header(config: pytest.Config) -> str | None:
    tree = config.stash.get(_TREE, None)
    if tree is None:
        return None
    return f"torchbridge: base {tree.ref} at {tree.sha[:12]}, worktree {tree.path}"


def reporter(config: pytest.Config) -> Any:
    """The base worker's reporter when this session serves the base side, else None."""
    return config.stash.get(_REPORTER, None)


def remember_files(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The test files (rootdir-relative) of the items a side worker may be asked for."""
    if _TREE not in config.stash:
        return
    from pytest_torchbridge.expansion import check_case

    files: dict[str, None] = {}
    for item in items:
        case = check_case(item)
        if case is not None and case.check in COMPARED:
            files[item.nodeid.split("::")[0]] = None
    config.stash[_FILES] = list(files)


def paired_baseline(config: pytest.Config) -> Any:
    """The :class:`~torchbridge.measure.ab.PairedBaseline` of this session, or None."""
    tree = config.stash.get(_TREE, None)
    if tree is None:
        return None
    from torchbridge.measure.ab import NotCompared, PairedBaseline, Sides

    if _POOL not in config.stash:
        config.stash[_POOL] = SidePool(config, tree)
        config.add_cleanup(config.stash[_POOL].close)
    pool = config.stash[_POOL]

    @contextlib.contextmanager
    def connect(request: Any) -> Iterator[Any]:
        # The head side runs in a worker too, started the same way in the working tree:
        # both sides then live in equal fresh processes. Timed inside the test session
        # itself, identical code measured up to 30 % slower than in a fresh process
        # (docs/decisions.md), which no ratio can tell from a regression.
        path = request.test_id.split("::")[0]
        if not (Path(tree.rootdir) / path).is_file():
            raise NotCompared(f"no such test item at {tree.ref}")
        base, head = pool.worker("base"), pool.worker("head")
        try:
            base.begin(request)
            head.begin(request)
            base.handshake()
            head.handshake()
            yield Sides(base=base, head=head)
        finally:
            base.end()
            head.end()

    return PairedBaseline(tree.label, connect, settings(config).regression_threshold)


class SidePool:
    """This process's two side workers, started at first use, stopped at session end.

    A worker that died is started again for the next item, unless it died before serving
    anything: then its reason is given for every later item too.
    """

    def __init__(self, config: pytest.Config, tree: BaseTree) -> None:
        opts = settings(config)
        files = config.stash.get(_FILES, [])
        head_root = Path(config.rootpath)
        self.specs = {
            "base": (tree.ref, Path(tree.rootdir), import_path(Path(tree.path), opts)),
            "head": ("the working tree", head_root, import_path(Path(tree.repo), opts)),
        }
        self.opts = opts
        self.files = files
        self.workers: dict[str, SideWorker] = {}
        self.failed: dict[str, str] = {}

    def worker(self, side: str) -> SideWorker:
        from torchbridge.measure.ab import NotCompared

        if side in self.failed:
            raise NotCompared(self.failed[side])
        current = self.workers.get(side)
        if current is None or not current.alive:
            label, rootdir, paths = self.specs[side]
            files = [f for f in self.files if (rootdir / f).is_file()]
            current = SideWorker(side, label, rootdir, paths, self.opts, files, self)
            current.start()
            self.workers[side] = current
        return current

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()


def _pin(process: subprocess.Popen[bytes] | None, threads: int) -> None:
    """Run both sides' workers on the same ``threads`` CPUs.

    The sides take turns, so sharing CPUs costs no time; on separate CPUs a neighbour
    loading one of them (another xdist worker, a CI sidecar) slows one side only, and the
    paired ratio then measures the neighbour. Linux only; elsewhere a no-op.
    """
    if process is None or not hasattr(os, "sched_setaffinity"):
        return
    allowed = sorted(os.sched_getaffinity(0))
    if threads < 1 or threads > len(allowed):
        return
    with contextlib.suppress(OSError):  # the worker may have exited; begin() reports it
        os.sched_setaffinity(process.pid, set(allowed[-threads:]))


def import_path(root: Path, opts: Settings) -> list[str]:
    """The worker's import path: explicit entries, ``src/`` (src layout), the root (flat
    layout), then the inherited ``PYTHONPATH``."""
    paths = [str((root / entry).resolve()) for entry in opts.baseline_pythonpath]
    if (root / "src").is_dir():
        paths.append(str(root / "src"))
    paths.append(str(root))
    inherited = os.environ.get("PYTHONPATH")
    return paths + ([inherited] if inherited else [])


class SideWorker:
    """One side's worker process, serving one item at a time as a
    :class:`~torchbridge.measure.ab.Side`.

    :meth:`begin` asks for an item; :meth:`handshake` waits until the worker has built its
    fixtures and bound the call, or raises ``NotCompared`` with the reason; :meth:`end`
    finishes the item (the worker waits for the next).
    """

    def __init__(self, side: str, label: str, rootdir: Path, paths: list[str],
                 opts: Settings, files: list[str], pool: SidePool) -> None:
        self.side = side
        self.label = label
        self.rootdir = rootdir
        self.paths = paths
        self.opts = opts
        self.files = files
        self.pool = pool
        # The worker's own output, read back only to say why it stopped.
        self.log = tempfile.TemporaryFile(prefix="torchbridge-side-worker-")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.pending = False  # an item was asked for and not answered yet
        self.ready = False  # the current item is being served
        self.served = False  # some item was served: a later death is not a start-up failure

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self, serve: str) -> list[str]:
        command = [sys.executable, "-m", "pytest", *self.files, "-q",
                   f"--rootdir={self.rootdir}", "-p", "no:cacheprovider",
                   f"--tb-ab-serve={serve}", "--tb-baseline-ref=",
                   f"--tb-hardware={self.opts.hardware}", "-W", "ignore"]
        if importlib.util.find_spec("xdist") is not None:
            command.append("-n0")  # items one at a time, on request; never spread out
        return command

    def start(self) -> None:
        to_worker, from_worker = os.pipe(), os.pipe()
        # No recursion, and no job summary from a worker whose ini writes --tb-markdown.
        env = {k: v for k, v in os.environ.items()
               if k not in (BASELINE_REF_ENV, "GITHUB_STEP_SUMMARY")}
        env["PYTHONPATH"] = os.pathsep.join(self.paths)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        child = (to_worker[0], from_worker[1])
        self.channel = Channel(from_worker[0], to_worker[1])
        try:
            self.process = subprocess.Popen(
                self.command(f"{child[0]},{child[1]}"), cwd=self.rootdir, env=env,
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                pass_fds=child)
        finally:
            for fd in child:
                os.close(fd)

    def begin(self, request: Any) -> None:
        from torchbridge.measure.ab import NotCompared

        assert self.channel is not None
        try:
            self.channel.send({"op": "item", "nodeid": request.test_id,
                               "device": request.device, "batch_size": request.batch_size,
                               "threads": request.threads})
        except ChannelClosed as exc:
            raise NotCompared(self._died(str(exc))) from None
        self.pending = True
        _pin(self.process, request.threads)

    def handshake(self) -> None:
        from torchbridge.measure.ab import NotCompared

        assert self.channel is not None
        try:
            answer = self.channel.receive(START_TIMEOUT_S)
        except ChannelClosed as exc:
            raise NotCompared(self._died(str(exc))) from None
        self.pending = False
        if answer.get("event") != "ready":
            reason = str(answer.get("reason") or answer)
            raise NotCompared(reason.replace(" there", f" at {self.label}", 1))
        self.ready = self.served = True

    def end(self) -> None:
        """Finish the current item: ``quit`` when it is served, or take the answer still
        due (the other side failed first), so that the next item starts in step."""
        if self.channel is None:  # stopped already
            self.pending = self.ready = False
            return
        try:
            if self.pending:
                answer = self.channel.receive(START_TIMEOUT_S)
                self.ready = answer.get("event") == "ready"
            if self.ready:
                self.channel.send({"op": "quit"})
        except ChannelClosed:
            self.stop()
        self.pending = self.ready = False

    def _died(self, fallback: str) -> str:
        """Why the worker stopped, from its output; remembered when it never served."""
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        self.log.seek(0)
        lines = [line for line in self.log.read().decode(errors="replace").splitlines()
                 if line.strip()]
        tail = "; ".join(lines[-3:]) if lines else "no output"
        reason = f"the worker for {self.label} stopped ({fallback}): {tail}"
        if not self.served:
            self.pool.failed[self.side] = reason
        self.stop()
        return reason

    def warm_up(self, seconds: float) -> None:
        self._ask({"op": "warm", "seconds": seconds})

    def time_block(self, calls: int) -> list[int]:
        return [int(ns) for ns in self._ask({"op": "block", "calls": calls})["ns"]]

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        from torchbridge.measure.ab import NotCompared

        assert self.channel is not None
        try:
            return self.channel.request(message, ANSWER_TIMEOUT_S)
        except ChannelClosed as exc:
            self.ready = False
            raise NotCompared(self._died(str(exc))) from None

    def stop(self) -> None:
        """End the worker's session (``exit``), or kill it when it does not go."""
        if self.channel is not None:
            with contextlib.suppress(ChannelClosed):
                self.channel.send({"op": "exit"})
            self.channel.close()
            self.channel = None
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if not self.log.closed:
            self.log.close()
