"""Shared fixtures: orchestrators that always stop, and a check that no engine thread leaks."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from codomyrmex_nb import TaskOrchestrator
from codomyrmex_nb.core.journal import Journal
from codomyrmex_nb.default import reset_default

ENGINE_THREAD_PREFIXES = ("codo-",)

# Tests share one working folder: a journal there would let one test's unfinished run
# restore another test's tasks. Journal tests turn it on with their own file.
os.environ["CODOMYRMEX_JOURNAL"] = "off"
# The journal's signing key: one for the whole session (subprocesses and kernels inherit
# it), never the user's own in ~/.config.
os.environ["CODOMYRMEX_JOURNAL_KEY_FILE"] = os.path.join(
    tempfile.mkdtemp(prefix="codo-test-key-"), "journal.key")


def wait_until_status(orch, task, status, timeout=10.0) -> bool:
    """Block on engine events (no polling) until ``task`` reaches ``status``."""
    reached = threading.Event()
    unsubscribe = orch.subscribe(
        lambda e: e.task_id == task.id and e.status is status and reached.set())
    try:
        return task.status is status or reached.wait(timeout)
    finally:
        unsubscribe()


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection to a journal's file, as another program would open it."""
    return sqlite3.connect(str(path), timeout=10)


def engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(ENGINE_THREAD_PREFIXES)]


@pytest.fixture
def make_orch():
    """Build orchestrators; each is stopped at teardown and must leave no thread behind."""
    made: list[TaskOrchestrator] = []

    def make(max_workers: int = 2, **kwargs) -> TaskOrchestrator:
        orch = TaskOrchestrator(max_workers=max_workers, **kwargs)
        made.append(orch)
        return orch

    yield make
    for orch in made:
        orch.stop_execution()


@pytest.fixture
def make_journal(tmp_path):
    """Build journals (in ``tmp_path`` unless given a path); each is closed at teardown
    and must leave no writer thread behind."""
    made: list[Journal] = []

    def make(path: Path | None = None, **kwargs) -> Journal:
        journal = Journal(path or tmp_path / ".codomyrmex" / "j.sqlite", **kwargs)
        made.append(journal)
        return journal

    yield make
    for journal in made:
        journal.close()
    assert not [t for t in threading.enumerate() if t.name == "codo-journal-writer"]


@pytest.fixture
def orch(make_orch) -> TaskOrchestrator:
    return make_orch(2)


@pytest.fixture(scope="session")
def kernel_name() -> str:
    """``python3`` for the kernel tests, installed into this environment if it has none."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"],
                       check=True, capture_output=True)
    return "python3"


@pytest.fixture(scope="module")
def dask_client():
    """An in-process Dask cluster shared by a module's tests."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=4, processes=False,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def view_threads() -> list[threading.Thread]:
    """The live views' threads still running."""
    return [t for t in threading.enumerate() if t.name.startswith("codo-view")]


@pytest.fixture
def views():
    """Build live views; each is closed at teardown and must leave no thread behind."""
    from codomyrmex_nb.notebook.live_view import LiveView

    made: list[LiveView] = []

    def make(orch, **options) -> LiveView:
        view = LiveView(orch, **options)
        made.append(view)
        return view

    yield make
    for view in made:
        view.close()
    assert view_threads() == []


@pytest.fixture
def make(request, make_orch):
    """Build orchestrators on the executor of the test's ``kind`` (stopped at teardown)."""
    def build(max_workers: int = 2) -> TaskOrchestrator:
        kind = request.node.callspec.params["kind"]
        extra = {"client": request.getfixturevalue("dask_client")} if kind == "dask" else {}
        return make_orch(max_workers, executor=kind, **extra)
    return build


@pytest.fixture(scope="session")
def shell():
    """IPython's global test shell with the extension loaded."""
    from IPython.testing import globalipapp

    shell = globalipapp.get_ipython()  # module attribute: the shell once started
    shell.run_line_magic("load_ext", "codomyrmex_nb")
    return shell


def fresh_ip(shell, names: Iterable[str]):
    """For an ``ip`` fixture: ``shell`` between two resets of the default orchestrator; the
    user names in ``names`` are dropped after the test."""
    reset_default()
    yield shell
    reset_default()
    for name in names:
        shell.user_ns.pop(name, None)


@pytest.fixture
def ipython():
    """IPython's test shell with the extension loaded; names a test adds are dropped after it."""
    from IPython.testing import globalipapp

    shell = globalipapp.start_ipython() or globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "codomyrmex_nb")
    reset_default()
    before = set(shell.user_ns)
    yield shell
    reset_default()
    for name in set(shell.user_ns) - before:
        shell.user_ns.pop(name, None)


@pytest.fixture(autouse=True)
def _fresh_default():
    yield
    reset_default()


def pytest_collection_modifyitems(config, items):
    if shutil.which("dot"):
        return
    skip = pytest.mark.skip(reason="graphviz `dot` not installed (apt install graphviz)")
    for item in items:
        if "needs_dot" in item.keywords:
            item.add_marker(skip)
