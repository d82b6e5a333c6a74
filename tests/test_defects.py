"""Regression tests for defects of the engine, run through the public API.

Each test names the contract it guards (the README's "Semantics"). Tasks are
synchronised with engine events (``subscribe``) and ``threading.Event`` gates;
a short sleep is used only where a test asserts that something does *not*
happen. Time bounds are generous (seconds, not milliseconds).
"""

from __future__ import annotations

import gc
import logging
import re
import sys
import textwrap
import threading
import time
import types
import uuid
import weakref
from pathlib import Path

import pytest
from conftest import engine_threads, wait_until_status

from codomyrmex_nb import ResourceType, Task, TaskResource, TaskStatus
from codomyrmex_nb.core.exceptions import DependencyCycleError
from codomyrmex_nb.core.model import MAX_DELAY

S = TaskStatus
GUIDE = Path(__file__).parent / "data" / "TASK_ORCHESTRATION_GUIDE.md"


# -- helpers ------------------------------------------------------------------------------------
def until(orch, predicate, timeout: float = 5.0) -> bool:
    """True once ``predicate()`` holds: checked now and after every engine event (no polling)."""
    hit = threading.Event()

    def on_event(_event) -> None:
        if not hit.is_set() and predicate():
            hit.set()

    unsubscribe = orch.subscribe(on_event)
    try:
        return predicate() or hit.wait(timeout)
    finally:
        unsubscribe()


def noop() -> None:
    return None


def boom() -> None:
    raise ValueError("boom")


def python_sleeper() -> None:
    """Sleeps 1 s in small steps: Python code an interrupt can reach at once."""
    for _ in range(100):
        time.sleep(0.01)


def workers_alive(orch) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("codo-worker") and t.is_alive()]


def assert_clock_alive(orch) -> None:
    """The clock thread still serves deadlines: a timeout fires and a short retry delay ends.

    Needs two free workers in a started engine.
    """
    tag = uuid.uuid4().hex[:6]
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("the first attempt fails")
        return "ok"

    slow = orch.create_task(f"clock-timeout-{tag}", func=python_sleeper, timeout=0.2)
    retried = orch.create_task(f"clock-retry-{tag}", func=flaky, max_retries=1, retry_delay=0.05)
    assert until(orch, lambda: slow.status.is_terminal and retried.status.is_terminal, 2.0), (
        f"the clock is dead: after 2 s {slow.name} is {slow.status.value} and "
        f"{retried.name} is {retried.status.value}")
    assert slow.status is S.FAILED and slow.result.error_type == "TimeoutError"
    assert retried.status is S.COMPLETED and len(calls) == 2


