"""The engine's contract: states, priorities, timeouts, retries, cancel, waiting, threads."""

from __future__ import annotations

import _thread
import asyncio
import threading
import time

import pytest
from conftest import engine_threads, wait_until_status

from codomyrmex_nb import (
    OrchestratorBusyError,
    Task,
    TaskPriority,
    TaskStatus,
    get_task_orchestrator,
    register_action,
)


def test_priority_then_critical_path_then_submission_order(make_orch):
    orch = make_orch(1)
    order = []
    log = order.append
    orch.create_task("normal_first", func=lambda: log("normal_first"))
    orch.create_task("low", func=lambda: log("low"), priority=TaskPriority.LOW)
    orch.create_task("critical", func=lambda: log("critical"), priority="critical")
    head = orch.create_task("normal_with_chain", func=lambda: log("normal_with_chain"))
    mid = orch.create_task("chain2", func=lambda: log("chain2"), dependencies=[head], priority="low")
    orch.create_task("chain3", func=lambda: log("chain3"), dependencies=[mid], priority="low")
    orch.create_task("normal_last", func=lambda: log("normal_last"))
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert order[:4] == ["critical", "normal_with_chain", "normal_first", "normal_last"]


def test_a_short_chain_among_many_tasks_without_edges_still_goes_first(make_orch):
    """Tasks without upstream tasks leave every critical path as it was, so the periodic
    pass may skip them; a chain defined among them still puts its head first."""
    orch = make_orch(1)
    order = []
    orch.create_task("before", func=lambda: order.append("before"))
    head = orch.create_task("head", func=lambda: order.append("head"))
    orch.create_task("tail", func=lambda: order.append("tail"), dependencies=[head])
    for i in range(60):  # enough definitions for a pass, all but one without edges
        orch.create_task(f"free{i}", func=lambda: order.append("free"))
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert order[:2] == ["head", "before"]


def test_a_batch_breaks_ties_in_the_order_it_was_submitted(make_orch):
    """add_tasks makes records upstream first; ties still go by the order of the list."""
    orch = make_orch(1)
    order = []
    up = Task(name="up", func=lambda: order.append("up"))
    after_up = Task(name="after_up", func=lambda: order.append("after_up"), dependencies=[up])
    later = Task(name="later", func=lambda: order.append("later"))
    sink = Task(name="sink", func=lambda: order.append("sink"), dependencies=[up])
    orch.add_tasks([up, after_up, later, sink])
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert order == ["up", "after_up", "later", "sink"]


def test_states_pending_ready_running_completed(orch):
    gate = threading.Event()
    seen = []
    orch.subscribe(lambda e: e.kind == "status" and e.name == "b" and seen.append(e.status))
    a = orch.create_task("a", func=gate.wait, parameters={"timeout": 10})
    b = orch.create_task("b", func=lambda: 1, dependencies=[a])
    assert (a.status, b.status) == (TaskStatus.READY, TaskStatus.PENDING)
    orch.start_execution()
    assert wait_until_status(orch, a, TaskStatus.RUNNING)
    gate.set()
    assert orch.wait_for_completion(10)
    orch.flush_events(5)
    assert seen == [TaskStatus.READY, TaskStatus.RUNNING, TaskStatus.COMPLETED]


def test_dependencies_start_only_after_upstream_completed(orch):
    a = orch.create_task("a", func=lambda: threading.Event().wait(0.05))
    b = orch.create_task("b", func=lambda: 2, dependencies=[a])
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert b.attempts[0].started_at >= a.attempts[0].ended_at


