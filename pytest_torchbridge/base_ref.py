"""``--tb-baseline-ref=REF``: every performance item also measured on the code at ``REF``.

The controller checks ``REF`` out once per session into a temporary git worktree
(``git worktree add --detach``; removed at the end) and hands its path to xdist workers.
For each latency or throughput item, after its own measurement, the process running it
starts two **side workers**: ``python -m pytest <nodeid>`` in that worktree (the base)
and the same in the working tree (the head), each with its tree's own ``conftest.py``,
test module and package source first on its import path, so each side's code builds the
model and inputs through its own fixtures (:mod:`pytest_torchbridge.base_worker`). The
two then take turns timing short blocks (:mod:`torchbridge.measure.ab`); only one side
runs at a time, and under xdist the item's exclusive lock covers both.

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


def paired_baseline(config: pytest.Config) -> Any:
    """The :class:`~torchbridge.measure.ab.PairedBaseline` of this session, or None."""
    tree = config.stash.get(_TREE, None)
    if tree is None:
        return None
    from torchbridge.measure.ab import PairedBaseline, Sides

    opts = settings(config)
    head_root = Path(tree.repo)

    @contextlib.contextmanager
    def connect(request: Any) -> Iterator[Any]:
        # The head side runs in a worker too, started the same way in the working tree:
        # both sides then live in equal fresh processes. Timed inside the test session
        # itself, identical code measured up to 30 % slower than in a fresh process
        # (docs/decisions.md), which no ratio can tell from a regression.
        base = SideWorker(tree.ref, Path(tree.rootdir),
                          import_path(Path(tree.path), opts), opts, request)
        head = SideWorker("the working tree", config.rootpath,
                          import_path(head_root, opts), opts, request)
        with base, head:
            base.start()
            head.start()
            base.handshake()
            head.handshake()
            yield Sides(base=base, head=head)

    return PairedBaseline(tree.label, connect, opts.regression_threshold)


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
    """One side's worker process for one item, as a :class:`~torchbridge.measure.ab.Side`.

    :meth:`start` launches it; :meth:`handshake` waits until it has built the item's
    fixtures and bound the call. Anything that stops it on the way raises ``NotCompared``
    with the reason; leaving the context stops the process.
    """

    def __init__(self, label: str, rootdir: Path, paths: list[str], opts: Settings,
                 request: Any) -> None:
        self.label = label
        self.rootdir = rootdir
        self.paths = paths
        self.opts = opts
        self.request = request
        # The worker's own output, read back only to say why it stopped.
        self.log = tempfile.TemporaryFile(prefix="torchbridge-side-worker-")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.ready = False

    def command(self, serve: str) -> list[str]:
        command = [sys.executable, "-m", "pytest", self.request.test_id, "-q",
                   f"--rootdir={self.rootdir}", "-p", "no:cacheprovider",
                   f"--tb-ab-serve={serve}", "--tb-baseline-ref=",
                   f"--tb-hardware={self.opts.hardware}", "-W", "ignore"]
        if importlib.util.find_spec("xdist") is not None:
            command.append("-n0")  # one item; never spread it out
        return command

    def __enter__(self) -> SideWorker:
        return self

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

    def handshake(self) -> None:
        from torchbridge.measure.ab import NotCompared

        assert self.channel is not None
        try:
            hello = self.channel.receive(START_TIMEOUT_S)
            if hello.get("event") == "hello":
                request = self.request
                hello = self.channel.request({"op": "bind", "device": request.device,
                                              "batch_size": request.batch_size,
                                              "threads": request.threads}, START_TIMEOUT_S)
        except ChannelClosed as exc:
            raise NotCompared(self._reason(str(exc))) from None
        if hello.get("event") != "ready":
            raise NotCompared(self._reason(str(hello.get("reason") or hello)))
        self.ready = True

    def _reason(self, fallback: str) -> str:
        """Why the worker stopped: what it said, or what its output shows."""
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        self.log.seek(0)
        output = self.log.read().decode(errors="replace")
        if "not found:" in output or "file or directory not found" in output:
            return f"no such test item at {self.label}"
        if fallback.startswith("the other side") or fallback.startswith("no answer"):
            lines = [line for line in output.splitlines() if line.strip()]
            tail = "; ".join(lines[-3:]) if lines else "no output"
            return f"the worker for {self.label} stopped ({fallback}): {tail}"
        if self.label != self.opts.baseline_ref:
            return f"{self.label}: {fallback}"
        return fallback

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
            raise NotCompared(self._reason(str(exc))) from None

    def __exit__(self, *exc: object) -> None:
        if self.channel is not None:
            with contextlib.suppress(ChannelClosed):
                self.channel.send({"op": "quit"})
            self.channel.close()
            self.channel = None
        if self.process is not None:
            if not self.ready:  # the other side failed first: no need to wait for this one
                self.process.kill()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        self.log.close()
