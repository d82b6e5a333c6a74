"""Property-based stress: random DAGs with priorities, resources, failures, retries and cancels.

Each task checks, at the moment it starts, the engine's invariants from inside:
its upstream tasks have all completed, and no resource it holds has another
sole holder (or more writers than its capacity). After the run every task is
terminal, skips are explained by an upstream that did not succeed, and the
statistics add up.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codomyrmex_nb import ResourceType, Task, TaskOrchestrator, TaskResource, TaskStatus

KEYS = ["db", "cache", "gpu"]
POOL = "api"  # a pool with capacity 2
MODES = ["read", "write", "exclusive"]


@st.composite
def workloads(draw):
    n = draw(st.integers(min_value=20, max_value=250))
    specs = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        res = draw(st.lists(st.tuples(st.sampled_from(KEYS + [POOL]), st.sampled_from(MODES)),
                            max_size=2))
        specs.append({
            "deps": deps,
            "priority": draw(st.sampled_from(["low", "normal", "high", "critical"])),
            "resources": res,
            "fail_times": draw(st.sampled_from([0, 0, 0, 0, 1, 2, 9])),
            "retries": draw(st.sampled_from([0, 0, 1, 2])),
        })
    cancels = draw(st.lists(st.integers(0, n - 1), max_size=3, unique=True))
    workers = draw(st.integers(1, 6))
    return specs, cancels, workers


class Monitor:
    """Records violations seen from inside the tasks."""

    def __init__(self, capacity):
        self.lock = threading.Lock()
        self.readers = defaultdict(int)
        self.writers = defaultdict(int)
        self.exclusive = defaultdict(int)
        self.capacity = capacity
        self.violations: list[str] = []

    def enter(self, task, upstream):
        with self.lock:
            for up in upstream:
                if up.status is not TaskStatus.COMPLETED:
                    self.violations.append(f"{task.name} started before {up.name} completed")
            for res in task.resources:
                k = res.key
                if res.mode == "read" and (self.writers[k] or self.exclusive[k]):
                    self.violations.append(f"{task.name} reads {k} while it is held solely")
                if res.mode == "write" and (self.readers[k] or self.exclusive[k]
                                            or self.writers[k] >= self.capacity.get(k, 1)):
                    self.violations.append(f"{task.name} writes {k} while held")
                if res.mode == "exclusive" and (self.readers[k] or self.writers[k] or self.exclusive[k]):
                    self.violations.append(f"{task.name} takes {k} exclusively while held")
            for res in task.resources:
                {"read": self.readers, "write": self.writers, "exclusive": self.exclusive}[res.mode][res.key] += 1

    def leave(self, task):
        with self.lock:
            for res in task.resources:
                {"read": self.readers, "write": self.writers, "exclusive": self.exclusive}[res.mode][res.key] -= 1


def build(specs, monitor):
    tasks: list[Task] = []
    for i, spec in enumerate(specs):
        resources, seen = [], set()
        for key, mode in spec["resources"]:
            if key in seen:
                continue
            seen.add(key)
            cap = 2 if key == POOL else None
            resources.append(TaskResource(ResourceType.CUSTOM, key, mode, capacity=cap))
        task = Task(name=f"t{i}", dependencies=[tasks[d] for d in spec["deps"]],
                    priority=spec["priority"], resources=resources, max_retries=spec["retries"])
        failures = [spec["fail_times"]]
        upstream = [tasks[d] for d in spec["deps"]]

        def run(task=task, upstream=upstream, failures=failures):
            monitor.enter(task, upstream)
            try:
                threading.Event().wait(0.0005)
                if failures[0] > 0:
                    failures[0] -= 1
                    raise RuntimeError(f"{task.name} failed on purpose")
                return task.name
            finally:
                monitor.leave(task)

        task.func = run
        tasks.append(task)
    # The resource check needs the engine's names for the resources (type:identifier).
    return tasks


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_random_workloads_keep_every_invariant(workload):
    specs, cancels, workers = workload
    monitor = Monitor({f"custom:{POOL}": 2})
    tasks = build(specs, monitor)
    orch = TaskOrchestrator(max_workers=workers)
    try:
        orch.add_tasks(list(reversed(tasks)))  # any order
        orch.start_execution()
        for i in cancels:
            orch.cancel_task(tasks[i].id)
        orch.wait_for_completion(timeout=60)
        stats = orch.get_execution_stats()
    finally:
        orch.stop_execution()

    assert monitor.violations == []
    assert all(t.status.is_terminal for t in tasks), [t for t in tasks if not t.status.is_terminal]
    by_id = {t.id: t for t in tasks}
    for t in tasks:
        ups = [by_id[d] for d in t.dependencies]
        if t.status is TaskStatus.COMPLETED:
            assert all(u.status is TaskStatus.COMPLETED for u in ups)
            assert all(t.attempts[-1].started_at >= u.attempts[-1].ended_at for u in ups)
        if t.status is TaskStatus.SKIPPED:
            assert any(u.status is not TaskStatus.COMPLETED for u in ups)
            assert not t.attempts
        if t.status is TaskStatus.FAILED:
            assert t.retry_count == t.max_retries
            assert len(t.attempts) == t.max_retries + 1
    counted = sum(stats[k] for k in ("pending", "running", "completed", "failed", "cancelled", "skipped"))
    assert counted == stats["total_tasks"] == len(tasks)
    assert stats["pending"] == stats["running"] == 0
    assert stats["completed"] == sum(t.status is TaskStatus.COMPLETED for t in tasks)