def test_failure_skips_dependents_transitively_and_says_which(orch):
    bad = orch.create_task("bad", func=lambda: 1 / 0)
    mid = orch.create_task("mid", func=lambda: 1, dependencies=[bad])
    leaf = orch.create_task("leaf", func=lambda: 1, dependencies=[mid])
    ok = orch.create_task("ok", func=lambda: 1)
    orch.start_execution()
    assert orch.wait_for_completion(10) is False
    assert bad.status is TaskStatus.FAILED and bad.result.error_type == "ZeroDivisionError"
    assert isinstance(bad.result.exception, ZeroDivisionError)
    assert "ZeroDivisionError" in bad.result.traceback
    assert mid.status is leaf.status is TaskStatus.SKIPPED
    assert "'bad' failed" in mid.result.error_message
    assert "'mid' was skipped" in leaf.result.error_message and "root cause: 'bad'" in leaf.result.error_message
    assert leaf.result.metadata["skipped_because"] == ["mid"]
    assert ok.status is TaskStatus.COMPLETED


def test_task_added_after_its_upstream_failed_is_skipped_at_once(orch):
    bad = orch.create_task("bad", func=lambda: 1 / 0)
    orch.start_execution()
    orch.wait_for_completion(10)
    late = orch.create_task("late", func=lambda: 1, dependencies=[bad])
    assert late.status is TaskStatus.SKIPPED


def test_registered_builtin_and_imported_actions(orch):
    @register_action("mytools", "double")
    def double(x):
        return 2 * x

    orch.register_action("mytools", "triple", lambda x: 3 * x)
    a = orch.create_task("a", module="mytools", action="double", parameters={"x": 4})
    b = orch.create_task("b", module="mytools", action="triple", parameters={"x": 4})
    c = orch.create_task("c", module="statistics", action="mean", parameters={"data": [2, 6]})
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert (a.result.data, b.result.data, c.result.data) == (8, 12, 4)


def test_missing_action_fails_with_import_or_attribute_error_listing_what_exists(orch):
    no_module = orch.create_task("m", module="no_such_module_xyz", action="run")
    no_action = orch.create_task("a", module="static_analysis", action="no_such_action")
    orch.start_execution()
    orch.wait_for_completion(10)
    assert no_module.result.error_type == "ImportError"
    assert "static_analysis" in no_module.result.error_message  # lists the built-ins
    assert no_action.result.error_type == "AttributeError"
    assert "analyze_code_quality" in no_action.result.error_message


def test_async_actions_run_on_an_event_loop(orch):
    async def fetch(n):
        await asyncio.sleep(0.01)
        return n * 2

    t = orch.create_task("fetch", func=fetch, parameters={"n": 21})
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert t.result.data == 42


def busy_loop():
    while True:
        pass


@pytest.mark.parametrize("kind", ["sleeping", "busy", "async"])
def test_timeout_takes_effect_within_two_seconds(orch, kind):
    async def async_sleep():
        await asyncio.sleep(30)

    func = {"sleeping": lambda: time.sleep(3), "busy": busy_loop, "async": async_sleep}[kind]
    t = orch.create_task(kind, func=func, timeout=0.5)
    orch.start_execution()
    start = time.monotonic()
    assert wait_until_status(orch, t, TaskStatus.FAILED, timeout=5)
    assert time.monotonic() - start < 0.5 + 2
    assert t.result.error_type == "TimeoutError" and isinstance(t.result.exception, TimeoutError)
    assert "timed out after 0.5s" in t.result.error_message


def test_timed_out_thread_keeps_resources_until_it_returns_and_a_worker_replaces_it(make_orch):
    from codomyrmex_nb import ResourceType, TaskResource

    orch = make_orch(1)
    res = [TaskResource(ResourceType.FILE, "f", "exclusive")]
    slow = orch.create_task("slow", func=lambda: time.sleep(1.0), timeout=0.2, resources=res)
    other = orch.create_task("other", func=lambda: "free worker")
    same = orch.create_task("same_resource", func=time.time, resources=res)
    orch.start_execution()
    orch.wait_for_completion(10)
    assert slow.result.error_type == "TimeoutError"
    assert other.result.data == "free worker"
    # The resource was held until the sleeping thread really returned.
    assert same.result.data >= slow.attempts[0].started_at + 0.9


