"""tasks_frame / results_frame / stats_frame / bottlenecks: shapes, dtypes and wait attribution.

Scenarios run on a real engine and synchronise with threading.Event; the
held-resource and busy-worker waits are made long enough (0.3 s) to dwarf
scheduling noise, and the bounds are generous.
"""

from __future__ import annotations

import sys
import threading

import pandas as pd
import pytest

from codomyrmex_nb import ResourceType, TaskResource
from codomyrmex_nb.analysis.bottlenecks import COLUMNS as BOTTLENECK_COLUMNS
from codomyrmex_nb.analysis.frames import RESULT_COLUMNS, TASK_COLUMNS
from codomyrmex_nb.palette import STATES

HOLD = 0.3  # seconds a resource or worker is kept busy on purpose


def db(mode: str = "exclusive") -> list[TaskResource]:
    return [TaskResource(ResourceType.CUSTOM, "db", mode=mode)]


def holding(started: threading.Event, release: threading.Event):
    """A task body that says it started, then holds its worker until released."""
    def body() -> str:
        started.set()
        assert release.wait(30), "test never released the task"
        return "held"
    return body


def flaky(failures: int):
    calls = {"n": 0}

    def body() -> int:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ConnectionError(f"attempt {calls['n']} fails")
        return calls["n"]
    return body


def run(orch) -> None:
    orch.start_execution()
    orch.wait_for_completion(30)
    orch.stop_execution()


def when(orch, predicate) -> threading.Event:
    """An Event set by the first engine event that satisfies ``predicate``."""
    seen = threading.Event()
    orch.subscribe(lambda ev: seen.set() if predicate(ev) else None)
    return seen


def is_uniform(frame: pd.DataFrame, columns: dict) -> None:
    assert list(frame.columns) == list(columns)
    for name, dtype in columns.items():
        col = frame[name]
        if dtype == "datetime":
            assert isinstance(col.dtype, pd.DatetimeTZDtype) and str(col.dtype.tz) == "UTC", name
        elif isinstance(dtype, pd.CategoricalDtype):
            assert col.dtype == dtype, name
        elif dtype is object:
            assert col.dtype == object, name
        elif dtype in ("int64", "Int64", "float64", "bool", "boolean"):
            assert str(col.dtype) == dtype, name
        else:
            assert pd.api.types.is_string_dtype(col.dtype), name


def test_empty_orchestrator_gives_empty_frames_with_columns(orch):
    tasks, results = orch.tasks_frame(), orch.results_frame()
    assert tasks.empty and results.empty
    is_uniform(tasks, TASK_COLUMNS)
    is_uniform(results, RESULT_COLUMNS)
    stats = orch.stats_frame()
    assert len(stats) == 1
    assert stats.loc[0, "total_tasks"] == 0
    assert stats.loc[0, "critical_path_tasks"] == 0 and stats.loc[0, "critical_path_seconds"] == 0
    report = orch.bottlenecks()
    assert report.empty and list(report.columns) == list(BOTTLENECK_COLUMNS)


def test_tasks_frame_rows_dtypes_and_dependency_names(orch):
    a = orch.create_task("a", func=lambda: {"rows": 3}, priority="high", tags=["etl"])
    b = orch.create_task("b", func=flaky(1), dependencies=[a], max_retries=1, resources=db("read"))
    orch.create_task("c", func=lambda: [1, 2], dependencies=[a, b], priority="low")
    run(orch)
    frame = orch.tasks_frame()
    assert frame.shape == (3, len(TASK_COLUMNS))
    is_uniform(frame, TASK_COLUMNS)
    rows = frame.set_index("name")
    assert rows.loc["c", "dependencies"] == ["a", "b"]
    assert rows.loc["b", "resources"] == ["custom:db:read"]
    assert rows.loc["a", "tags"] == ["etl"]
    assert rows.loc["b", "attempts"] == 2 and rows.loc["b", "retries"] == 1
    assert list(rows["state"]) == ["completed"] * 3
    assert set(frame["state"].cat.categories) == set(STATES)
    assert frame.loc[frame["priority"] > "normal", "name"].tolist() == ["a"]  # ordered
    assert frame.sort_values("priority")["name"].tolist() == ["c", "b", "a"]
    assert rows.loc["a", "priority_value"] == 3
    assert frame["success"].all()
    assert (frame["started_at"] >= frame["ready_at"]).all()
    assert (frame["completed_at"] >= frame["started_at"]).all()
    assert rows.loc["c", "worker"].startswith("codo-worker")


def test_failed_and_skipped_tasks_show_their_errors(orch):
    bad = orch.create_task("bad", func=flaky(5))
    orch.create_task("after", func=lambda: 1, dependencies=[bad])
    run(orch)
    rows = orch.tasks_frame().set_index("name")
    assert rows.loc["bad", "state"] == "failed" and rows.loc["bad", "error_type"] == "ConnectionError"
    assert rows.loc["after", "state"] == "upstream_failed"
    assert rows.loc["after", "attempts"] == 0 and pd.isna(rows.loc["after", "started_at"])
    assert rows["success"].tolist() == [False, False]