# -- 1. an interrupt before user code starts is never lost -----------------------------------------
@pytest.fixture
def slow_module(tmp_path, monkeypatch):
    """A module whose import blocks until the test sets ``gate.release``; ``act()`` is the body."""
    tag = uuid.uuid4().hex[:10]
    gate = types.SimpleNamespace(entered=threading.Event(), release=threading.Event(), ran=[],
                                 lock=threading.Lock(), active=0, peak=0)
    gate_name, mod_name = f"codo_gate_{tag}", f"slowmod_{tag}"
    monkeypatch.setitem(sys.modules, gate_name, gate)
    (tmp_path / f"{mod_name}.py").write_text(textwrap.dedent(f"""
        import sys
        import time

        gate = sys.modules.get("{gate_name}")
        if gate is not None:  # None when imported in a worker process
            gate.entered.set()
            gate.release.wait(30)

        def act():
            if gate is None:
                return "ran elsewhere"
            with gate.lock:
                gate.active += 1
                gate.peak = max(gate.peak, gate.active)
            try:
                time.sleep(0.05)
                gate.ran.append(time.monotonic())
            finally:
                with gate.lock:
                    gate.active -= 1
            return "ran"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield mod_name, gate
    gate.release.set()  # before make_orch's teardown joins the workers
    sys.modules.pop(mod_name, None)


def test_timeout_while_action_module_imports_fails_task_and_body_never_runs(make_orch, slow_module):
    mod, gate = slow_module
    orch = make_orch(2)
    task = orch.create_task("slow-import", module=mod, action="act", timeout=0.3)
    orch.start_execution()
    assert gate.entered.wait(2), "the worker never started importing the action's module"
    assert wait_until_status(orch, task, S.FAILED, timeout=2), (
        f"time spent importing the action's module does not count: {task.status.value} after 2 s")
    assert task.result.error_type == "TimeoutError"
    released_body_never_runs_then_a_rerun_runs_it_once(orch, task, gate, "timed-out")


def released_body_never_runs_then_a_rerun_runs_it_once(orch, task, gate, how, still=None):
    """Let the import finish: the abandoned attempt's body must not start. Re-running
    proves the abandoned thread is gone (a task never has two bodies): one body."""
    gate.release.set()
    time.sleep(0.3)  # the abandoned attempt finishes its import now
    assert orch.flush_events(2)
    if still is not None:
        assert task.status is still
    assert gate.ran == [], f"the body of a {how} attempt ran after its import finished"
    assert orch.rerun(task)
    assert orch.wait_for_completion(5) and task.status is S.COMPLETED
    assert len(gate.ran) == 1 and gate.peak == 1


def test_cancel_while_action_module_imports_cancels_and_body_never_runs(make_orch, slow_module):
    mod, gate = slow_module
    orch = make_orch(2)
    task = orch.create_task("slow-import", module=mod, action="act")
    orch.start_execution()
    assert gate.entered.wait(2)
    assert orch.cancel_task(task) is True
    assert task.status is S.CANCELLED
    released_body_never_runs_then_a_rerun_runs_it_once(orch, task, gate, "cancelled",
                                                       still=S.CANCELLED)


def test_stop_and_start_while_action_module_imports_runs_the_body_once(make_orch, slow_module):
    mod, gate = slow_module
    orch = make_orch(1)
    task = orch.create_task("slow-import", module=mod, action="act")
    orch.start_execution()
    assert gate.entered.wait(2)
    t0 = time.monotonic()
    orch.stop_execution(timeout=0.2)  # the worker is stuck in the import: do not wait for it
    assert time.monotonic() - t0 < 2
    assert task.status is S.READY, "a stopped attempt is re-queued"
    orch.start_execution()
    time.sleep(0.2)  # the new worker must not start a second attempt while the old one imports
    assert gate.ran == []
    gate.release.set()
    assert orch.wait_for_completion(5), task.result
    assert task.status is S.COMPLETED
    assert len(gate.ran) == 1, f"the body ran {len(gate.ran)} times"
    assert gate.peak == 1, "two bodies of one task ran at once"


def test_timeout_while_action_module_imports_on_processes(make_orch, slow_module):
    mod, gate = slow_module
    orch = make_orch(1, executor="processes")
    task = orch.create_task("slow-import", module=mod, action="act", timeout=0.3)
    orch.start_execution()
    assert gate.entered.wait(5), "the worker never started importing the action's module"
    assert wait_until_status(orch, task, S.FAILED, timeout=2), (
        f"time spent importing the action's module does not count: {task.status.value} after 2 s")
    assert task.result.error_type == "TimeoutError"


def test_retry_waits_for_a_body_blocked_in_c_past_its_timeout(make_orch):
    enters: list[float] = []
    exits: list[float] = []

    def body() -> int:
        enters.append(time.monotonic())
        try:
            if len(enters) == 1:
                time.sleep(1.0)  # blocked in C: the interrupt lands only when it returns
            return len(enters)
        finally:  # the interrupt is raised once, at the call above: this line still runs
            exits.append(time.monotonic())

    orch = make_orch(4)
    task = orch.create_task("c-sleep", func=body, timeout=0.2, max_retries=1)
    orch.start_execution()
    assert orch.wait_for_completion(5)
    assert task.status is S.COMPLETED and task.result.data == 2
    assert [a.outcome for a in task.attempts] == ["timeout", "completed"]
    # The first body cannot have returned before its 1 s sleep ended.
    assert enters[1] - enters[0] >= 1.0 - 0.01, (
        f"the retry started {enters[1] - enters[0]:.3f}s after the first body, which was still "
        "sleeping: two bodies of one task overlapped")
    assert len(exits) == 2 and exits[0] <= enters[1], (enters, exits)


# -- 2. dependents are never left PENDING ----------------------------------------------------------
def test_rerun_of_an_upstream_skips_dependents_of_a_failed_task(make_orch):
    orch = make_orch(2)
    r = orch.create_task("r", func=noop)
    f = orch.create_task("f", func=boom)
    x = orch.create_task("x", func=noop, dependencies=[r, f])
    y = orch.create_task("y", func=noop, dependencies=[r, x])
    orch.start_execution()
    assert orch.wait_for_completion(5) is False
    assert orch.rerun(r)
    assert orch.wait_for_completion(5) is False, "wait_for_completion hung or reported success"
    assert all(t.status.is_terminal for t in (r, f, x, y)), [t.status for t in (r, f, x, y)]
    assert (r.status, f.status, x.status, y.status) == (S.COMPLETED, S.FAILED, S.SKIPPED, S.SKIPPED)
    assert orch.get_execution_stats()["pending"] == 0


def test_pending_task_readded_with_a_failed_dependency_is_skipped_at_once(make_orch):
    orch = make_orch(2)
    release = threading.Event()
    f = orch.create_task("f", func=boom)
    s = orch.create_task("s", func=lambda: release.wait(10))
    orch.start_execution()
    assert wait_until_status(orch, f, S.FAILED, timeout=2)
    assert wait_until_status(orch, s, S.RUNNING, timeout=2)
    p = orch.create_task("p", func=noop, dependencies=[s])
    q = orch.create_task("q", func=noop, dependencies=[p])
    assert p.status is S.PENDING and q.status is S.PENDING
    p.dependencies = [s, f]
    orch.add_task(p)
    assert p.status is S.SKIPPED and q.status is S.SKIPPED, (p.status, q.status)
    assert "'f'" in p.result.error_message
    release.set()
    assert orch.wait_for_completion(5) is False
    assert all(t.status.is_terminal for t in (f, s, p, q))
    assert s.status is S.COMPLETED


# -- 3. huge values never kill an engine thread -------------------------------------------------------
def test_huge_task_timeout_is_accepted_and_the_clock_keeps_working(make_orch):
    orch = make_orch(4)
    gate = threading.Event()
    task = Task("huge", func=lambda: gate.wait(10), timeout=1e10)
    orch.add_task(task)
    orch.start_execution()
    assert wait_until_status(orch, task, S.RUNNING, timeout=2)  # its deadline is armed now
    assert_clock_alive(orch)
    gate.set()
    assert wait_until_status(orch, task, S.COMPLETED, timeout=2)
    assert len(workers_alive(orch)) >= 4


def test_huge_retry_delay_waits_a_year_and_the_clock_keeps_working(make_orch):
    orch = make_orch(4)
    orch.start_execution()
    task = orch.create_task("late", func=boom, max_retries=1, retry_delay=1e10)
    assert until(orch, lambda: task.waiting_retry, 2)
    assert abs(task.retry_at - time.time() - MAX_DELAY) < 5
    assert_clock_alive(orch)
    assert len(workers_alive(orch)) >= 4  # a timed-out worker may still be handing over


def test_huge_resource_timeout_from_add_tasks_keeps_the_clock_working(make_orch):
    orch = make_orch(4)
    gate = threading.Event()
    holder = Task("holder", func=lambda: gate.wait(10),
                  resources=[TaskResource(ResourceType.CUSTOM, "big", "write")])
    waiter = Task("waiter", func=noop,
                  resources=[TaskResource(ResourceType.CUSTOM, "big", "write", timeout=1e10)])
    orch.add_tasks([holder, waiter])
    orch.start_execution()
    assert wait_until_status(orch, holder, S.RUNNING, timeout=2)
    deadline = time.monotonic() + 2
    while orch.get_execution_stats()["waiting_resources"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # no event marks "queued for a resource"
    assert orch.get_execution_stats()["waiting_resources"] == 1
    assert_clock_alive(orch)
    gate.set()
    assert until(orch, lambda: waiter.status is S.COMPLETED, 2)
    assert holder.status is S.COMPLETED


def test_huge_timeout_from_the_cell_magic_keeps_the_clock_working(ipython):
    from codomyrmex_nb.notebook.magics import current_orchestrator

    gate = threading.Event()
    ipython.user_ns["codo_gate"] = gate
    ipython.run_cell_magic("codo_task", "huge --timeout 1e10", "codo_gate.wait(10)\n'done'")
    orch = current_orchestrator()
    task = orch.get_task("huge")
    assert task is not None and task.timeout == 1e10
    assert orch.max_workers >= 3  # default_workers() is at least 4
    ipython.run_line_magic("codo_run", "")
    try:
        assert wait_until_status(orch, task, S.RUNNING, timeout=2)
        assert_clock_alive(orch)
    finally:
        gate.set()
    assert until(orch, lambda: task.status is S.COMPLETED, 2)
    assert task.result.data == "done"


@pytest.mark.parametrize("field, value", [
    ("retry_backoff", float("inf")),
    ("timeout", float("inf")),
    ("timeout", float("nan")),
    ("retry_delay", float("inf")),
])
def test_infinite_or_nan_values_are_refused_at_definition(field, value):
    with pytest.raises(ValueError, match=field):
        Task("bad", func=noop, **{field: value})


def test_infinite_resource_timeout_is_refused():
    with pytest.raises(ValueError, match="timeout"):
        TaskResource(ResourceType.CUSTOM, "r", "write", timeout=float("inf"))


def test_field_changed_before_readd_is_validated_and_clamped(make_orch):
    orch = make_orch(4)
    gate = threading.Event()
    task = orch.create_task("again", func=lambda: gate.wait(10))
    gate.set()
    orch.start_execution()
    assert orch.wait_for_completion(5)
    gate.clear()
    result, seq, count = task.result, orch.snapshot().seq, len(orch.list_tasks())

    task.timeout = float("inf")
    with pytest.raises(ValueError, match="timeout"):
        orch.add_task(task)
    assert task.status is S.COMPLETED and task.result is result
    assert orch.snapshot().seq == seq and len(orch.list_tasks()) == count

    task.timeout = 1e10
    assert orch.rerun(task) is True
    assert wait_until_status(orch, task, S.RUNNING, timeout=2)
    assert_clock_alive(orch)
    gate.set()
    assert until(orch, lambda: task.status is S.COMPLETED, 2)
    assert len(workers_alive(orch)) >= 4


def test_huge_backoff_waits_a_year_and_no_worker_dies(make_orch):
    orch = make_orch(4)
    orch.start_execution()
    task = orch.create_task("backoff", func=boom, retry_backoff=1e200, retry_delay=0.01,
                            max_retries=3)
    assert until(orch, lambda: len(task.attempts) == 2 and task.waiting_retry, 2), task.attempts
    assert abs(task.retry_at - time.time() - MAX_DELAY) < 5
    assert len(workers_alive(orch)) == 4
    assert any(t.name == "codo-clock" and t.is_alive() for t in threading.enumerate())
    assert_clock_alive(orch)
    assert len(workers_alive(orch)) >= 4  # a timed-out worker may still be handing over


def call_in_thread(fn, timeout: float = 5.0):
    """Run ``fn()`` in a fresh (non-main) thread; its return value, or the exception it raised."""
    out: list = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    thread = threading.Thread(target=target, name="test-caller", daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn} did not return within {timeout} s"
    return out[0]


def test_huge_wait_timeout_off_the_main_thread_waits(make_orch):
    orch = make_orch(2)
    gate = threading.Event()
    orch.create_task("held", func=lambda: gate.wait(10))
    orch.start_execution()
    threading.Timer(0.3, gate.set).start()
    assert call_in_thread(lambda: orch.wait_for_completion(1e10)) is True


def test_huge_flush_timeout_waits(make_orch):
    orch = make_orch(2)
    gate = threading.Event()
    orch.subscribe(lambda e: gate.wait(10))
    orch.create_task("t", func=noop)
    orch.start_execution()
    threading.Timer(0.3, gate.set).start()
    assert call_in_thread(lambda: orch.flush_events(1e10)) is True


def test_huge_stop_timeout_stops_cleanly(make_orch):
    before = set(engine_threads())
    orch = make_orch(2)
    orch.subscribe(lambda e: None)
    orch.create_task("t", func=lambda: time.sleep(0.2))
    orch.start_execution()
    assert call_in_thread(lambda: orch.stop_execution(timeout=1e10)) is None
    assert [t for t in engine_threads() if t not in before] == []


# -- 4. CPU-bound async bodies are interrupted ------------------------------------------------------
def test_cpu_bound_async_body_times_out_and_stop_leaves_no_thread(make_orch):
    before = set(engine_threads())

    async def spin() -> None:
        while True:
            pass

    orch = make_orch(2)
    task = orch.create_task("spin", func=spin, timeout=0.3)
    orch.start_execution()
    assert wait_until_status(orch, task, S.FAILED, timeout=2)
    assert task.result.error_type == "TimeoutError"
    t0 = time.monotonic()
    orch.stop_execution()
    assert time.monotonic() - t0 < 1.0
    assert [t for t in engine_threads() if t not in before] == []


# -- 5. a slow subscriber never holds up the engine, and delivery stays ordered -------------------------
def test_slow_subscriber_does_not_delay_stop_and_order_is_kept(make_orch):
    orch = make_orch(2)
    lock = threading.Lock()
    seen: list[int] = []
    state = {"active": 0, "peak": 0}

    def record(event) -> None:
        with lock:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
        try:
            if event.seq is not None:
                seen.append(event.seq)
            time.sleep(0.001)
        finally:
            with lock:
                state["active"] -= 1

    inside_slow = threading.Event()

    def slow(event) -> None:
        inside_slow.set()
        time.sleep(2.0)

    orch.subscribe(record)
    stop_slow = orch.subscribe(slow)
    for i in range(3):
        orch.create_task(f"first-{i}", func=noop)
    orch.start_execution()
    assert inside_slow.wait(2)
    t0 = time.monotonic()
    orch.stop_execution()
    assert time.monotonic() - t0 < 1.0, "a slow subscriber held up stop_execution"
    stop_slow()

    orch.start_execution()
    later = [orch.create_task(f"later-{i}", func=noop) for i in range(20)]
    assert orch.wait_for_completion(10)
    assert orch.flush_events(10)
    assert all(t.status is S.COMPLETED for t in later)
    assert seen == sorted(set(seen)), "events reached a subscriber out of order or twice"
    assert seen == list(range(1, orch.snapshot().seq + 1)), "a subscriber missed events"
    assert state["peak"] <= 1, "two callbacks ran at once"


# -- 6. a callback raising SystemExit / BaseException ---------------------------------------------------
def test_callbacks_raising_systemexit_do_not_stop_delivery(make_orch, caplog):
    caplog.set_level(logging.CRITICAL, logger="codomyrmex_nb.core.events")  # expected tracebacks

    class Odd(BaseException):
        pass

    def exits(event) -> None:
        raise SystemExit(1)

    def odd(event) -> None:
        raise Odd("odd")

    orch = make_orch(2)
    seen: list[int] = []
    orch.subscribe(exits)
    orch.subscribe(lambda e: e.seq is not None and seen.append(e.seq))
    orch.subscribe(odd)
    for i in range(10):
        orch.create_task(f"t{i}", func=noop if i % 3 else boom)
    orch.start_execution()
    orch.wait_for_completion(5)
    assert orch.flush_events(5) is True
    assert seen == list(range(1, orch.snapshot().seq + 1)), "a subscriber missed events"


# -- 7. the executor starts outside the lock; a failed start leaves a startable orchestrator ----------------
class GatedExecutor:
    """A thread executor whose ``start`` can block or fail (the test controls it)."""

    name = "gated"

    def __init__(self, block: float = 0.0, fail: bool = False) -> None:
        self.block, self.fail = block, fail
        self.starting = threading.Event()

    def start(self, max_workers: int) -> None:
        self.starting.set()
        if self.fail:
            raise OSError("no cluster at tcp://nowhere:8786")
        if self.block:
            time.sleep(self.block)

    def run(self, run):
        return run.execute()

    def interrupt(self, run, reason: str) -> bool:
        return run.interrupt(reason)

    def shutdown(self) -> None:
        pass


def test_slow_executor_start_does_not_block_stats(make_orch):
    executor = GatedExecutor(block=1.0)
    orch = make_orch(2, executor=executor)
    task = orch.create_task("t", func=lambda: 42)
    starter = threading.Thread(target=orch.start_execution, name="test-starter")
    starter.start()
    try:
        assert executor.starting.wait(2)
        t0 = time.monotonic()
        stats = orch.get_execution_stats()
        assert time.monotonic() - t0 < 0.3, "get_execution_stats waited for the executor's start"
        assert stats["total_tasks"] == 1
    finally:
        starter.join(5)
    assert not starter.is_alive()
    assert orch.wait_for_completion(5) and task.result.data == 42


def test_executor_that_fails_to_start_leaves_a_startable_orchestrator(make_orch):
    executor = GatedExecutor(fail=True)
    orch = make_orch(2, executor=executor)
    task = orch.create_task("t", func=lambda: 42)
    with pytest.raises(RuntimeError, match="no cluster at tcp://nowhere:8786"):
        orch.start_execution()
    assert orch.is_running is False

    outcome: list[BaseException | bool] = []

    def wait() -> None:
        try:
            outcome.append(orch.wait_for_completion())
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    waiter = threading.Thread(target=wait, name="test-waiter", daemon=True)
    waiter.start()
    waiter.join(2)
    assert not waiter.is_alive(), "wait_for_completion hangs on an orchestrator that never started"
    assert isinstance(outcome[0], RuntimeError) and "start_execution" in str(outcome[0])

    executor.fail = False
    orch.start_execution()
    assert orch.is_running
    assert orch.wait_for_completion(5) and task.result.data == 42


# -- 8. leaks -------------------------------------------------------------------------------------------
class Blob:
    """A large-ish object whose lifetime the test follows with a weakref."""

    def __init__(self) -> None:
        self.payload = bytearray(64 * 1024)


def fail_with(blob: Blob, extra: Blob | None = None) -> None:
    raise ValueError("failed holding a blob", blob)


def test_reset_drops_retry_timers_and_results(make_orch):
    orch = make_orch(4)
    kept = Blob()
    carried = Blob()
    kept_ref, carried_ref = weakref.ref(kept), weakref.ref(carried)
    tasks = [Task(f"t{i}", func=fail_with, max_retries=1, retry_delay=3600,
                  parameters={"blob": Blob()}) for i in range(2000)]
    tasks[0].parameters = {"blob": kept}                    # held by parameters and the error
    tasks[1].parameters = {"blob": Blob(), "extra": carried}  # held by parameters only
    total = len(tasks)
    waiting = threading.Event()
    count = [0]

    def on_event(event) -> None:
        if event.detail == "retry":
            count[0] += 1
            if count[0] == total:
                waiting.set()

    unsubscribe = orch.subscribe(on_event)
    orch.add_tasks(tasks)
    orch.start_execution()
    assert waiting.wait(8), f"only {count[0]} of {total} tasks failed their first attempt"
    unsubscribe()
    assert orch.get_execution_stats()["waiting_retry"] == total
    assert orch._engine.clock.pending() >= total
    assert tasks[0].result.exception.args[1] is kept

    assert orch.reset() == total
    assert orch._engine.clock.pending() == 0, "reset left retry timers armed"
    del tasks, kept, carried
    gc.collect()
    assert kept_ref() is None, "a forgotten task's error or parameters are still referenced"
    assert carried_ref() is None, "a forgotten task's parameters are still referenced"


def test_resource_manager_forgets_keys_after_runs(make_orch):
    orch = make_orch(4)
    orch.start_execution()
    for run in range(3):
        orch.add_tasks([Task(f"r{run}-{i}", func=noop,
                             resources=[TaskResource(ResourceType.CUSTOM, f"k{i}", "write")])
                        for i in range(2000)])
        assert orch.wait_for_completion(8)
        assert orch._engine.sched.resources.entries() == 0, f"run {run} left resource entries"


# -- 9. the guide's "Handle Task Failures" recipe ----------------------------------------------------
def guide_recipe(title: str) -> str:
    text = GUIDE.read_text()
    match = re.search(rf"^### {re.escape(title)}\s*\n+```python\n(.*?)```", text, re.S | re.M)
    assert match, f"no python block under '### {title}' in the guide"
    return match.group(1)


def test_guide_recipe_reruns_a_failed_task(make_orch, capsys):
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first run fails")
        return "second run works"

    orch = make_orch(2)
    task = orch.create_task("flaky", func=flaky, max_retries=0)
    orch.start_execution()
    assert orch.wait_for_completion(5) is False
    assert task.status is S.FAILED and task.can_retry()

    exec(guide_recipe("Handle Task Failures"), {"orchestrator": orch, "TaskStatus": TaskStatus})
    assert "Task flaky failed: first run fails" in capsys.readouterr().out
    assert orch.wait_for_completion(5) is True
    assert task.status is S.COMPLETED and task.result.data == "second run works"
    assert len(calls) == 2


def test_can_retry_follows_the_state(make_orch):
    assert Task("fresh", func=noop, max_retries=2).can_retry() is True
    assert Task("fresh", func=noop, max_retries=0).can_retry() is False
    orch = make_orch(2)
    gate = threading.Event()
    ok = orch.create_task("ok", func=noop)
    failed = orch.create_task("failed", func=boom)
    skipped = orch.create_task("skipped", func=noop, dependencies=[failed])
    held = orch.create_task("held", func=lambda: gate.wait(10))
    budget = orch.create_task("budget", func=noop, dependencies=[held], max_retries=1)
    no_budget = orch.create_task("no-budget", func=noop, dependencies=[held])
    assert budget.can_retry() is True and no_budget.can_retry() is False  # pending
    cancelled = orch.create_task("cancelled", func=noop, dependencies=[held])
    assert orch.cancel_task(cancelled)
    orch.start_execution()
    gate.set()
    orch.wait_for_completion(5)
    assert (ok.status, failed.status, skipped.status, cancelled.status) == (
        S.COMPLETED, S.FAILED, S.SKIPPED, S.CANCELLED)
    assert failed.can_retry() is True and cancelled.can_retry() is True
    assert ok.can_retry() is False and skipped.can_retry() is False


# -- 10. smaller ----------------------------------------------------------------------------------------
def test_dependency_on_a_task_of_another_orchestrator_is_explained(make_orch):
    first, second = make_orch(1), make_orch(1)
    theirs = first.create_task("load", func=noop)
    with pytest.raises(ValueError, match="another orchestrator") as excinfo:
        second.create_task("use", func=noop, dependencies=[theirs])
    assert "by name or id" not in str(excinfo.value)  # no local task of that name yet
    second.create_task("load", func=noop)
    with pytest.raises(ValueError, match="another orchestrator") as excinfo:
        second.create_task("use", func=noop, dependencies=[theirs])
    assert "by name or id" in str(excinfo.value)
    assert [t.name for t in second.list_tasks()] == ["load"]


@pytest.mark.parametrize("started", [False, True])
def test_rejected_cyclic_readd_leaves_dependencies_unchanged(make_orch, started):
    orch = make_orch(2)
    a = orch.create_task("a", func=noop)
    b = orch.create_task("b", func=noop, dependencies=["a"])
    c = orch.create_task("c", func=noop, dependencies=["b"])
    if started:
        orch.start_execution()
        assert orch.wait_for_completion(5)
    seq = orch.snapshot().seq
    a.dependencies = ["c"]
    with pytest.raises(DependencyCycleError, match="a"):
        orch.add_task(a)
    assert a.dependencies == []
    assert b.dependencies == [a.id] and c.dependencies == [b.id]
    assert orch.snapshot().seq == seq
    assert orch.dependencies_of(a) == []


def test_rejected_self_dependency_readd_leaves_dependencies_unchanged(make_orch):
    orch = make_orch(2)
    a = orch.create_task("a", func=noop)
    a.dependencies = ["a"]
    with pytest.raises(DependencyCycleError, match="a -> a"):
        orch.add_task(a)
    assert orch.dependencies_of(a) == []
    assert a.dependencies == []


def test_two_capacities_for_one_resource_in_a_batch_are_refused(make_orch):
    orch = make_orch(2)
    orch.create_task("before", func=noop)
    listed = orch.list_tasks()
    batch = [
        Task("two", func=noop, resources=[TaskResource(ResourceType.CUSTOM, "pool", "write",
                                                       capacity=2)]),
        Task("three", func=noop, resources=[TaskResource(ResourceType.CUSTOM, "pool", "write",
                                                         capacity=3)]),
    ]
    with pytest.raises(ValueError) as excinfo:
        orch.add_tasks(batch)
    message = str(excinfo.value)
    assert "2" in message and "3" in message and "'two'" in message and "'three'" in message
    assert orch.list_tasks() == listed


# -- 11. snapshots and events carry the sequence number ---------------------------------------------
def test_snapshot_seq_counts_transitions(make_orch):
    orch = make_orch(2)
    assert orch.snapshot().seq == 0
    seqs: list[int] = []
    orch.subscribe(lambda e: e.seq is not None and seqs.append(e.seq))
    for i in range(5):
        orch.create_task(f"t{i}", func=noop if i else boom)
    orch.start_execution()
    orch.wait_for_completion(5)
    assert orch.flush_events(5)
    assert seqs == list(range(1, len(seqs) + 1))
    assert orch.snapshot().seq == len(seqs)


def test_snapshot_plus_later_events_reproduce_the_final_counts(make_orch):
    orch = make_orch(4)
    orch.add_tasks([Task(f"a{i}", func=noop) for i in range(500)])
    orch.start_execution()
    events = []
    orch.subscribe(events.append)
    snap = orch.snapshot()
    orch.add_tasks([Task(f"b{i}", func=noop) for i in range(1000)])
    assert orch.wait_for_completion(10)
    assert orch.flush_events(10)

    mirror = {t.id: t.status for t in snap.tasks}
    for event in events:
        if event.seq is None or event.seq <= snap.seq:
            continue
        if event.kind == "removed":
            mirror.pop(event.task_id, None)
        else:
            mirror[event.task_id] = event.status
    counts = {s: 0 for s in S}
    for status in mirror.values():
        counts[status] += 1
    stats = orch.get_execution_stats()
    assert len(mirror) == stats["total_tasks"] == 1500
    assert counts[S.COMPLETED] == stats["completed"] == 1500
    assert all(counts[s] == 0 for s in S if s is not S.COMPLETED)


@pytest.mark.needs_dot
def test_live_view_opened_mid_run_reports_every_task_done(make_orch):
    from codomyrmex_nb.notebook.live_view import LiveView

    orch = make_orch(4)
    orch.add_tasks([Task(f"a{i}", func=noop) for i in range(500)])
    orch.start_execution()
    view = LiveView(orch)
    try:
        orch.add_tasks([Task(f"b{i}", func=noop) for i in range(1000)])
        assert orch.wait_for_completion(10)
        assert orch.flush_events(10)
        assert view.flush(30)
        assert "1500/1500 done" in view.summary(), view.summary()
    finally:
        view.close()
