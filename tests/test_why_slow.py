"""bottlenecks() names the cure: GIL contention, waiting tasks, worker and resource waits.

Most scenarios are constructed snapshots (exact times and CPU seconds, no
machine noise); two are real runs on threads: four pure-Python loops on four
threads are flagged as GIL contention, four sleeps are not (they are waiting).
"""

from __future__ import annotations

import sys
import threading
import time

import pandas as pd
import pytest

from codomyrmex_nb.analysis.bottlenecks import COLUMNS, KINDS, bottlenecks
from codomyrmex_nb.core.model import Attempt, TaskPriority, TaskStatus
from codomyrmex_nb.core.snapshot import Snapshot, TaskView

T0 = 1_000_000.0


def view(name, runs=(), *, wait_worker=0.0, wait_resources=0.0, resources=(), peak=None,
         deps=(), blocked_on=None, wait_by_resource=()):
    """A finished task; ``runs`` = [(start, end, cpu seconds, worker)] relative to T0."""
    attempts = []
    for number, (start, end, cpu, worker) in enumerate(runs, 1):
        attempt = Attempt(number, worker, T0 + start, T0 + end, "completed")
        attempt.cpu_time, attempt.peak_memory, attempt.logs = cpu, peak, ""
        attempts.append(attempt)
    started = attempts[0].started_at if attempts else None
    ended = attempts[-1].ended_at if attempts else None
    return TaskView(
        id=f"id-{name}", name=name, module="", action="", status=TaskStatus.COMPLETED,
        priority=TaskPriority.NORMAL, dependencies=tuple(f"id-{d}" for d in deps), tags=(),
        resources=tuple(resources), waiting_retry=False, blocked_on=blocked_on, retry_count=0,
        max_retries=0, attempts=tuple(attempts), created_at=T0, queued_at=T0,
        ready_at=(started - wait_worker - wait_resources) if started else T0,
        started_at=started, completed_at=ended, wait_dependencies=0.0,
        wait_resources=wait_resources, wait_worker=wait_worker,
        execution_time=(ended - started) if attempts else None, success=True, data=None,
        error_type=None, error_message=None, worker=attempts[-1].worker if attempts else None,
        wait_by_resource=tuple(wait_by_resource),
        cpu_time=sum(a.cpu_time for a in attempts) if attempts else None,
        peak_memory=peak, last_line=None)


def snapshot(*views, workers=4):
    end = max((v.completed_at for v in views if v.completed_at), default=T0)
    return Snapshot(tasks=tuple(views), structure_version=1, time=end,
                    stats={"makespan": end - T0}, running=False, max_workers=workers)


def kinds(frame, kind):
    return frame[frame["kind"] == kind]


def four_loops():  # four threads, 2 s together, one core between them
    return [view(f"loop{i}", [(0.0, 2.0, 0.5, f"codo-worker-{i}")]) for i in range(4)]


# -- constructed scenarios ---------------------------------------------------------------------------
def test_shape_and_dtypes():
    frame = bottlenecks(snapshot(*four_loops()), executor="threads")
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["kind"].cat.categories) == list(KINDS)
    assert str(frame["seconds"].dtype) == "float64"
    assert pd.api.types.is_string_dtype(frame["cure"].dtype)


def test_four_busy_threads_sharing_one_core_are_gil_contention():
    frame = bottlenecks(snapshot(*four_loops()), executor="threads")
    gil = kinds(frame, "gil_contention")
    assert sorted(gil["task"]) == ["loop0", "loop1", "loop2", "loop3"]
    assert gil["seconds"].tolist() == pytest.approx([1.5] * 4)  # wall minus CPU, each
    assert gil["share"].tolist() == pytest.approx([0.75] * 4)
    assert "CPU/wall 0.25" in gil.iloc[0]["detail"]
    assert "4 thread tasks ran together" in gil.iloc[0]["detail"]
    assert "1.00 cores" in gil.iloc[0]["detail"] and "GIL" in gil.iloc[0]["detail"]
    assert all('executor="processes"' in cure or "one CPU core" in cure for cure in gil["cure"])
    assert kinds(frame, "waiting").empty  # busy, not waiting


def test_the_same_attempts_on_processes_are_not_gil_contention():
    snap = snapshot(*four_loops())
    assert kinds(bottlenecks(snap, executor="processes"), "gil_contention").empty
    measured = snapshot(*[view(f"p{i}", [(0.0, 2.0, 0.5, f"w{i}")], peak=10**8) for i in range(4)])
    assert kinds(bottlenecks(measured), "gil_contention").empty  # memory measured: processes


def test_four_sleeps_are_waiting_not_contention():
    sleeps = [view(f"sleep{i}", [(0.0, 2.0, 0.002, f"w{i}")]) for i in range(4)]
    frame = bottlenecks(snapshot(*sleeps), executor="threads")
    assert kinds(frame, "gil_contention").empty
    waiting = kinds(frame, "waiting")
    assert sorted(waiting["task"]) == ["sleep0", "sleep1", "sleep2", "sleep3"]
    assert waiting.iloc[0]["seconds"] == pytest.approx(1.998)
    assert "it mostly waited" in waiting.iloc[0]["detail"]
    assert "would not help" in waiting.iloc[0]["cure"]  # nothing queued for a worker


