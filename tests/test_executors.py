"""One contract, every executor: threads, processes, dask and sync run the same tests.

Like dask's shared scheduler tests, ``TestEveryExecutor`` is parametrised over
the executors; what only a process pool can do (survive a crashed worker, leave
no process behind) follows. Task functions live at module level so that
worker processes can import them; state shared with a process goes through files.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time

import pytest
from conftest import engine_threads, wait_until_status

from codomyrmex_nb import ResourceType, TaskOrchestrator, TaskPriority, TaskResource, TaskStatus

S = TaskStatus
EXECUTORS = ["threads", "processes", "dask", "sync"]


# -- task functions (module level: picklable by reference) -------------------------------------
def add(x, y):
    return x + y


def collect(upstream):
    return sorted(upstream.items())


async def double_later(x):
    await asyncio.sleep(0.01)
    return 2 * x


def divide_by_zero():
    return 1 / 0


class TwoArgError(Exception):
    """Does not survive pickling (``__init__`` wants two arguments, ``args`` holds one)."""

    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")


def raise_two_arg_error():
    raise TwoArgError(7, "bad input")


def flaky(counter, failures):
    """Fails ``failures`` times, then returns the attempt number (a file counts across processes)."""
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n <= failures:
        raise ConnectionError(f"attempt {n} failed")
    return n


def spin(seconds):
    """Sleep in short steps so that a thread can be interrupted between them."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)
    return seconds


def timed_spin(seconds):
    start = time.time()
    spin(seconds)
    return start, time.time()


def exit_abruptly():
    os._exit(3)


# -- fixtures and helpers -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=4, processes=False,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def make(request, make_orch):
    """Build orchestrators on the executor of the test's ``kind`` (stopped at teardown)."""
    def build(max_workers: int = 2) -> TaskOrchestrator:
        kind = request.node.callspec.params["kind"]
        extra = {"client": request.getfixturevalue("dask_client")} if kind == "dask" else {}
        return make_orch(max_workers, executor=kind, **extra)
    return build


def run_all(orch: TaskOrchestrator, timeout: float = 60) -> bool:
    orch.start_execution()
    return orch.wait_for_completion(timeout)


# -- the shared contract ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", EXECUTORS)
class TestEveryExecutor:
    def test_dag_passes_upstream_results(self, make, kind):
        o = make()
        a = o.create_task("a", func=lambda: 2)
        b = o.create_task("b", func=add, parameters={"x": a.output, "y": 3}, dependencies=[a])
        c = o.create_task("c", func=collect, dependencies=[a, b])
        d = o.create_task("d", func=double_later, parameters={"x": b.output}, dependencies=[b])
        assert run_all(o)
        assert (b.result.data, c.result.data, d.result.data) == (5, [("a", 2), ("b", 5)], 10)
        assert b.result.execution_time >= 0

    def test_failure_keeps_error_type_message_and_traceback(self, make, kind):
        o = make()
        zero = o.create_task("zero", func=divide_by_zero)
        odd = o.create_task("odd", func=raise_two_arg_error)
        after = o.create_task("after", func=lambda: 1, dependencies=[zero])
        assert run_all(o) is False
        r = zero.result
        assert (zero.status, r.error_type, r.error_message) == \
            (S.FAILED, "ZeroDivisionError", "division by zero")
        assert isinstance(r.exception, ZeroDivisionError) and "divide_by_zero" in r.traceback
        assert (odd.result.error_type, odd.result.error_message) == ("TwoArgError", "7: bad input")
        assert "raise_two_arg_error" in odd.result.traceback
        assert after.status is S.SKIPPED

    def test_flaky_task_is_retried_until_it_succeeds(self, make, kind, tmp_path):
        o = make()
        t = o.create_task("flaky", func=flaky, parameters={"counter": tmp_path / "n", "failures": 2},
                          max_retries=2)
        assert run_all(o)
        assert (t.result.data, len(t.attempts)) == (3, 3)

    def test_timeout_stops_a_running_task_within_two_seconds(self, make, kind):
        o = make()
        t = o.create_task("sleepy", func=spin, parameters={"seconds": 20}, timeout=0.5)
        start = time.monotonic()
        assert run_all(o, 10) is False
        assert time.monotonic() - start < 0.5 + 2
        assert (t.status, t.result.error_type) == (S.FAILED, "TimeoutError")
        nxt = o.create_task("next", func=lambda: "still working")
        assert o.wait_for_completion(20) is False  # the earlier failure still counts
        assert nxt.result.data == "still working"

    def test_cancel_running_task_skips_dependents(self, make, kind):
        o = make()
        t = o.create_task("long", func=spin, parameters={"seconds": 20})
        child = o.create_task("child", func=lambda: 1, dependencies=[t])
        cancelled = []

        def cancel_once_running():  # from another thread: the sync executor runs in this one
            if wait_until_status(o, t, S.RUNNING):
                cancelled.append((o.cancel_task(t.id), time.monotonic()))

        canceller = threading.Thread(target=cancel_once_running)
        o.start_execution()
        canceller.start()
        assert o.wait_for_completion(10) is False
        canceller.join()
        assert cancelled and cancelled[0][0] is True
        assert time.monotonic() - cancelled[0][1] < 2
        assert (t.status, child.status) == (S.CANCELLED, S.SKIPPED)

    def test_priorities_order_dispatch(self, make, kind):
        o = make(1)
        names = ["low", "normal", "critical", "high"]
        tasks = {n: o.create_task(n, func=lambda: None, priority=n) for n in names}
        assert run_all(o)
        order = sorted(names, key=lambda n: tasks[n].attempts[0].started_at)
        assert order == ["critical", "high", "normal", "low"]
        assert tasks["high"].priority is TaskPriority.HIGH

    def test_exclusive_resource_is_never_shared(self, make, kind):
        o = make(2)
        lock = [TaskResource(ResourceType.DATABASE, "db", "exclusive")]
        first = o.create_task("first", func=timed_spin, parameters={"seconds": 0.3}, resources=lock)
        second = o.create_task("second", func=timed_spin, parameters={"seconds": 0.3},
                               resources=lock)
        assert run_all(o)
        (a0, a1), (b0, b1) = sorted([first.result.data, second.result.data])
        assert a1 <= b0, "both tasks held the exclusive resource at once"


