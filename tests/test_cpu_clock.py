"""A worker's CPU clock (``cpu_clock.CpuClock``): read at most once a millisecond, exact to
within microseconds on a long attempt, an estimate on a tiny one."""

from __future__ import annotations

import threading
import time

from codomyrmex_nb import Task, TaskOrchestrator
from codomyrmex_nb.core import cpu_clock
from codomyrmex_nb.core.cpu_clock import SPAN, CpuClock
from codomyrmex_nb.core.invoke import Run


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_tiny_attempts_read_the_cpu_clock_at_most_once_a_millisecond(monkeypatch):
    reads = []
    real = time.thread_time

    def counted() -> float:
        reads.append(1)
        return real()

    monkeypatch.setattr(cpu_clock.time, "thread_time", counted)
    clock = CpuClock()
    began = time.perf_counter()
    attempts = 0
    while time.perf_counter() - began < 0.02:
        start = time.perf_counter()
        end = time.perf_counter()
        assert 0 <= clock.spent(start, end) <= end - start
        attempts += 1
    assert attempts > 200
    assert len(reads) <= 1 + 0.02 / SPAN + 2


def test_a_long_attempt_is_measured_from_the_clock_and_a_sleep_costs_about_none():
    clock = CpuClock()
    for _ in range(50):  # tiny attempts first: the estimate's share is set
        t = time.perf_counter()
        clock.spent(t, time.perf_counter())
    start = time.perf_counter()
    spin(0.05)
    busy = clock.spent(start, time.perf_counter())
    start = time.perf_counter()
    time.sleep(0.05)
    idle = clock.spent(start, time.perf_counter())
    assert 0.045 <= busy <= 0.06
    assert idle < 0.01


def test_a_clock_made_in_another_thread_is_not_used_for_an_attempt():
    """An executor that ran a worker's attempt in another thread would read that thread's
    clock: the attempt reads the CPU clock around itself instead."""
    other = []
    thread = threading.Thread(target=lambda: other.append(CpuClock()))
    thread.start()
    thread.join()
    run = Run(Task(name="idle", func=time.sleep))
    run.call = lambda: time.sleep(0.05)
    run.clock = other[0]
    outcome = run.execute()
    assert outcome.ok and outcome.cpu_time < 0.01  # that clock would give this thread's CPU


def test_items_of_a_map_get_cpu_times_no_larger_than_their_run_time(tmp_path):
    orch = TaskOrchestrator(2, journal=False)
    orch.create_task("m", func=lambda item: item, map=list(range(3000)))
    orch.start_execution()
    try:
        assert orch.wait_for_completion(30)
    finally:
        orch.stop_execution()
    frame = orch.tasks_frame(items=True)
    assert frame["cpu_time"].notna().all()
    assert (frame["cpu_time"] <= frame["execution_time"] + 1e-9).all()


def test_a_cpu_bound_task_after_an_idle_worker_shows_its_cpu_time():
    """The worker's estimate of its own work before an attempt took the idle time since its
    last reading as busy: a 0.3 s CPU-bound task after a second of idling showed 0.0."""
    orch = TaskOrchestrator(1, journal=False)
    orch.start_execution()
    try:
        orch.create_task("quick", func=lambda: None)
        assert orch.wait_for_completion(10)
        time.sleep(0.5)  # the worker waits for work, using no CPU
        orch.create_task("burn", func=spin, parameters={"seconds": 0.2})
        assert orch.wait_for_completion(10)
    finally:
        orch.stop_execution()
    cpu = orch.tasks_frame().set_index("name").loc["burn", "cpu_time"]
    assert 0.18 <= cpu <= 0.3


def test_an_attempt_after_a_wait_its_clock_did_not_see_is_measured_from_its_start():
    """A worker's thread may wait without its clock knowing (for the GIL, or a core): the
    span before an attempt was estimated as the worker's own work and taken off the
    attempt's CPU time (a CPU-bound map item read 0.064 s of its 0.08 s)."""
    clock = CpuClock()
    time.sleep(0.2)  # the thread waits; the clock's share still says "busy"
    run = Run(Task(name="spin", func=spin))
    run.call = lambda: spin(0.05)
    run.clock = clock
    run.taken_at = time.perf_counter()
    outcome = run.execute()
    assert outcome.ok and 0.045 <= outcome.cpu_time <= 0.06
