"""A task's waits add up: from ready to start is its wait for resources plus its wait for a
worker, whichever order they came in (probe 2 of the analysis layer)."""

from __future__ import annotations

import threading

import pytest

from codomyrmex_nb import ResourceType, TaskPriority, TaskResource

HOLD = 0.3


def db() -> list[TaskResource]:
    return [TaskResource(ResourceType.CUSTOM, "db", mode="exclusive")]


def test_time_queued_for_a_worker_before_a_resource_wait_counts_as_worker_wait(make_orch):
    # two workers: "holder" takes db for 2 x HOLD, "busy" the other worker for HOLD.
    # "late" (db too) is ready at once but no worker is free until "busy" ends; then it
    # waits for db until "holder" ends. Its HOLD in the queue is a wait for a worker.
    orch = make_orch(2)
    gate = threading.Event()
    orch.create_task("holder", func=lambda: gate.wait(2 * HOLD), resources=db(),
                     priority=TaskPriority.CRITICAL)
    orch.create_task("busy", func=lambda: gate.wait(HOLD), priority=TaskPriority.HIGH)
    orch.create_task("late", func=lambda: "ok", resources=db(), priority=TaskPriority.LOW)
    orch.start_execution()
    assert orch.wait_for_completion(30)
    orch.stop_execution()
    late = orch.tasks_frame().set_index("name").loc["late"]
    ready_to_start = (late["started_at"] - late["ready_at"]).total_seconds()
    assert ready_to_start >= 1.8 * HOLD
    assert late["wait_resources"] + late["wait_worker"] == pytest.approx(ready_to_start, abs=0.05)
    assert late["wait_worker"] >= 0.8 * HOLD
    assert late["wait_resources"] >= 0.8 * HOLD


def burn(item: int, seconds: float = 0.08) -> int:
    """CPU-bound for ``seconds`` of this thread's CPU time."""
    import time

    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
    return item


def test_a_mapped_task_costs_what_its_items_cost(make_orch):
    # the map's row in tasks_frame() and the run's totals in stats_frame() count the CPU
    # its items burned: a CPU-heavy map read 0.0001 s and cores_busy 0.0003
    orch = make_orch(2)
    orch.create_task("crunch", func=burn, map={"item": list(range(4))})
    orch.create_task("plain", func=burn, parameters={"item": 9})
    orch.start_execution()
    assert orch.wait_for_completion(60)
    orch.stop_execution()
    items = orch.tasks_frame(items=True)
    assert (items["cpu_time"] >= 0.07).all()
    rows = orch.tasks_frame().set_index("name")
    assert rows.loc["crunch", "cpu_time"] >= items["cpu_time"].sum()
    assert rows.loc["crunch", "cpu_time"] > rows.loc["plain", "cpu_time"]
    stats = orch.stats_frame().iloc[0]
    assert stats["cpu_time_total"] == pytest.approx(rows["cpu_time"].sum())
    assert stats["cpu_time_total"] >= 0.07 * 5
    assert stats["cores_busy"] >= 0.3
    # a bare snapshot does not know the items: the map counts its own attempts only
    from codomyrmex_nb.analysis.frames import tasks_frame

    bare = tasks_frame(orch.snapshot()).set_index("name")
    assert bare.loc["crunch", "cpu_time"] < 0.05


def test_critical_path_says_a_retried_task_waited_in_all_not_that_it_started_late(make_orch):
    # "retried" is ready at once and starts at once; its retry then waits for db, held by
    # "holder": the wait is its retry's, not a late start
    orch = make_orch(2)
    gate = threading.Event()
    calls = {"n": 0}

    def retried() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            gate.wait(0.05)
            raise ConnectionError("first attempt fails")
        return "ok"

    orch.create_task("retried", func=retried, resources=db(), max_retries=1,
                     priority=TaskPriority.CRITICAL)
    orch.create_task("holder", func=lambda: gate.wait(HOLD), resources=db())
    orch.start_execution()
    assert orch.wait_for_completion(30)
    orch.stop_execution()
    row = orch.tasks_frame().set_index("name").loc["retried"]
    assert (row["started_at"] - row["ready_at"]).total_seconds() < HOLD / 3
    assert row["wait_resources"] >= 0.8 * HOLD
    path = orch.bottlenecks().query("kind == 'critical_path'").set_index("task")
    detail = path.loc["retried", "detail"]
    assert "after it was ready" not in detail
    assert f"waited {row['wait_resources'] + row['wait_worker']:.2f} s in all" in detail


def test_a_task_cancelled_while_it_waited_for_a_resource_keeps_that_wait(make_orch):
    orch = make_orch(2)
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(30)

    orch.create_task("holder", func=hold, resources=db())
    orch.start_execution()
    assert started.wait(10)
    waiter = orch.create_task("waiter", func=lambda: "ok", resources=db())
    threading.Event().wait(HOLD)
    assert orch.cancel_task(waiter.id)
    release.set()
    orch.wait_for_completion(30)
    orch.stop_execution()
    row = orch.tasks_frame().set_index("name").loc["waiter"]
    assert row["state"] == "cancelled"
    assert row["wait_resources"] >= 0.8 * HOLD  # was 0: the wait was dropped with the cancel
    waits = orch.bottlenecks().query("kind == 'resource_wait'")
    assert waits["task"].tolist() == ["waiter"]
    assert waits.iloc[0]["resource"] == "custom:db" and "holder" in waits.iloc[0]["detail"]
