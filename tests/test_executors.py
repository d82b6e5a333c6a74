"""One contract, every executor: threads, processes, dask and sync run the same tests.

Like dask's shared scheduler tests, ``TestEveryExecutor`` is parametrised over
the executors; what only a process pool can do (survive a crashed worker, leave
no process behind) follows. Task functions live at module level so that
worker processes can import them; state shared with a process goes through files.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import engine_threads, wait_until_status

from codomyrmex_nb import (
    ResourceType,
    TaskCancelledError,
    TaskOrchestrator,
    TaskPriority,
    TaskResource,
    TaskStatus,
)
from codomyrmex_nb.core.dask_executor import DaskExecutor
from codomyrmex_nb.core.invoke import Run
from codomyrmex_nb.core.process_executor import ProcessExecutor

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


def exit_after_a_while():
    time.sleep(0.5)
    os._exit(3)


def make_lock():
    return threading.Lock()


def refuse_to_load():
    raise ValueError("this value does not load here")


class LoadsNowhere:
    """Pickles fine, but unpickling it raises (as a class the client cannot import)."""

    def __reduce__(self):
        return refuse_to_load, ()


def make_loads_nowhere():
    return LoadsNowhere()


def square_but_crash_on_5(item):
    if item == 5:
        os._exit(3)
    return item * item


class BadMessage(Exception):
    def __str__(self):
        return f"{self.code}"  # never set: its message itself raises


def raise_bad_message():
    raise BadMessage()


# -- fixtures and helpers -----------------------------------------------------------------------
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


def test_a_crashed_workers_message_names_the_item_of_a_map(make_orch):
    o = make_orch(2, executor="processes")
    o.create_task("sq", func=square_but_crash_on_5, map=list(range(8)))
    assert run_all(o) is False
    item = o.get_task_result("sq", map_index=5)
    assert item.error_type == "WorkerCrashedError"
    assert "running task 'sq[5]' died (exit code 3)" in item.error_message
    assert "'sq[5]'" in str(o.get_task_result("sq").error_message)
    assert o.get_task_result("sq", map_index=4).data == 16


LEFT_RUNNING = """
import time
from codomyrmex_nb import TaskOrchestrator

def nap():
    time.sleep(30)

if __name__ == "__main__":
    for _ in range(3):  # left running: the interpreter's exit stops them
        o = TaskOrchestrator(max_workers=1, journal=False, executor="processes")
        o.create_task("nap", func=nap)
        o.start_execution()
    time.sleep(1)