# -- what only some executors do -------------------------------------------------------------------
def test_processes_survive_a_crashed_worker(make_orch):
    o = make_orch(1, executor="processes")
    crash = o.create_task("crash", func=exit_abruptly, priority="critical")
    nxt = o.create_task("next", func=os.getpid, priority="low")
    assert run_all(o) is False
    assert (crash.status, crash.result.error_type) == (S.FAILED, "WorkerCrashedError")
    assert "exit code 3" in crash.result.error_message
    assert nxt.status is S.COMPLETED and nxt.result.data != os.getpid()


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_unpicklable_call_fails_with_a_clear_error(make, kind):
    o = make()
    t = o.create_task("locked", func=lambda lock: 1, parameters={"lock": threading.Lock()})
    assert run_all(o) is False
    assert t.result.error_type == "TypeError"
    assert "must be picklable" in "".join(getattr(t.result.exception, "__notes__", []))


def test_processes_stop_leaves_no_process_or_thread_and_restarts(make_orch):
    threads_before = set(threading.enumerate())
    o = make_orch(2, executor="processes")
    done = [o.create_task(f"t{i}", func=add, parameters={"x": i, "y": 1}) for i in range(4)]
    long = o.create_task("long", func=spin, parameters={"seconds": 20})
    o.start_execution()
    assert wait_until_status(o, long, S.RUNNING)
    assert all(wait_until_status(o, t, S.COMPLETED) for t in done)
    assert multiprocessing.active_children()
    o.stop_execution()
    assert multiprocessing.active_children() == []
    assert set(threading.enumerate()) <= threads_before and not engine_threads()
    assert long.status is S.READY  # interrupted by the stop, queued again
    assert o.cancel_task(long.id)
    again = o.create_task("again", func=lambda: "restarted")
    run_all(o, 30)
    assert again.result.data == "restarted"
    o.stop_execution()
    assert multiprocessing.active_children() == []


def test_dask_starts_and_closes_its_own_local_cluster(make_orch):
    pytest.importorskip("distributed")
    o = make_orch(2, executor="dask")
    t = o.create_task("t", func=add, parameters={"x": 1, "y": 2})
    assert run_all(o) and t.result.data == 3
    executor = o._executor
    cluster = executor.client.cluster
    o.stop_execution()
    assert executor.client is None and cluster.status.name == "closed"


def test_dask_by_address_opens_and_closes_its_own_client(make_orch, dask_client):
    o = make_orch(2, executor="dask", address=dask_client.scheduler.address)
    t = o.create_task("t", func=add, parameters={"x": 2, "y": 2})
    assert run_all(o) and t.result.data == 4
    executor = o._executor
    own = executor.client
    assert own is not dask_client
    o.stop_execution()
    assert own.status == "closed" and dask_client.status == "running"


def test_sync_runs_tasks_in_the_callers_thread_in_a_deterministic_order(make_orch):
    o = make_orch(4, executor="sync")
    order = []
    for name, prio in [("b", "normal"), ("a", "high"), ("c", "normal")]:
        o.create_task(name, func=lambda name=name: order.append((name, threading.get_ident())),
                      priority=prio)
    o.start_execution()
    assert [t.name for t in engine_threads() if t.name.startswith("codo-worker")] == []
    assert o.wait_for_completion(10)
    assert order == [(n, threading.get_ident()) for n in ("a", "b", "c")]