def test_retries_with_delay_do_not_hold_a_worker(make_orch):
    orch = make_orch(1)
    attempts = []

    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    t = orch.create_task("flaky", func=flaky, max_retries=3, retry_delay=0.3)
    quick = orch.create_task("quick", func=time.monotonic)
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert t.result.data == "ok" and t.retry_count == 2 and len(t.attempts) == 3
    assert attempts[1] - attempts[0] >= 0.28
    assert quick.result.data < attempts[1]  # ran on the only worker during the delay


def test_retry_backoff_grows_the_delay(orch):
    times = []
    t = orch.create_task("f", func=lambda: times.append(time.monotonic()) or 1 / 0,
                         max_retries=2, retry_delay=0.1, retry_backoff=3)
    orch.start_execution()
    assert orch.wait_for_completion(10) is False
    assert t.status is TaskStatus.FAILED and t.retry_count == 2
    assert times[2] - times[1] >= 0.28 and times[1] - times[0] >= 0.09


def test_cancel_pending_ready_running_and_finished(orch):
    gate = threading.Event()
    running = orch.create_task("running", func=lambda: gate.wait(30))
    child = orch.create_task("child", func=lambda: 1, dependencies=[running])
    ready = orch.create_task("ready", func=lambda: 1)
    assert orch.cancel_task(ready.id) is True and ready.status is TaskStatus.CANCELLED
    orch.start_execution()
    assert wait_until_status(orch, running, TaskStatus.RUNNING)
    start = time.monotonic()
    assert orch.cancel_task(running.id) is True
    assert running.status is TaskStatus.CANCELLED and child.status is TaskStatus.SKIPPED
    assert orch.cancel_task(running.id) is False
    assert orch.cancel_task("no-such-task") is False
    assert orch.wait_for_completion(5) is False
    assert time.monotonic() - start < 2
    gate.set()


def test_wait_for_completion_times_out_and_reports(orch):
    gate = threading.Event()
    orch.create_task("slow", func=lambda: gate.wait(30))
    orch.start_execution()
    start = time.monotonic()
    assert orch.wait_for_completion(timeout=0.3) is False
    assert 0.25 < time.monotonic() - start < 2
    gate.set()
    assert orch.wait_for_completion(10) is True


def test_wait_without_start_says_what_to_do(orch):
    orch.create_task("t", func=lambda: 1)
    with pytest.raises(RuntimeError, match="start_execution"):
        orch.wait_for_completion(1)


def test_interrupt_stops_the_wait_promptly_and_tasks_keep_running(orch):
    gate = threading.Event()
    t = orch.create_task("slow", func=lambda: gate.wait(30) and "done")
    orch.start_execution()
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        orch.wait_for_completion(timeout=30)
    assert time.monotonic() - start < 1.5
    assert t.status is TaskStatus.RUNNING
    gate.set()
    assert orch.wait_for_completion(10) and t.result.data == "done"


def test_start_and_stop_are_idempotent_and_leave_no_threads(make_orch):
    orch = make_orch(3)
    orch.start_execution()
    orch.start_execution()
    assert len([t for t in engine_threads() if t.name.startswith("codo-worker")]) == 3
    orch.subscribe(lambda e: None)
    orch.create_task("t", func=lambda: 1)
    assert orch.wait_for_completion(10)
    orch.stop_execution()
    orch.stop_execution()
    assert engine_threads() == []


def test_stop_interrupts_running_work_and_restart_runs_it_again(orch):
    runs = []
    gate = threading.Event()

    def work():
        runs.append(1)
        if len(runs) == 1:
            while not gate.is_set():  # busy Python code: interruptible
                pass
        return len(runs)

    t = orch.create_task("t", func=work)
    orch.start_execution()
    assert wait_until_status(orch, t, TaskStatus.RUNNING)
    orch.stop_execution()
    assert t.status is TaskStatus.READY and engine_threads() == []
    orch.start_execution()
    assert orch.wait_for_completion(10) and t.result.data == 2


