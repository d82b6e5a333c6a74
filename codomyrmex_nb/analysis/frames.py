"""Tasks, results and statistics as pandas DataFrames, from one snapshot each.

dtypes are chosen for analysis: ``state`` and ``priority`` are categoricals
(priority ordered low < normal < high < critical, so ``sort_values`` and
comparisons work), timestamps are timezone-aware UTC datetimes, durations are
float seconds, and lists (tags, dependencies, resources) and result data stay
Python objects. An empty orchestrator gives empty frames with the same columns.

A skipped task's ``state`` says why: ``upstream_failed`` (a task above it failed)
or ``skipped`` (not needed: its trigger rule did not fire, ``error_type``
``NotNeededError``); ``trigger_rule`` is each task's rule (``all_success`` by default).

What a task cost: ``cpu_time`` is the CPU seconds of all its attempts (each
attempt's own thread on threads and Dask, its worker process on processes);
``peak_memory`` the largest attempt's peak resident bytes where the executor
can measure one attempt (processes on Linux; a nullable integer, missing on
threads and Dask, where tasks share one heap); ``last_line`` the last line the
task's latest attempt printed or logged (``result.logs`` has it all).

Mapped tasks (``create_task(..., map=...)``): ``tasks_frame()`` keeps one row per
task, with ``items`` (how many), ``items_ok`` (completed) and ``items_failed``
(failed or cancelled: what counts against ``tolerate``), nullable integers that are
missing (<NA>) for a plain task; the mapped task's ``attempts`` are its own (the
expansion), while its ``cpu_time`` and ``peak_memory`` cover its items too (what the
map cost; from a bare snapshot, which holds no items, its own only); its items' are in
``tasks_frame(items=True)``: one row per item, with
its task, ``map_index``, state, attempts, times, CPU seconds and error.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import pandas as pd

from ..core.model import TaskPriority
from ..core.snapshot import paused_gc
from ..palette import STATES
from ._common import as_snapshot, critical_steps, map_costs, with_items
from .bottlenecks import STR, bottlenecks
from .preview_frame import PreviewFrame
from .task_frame import TasksFrame

__all__ = ["bottlenecks", "results_frame", "stats_frame", "tasks_frame",
           "TASK_COLUMNS", "RESULT_COLUMNS", "ITEM_COLUMNS"]

STATE_DTYPE = pd.CategoricalDtype(list(STATES))
PRIORITY_DTYPE = pd.CategoricalDtype([p.name.lower() for p in TaskPriority], ordered=True)
TIMESTAMPS = ("created_at", "queued_at", "ready_at", "started_at", "completed_at")

TASK_COLUMNS: dict[str, Any] = {
    "name": STR, "id": STR, "module": STR, "action": STR, "tags": object,
    "state": STATE_DTYPE, "priority": PRIORITY_DTYPE, "priority_value": "int64",
    "dependencies": object, "resources": object, "attempts": "int64", "retries": "int64",
    **dict.fromkeys(TIMESTAMPS, "datetime"),
    "wait_dependencies": "float64", "wait_resources": "float64", "wait_worker": "float64",
    "execution_time": "float64", "success": "boolean", "error_type": STR,
    "error_message": STR, "worker": STR, "blocked_on": STR,
    "cpu_time": "float64", "peak_memory": "Int64", "last_line": STR,
    "restored": "bool",  # its result came back from the run journal (it did not run)
    "trigger_rule": STR,  # when it runs given how its upstream ended (all_success: default)
    "items": "Int64", "items_ok": "Int64", "items_failed": "Int64",  # mapped tasks only
}
ITEM_COLUMNS: dict[str, Any] = {
    "task": STR, "map_index": "int64", "name": STR, "id": STR, "task_id": STR,
    "state": STATE_DTYPE, "attempts": "int64", "retries": "int64",
    "queued_at": "datetime", "started_at": "datetime", "completed_at": "datetime",
    "execution_time": "float64", "cpu_time": "float64", "wait_resources": "float64",
    "wait_worker": "float64", "success": "boolean", "error_type": STR, "error_message": STR,
    "worker": STR, "peak_memory": "Int64", "restored": "bool",
}
_BAD_ITEMS = ("failed", "cancelled")
RESULT_COLUMNS: dict[str, Any] = {
    "id": STR, "name": STR, "state": STATE_DTYPE, "success": "bool", "data": object,
    "execution_time": "float64", "attempts": "int64", "error_type": STR,
    "error_message": STR, "worker": STR, "completed_at": "datetime", "restored": "bool",
}


def _frame(columns: dict[str, Any], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Build a frame from row dicts, column by column, so every dtype is fixed even with no rows."""
    return _frame_from_columns(columns, {name: [row[name] for row in rows] for name in columns})


