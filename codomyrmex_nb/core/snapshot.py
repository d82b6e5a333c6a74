"""Immutable copies of the engine's state, for views and DataFrames.

``orchestrator.snapshot()`` copies everything a view or a frame needs under
the lock, in one pass, and hands back frozen records: drawing and analysis
then run without the lock and never see a half-updated engine. A snapshot
carries the scheduler's sequence number, so a view applies exactly the
events numbered after it.
``structure_version`` changes only when tasks are added, re-queued with new
edges or removed, so a view knows when its layout is stale.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from .model import Attempt, LazyData, TaskPriority, TaskStatus
from .trigger_rules import DEFAULT as DEFAULT_RULE

if TYPE_CHECKING:
    from .scheduler import Scheduler


class _TaskViewFields(NamedTuple):
    """One task as the snapshot saw it (a named tuple: built from the copied row for free)."""

    id: str
    name: str
    module: str
    action: str
    status: TaskStatus
    priority: TaskPriority
    dependencies: tuple[str, ...]
    tags: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]  # (key, mode)
    waiting_retry: bool
    blocked_on: str | None
    retry_count: int
    max_retries: int
    attempts: tuple[Attempt, ...]
    created_at: float
    queued_at: float | None
    ready_at: float | None
    started_at: float | None
    completed_at: float | None
    wait_dependencies: float
    wait_resources: float
    wait_worker: float
    execution_time: float | None
    success: bool | None
    data: Any
    error_type: str | None
    error_message: str | None
    worker: str | None
    wait_by_resource: tuple[tuple[str, float], ...] = ()  # (resource key, seconds waited)
    cpu_time: float | None = None  # CPU seconds over every attempt, where measured
    peak_memory: int | None = None  # the largest attempt's peak bytes, where measured
    last_line: str | None = None  # the last line the last attempt printed or logged
    restored: float | None = None  # when its result was recorded, if it came from the journal
    trigger_rule: str = DEFAULT_RULE  # when it runs, given how its upstream tasks ended
    map_tally: dict[str, int] | None = None  # a mapped task's items by state (pending included)
    parked: bool = False  # ready, but the code of an attempt given up on has not returned yet


_DATA = _TaskViewFields._fields.index("data")


class TaskView(_TaskViewFields):
    """One task as the snapshot saw it (a named tuple: built from the copied row for free).

    ``data`` of a result under the memory budget is read when the view is read (back
    from the journal if it was dropped): a snapshot never keeps a dropped value alive."""

    __slots__ = ()

    @property
    def data(self) -> Any:
        value = tuple.__getitem__(self, _DATA)
        return value.get() if value.__class__ is LazyData else value

    @property
    def state(self) -> str:
        """The display state: the status, or ``up_for_retry`` / ``upstream_failed`` refinements
        (a SKIPPED task is ``upstream_failed``, or ``skipped`` when it was not needed: its
        trigger rule did not fire)."""
        if self.waiting_retry:
            return "up_for_retry"
        if self.status is TaskStatus.SKIPPED:
            return "upstream_failed" if self.error_type == "UpstreamFailedError" else "skipped"
        return self.status.value


@dataclass(frozen=True, slots=True)
class Snapshot:
    tasks: tuple[TaskView, ...]
    structure_version: int
    time: float
    stats: dict[str, Any]
    running: bool
    max_workers: int
    seq: int = 0  # the scheduler's sequence number: events with a larger one came after
    #: when the engine last started (``time.time()``; None: never): a run the engine was
    #: stopped in ended with that stop, so the current run began at this start or later
    engine_started: float | None = None

    def by_id(self) -> dict[str, TaskView]:
        return {t.id: t for t in self.tasks}


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic collection while a bulk copy allocates: building 100,000 rows would
    otherwise trigger full collections that cost more than the copy itself."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_PRIORITY = {-p.value: p for p in TaskPriority}
_PRIORITY.update({-p.value - 0.5: p for p in TaskPriority})  # a reacting task's (records)
_ENDED = frozenset(s for s in TaskStatus if s.is_terminal)


def copy_rows(sched: Scheduler) -> list[tuple[Any, ...]]:
    """Under the engine lock: the raw fields of every task.

    Only plain tuples are built here, to keep the lock short; ``build_snapshot``
    turns them into TaskView records after the lock is released. Ended attempts
    are never changed again, so only the one in flight is copied, and an ended
    task's view is kept on its record until it changes again (the scheduler
    drops it on every transition), so a snapshot after a run costs O(1) per task.
    """
    rows: list[Any] = []
    append = rows.append
    make = tuple.__new__
    for rec in sched.records.values():
        view = rec.view
        if view is not None:  # ended and unchanged since the last snapshot
            append(view)
            continue
        t = rec.task
        r = rec.result
        attempts = tuple(rec.attempts)
        if attempts and attempts[-1].ended_at is None:
            attempts = (*attempts[:-1], attempts[-1].copy())
        row = (
            rec.id, rec.name, rec.module, rec.action, rec.status, _PRIORITY[rec.prio],
            tuple(u.id for u in rec.ups), tuple(t._tags) if t._tags else (), rec.claims,
            rec.retry_token is not None, rec.blocked_on, rec.retry_count, rec.max_retries, attempts,
            t.created_at, rec.queued_at, rec.ready_at, rec.started_at, rec.completed_at,
            rec.wait_dependencies, rec.wait_resources, rec.wait_worker,
            None if r is None else r.execution_time, None if r is None else r.success,
            None if r is None else r.snapshot_data(), None if r is None else r.error_type,
            None if r is None else r.error_message,
            attempts[-1].worker if attempts else None,
            tuple(rec.wait_by_resource.items()) if rec.wait_by_resource else (),
            *_costs(attempts), rec.restored, rec.rule or DEFAULT_RULE,
            None if rec.mapping is None else rec.mapping.tally(), rec.parked)
        if rec.status in _ENDED:
            row = rec.view = make(TaskView, row)
        append(row)
    return rows


def _costs(attempts: tuple[Attempt, ...]) -> tuple[float | None, int | None, str | None]:
    """CPU seconds (summed), peak memory (largest) and the last captured line of the attempts."""
    if not attempts or (attempts[-1].cpu_time is None and attempts[-1].logs is None
                        and len(attempts) == 1):
        return None, None, None
    cpus = [a.cpu_time for a in attempts if a.cpu_time is not None]
    peaks = [a.peak_memory for a in attempts if a.peak_memory is not None]
    logs = next((a.logs for a in reversed(attempts) if a.logs), None)
    last = logs.rstrip("\n").rsplit("\n", 1)[-1] if logs else None
    return (sum(cpus) if cpus else None), (max(peaks) if peaks else None), last


def build_snapshot(rows: list[tuple[Any, ...]], stats: dict[str, Any], structure_version: int,
                   running: bool, max_workers: int, seq: int = 0,
                   engine_started: float | None = None) -> Snapshot:
    make = tuple.__new__
    views = tuple([row if type(row) is TaskView else make(TaskView, row) for row in rows])
    return Snapshot(views, structure_version, time.time(),
                    stats, running, max_workers, seq, engine_started)


def run_seconds(view: TaskView, now: float) -> float:
    """Measured seconds a task kept its chain busy: its first attempt's start to its end (or now).

    Retries and their delays count (downstream tasks waited through them); a
    task that never started (pending, skipped, cancelled early) counts 0. A task
    that ended after one attempt counts its ``execution_time``, the figure every
    frame shows as its run time (the attempt's span adds the engine's own
    dispatch, a fraction of a millisecond on threads).
    """
    if view.started_at is None:
        return 0.0
    if (view.execution_time is not None and len(view.attempts) == 1
            and view.completed_at is not None
            and view.status in (TaskStatus.COMPLETED, TaskStatus.FAILED)):
        return max(0.0, view.execution_time)
    end = view.completed_at if view.completed_at is not None else now  # running or retrying
    return max(0.0, end - view.started_at)


def critical_path(snapshot: Snapshot) -> list[str]:
    """Ids on the longest chain of dependencies, weighted by measured run time.

    This is the chain that bounds the makespan: speeding up anything else
    cannot finish the run sooner. Tasks not started yet weigh a millisecond,
    so before a run the longest chain by count is shown; tasks that ended
    without running weigh nothing, so a skipped branch is never the path.
    """
    tasks = snapshot.by_id()
    best: dict[str, tuple[float, str | None]] = {}  # id -> (chain seconds ending here, previous)
    for tid in topological_order(tasks):
        view = tasks[tid]
        own = run_seconds(view, snapshot.time)
        if view.started_at is None and not view.status.is_terminal:
            own = 1e-3
        prev = max(((best[d][0], d) for d in view.dependencies if d in best), default=(0.0, None))
        best[tid] = (prev[0] + own, prev[1])
    if not best or max(seconds for seconds, _ in best.values()) <= 0:
        return []
    node: str | None = max(best, key=lambda k: best[k][0])
    path = []
    while node is not None:
        path.append(node)
        node = best[node][1]
    return path[::-1]


def topological_order(tasks: dict[str, TaskView]) -> list[str]:
    """Task ids with every task after its dependencies (Kahn's algorithm, no recursion)."""
    missing = {tid: sum(1 for d in v.dependencies if d in tasks) for tid, v in tasks.items()}
    down: dict[str, list[str]] = {}
    for tid, v in tasks.items():
        for d in v.dependencies:
            down.setdefault(d, []).append(tid)
    order = [tid for tid, n in missing.items() if n == 0]
    for tid in order:  # grows while we walk it
        for nxt in down.get(tid, ()):
            missing[nxt] -= 1
            if missing[nxt] == 0:
                order.append(nxt)
    return order
