"""The dask executor on its default local cluster: a worker *process* per engine worker.

The shared executor contract (``test_executors``) runs Dask in-process, where an
interrupt reaches the attempt's thread directly. Here the attempts run in other
interpreters, as they do for a user who writes ``executor="dask"``: a worker that
dies, an attempt given up on while it still runs there. Task functions live at
module level (workers import them); what they did is told through files.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from codomyrmex_nb import ResourceType, TaskOrchestrator, TaskResource, TaskStatus

pytest.importorskip("distributed")
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def orch():
    """One local cluster of two worker processes for the module (each start costs seconds)."""
    o = TaskOrchestrator(max_workers=2, executor="dask", journal=False)
    o.start_execution()
    yield o
    o.stop_execution()


def note_and_die(path):
    with open(path, "a") as f:
        f.write("ran\n")
    os._exit(3)


def test_an_attempt_whose_worker_dies_runs_once_and_fails(orch, tmp_path: Path):
    """Dask's default re-ran it on three more workers (each killed in turn) before
    giving up: four runs of a task with ``max_retries=0``."""
    marks = tmp_path / "runs.txt"
    task = orch.create_task("dies", func=note_and_die, parameters={"path": str(marks)})
    assert not orch.wait_for_completion(120)
    assert task.status is TaskStatus.FAILED
    assert task.result.error_type == "WorkerCrashedError"
    assert "the Dask worker running task 'dies' died" in task.result.error_message
    assert marks.read_text().count("ran") == 1


def square_or_die(item):
    if item == 1:
        os._exit(3)
    return item * item


def test_a_dead_workers_message_names_the_item_of_a_map(orch):
    """It said "the Dask workers running it died" and Dask's key: no task, no item."""
    _both_workers_up(orch)
    orch.create_task("sq", func=square_or_die, map=[0, 1])
    assert not orch.wait_for_completion(120)
    item = orch.get_task_result("sq", map_index=1)
    assert item.error_type == "WorkerCrashedError" and "\n" not in item.error_message
    assert "the Dask worker running task 'sq[1]' died" in item.error_message
    assert "'sq[1]'" in orch.get_task_result("sq").error_message


def big_array(n):
    import numpy as np

    return np.arange(n, dtype=np.float64)


def test_a_large_array_result_comes_back_whole_and_writable(orch):
    """The worker pickles return values itself, their buffers sent apart (not copied into
    the pickle): the array arrives equal and can be changed in place."""
    np = pytest.importorskip("numpy")
    _both_workers_up(orch)
    task = orch.create_task("big_array", func=big_array, parameters={"n": 2_000_000})
    orch.wait_for_completion(120)
    data = task.result.data
    assert task.status is TaskStatus.COMPLETED and np.array_equal(data, np.arange(2_000_000))
    data += 1  # raises on a read-only array
    assert data[0] == 1


def spin_ticking(path, seconds):
    """Pure-Python work that notes the time every 0.05 s (so an interrupt reaches it)."""
    end = time.time() + seconds
    while time.time() < end:
        with open(path, "a") as f:
            f.write(f"{time.time()}\n")
        busy = time.time() + 0.05
        while time.time() < busy:
            pass
    return "spun"


def _both_workers_up(orch) -> None:
    """A test that kills a worker leaves Dask's nanny restarting it: a timeout then ran out
    before a body began on a busy machine (what is tested here is a body that runs on)."""
    orch.executor.client.wait_for_workers(2, timeout=60)


def note_start(path):
    Path(path).write_text(str(time.time()))
    return "started"


def test_a_timed_out_attempt_stops_before_its_exclusive_resource_goes_to_the_next(
        orch, tmp_path: Path):
    """Its body ran on in the worker process while the next holder of the resource ran:
    two sole holders at once."""
    _both_workers_up(orch)
    ticks, start = tmp_path / "ticks.txt", tmp_path / "start.txt"
    sole = [TaskResource(ResourceType.CPU, "the_one", "exclusive")]
    first = orch.create_task("first", func=spin_ticking, timeout=1, resources=sole,
                             parameters={"path": str(ticks), "seconds": 8})
    second = orch.create_task("second", func=note_start, resources=sole,
                              parameters={"path": str(start)}, priority="low")
    assert not orch.wait_for_completion(60)
    assert first.result.error_type == "TimeoutError" and second.status is TaskStatus.COMPLETED
    time.sleep(0.5)  # a body still running would note more times meanwhile
    last_tick = max(float(t) for t in ticks.read_text().split())
    assert last_tick < float(start.read_text())