def test_waiting_tasks_with_a_queue_suggest_more_workers():
    tasks = [view(f"io{i}", [(0.0, 1.0, 0.01, f"w{i}")]) for i in range(2)]
    tasks += [view(f"late{i}", [(1.0, 2.0, 0.01, f"w{i}")], wait_worker=1.0) for i in range(2)]
    frame = bottlenecks(snapshot(*tasks, workers=2), executor="threads")
    waiting = kinds(frame, "waiting")
    assert len(waiting) == 4
    assert "more workers (max_workers > 2)" in waiting.iloc[0]["cure"]
    workers = kinds(frame, "worker_wait")
    assert sorted(workers["task"]) == ["late0", "late1"]
    assert workers.iloc[0]["cure"].startswith("more workers (max_workers > 2)")


def test_one_loop_beside_sleeps_is_not_contention():
    tasks = [view("loop", [(0.0, 2.0, 1.9, "w0")])]
    tasks += [view(f"sleep{i}", [(0.0, 2.0, 0.001, f"w{i + 1}")]) for i in range(3)]
    frame = bottlenecks(snapshot(*tasks), executor="threads")
    assert kinds(frame, "gil_contention").empty
    assert sorted(kinds(frame, "waiting")["task"]) == ["sleep0", "sleep1", "sleep2"]


def test_a_task_that_only_brushed_a_contended_pair_is_left_out():
    mixed = view("mixed", [(0.0, 0.9, 0.2, "w0")])  # computed alone, then waited beside them
    pair = [view(f"crunch{i}", [(0.6, 1.5, 0.45, f"w{i + 1}")]) for i in range(2)]
    gil = kinds(bottlenecks(snapshot(mixed, *pair), executor="threads"), "gil_contention")
    assert sorted(gil["task"]) == ["crunch0", "crunch1"]


def test_loops_one_after_another_are_not_contention():
    tasks = [view(f"loop{i}", [(i * 1.0, i * 1.0 + 1.0, 0.95, "w0")]) for i in range(4)]
    assert kinds(bottlenecks(snapshot(*tasks, workers=1), executor="threads"),
                 "gil_contention").empty


def test_a_process_short_of_cpu_is_not_called_gil_bound():
    # four loops that got a third of a core between them: the machine was busy
    tasks = [view(f"loop{i}", [(0.0, 3.0, 0.25, f"w{i}")]) for i in range(4)]
    frame = bottlenecks(snapshot(*tasks), executor="threads")
    assert kinds(frame, "gil_contention").empty
    assert "too busy" in kinds(frame, "waiting").iloc[0]["detail"]


def loops_on_a_busy_machine(run_delay):
    """Four loops that got a third of a core between them; each waited ``run_delay`` s on the
    run queue (for a core) of its 2.75 s not running."""
    tasks = [view(f"loop{i}", [(0.0, 3.0, 0.25, f"w{i}")]) for i in range(4)]
    for task in tasks:
        task.attempts[0].run_delay = run_delay
    return tasks


def test_threads_that_slept_on_a_busy_machine_are_gil_contention():
    # they mostly slept (waiting for the GIL), not queued for a core: the GIL, busy machine or not
    frame = bottlenecks(snapshot(*loops_on_a_busy_machine(0.4)), executor="threads")
    gil = kinds(frame, "gil_contention")
    assert sorted(gil["task"]) == ["loop0", "loop1", "loop2", "loop3"], frame.to_string()
    assert "0.33 cores" in gil.iloc[0]["detail"]


def test_threads_that_queued_for_a_core_are_a_busy_machine():
    frame = bottlenecks(snapshot(*loops_on_a_busy_machine(2.6)), executor="threads")
    assert kinds(frame, "gil_contention").empty
    assert "too busy" in kinds(frame, "waiting").iloc[0]["detail"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="run-queue figures: Linux only")
def test_thread_attempts_measure_their_wait_for_a_core(make_orch):
    orch = make_orch(1)
    orch.create_task("long", func=lambda: python_loop(calibrated_loop(0.1)))
    orch.create_task("short", func=lambda: 1)
    orch.start_execution()
    assert orch.wait_for_completion(60)
    views = {v.name: v for v in orch.snapshot().tasks}
    long_attempt = views["long"].attempts[0]
    assert isinstance(long_attempt.run_delay, float)
    assert 0.0 <= long_attempt.run_delay <= long_attempt.ended_at - long_attempt.started_at + 0.05
    assert views["short"].attempts[0].run_delay is None  # too short to be worth a read


def test_threads_that_released_the_gil_are_not_contention():
    # numpy-like work: four threads each kept a core busy (four cores in all)
    tasks = [view(f"np{i}", [(0.0, 1.0, 0.95, f"w{i}")]) for i in range(4)]
    assert kinds(bottlenecks(snapshot(*tasks), executor="threads"), "gil_contention").empty