"""


def test_processes_left_running_at_exit_stop_without_an_error(tmp_path):
    """An engine thread closed a worker's Process while multiprocessing's exit hook joined
    it: 'Exception ignored in atexit callback ... process object is closed' (in most
    runs of this script before the fix)."""
    script = tmp_path / "left_running.py"
    script.write_text(LEFT_RUNNING)
    for _ in range(3):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "CODOMYRMEX_JOURNAL": "off"})
        assert done.returncode == 0 and "Exception ignored" not in done.stderr, done.stderr


def test_a_crashed_workers_attempt_counts_the_time_it_ran(make_orch):
    o = make_orch(1, executor="processes")
    crash = o.create_task("crash", func=exit_after_a_while)
    assert run_all(o) is False
    assert crash.result.error_type == "WorkerCrashedError"
    assert crash.result.execution_time >= 0.4  # it ran half a second before it died (not 0.0)


@pytest.mark.parametrize("kind", ["threads", "sync", "processes"])
def test_an_exception_whose_message_raises_still_fails_its_task(make_orch, kind):
    o = make_orch(2, executor=kind)
    bad = o.create_task("bad", func=raise_bad_message)
    after = o.create_task("after", func=lambda: 1, dependencies=["bad"])
    assert run_all(o) is False
    assert bad.status is S.FAILED and after.status is S.SKIPPED
    assert bad.result.error_type == "BadMessage"
    assert bad.result.error_message == ("<BadMessage: its message could not be made: "
                                        "AttributeError>")


def test_the_sync_executors_wait_gives_up_at_its_timeout_between_tasks(make_orch):
    o = make_orch(1, executor="sync")
    for i in range(3):
        o.create_task(f"spin{i}", func=spin, parameters={"seconds": 0.6})
    o.start_execution()
    began = time.monotonic()
    assert o.wait_for_completion(0.3) is False  # the running task ends; no other starts
    assert time.monotonic() - began < 1.5
    assert sum(t.status is S.COMPLETED for t in o.list_tasks()) == 1
    assert o.wait_for_completion(10) is True


def test_ctrl_c_in_a_sync_task_pauses_the_run_instead_of_failing_the_task(make_orch):
    """Debugging inline, Ctrl-C lands in the task's body: the wait raises it, the task goes
    back to READY (not failed, not retried, its dependents not skipped), and the next
    wait runs it again."""
    o = make_orch(1, executor="sync")
    calls = []

    def body():
        calls.append(1)
        if len(calls) == 1:
            print("before the interrupt")
            raise KeyboardInterrupt  # what the notebook's interrupt raises in this thread
        return 5

    a = o.create_task("a", func=body, max_retries=2)
    b = o.create_task("b", func=lambda upstream: upstream["a"] + 1, dependencies=[a])
    o.start_execution()
    with pytest.raises(KeyboardInterrupt):
        o.wait_for_completion(10)
    assert (a.status, b.status) == (S.READY, S.PENDING)
    assert o.get_execution_stats()["retries"] == 0
    assert o.wait_for_completion(10) is True
    assert b.result.data == 6 and len(calls) == 2
    attempts = o._engine.sched.lookup("a").attempts
    assert [x.outcome for x in attempts] == ["interrupted", "completed"]
    assert "before the interrupt" in attempts[0].logs


class _InterruptedWhilePickled:
    """A result whose pickling the user interrupts (Ctrl-C while the engine stores it)."""

    interrupt = True

    def __reduce__(self):
        if _InterruptedWhilePickled.interrupt:
            _InterruptedWhilePickled.interrupt = False
            raise KeyboardInterrupt
        return (_InterruptedWhilePickled, ())


def test_ctrl_c_while_a_sync_tasks_result_is_stored_leaves_it_ready_not_running(
        make_orch, tmp_path):
    """Ctrl-C after the body returned (the engine pickling its result for the journal, in
    the waiting thread): the task goes back to READY too; before, it stayed RUNNING for
    ever and its dependents never ran."""
    _InterruptedWhilePickled.interrupt = True
    o = make_orch(1, executor="sync", journal=tmp_path / "j.sqlite")
    a = o.create_task("a", func=_InterruptedWhilePickled)
    b = o.create_task("b", func=lambda: 1, dependencies=[a])
    o.start_execution()
    with pytest.raises(KeyboardInterrupt):
        o.wait_for_completion(10)
    assert (a.status, b.status) == (S.READY, S.PENDING)
    assert o.get_execution_stats()["running"] == 0
    assert o.wait_for_completion(10) is True and b.result.data == 1


def test_ctrl_c_after_a_sync_tasks_timeout_still_stops_the_wait(make_orch):
    """A real SIGINT while the body sits in a C call whose timeout has already fired: the
    engine's pending interrupt lands as the body unwinds from the Ctrl-C and took its
    place, so the wait went on (into the retry). It raises now; the retry waits."""
    calls = []

    def body():
        calls.append(1)
        if len(calls) == 1:
            time.sleep(3)  # the 0.3 s timeout fires in here; the Ctrl-C at 0.8 s wakes it
        return "done"

    o = make_orch(1, executor="sync")
    a = o.create_task("a", func=body, timeout=0.3, max_retries=1, retry_delay=0)
    o.start_execution()
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    began = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            o.wait_for_completion(10)
    finally:
        timer.cancel()
    assert time.monotonic() - began < 2.5  # not after the 3 s sleep, nor the retry
    attempts = o._engine.sched.lookup(a.id).attempts
    assert [x.outcome for x in attempts] == ["timeout"] and a.status is not S.RUNNING
    assert o.wait_for_completion(10) is True and a.result.data == "done"


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
    executor = o.executor
    cluster = executor.client.cluster
    o.stop_execution()
    assert executor.client is None and cluster.status.name == "closed"


def test_dask_by_address_opens_and_closes_its_own_client(make_orch, dask_client):
    o = make_orch(2, executor="dask", address=dask_client.scheduler.address)
    t = o.create_task("t", func=add, parameters={"x": 2, "y": 2})
    assert run_all(o) and t.result.data == 4
    executor = o.executor
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


# -- the begin() gate: start-up is not the task's time, an abandoned attempt never starts ------
REPO = Path(__file__).resolve().parents[1]


def run_script(tmp_path: Path, source: str, timeout: float = 90) -> dict:
    """Run ``source`` as a script in a fresh interpreter (this checkout first on its path);
    it prints one JSON line last."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_processes_worker_start_up_does_not_count_against_the_timeout(tmp_path):
    # Each spawned worker starts Python and imports this package: here that takes 1 s more (a
    # ``sitecustomize`` that sleeps in the processes started once CODO_SLOW_START is set, as
    # on a busy machine), longer than the task's 0.4 s timeout; the body is instant.
    (tmp_path / "sitecustomize.py").write_text(
        "import os, time\nif os.environ.get('CODO_SLOW_START'):\n    time.sleep(1.0)\n")
    result = run_script(tmp_path, """
        import json, os, time

        if __name__ == "__main__":
            os.environ["PYTHONPATH"] = os.pathsep.join([os.getcwd(), os.environ["PYTHONPATH"]])
            os.environ["CODO_SLOW_START"] = "1"  # for the workers started from now on
            from codomyrmex_nb import TaskOrchestrator

            o = TaskOrchestrator(max_workers=1, executor="processes")
            t = o.create_task("quick", func=os.getpid, timeout=0.4)
            began = time.monotonic()
            o.start_execution()
            o.wait_for_completion(60)
            took = time.monotonic() - began
            o.stop_execution()  # its worker goes: the next task waits for a cold start again

            def nap():
                time.sleep(30)

            slow = o.create_task("slow", func=nap, timeout=0.4)
            began = time.monotonic()
            o.start_execution()
            o.wait_for_completion(60)
            print(json.dumps({"status": t.status.name, "data": t.result.data,
                              "error": t.result.error_message, "took": took,
                              "slow": slow.status.name, "slow_took": time.monotonic() - began,
                              "slow_time": slow.result.execution_time}))
            o.stop_execution()
    """)
    assert (result["status"], result["error"]) == ("COMPLETED", None)
    assert result["took"] >= 1.0  # the cold start really was longer than the timeout
    assert isinstance(result["data"], int)
    # a task that does time out: its time is the timeout's, not the worker's start-up too
    assert result["slow"] == "FAILED" and result["slow_took"] >= 1.4
    assert 0.4 <= result["slow_time"] < 1.0