def test_results_frame_keeps_data_whole(orch):
    payload = {"rows": [1, 2, 3]}
    orch.create_task("dict", func=lambda: payload)
    orch.create_task("pair", func=lambda: [4, 5])  # equal-length lists must not become 2-D
    orch.create_task("more", func=lambda: [6, 7])
    orch.create_task("bad", func=flaky(1))
    run(orch)
    results = orch.results_frame()
    is_uniform(results, RESULT_COLUMNS)
    assert len(results) == 4
    data = dict(zip(results["name"], results["data"], strict=True))
    assert data["dict"] is payload and data["pair"] == [4, 5] and data["more"] == [6, 7]
    assert data["bad"] is None
    assert results.set_index("name").loc["bad", "error_type"] == "ConnectionError"


def test_stats_frame_adds_critical_path_and_waits(orch):
    gate = threading.Event()
    a = orch.create_task("a", func=lambda: gate.wait(0.2))
    b = orch.create_task("b", func=lambda: gate.wait(0.1), dependencies=[a])
    orch.create_task("side", func=lambda: 0)
    orch.create_task("c", func=lambda: 0, dependencies=[b])
    run(orch)
    stats = orch.stats_frame()
    assert len(stats) == 1
    row = stats.iloc[0]
    for key in orch.get_execution_stats():
        assert key in stats.columns
    assert row["completed"] == 4 and row["total_tasks"] == 4
    assert row["critical_path"] == "a -> b -> c" and row["critical_path_tasks"] == 3
    assert 0.25 <= row["critical_path_seconds"] <= row["makespan"] + 0.05
    assert row["throughput"] > 0 and 0 < row["worker_utilization"] <= 1
    assert row["wait_dependencies_total"] >= 0.25  # b waited for a, c for a and b
    assert str(stats["makespan"].dtype) == "float64" and str(stats["completed"].dtype) == "int64"


def test_resource_wait_is_attributed_and_named(orch):
    started, release = threading.Event(), threading.Event()
    orch.create_task("holder", func=holding(started, release), resources=db())
    blocked = when(orch, lambda ev: ev.name == "waiter" and (ev.detail or "").startswith("waiting for"))
    orch.start_execution()
    assert started.wait(10)
    orch.create_task("waiter", func=lambda: "ok", resources=db())  # a worker is free: only db blocks it
    assert blocked.wait(10)
    mid = orch.tasks_frame().set_index("name")
    assert mid.loc["waiter", "blocked_on"] == "custom:db" and mid.loc["waiter", "state"] == "ready"
    threading.Event().wait(HOLD)
    release.set()
    assert orch.wait_for_completion(30)
    orch.stop_execution()
    rows = orch.tasks_frame().set_index("name")
    waiter = rows.loc["waiter"]
    assert waiter["wait_resources"] >= HOLD * 0.8
    assert waiter["wait_worker"] < HOLD / 2 and waiter["wait_dependencies"] < HOLD / 2
    report = orch.bottlenecks()
    waits = report[report["kind"] == "resource_wait"]
    assert waits["task"].tolist() == ["waiter"]
    assert waits.iloc[0]["resource"] == "custom:db"
    assert "holder" in waits.iloc[0]["detail"]
    assert waits.iloc[0]["seconds"] == pytest.approx(waiter["wait_resources"])


def test_worker_wait_with_one_worker(make_orch):
    orch = make_orch(1)
    started, release = threading.Event(), threading.Event()
    orch.create_task("first", func=holding(started, release))
    orch.start_execution()
    assert started.wait(10)
    orch.create_task("second", func=lambda: "ok")  # independent, ready now, no worker free
    threading.Event().wait(HOLD)
    release.set()
    assert orch.wait_for_completion(30)
    orch.stop_execution()
    second = orch.tasks_frame().set_index("name").loc["second"]
    assert second["wait_worker"] >= HOLD * 0.8
    assert second["wait_resources"] == 0 and second["wait_dependencies"] < HOLD / 2
    report = orch.bottlenecks()
    workers = report[report["kind"] == "worker_wait"]
    assert workers.iloc[0]["task"] == "second"  # longest first ("first" may wait for a thread)
    assert "the only worker was busy" in workers.iloc[0]["detail"]
    assert report[report["kind"] == "resource_wait"].empty