def test_raising_subscriber_never_breaks_the_engine(orch, caplog):
    def bad(event):
        raise RuntimeError("view bug")

    good = []
    orch.subscribe(bad)
    orch.subscribe(good.append)
    for i in range(20):
        orch.create_task(f"t{i}", func=lambda: 1)
    orch.start_execution()
    assert orch.wait_for_completion(10)
    orch.flush_events(5)
    assert len([e for e in good if e.status is TaskStatus.COMPLETED]) == 20
    assert "view bug" in caplog.text


def test_stats_snapshot_adds_up(orch):
    gate = threading.Event()
    orch.create_task("blocked", func=lambda: gate.wait(30))
    orch.create_task("after", func=lambda: 1, dependencies=["blocked"])
    orch.create_task("done", func=lambda: 1)
    orch.create_task("bad", func=lambda: 1 / 0)
    orch.start_execution()
    wait_until_status(orch, orch.get_task("bad"), TaskStatus.FAILED)
    wait_until_status(orch, orch.get_task("done"), TaskStatus.COMPLETED)
    s = orch.get_execution_stats()
    assert s["total_tasks"] == 4
    assert (s["running"], s["pending"], s["completed"], s["failed"]) == (1, 1, 1, 1)
    assert s["pending"] + s["running"] + s["completed"] + s["failed"] + s["cancelled"] + s["skipped"] == 4
    gate.set()
    orch.wait_for_completion(10)
    s = orch.get_execution_stats()
    assert s["pending"] == s["running"] == 0 and s["completed"] == 3
    assert s["total_execution_time"] >= s["average_execution_time"] > 0
    assert s["makespan"] > 0 and s["throughput"] > 0 and 0 < s["worker_utilization"] <= 1


def test_default_orchestrator_same_settings_same_object():
    a = get_task_orchestrator()
    assert get_task_orchestrator() is a
    b = get_task_orchestrator(max_workers=3)
    assert b is a and a.max_workers == 3  # reconfigured while idle


def test_default_orchestrator_refuses_new_settings_while_busy():
    orch = get_task_orchestrator(max_workers=2)
    gate = threading.Event()
    orch.create_task("busy", func=lambda: gate.wait(30))
    orch.start_execution()
    with pytest.raises(OrchestratorBusyError, match="max_workers=5"):
        get_task_orchestrator(max_workers=5)
    gate.set()
    assert orch.wait_for_completion(10)
    assert get_task_orchestrator(max_workers=5).max_workers == 5


def test_the_default_is_reconfigured_while_stopped_with_tasks_defined():
    """Defined, not started: nothing is in flight, so new settings apply (%codo_run
    --workers 8 after the cells that define the tasks)."""
    orch = get_task_orchestrator(max_workers=2)
    task = orch.create_task("defined", func=lambda: 1)
    assert get_task_orchestrator(max_workers=3) is orch and orch.max_workers == 3
    orch.start_execution()
    assert orch.wait_for_completion(10) and task.result.data == 1


def test_a_task_that_starts_as_the_default_is_reconfigured_is_not_interrupted(monkeypatch):
    """Another thread's task starts after the settings were asked for, just before the engine
    stops for them: the change is refused (the task is in flight), the task runs on."""
    from codomyrmex_nb.core.engine import Engine

    orch = get_task_orchestrator(max_workers=2)
    orch.start_execution()
    gate, late = threading.Event(), []
    real_stop = Engine.stop

    def stop(self, *args, **kwargs):
        if not late:  # once: the other thread's task starts in between
            late.append(orch.create_task("late", func=lambda: gate.wait(10)))
            assert wait_until_status(orch, late[0], TaskStatus.RUNNING)
        return real_stop(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "stop", stop)
    with pytest.raises(OrchestratorBusyError, match="max_workers=3"):
        get_task_orchestrator(max_workers=3)
    assert orch.is_running and orch.max_workers == 2
    gate.set()
    assert orch.wait_for_completion(10)
    assert [a.outcome for a in late[0].attempts] == ["completed"]