def _run_for(name: str, call) -> Run:
    run = Run(SimpleNamespace(name=name))
    run.call = call
    return run


class _Timer:
    cancelled = False

    def cancel(self):
        self.cancelled = True


def test_processes_cold_start_holds_the_deadline_and_begin_rearms_it():
    """A cold worker's start-up is not the task's time: the deadline armed at dispatch is
    held while the worker starts, and ``begin`` re-arms it once the worker is up, just
    before the call. A warm worker keeps the deadline armed at dispatch."""
    executor = ProcessExecutor()
    executor.start(1)
    try:
        for cold in (True, False):  # a cold worker, then the same one warm
            run = _run_for("clock", time.perf_counter)  # the body returns when it started
            armed = run.timer = _Timer()  # what the engine armed at dispatch
            begun = []
            run.on_begin = lambda r, begun=begun: begun.append((time.perf_counter(), r.handle))
            called = time.perf_counter()
            outcome = executor.run(run)
            assert outcome.ok
            assert armed.cancelled is cold and len(begun) == int(cold)
            if cold:
                at, worker = begun[0]
                assert worker.ready and worker.process.pid != os.getpid()
                # perf_counter is the system-wide monotonic clock: comparable across processes
                assert called <= at <= outcome.value
                assert outcome.value - at < 0.25
    finally:
        executor.shutdown()


def write_marker(path):
    Path(path).write_text("ran")
    return "ran"


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_attempt_abandoned_before_begin_never_runs(kind, tmp_path, request):
    marker = tmp_path / "marker"
    if kind == "processes":
        executor = ProcessExecutor()
    else:
        executor = DaskExecutor(client=request.getfixturevalue("dask_client"))
    executor.start(1)
    try:
        run = _run_for("never", functools.partial(write_marker, marker))
        assert run.abandon("cancelled") is False  # not begun
        outcome = executor.run(run)
        assert not outcome.ok and isinstance(outcome.error, TaskCancelledError)
        assert not run.begun
        # and the executor still works afterwards
        fine = _run_for("fine", functools.partial(add, 1, 2))
        assert executor.run(fine).value == 3
    finally:
        executor.shutdown()
    assert not marker.exists()


@pytest.mark.parametrize("interrupt", [False, True], ids=["abandoned", "abandoned+interrupted"])
def test_processes_attempt_abandoned_while_its_worker_starts_never_runs(tmp_path, interrupt):
    """The engine interrupts only attempts that began; an interrupt anyway kills the new worker."""
    marker = tmp_path / "marker"
    executor = ProcessExecutor()
    executor.start(1)
    run = _run_for("never", functools.partial(write_marker, marker))
    outcomes = []
    runner = threading.Thread(target=lambda: outcomes.append(executor.run(run)))
    runner.start()
    deadline = time.monotonic() + 10
    while run.handle is None and time.monotonic() < deadline:  # the worker is being started
        time.sleep(0.002)
    assert run.abandon("cancelled") is False  # still starting: user code has not begun
    if interrupt:
        executor.interrupt(run, "cancelled")
    runner.join(10)
    assert outcomes and not outcomes[0].ok and isinstance(outcomes[0].error, TaskCancelledError)
    executor.shutdown()
    assert not marker.exists() and multiprocessing.active_children() == []