def test_timed_out_attempts_free_their_workers_for_the_next_tasks(orch, tmp_path: Path):
    """Both worker processes stayed busy with given-up bodies: the next task waited in
    Dask's queue and its own timeout ran out before it started."""
    _both_workers_up(orch)
    for i in range(2):
        orch.create_task(f"hog{i}", func=spin_ticking, timeout=1,
                         parameters={"path": str(tmp_path / f"hog{i}.txt"), "seconds": 20})
    after = orch.create_task("after", func=note_start, timeout=4,
                             parameters={"path": str(tmp_path / "after.txt")}, priority="low")
    started = time.monotonic()
    orch.wait_for_completion(60)
    assert after.status is TaskStatus.COMPLETED, after.result.error_message
    assert time.monotonic() - started < 15


def sleep_in_c(path, seconds):
    """Notes that it started, then blocks inside C (an interrupt cannot reach it there)."""
    Path(path).write_text("started")
    time.sleep(seconds)
    return "late"


def answer():
    return 42


def our_children() -> set[int]:
    """This process's child processes (multiprocessing's resource tracker aside)."""
    try:
        import psutil
    except ImportError:  # /proc: whose parent is this process
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() \
                        and b"resource_tracker" not in cmdline:
                    found.add(int(entry.name))
        return found
    return {c.pid for c in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(c.cmdline())}


def _dask_helpers(names: set[str]) -> set[str]:
    """Threads Dask keeps per process once used (see the dask executor's docstring)."""
    return {n for n in names if not n.startswith(("Dask-Offload", "Dask-Callback-Thread"))}


def _stick(o: TaskOrchestrator, tmp_path: Path, how: str):
    """A task whose body is blocked in C on a worker: timed out (given up), or running."""
    mark = tmp_path / "started.txt"
    task = o.create_task("stuck", func=sleep_in_c, timeout=1 if how == "timed out" else None,
                         parameters={"path": str(mark), "seconds": 30})
    if how == "timed out":
        assert not o.wait_for_completion(60)
        assert task.result.error_type == "TimeoutError"
    deadline = time.monotonic() + 60
    while not mark.exists() and time.monotonic() < deadline:  # another process: no event
        time.sleep(0.05)
    assert mark.exists()
    return task


@pytest.mark.parametrize("how", ["timed out", "running"])
def test_a_stop_does_not_wait_for_a_body_blocked_in_c_on_its_own_cluster(tmp_path, how):
    """The engine waited 5 s for the given-up body, then the cluster's close 4 s more for
    the worker process holding it: 9 s to stop. Now that process is closed at once."""
    threads = {t.name for t in threading.enumerate()}
    children = our_children()
    o = TaskOrchestrator(max_workers=2, executor="dask", journal=False)
    o.start_execution()
    try:
        _stick(o, tmp_path, how)
    finally:
        started = time.monotonic()
        o.stop_execution()
        took = time.monotonic() - started
    assert took < 8, f"stop_execution() took {took:.1f} s"
    left = _dask_helpers({t.name for t in threading.enumerate()} - threads)
    assert left == set(), left  # no engine worker, no Dask loop thread
    assert our_children() - children == set()  # no worker process (or its nanny's child)


def test_a_stop_stops_waiting_for_a_stuck_body_on_a_users_cluster_and_says_so(tmp_path):
    """Never kills what it does not own: the body runs on; the user's cluster keeps working."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0",
                           silence_logs=logging.ERROR)
    client = Client(cluster, set_as_default=False)
    try:
        o = TaskOrchestrator(max_workers=2, executor="dask", client=client, journal=False)
        o.start_execution()
        try:
            _stick(o, tmp_path, "timed out")
        finally:
            started = time.monotonic()
            with pytest.warns(RuntimeWarning, match=r"the body of task 'stuck' \(given up: "
                              r"timeout\) still runs on the Dask worker tcp://\S+ of your "
                              "cluster"):
                o.stop_execution()
            took = time.monotonic() - started
        assert took < 3, f"stop_execution() took {took:.1f} s"
        assert client.submit(answer, pure=False).result(timeout=30) == 42
        assert len(client.scheduler_info()["workers"]) == 2  # none of its workers was killed
    finally:
        client.close()
        cluster.close()