def test_bottlenecks_critical_path_shares_and_retries(orch):
    gate = threading.Event()
    a = orch.create_task("a", func=lambda: gate.wait(0.15))
    b = orch.create_task("b", func=flaky(1), dependencies=[a], max_retries=2, retry_delay=0.05)
    orch.create_task("c", func=lambda: gate.wait(0.05), dependencies=[b])
    orch.create_task("quick", func=lambda: 0)
    run(orch)
    report = orch.bottlenecks()
    assert list(report.columns) == list(BOTTLENECK_COLUMNS)
    assert isinstance(report["kind"].dtype, pd.CategoricalDtype)
    assert str(report["seconds"].dtype) == "float64" and str(report["share"].dtype) == "float64"
    path = report[report["kind"] == "critical_path"]
    assert path["task"].tolist() == ["a", "b", "c"]
    assert path["share"].sum() == pytest.approx(1.0)
    assert path.iloc[0]["share"] > path.iloc[2]["share"]
    retries = report[report["kind"] == "retries"]
    assert retries["task"].tolist() == ["b"]
    assert retries.iloc[0]["seconds"] >= 0.05
    assert "failed, completed" in retries.iloc[0]["detail"]


def test_frames_accept_a_snapshot(orch):
    from codomyrmex_nb.analysis import frames

    orch.create_task("a", func=lambda: 1)
    run(orch)
    snap = orch.snapshot()
    assert frames.tasks_frame(snap)["name"].tolist() == ["a"]
    assert frames.stats_frame(snap).loc[0, "completed"] == 1
    with pytest.raises(TypeError, match="TaskOrchestrator or a Snapshot"):
        frames.tasks_frame(42)


def test_skipped_branch_is_never_the_critical_path(orch):
    gate = threading.Event()
    root = orch.create_task("root", func=lambda: gate.wait(0.05))
    bad = orch.create_task("bad", func=flaky(1), dependencies=[root])
    lost = orch.create_task("lost", func=lambda: 0, dependencies=[bad])
    orch.create_task("lost_too", func=lambda: 0, dependencies=[lost])
    orch.create_task("other", func=lambda: gate.wait(0.3))
    run(orch)
    report = orch.bottlenecks()
    assert report.loc[report["kind"] == "critical_path", "task"].tolist() == ["other"]
    assert orch.stats_frame().loc[0, "critical_path"] == "other"


def busy(seconds):
    """CPU-bound for ``seconds`` of this thread's CPU time."""
    import time

    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_cost_columns_and_totals(orch):
    def talk():
        print("first line")
        print("last line")
        busy(0.1)

    orch.create_task("talk", func=talk)
    orch.create_task("quiet", func=lambda: threading.Event().wait(0.1))
    run(orch)
    rows = orch.tasks_frame().set_index("name")
    assert rows.loc["talk", "last_line"] == "last line"
    assert pd.isna(rows.loc["quiet", "last_line"])
    assert rows.loc["talk", "cpu_time"] >= 0.09 and rows.loc["quiet", "cpu_time"] < 0.05
    assert rows["peak_memory"].isna().all()  # threads: not separable per task
    stats = orch.stats_frame().iloc[0]
    assert stats["cpu_time_total"] == pytest.approx(rows["cpu_time"].sum())
    assert 0 < stats["cores_busy"] <= 1.5
    assert pd.isna(stats["peak_memory_max"])


def test_cost_columns_on_processes(make_orch):
    orch = make_orch(1, executor="processes")
    orch.create_task("one", func=busy, parameters={"seconds": 0.05})
    run(orch)
    frame = orch.tasks_frame()
    is_uniform(frame, TASK_COLUMNS)
    row = frame.iloc[0]
    assert row["cpu_time"] >= 0.04
    if sys.platform.startswith("linux"):
        assert row["peak_memory"] > 1_000_000
        assert orch.stats_frame().loc[0, "peak_memory_max"] == row["peak_memory"]


def test_a_task_cancelled_while_waiting_for_its_retry_shows_what_it_ran(make_orch):
    """tasks_frame after a cancel during the retry delay: the attempt that ran (0.05 s)
    is its execution_time, and the retry that never started is not in ``retries``
    (``attempts == retries + 1``); the guide's manual retry recipe still runs it again."""
    import time

    from codomyrmex_nb import TaskStatus

    calls = []

    def body():
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.05)
            raise ConnectionError("first time")
        return "ok"

    orch = make_orch(1)
    task = orch.create_task("t", func=body, max_retries=3, retry_delay=30)
    waiting = when(orch, lambda ev: ev.task_id == task.id and ev.detail == "retry")
    orch.start_execution()
    assert waiting.wait(10)
    assert orch.tasks_frame().loc[0, "retries"] == 1  # scheduled: shown as up_for_retry
    assert orch.tasks_frame().loc[0, "state"] == "up_for_retry"
    assert orch.cancel_task(task.id)
    row = orch.tasks_frame().iloc[0]
    assert row["state"] == "cancelled" and row["attempts"] == 1 and row["retries"] == 0
    assert row["execution_time"] >= 0.04
    assert orch.get_task_result(task.id).execution_time == row["execution_time"]
    assert task.execution_time == row["execution_time"] and task.retry_count == 0
    assert orch.get_execution_stats()["retries"] == 0
    if task.can_retry():  # the guide's "Handle Task Failures" recipe
        task.status = TaskStatus.PENDING
        task.retry_count = 0
        orch.add_task(task)
    assert orch.wait_for_completion(10) and task.result.data == "ok" and len(calls) == 2
