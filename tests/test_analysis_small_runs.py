"""Analysis that is right on small runs (issue 19, item 7).

The README's three-task chain, defined cell by cell while the engine is
stopped and then run: no share above 100 %, no wait counted from before the
engine started, one run time per task in every frame, and no "more workers"
where a worker was free.
"""

from __future__ import annotations

import time

import pytest

from codomyrmex_nb.analysis.bottlenecks import bottlenecks
from codomyrmex_nb.core.model import Attempt, TaskPriority, TaskStatus
from codomyrmex_nb.core.snapshot import Snapshot, TaskView


def readme_chain(make_orch, pause=0.15):
    """load -> clean -> by_region, each defined a moment after the last (a person running
    cells), the engine started only afterwards, as the README's notebook does."""
    orch = make_orch(4, journal=False)
    orch.create_task("load", func=lambda: [120.0, None, 80.5, 42.0])
    time.sleep(pause)
    orch.create_task("clean", func=lambda upstream: [x for x in upstream["load"] if x is not None],
                     dependencies=["load"])
    time.sleep(pause)
    orch.create_task("by_region", func=lambda upstream: sum(upstream["clean"]), dependencies=["clean"])
    time.sleep(pause)
    started = time.time()
    orch.start_execution()
    assert orch.wait_for_completion(30)
    return orch, started


def test_waits_start_when_the_engine_could_run_the_task(make_orch):
    orch, started = readme_chain(make_orch)
    tasks = orch.tasks_frame().set_index("name")
    stats = orch.stats_frame().iloc[0]
    makespan = stats["makespan"]
    assert makespan < 0.3 * 3  # the pauses before the start are no part of the run
    # from start_execution to the last end: a loaded machine may take a while to run the
    # first worker (the makespan starts with the first attempt), but no pause before counts
    window = max(tasks["completed_at"]).timestamp() - started
    assert window < 0.3 * 3
    for name, row in tasks.iterrows():
        assert row["queued_at"].timestamp() >= started - 1e-3, name
        assert row["wait_worker"] <= window + 0.05, (name, row["wait_worker"], window)
        assert row["wait_dependencies"] <= window + 0.05, (name, row["wait_dependencies"])
    # the dependency wait is the time its upstream took, from the start: below 0.45 s of pauses
    assert stats["wait_dependencies_total"] < 2 * window + 0.05, stats.to_dict()
    assert stats["wait_worker_total"] < window + 0.05, stats.to_dict()
    assert tasks.loc["load", "wait_dependencies"] == 0.0
    assert tasks.loc["clean", "wait_dependencies"] == pytest.approx(
        (tasks.loc["clean", "ready_at"] - tasks.loc["clean", "queued_at"]).total_seconds(),
        abs=1e-6)


def test_no_share_above_100_percent_and_no_cure_for_a_free_worker(make_orch):
    orch, _ = readme_chain(make_orch)
    report = orch.bottlenecks()
    assert report["share"].dropna().between(0.0, 1.0).all(), report.to_string()
    assert (report["kind"] == "worker_wait").sum() == 0, report.to_string()
    assert not report["cure"].str.contains("more workers").any(), report.to_string()


def test_one_run_time_per_task_in_every_frame(make_orch):
    orch, _ = readme_chain(make_orch)
    tasks = orch.tasks_frame().set_index("name")["execution_time"]
    results = orch.results_frame().set_index("name")["execution_time"]
    report = orch.bottlenecks()
    path = report[report["kind"] == "critical_path"].set_index("task")["seconds"]
    stats = orch.stats_frame().iloc[0]
    assert list(path.index) == ["load", "clean", "by_region"]
    for name in path.index:
        assert tasks[name] == pytest.approx(results[name], abs=1e-9)
        assert path[name] == pytest.approx(tasks[name], abs=1e-9), (name, path[name], tasks[name])
    assert stats["critical_path_seconds"] == pytest.approx(tasks.sum(), abs=1e-9)
    assert stats["total_execution_time"] == pytest.approx(tasks.sum(), abs=1e-9)


def test_a_full_pool_still_gets_more_workers(make_orch):
    orch = make_orch(1, journal=False)
    for i in range(2):
        orch.create_task(f"sleep{i}", func=lambda: time.sleep(0.3))
    orch.start_execution()
    assert orch.wait_for_completion(30)
    rows = orch.bottlenecks()
    workers = rows[rows["kind"] == "worker_wait"]
    assert len(workers) == 1, rows.to_string()
    assert workers.iloc[0]["seconds"] >= 0.25
    assert "the only worker was busy" in workers.iloc[0]["detail"]
    assert workers.iloc[0]["cure"].startswith("more workers (max_workers > 1)")
    assert rows["share"].dropna().between(0.0, 1.0).all(), rows.to_string()


T0 = 1_000_000.0


def _view(name, start, end, worker, wait_worker):
    attempt = Attempt(1, worker, T0 + start, T0 + end, "completed")
    attempt.cpu_time, attempt.logs = 0.9 * (end - start), ""
    return TaskView(
        id=name, name=name, module="", action="", status=TaskStatus.COMPLETED,
        priority=TaskPriority.NORMAL, dependencies=(), tags=(), resources=(),
        waiting_retry=False, blocked_on=None, retry_count=0, max_retries=0,
        attempts=(attempt,), created_at=T0, queued_at=T0 + start - wait_worker,
        ready_at=T0 + start - wait_worker, started_at=T0 + start, completed_at=T0 + end,
        wait_dependencies=0.0, wait_resources=0.0, wait_worker=wait_worker,
        execution_time=end - start, success=True, data=None, error_type=None,
        error_message=None, worker=worker, cpu_time=0.9 * (end - start))


def test_a_wait_beside_a_free_worker_is_not_a_full_pool():
    # two workers; "late" waited 0.5 s while only "first" ran: a worker was free
    first = _view("first", 0.0, 1.0, "w0", 0.0)
    late = _view("late", 0.5, 1.0, "w1", 0.5)
    snap = Snapshot((first, late), 1, T0 + 1.0, {"makespan": 1.0}, False, 2)
    report = bottlenecks(snap, executor="threads")
    assert (report["kind"] == "worker_wait").sum() == 0, report.to_string()
    # the same wait with both workers busy is one more workers would cure
    other = _view("other", 0.0, 1.0, "w1", 0.0)
    late = _view("late", 1.0, 1.5, "w0", 1.0)
    snap = Snapshot((first, other, late), 1, T0 + 1.5, {"makespan": 1.5}, False, 2)
    report = bottlenecks(snap, executor="threads")
    rows = report[report["kind"] == "worker_wait"]
    assert list(rows["task"]) == ["late"] and "all 2 workers were busy" in rows.iloc[0]["detail"]