# -- the dask executor's own local cluster -------------------------------------------------------
def burn(n):
    """Pure-Python CPU work (holds the GIL throughout); returns where and when it ran."""
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i % 7
    return os.getpid(), started, time.perf_counter()


@pytest.mark.timeout(180)
def test_dask_local_cluster_runs_python_code_in_parallel(make_orch):
    """Each default local Dask worker is a process of its own, so pure-Python tasks overlap
    on separate interpreters (separate GILs). The speed-up itself depends on the cores the
    machine really gives; it is measured and reported by ``make bench``, not asserted here."""
    pytest.importorskip("distributed")
    o = make_orch(2, executor="dask")
    o.start_execution()
    tasks = [o.create_task(f"cpu{i}", func=burn, parameters={"n": 1_500_000}) for i in range(6)]
    assert o.wait_for_completion(120)
    runs = [t.result.data for t in tasks]
    pids = {pid for pid, _, _ in runs}
    assert len(pids) == 2 and os.getpid() not in pids  # a process per worker
    overlapping = any(a[0] != b[0] and a[1] < b[2] and b[1] < a[2] for a in runs for b in runs)
    assert overlapping, runs  # two workers ran Python code at the same time


def test_dask_unpicklable_return_value_fails_in_one_line_quietly(make_orch, capfd, caplog):
    """A real local cluster (an in-process worker hands results over without pickling them):
    the worker pickles the value itself, so it fails as on ``processes``, in one line with
    the note. Dask's serializer failed instead, logging three tracebacks (worker, client)."""
    pytest.importorskip("distributed")
    o = make_orch(1, executor=DaskExecutor(n_workers=1))
    t = o.create_task("lock", func=make_lock)
    after = o.create_task("after", func=add, parameters={"x": 1, "y": 2})
    assert run_all(o, 120) is False
    assert t.result.error_type == "TypeError" and "\n" not in t.result.error_message
    assert "cannot pickle '_thread.lock' object" in t.result.error_message
    note = "a task's return value must be picklable to come back from a Dask worker"
    assert note in getattr(t.result.exception, "__notes__", [])
    assert note in t.result.traceback
    assert after.result.data == 3
    o.stop_execution()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Failed to" not in err, err
    assert not [r for r in caplog.records if r.name.startswith("distributed.protocol")]


def test_dask_return_value_that_does_not_unpickle_here_fails_its_attempt(make_orch):
    pytest.importorskip("distributed")
    o = make_orch(1, executor=DaskExecutor(n_workers=1))
    t = o.create_task("nowhere", func=make_loads_nowhere)
    after = o.create_task("after", func=add, parameters={"x": 1, "y": 2})
    assert run_all(o, 120) is False
    assert t.result.error_type == "ValueError" and "does not load here" in t.result.error_message
    assert any("must unpickle here" in n for n in t.result.exception.__notes__)
    assert after.result.data == 3


def test_dask_local_cluster_defaults_and_overrides():
    defaults = DaskExecutor().local_cluster_options(3)
    assert (defaults["n_workers"], defaults["threads_per_worker"], defaults["processes"]) == \
        (3, 1, True)
    inproc = DaskExecutor(processes=False, threads_per_worker=4).local_cluster_options(3)
    assert (inproc["processes"], inproc["threads_per_worker"]) == (False, 4)
    with pytest.raises(ValueError, match="only to the local cluster"):
        DaskExecutor(address="tcp://127.0.0.1:8786", processes=False)


@pytest.mark.timeout(120)
def test_dask_failed_start_raises_clearly_and_can_start_again():
    distributed = pytest.importorskip("distributed")
    import dask

    with socket.socket() as s:  # a port where nothing listens (yet)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads_before = set(threading.enumerate())
    executor = DaskExecutor(address=f"tcp://127.0.0.1:{port}")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(RuntimeError, match=f"could not connect to the Dask scheduler at "
                                               f"'tcp://127.0.0.1:{port}'"):
            executor.start(2)
    assert executor.client is None
    assert set(threading.enumerate()) <= threads_before  # nothing half-open
    with pytest.raises(RuntimeError, match="not started"):
        executor.run(_run_for("t", functools.partial(add, 1, 1)))

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       scheduler_port=port, dashboard_address=None,
                                       silence_logs=logging.ERROR)
    try:
        executor.start(2)
        assert executor.run(_run_for("t", functools.partial(add, 2, 3))).value == 5
        executor.shutdown()
    finally:
        cluster.close()

    broken = DaskExecutor(no_such_option=1)  # a local cluster that cannot start
    with pytest.raises(RuntimeError, match="could not start a local Dask cluster"):
        broken.start(1)
    assert broken.client is None and multiprocessing.active_children() == []