def _frame_from_columns(columns: dict[str, Any], data: dict[str, list[Any]]) -> pd.DataFrame:
    """Build a frame from one list per column (the fast path: no dict per row)."""
    out = {}
    for name, dtype in columns.items():
        values = data[name]
        if dtype == "datetime":
            seconds = np.array([np.nan if v is None else v for v in values], dtype="float64")
            out[name] = pd.to_datetime(pd.Series(seconds), unit="s", utc=True)
        elif dtype is object:
            cells = np.empty(len(values), dtype=object)
            for i, value in enumerate(values):  # one by one: lists and dicts stay whole
                cells[i] = value
            out[name] = pd.Series(cells, dtype=object)
        else:
            out[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(out, columns=list(columns))


def tasks_frame(orch: Any, items: bool = False) -> pd.DataFrame:
    """One row per task (in the order added): what it is, when it ran and what it waited for.

    ``items=True``: one row per item of every mapped task instead (``items_frame``).

    ``name`` first; times are float seconds (NaN until known), counts integers. In a
    notebook the frame (a ``TasksFrame``) displays without its columns that are empty in
    every row and with units; the data itself is whole.

    ``wait_dependencies`` runs from (re-)queueing to ready, ``wait_resources``
    and ``wait_worker`` split the time from ready to start between a held
    resource and a full worker pool. Built column by column from the snapshot
    (100,000 tasks in well under a second).
    """
    if items:
        return items_frame(orch)
    snap = as_snapshot(orch)
    costs = map_costs(orch)
    with paused_gc():
        return _tasks_frame(snap.tasks, costs)


def items_frame(orch: Any) -> pd.DataFrame:
    """One row per item of every mapped task (tasks in the order added, items by
    ``map_index``); an item never dispatched is ``pending`` (or ``cancelled`` /
    ``skipped`` once its map closed) with no attempts."""
    copy = getattr(orch, "item_views", None)
    if copy is None:
        raise TypeError("tasks_frame(items=True) reads the items from the orchestrator, not a "
                        "snapshot: pass the TaskOrchestrator")
    with paused_gc():
        views = copy()
        nan = np.nan
        data: dict[str, list[Any]] = {
            "task": [v.task for v in views], "map_index": [v.map_index for v in views],
            "name": [v.name for v in views], "id": [v.id for v in views],
            "task_id": [v.task_id for v in views], "state": [v.state for v in views],
            "attempts": [len(v.attempts) for v in views],
            "retries": [v.retry_count for v in views],
            "execution_time": [nan if v.execution_time is None else v.execution_time
                               for v in views],
            "cpu_time": [nan if v.cpu_time is None else v.cpu_time for v in views],
            "wait_resources": [v.wait_resources for v in views],
            "wait_worker": [v.wait_worker for v in views],
            "success": [v.success for v in views], "error_type": [v.error_type for v in views],
            "error_message": [v.error_message for v in views],
            "worker": [v.worker for v in views], "peak_memory": [v.peak_memory for v in views],
            "restored": [v.restored is not None for v in views],
        }
        for ts in ("queued_at", "started_at", "completed_at"):
            data[ts] = [getattr(v, ts) for v in views]
        return TasksFrame(_frame_from_columns(ITEM_COLUMNS, data))


def _item_counts(tally: dict[str, int] | None) -> tuple[Any, Any, Any]:
    if tally is None:
        return None, None, None
    return (sum(tally.values()), tally.get("completed", 0),
            sum(tally.get(s, 0) for s in _BAD_ITEMS))


def _tasks_frame(views: Any, costs: dict[str, tuple[Any, Any]] | None = None) -> pd.DataFrame:
    names = {v.id: v.name for v in views}
    nan = np.nan
    cpu, peak = _costs(views, costs or {})
    data: dict[str, list[Any]] = {
        "id": [v.id for v in views], "name": [v.name for v in views],
        "module": [v.module for v in views], "action": [v.action for v in views],
        "tags": [list(v.tags) for v in views], "state": [v.state for v in views],
        "priority": [_PRIORITY_NAMES[v.priority] for v in views],
        "priority_value": [v.priority.value for v in views],
        "dependencies": [[names.get(d, d) for d in v.dependencies] for v in views],
        "resources": [[f"{key}:{mode}" for key, mode in v.resources] for v in views],
        "attempts": [len(v.attempts) for v in views],
        "retries": [v.retry_count for v in views],
        "wait_dependencies": [v.wait_dependencies for v in views],
        "wait_resources": [v.wait_resources for v in views],
        "wait_worker": [v.wait_worker for v in views],
        "execution_time": [nan if v.execution_time is None else v.execution_time for v in views],
        "success": [v.success for v in views], "error_type": [v.error_type for v in views],
        "error_message": [v.error_message for v in views], "worker": [v.worker for v in views],
        "blocked_on": [v.blocked_on for v in views],
        "cpu_time": [nan if c is None else c for c in cpu],
        "peak_memory": peak, "last_line": [v.last_line for v in views],
    }
    for ts in TIMESTAMPS:
        data[ts] = [getattr(v, ts) for v in views]
    data["restored"] = [v.restored is not None for v in views]
    data["trigger_rule"] = [v.trigger_rule for v in views]
    counts = [_item_counts(v.map_tally) for v in views]
    for i, column in enumerate(("items", "items_ok", "items_failed")):
        data[column] = [c[i] for c in counts]
    return TasksFrame(_frame_from_columns(TASK_COLUMNS, data))


_PRIORITY_NAMES = {p: p.name.lower() for p in TaskPriority}


def _costs(views: Any, costs: dict[str, tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    """Each task's CPU seconds and peak memory: its attempts', and a mapped task's items'."""
    cpu = [v.cpu_time for v in views]
    peak = [v.peak_memory for v in views]
    if costs:
        for i, v in enumerate(views):
            if v.id in costs:
                items_cpu, items_peak = costs[v.id]
                cpu[i] = with_items(cpu[i], items_cpu, operator.add)
                peak[i] = with_items(peak[i], items_peak, max)
    return cpu, peak


def results_frame(orch: Any) -> pd.DataFrame:
    """One row per task that has a result (completed, failed, cancelled or skipped).

    ``data`` holds each result as the very object the task returned; the frame
    (a ``PreviewFrame``) displays each as a preview bounded in time and size,
    so a result whose ``__repr__`` hangs or raises cannot break the table.
    """
    snap = as_snapshot(orch)
    with paused_gc():
        return _results_frame(snap.tasks)


def _results_frame(views: Any) -> pd.DataFrame:
    rows = [{
        "id": v.id, "name": v.name, "state": v.state, "success": bool(v.success), "data": v.data,
        "execution_time": v.execution_time, "attempts": len(v.attempts),
        "error_type": v.error_type, "error_message": v.error_message, "worker": v.worker,
        "completed_at": v.completed_at, "restored": v.restored is not None,
    } for v in views if v.success is not None]
    return PreviewFrame(_frame(RESULT_COLUMNS, rows))


def stats_frame(orch: Any) -> pd.DataFrame:
    """``get_execution_stats()`` as one row, plus the critical path, the waits and the cost.

    ``critical_path_seconds`` is the run time of the longest dependency chain:
    the makespan can never drop below it, however many workers there are.
    ``cpu_time_total`` sums the tasks' CPU seconds, mapped tasks' items included (NaN
    when none was measured)
    and ``cores_busy`` divides it by the makespan: how many cores the run kept
    busy on average (about 1 at most for Python code on threads).
    ``peak_memory_max`` is the largest attempt's peak bytes, where measured.
    """
    snap = as_snapshot(orch)
    cpu_times, peak_memories = _costs(snap.tasks, map_costs(orch))
    stats = dict(snap.stats)
    for key in ("makespan", "throughput", "worker_utilization"):
        stats.setdefault(key, np.nan)
    steps = critical_steps(snap)
    stats["critical_path_seconds"] = float(sum(seconds for _, seconds in steps))
    stats["critical_path_tasks"] = len(steps)
    stats["critical_path"] = " -> ".join(v.name for v, _ in steps)
    for wait in ("wait_dependencies", "wait_resources", "wait_worker"):
        stats[f"{wait}_total"] = float(sum(getattr(v, wait) for v in snap.tasks))
    cpus = [c for c in cpu_times if c is not None]
    stats["cpu_time_total"] = float(sum(cpus)) if cpus else np.nan
    makespan = stats["makespan"]
    stats["cores_busy"] = stats["cpu_time_total"] / makespan \
        if cpus and isinstance(makespan, int | float) and makespan > 0 else np.nan
    peaks = [p for p in peak_memories if p is not None]
    stats["peak_memory_max"] = max(peaks) if peaks else None
    frame = pd.DataFrame([stats])
    frame["peak_memory_max"] = frame["peak_memory_max"].astype("Int64")
    frame["critical_path"] = frame["critical_path"].astype(STR)
    return frame