def test_two_separate_groups_are_each_reported():
    first = [view(f"a{i}", [(0.0, 1.0, 0.5, f"w{i}")]) for i in range(2)]
    second = [view(f"b{i}", [(5.0, 6.0, 0.33, f"w{i}")]) for i in range(3)]
    gil = kinds(bottlenecks(snapshot(*first, *second), executor="threads"), "gil_contention")
    assert sorted(gil["task"]) == ["a0", "a1", "b0", "b1", "b2"]
    details = [d for d in gil["detail"] if "ran together" in d]
    assert len(details) == 2
    assert any("2 thread tasks" in d for d in details) and any("3 thread tasks" in d for d in details)


def test_contention_makes_the_worker_wait_cure_mention_processes():
    tasks = four_loops() + [view("queued", [(2.0, 2.5, 0.4, "codo-worker-0")], wait_worker=2.0)]
    frame = bottlenecks(snapshot(*tasks), executor="threads")
    cure = kinds(frame, "worker_wait").iloc[0]["cure"]
    assert "max_workers > 4" in cure and 'executor="processes"' in cure


def test_resource_wait_names_the_holder_in_the_cure():
    db = (("custom:db", "exclusive"),)
    holder = view("holder", [(0.0, 1.0, 0.9, "w0")], resources=db)
    waiter = view("waiter", [(1.0, 1.2, 0.1, "w1")], resources=db, wait_resources=1.0,
                  wait_by_resource=[("custom:db", 1.0)])
    row = kinds(bottlenecks(snapshot(holder, waiter), executor="threads"), "resource_wait").iloc[0]
    assert (row["task"], row["resource"]) == ("waiter", "custom:db")
    assert "held by holder" in row["detail"] and "holder's hold" in row["cure"]


def test_attempts_without_cpu_figures_are_left_out():
    tasks = four_loops()
    for v in tasks:
        v.attempts[0].cpu_time = None
    frame = bottlenecks(snapshot(*tasks), executor="threads")
    assert kinds(frame, "gil_contention").empty and kinds(frame, "waiting").empty


# -- real runs on threads ------------------------------------------------------------------------------
def python_loop(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrated_loop(seconds):
    """Iterations of ``python_loop`` that take about ``seconds`` of CPU on this machine, now."""
    n = 100_000
    start = time.thread_time()
    python_loop(n)
    took = max(time.thread_time() - start, 1e-4)
    return int(n * seconds / took)


def run_four_loops(orch):
    n = calibrated_loop(0.4)
    gate = threading.Event()

    def loop():
        gate.wait(10)  # all four start together
        return python_loop(n)

    for i in range(4):
        orch.create_task(f"loop{i}", func=loop)
    orch.start_execution()
    time.sleep(0.2)
    gate.set()
    assert orch.wait_for_completion(120)
    orch.stop_execution()
    tasks = orch.tasks_frame()
    return tasks["cpu_time"].sum() / orch.stats_frame().loc[0, "makespan"]


def test_real_run_four_loops_on_four_threads_are_flagged(make_orch):
    # GIL contention is four threads sharing about one core. On a machine so busy
    # with other work that this process gets much less than a core, the loops look
    # like waiting (and processes would not help): try again, then give up.
    for _ in range(3):
        orch = make_orch(4)
        cores = run_four_loops(orch)
        if cores >= 0.6:
            break
    else:
        pytest.skip(f"the machine lent this process only {cores:.2f} of a core, three times")
    frame = orch.bottlenecks()
    gil = kinds(frame, "gil_contention")
    assert sorted(gil["task"]) == ["loop0", "loop1", "loop2", "loop3"], frame.to_string()
    assert 'executor="processes"' in gil.iloc[0]["cure"] or "one CPU core" in gil.iloc[0]["cure"]
    tasks = orch.tasks_frame()
    assert (tasks["cpu_time"] / tasks["execution_time"]).max() < 0.8  # none had a core to itself


def test_real_run_four_sleeps_on_four_threads_are_not(make_orch):
    orch = make_orch(4)
    for i in range(4):
        orch.create_task(f"sleep{i}", func=lambda: time.sleep(0.4))
    orch.start_execution()
    assert orch.wait_for_completion(60)
    orch.stop_execution()
    frame = orch.bottlenecks()
    assert kinds(frame, "gil_contention").empty, frame.to_string()
    assert sorted(kinds(frame, "waiting")["task"]) == ["sleep0", "sleep1", "sleep2", "sleep3"]


def test_tasks_of_microseconds_are_not_told_to_add_workers():
    tasks = [view(f"tiny{i}", [(i * 1e-4, i * 1e-4 + 2e-5, 2e-5, "w0")], wait_worker=0.05)
             for i in range(20)]
    workers = kinds(bottlenecks(snapshot(*tasks, workers=4), executor="threads"), "worker_wait")
    assert len(workers) > 0
    assert "larger tasks" in workers.iloc[0]["cure"] and "more workers (" not in workers.iloc[0]["cure"]
    assert "all 4 workers were busy" not in workers.iloc[0]["detail"]
    assert workers["share"].between(0.0, 1.0).all()  # 50 ms waits in a 2 ms run: at most 100 %