def test_reconfiguring_the_default_never_interrupts_a_task_another_thread_starts():
    """The idle check and the stop are one step: a task defined by another thread in between
    is never interrupted (the change is refused, or the task waits for the restart)."""
    orch = get_task_orchestrator(max_workers=2)
    orch.start_execution()
    done, refused, changed = threading.Event(), [0], [0]

    def reconfigure():
        workers = 2
        while not done.is_set():
            workers = 5 - workers  # 2, 3, 2, ...
            try:
                get_task_orchestrator(max_workers=workers)
                changed[0] += 1
            except OrchestratorBusyError:
                refused[0] += 1

    def nap():
        time.sleep(0.001)

    flipper = threading.Thread(target=reconfigure)
    flipper.start()
    try:
        tasks = []
        for i in range(300):
            tasks.append(orch.create_task(f"t{i}", func=nap))
            if i % 3 == 0:
                time.sleep(0.002)  # idle moments, for the other thread to reconfigure in
    finally:
        done.set()
        flipper.join(30)
    orch.start_execution()  # a refused change may have left it stopped: never half-applied
    assert orch.wait_for_completion(30)
    assert changed[0] > 0 and refused[0] > 0
    outcomes = [a.outcome for t in tasks for a in t.attempts]
    assert outcomes == ["completed"] * len(tasks), \
        {o: outcomes.count(o) for o in set(outcomes)}


def test_rerun_requeues_task_and_downstream_only(orch):
    counts = {"a": 0, "b": 0, "c": 0}

    def count(name):
        counts[name] += 1
        return counts[name]

    a = orch.create_task("a", func=count, parameters={"name": "a"})
    orch.create_task("b", func=count, parameters={"name": "b"}, dependencies=[a])
    orch.create_task("c", func=count, parameters={"name": "c"})
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert orch.rerun("a")
    assert orch.wait_for_completion(10)
    assert counts == {"a": 2, "b": 2, "c": 1}


def test_many_workers_never_exceed_max_workers(make_orch):
    orch = make_orch(3)
    lock, active, peak = threading.Lock(), [0], [0]

    def work():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        threading.Event().wait(0.01)
        with lock:
            active[0] -= 1

    orch.add_tasks([Task(name=f"t{i}", func=work) for i in range(30)])
    orch.start_execution()
    assert orch.wait_for_completion(20)
    assert peak[0] == 3


def test_requeued_ready_task_runs_once(make_orch):
    orch = make_orch(1)
    gate = threading.Event()
    runs = []
    blocker = orch.create_task("blocker", func=lambda: gate.wait(10))
    t = orch.create_task("t", func=lambda: runs.append(1))
    orch.start_execution()
    assert wait_until_status(orch, blocker, TaskStatus.RUNNING)
    assert t.status is TaskStatus.READY
    orch.rerun(t)  # withdrawn from the ready queue and queued again
    gate.set()
    assert orch.wait_for_completion(10)
    assert runs == [1] and len(t.attempts) == 1


def test_default_orchestrator_switches_to_the_sync_executor_while_idle():
    orch = get_task_orchestrator(max_workers=2)
    orch.start_execution()
    assert get_task_orchestrator(max_workers=2, executor="sync") is orch
    t = orch.create_task("t", func=threading.get_ident)
    assert orch.wait_for_completion(10) and t.result.data == threading.get_ident()


def test_bad_new_settings_change_nothing():
    orch = get_task_orchestrator(max_workers=2)
    orch.start_execution()
    with pytest.raises(ValueError, match="max_workers"):
        get_task_orchestrator(max_workers=0)
    with pytest.raises(ValueError, match="unknown executor 'rockets'"):
        get_task_orchestrator(max_workers=3, executor="rockets")
    assert orch.is_running and orch.max_workers == 2 and orch.executor_name == "threads"


# -- tiny tasks run one worker at a time, never holding work back -----------------------------


def test_after_tiny_tasks_a_blocked_task_does_not_hold_back_the_rest(make_orch):
    """After a stream of no-op tasks only one worker takes tasks; when that worker's task
    blocks, another worker must still take the task that unblocks it."""
    orch = make_orch(max_workers=4)
    released = threading.Event()
    for i in range(300):
        orch.create_task(f"noop{i}", func=lambda: None)
    blocked = orch.create_task("blocked", func=lambda: released.wait(20))
    orch.create_task("releaser", func=released.set)
    orch.start_execution()
    assert orch.wait_for_completion(30)
    assert blocked.result.data is True  # released, not timed out
    assert blocked.result.execution_time < 10


def test_after_tiny_tasks_four_tasks_can_still_meet_at_a_barrier(make_orch):
    orch = make_orch(max_workers=4)
    barrier = threading.Barrier(4, timeout=20)
    for i in range(300):
        orch.create_task(f"noop{i}", func=lambda: None)
    meet = [orch.create_task(f"meet{i}", func=barrier.wait) for i in range(4)]
    orch.start_execution()
    assert orch.wait_for_completion(30)
    assert [t.status for t in meet] == [TaskStatus.COMPLETED] * 4


def test_a_slow_task_among_tiny_ones_does_not_hold_them_back(make_orch):
    """One worker sits in a slow task while thousands of tiny tasks run: the others keep
    taking them without pauses (waiting on the slow worker cost a 2-4 ms stall every
    twenty or so tasks: about 200 stalls here)."""
    orch = make_orch(max_workers=4)
    release = threading.Event()
    starts: list[float] = []
    slow = orch.create_task("slow", func=lambda: release.wait(30), priority=TaskPriority.HIGH)
    tiny = [orch.create_task(f"tiny{i}", func=lambda: starts.append(time.perf_counter()))
            for i in range(5000)]
    orch.create_task("release", func=release.set, dependencies=tiny)
    orch.start_execution()
    assert orch.wait_for_completion(60)
    assert slow.result.data is True
    stalls = sum(1 for a, b in zip(starts, starts[1:], strict=False) if b - a > 0.0015)
    assert stalls < 40, f"{stalls} pauses over 1.5 ms between tiny tasks"


def test_which_callables_are_given_their_upstream_results():
    import functools

    from codomyrmex_nb.core.invoke import _inspect_upstream, wants_upstream

    def plain(upstream): ...
    def keyword_only(*, upstream=None): ...
    def positional_only(upstream, /): ...
    def other(x, *args, **kwargs): ...

    @functools.wraps(plain)
    def wrapper(*args, **kwargs): ...

    class Box:
        def method(self, upstream=None): ...

    def bound_first(upstream, x): ...

    cases = [plain, keyword_only, positional_only, other, wrapper, Box().method,
             lambda upstream: None, lambda i=1: None,
             functools.partial(plain), functools.partial(bound_first, 1),
             functools.partial(bound_first, x=2), functools.partial(keyword_only, upstream=3),
             functools.partial(print, "x")]
    expected = [True, True, False, False, True, True, True, False,
                True, False, True, True, False]
    assert [wants_upstream(c) for c in cases] == expected
    assert [wants_upstream(c) for c in cases] == expected  # cached answers agree
    assert [_inspect_upstream(c) for c in cases] == expected


def test_tasks_made_from_partials_get_upstream_as_their_functions_say(make_orch):
    import functools

    orch = make_orch(2)

    def add(offset, upstream=None):
        return offset + sum(upstream.values()) if upstream else offset

    first = orch.create_task("first", func=functools.partial(add, 1))
    second = orch.create_task("second", func=functools.partial(add, 10), dependencies=[first])
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert (first.result.data, second.result.data) == (1, 11)


def _tiny() -> None:
    return None


def test_a_wait_for_the_engine_lock_is_not_counted_as_an_attempts_time(tmp_path):
    """Tiny tasks run one worker at a time while their average attempt is tiny. A worker
    that waited for the engine's lock to record its attempt (the journal's writer reads
    moved tasks under it) once counted that wait as the attempt's time: the average rose,
    every worker took tiny tasks at once, each waited longer for the lock, and the
    convoy fed itself (three times slower with four workers)."""
    from codomyrmex_nb import TaskOrchestrator
    from codomyrmex_nb.core import engine as engine_module

    orch = TaskOrchestrator(4, journal=tmp_path / "j.sqlite")
    engine = orch._engine
    seen: list[float] = []
    real = engine._record

    def record(run, outcome, prepared, busy_for, held=None):
        seen.append(busy_for)
        return real(run, outcome, prepared, busy_for, held)

    engine._record = record
    began = threading.Event()
    initial = engine._avg_attempt

    def first() -> None:
        began.set()

    try:
        head = orch.create_task("first", func=first)
        for i in range(300):
            orch.create_task(f"t{i}", func=_tiny, dependencies=[head])
        orch.start_execution()
        assert began.wait(30)
        with engine.lock:  # every worker that ends an attempt now waits to record it
            time.sleep(0.3)  # ok-sleep: the wait under test
        assert orch.wait_for_completion(30)
    finally:
        orch.stop_execution()
    assert len(seen) == 301
    assert max(seen) < 0.25  # the 0.3 s spent waiting for the lock is not in any attempt
    assert sorted(seen)[150] < engine_module.TINY  # the attempts were tiny
    replayed = initial  # and the average is made of those times alone (a collector's pause
    for busy_for in seen:  # inside one of the last attempts may still lift it for a while)
        replayed += (busy_for - replayed) * 0.125
    assert engine._avg_attempt == pytest.approx(replayed)


def test_a_second_stop_does_not_wait_again_for_a_body_stuck_in_c(make_orch):
    """A body blocked in C (a long sleep) outlives the first stop's wait; a second stop (the
    notebook's stop button pressed twice) returned only once the body did."""
    orch = make_orch(1)
    began = threading.Event()

    def stuck() -> None:
        began.set()
        time.sleep(3)  # in C: the interrupt lands as it returns

    orch.create_task("stuck", func=stuck)
    orch.start_execution()
    assert began.wait(10)
    orch.stop_execution(timeout=0.2)
    second = time.monotonic()
    orch.stop_execution()
    assert time.monotonic() - second < 1.0


def test_waiting_on_a_stopped_engine_says_how_many_tasks_wait_in_good_english(make_orch):
    orch = make_orch(1)
    orch.create_task("one", func=lambda: None)
    with pytest.raises(RuntimeError, match="^1 task is waiting but the engine is not running"):
        orch.wait_for_completion(1)


def test_an_interrupt_as_the_body_starts_a_thread_reaches_the_body_alone(make_orch):
    """CPython gives a thread being started the ident of the thread starting it until it runs,
    so an interrupt sent to the body then was raised in both: the new thread died before it
    said it had started, and the body waited for that in ``Thread.start`` for ever (its
    worker stuck; an item never ending, and its map with it)."""
    orch = make_orch(1)
    orch.start_execution()
    returned = []

    def spawner(k: int) -> None:
        try:
            while True:
                thread = threading.Thread(target=lambda: None)
                thread.start()
                thread.join()
        finally:
            returned.append(k)

    tries = 80
    for k in range(tries):
        task = orch.create_task(f"spawn{k}", func=spawner, parameters={"k": k})
        assert wait_until_status(orch, task, TaskStatus.RUNNING)
        time.sleep(0.002)
        orch.cancel_task(task.id)
    deadline = time.monotonic() + 10
    while len(returned) < tries and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(returned) == list(range(tries))  # every body was interrupted and returned
