"""Helpers shared by the frames, the bottleneck report and the timeline (no pandas here).

All of them read a frozen ``Snapshot``; none touches the engine.
"""

from __future__ import annotations

from typing import Any

from ..core.model import Attempt, TaskStatus
from ..core.snapshot import Snapshot, TaskView, critical_path, run_seconds


def as_snapshot(source: Any) -> Snapshot:
    """Accept an orchestrator (take one snapshot now) or a snapshot already taken."""
    if isinstance(source, Snapshot):
        return source
    snapshot = getattr(source, "snapshot", None)
    if snapshot is None:
        raise TypeError(f"expected a TaskOrchestrator or a Snapshot, got {source!r}")
    return snapshot()


def item_views(source: Any) -> list[Any]:
    """The items of every mapped task (``core.item_views``), or none from a bare snapshot."""
    copy = getattr(source, "item_views", None)
    return [] if copy is None or isinstance(source, Snapshot) else copy()


def map_costs(source: Any) -> dict[str, tuple[float | None, int | None]]:
    """Per mapped task id, its items' CPU seconds and largest peak memory
    (``core.item_views.item_costs``); none from a bare snapshot, which does not hold items."""
    costs = getattr(source, "item_costs", None)
    return {} if costs is None or isinstance(source, Snapshot) else costs()


def with_items(own: Any, items: Any, combine: Any) -> Any:
    """A task's own figure combined with its items' (either may be None: not measured)."""
    if items is None:
        return own
    return items if own is None else combine(own, items)


def item_attempts(items: list[Any], limit: int) -> tuple[list[tuple[Any, Attempt]], int]:
    """(item, attempt) pairs of the items' started attempts, the ``limit`` longest kept in
    start order; and how many were left out."""
    pairs = [(v, a) for v in items for a in v.attempts if a.started_at is not None]
    if len(pairs) <= limit:
        return pairs, 0
    now = max(attempt_end(a, a.started_at) for _, a in pairs)
    kept = sorted(pairs, key=lambda p: attempt_end(p[1], now) - p[1].started_at,
                  reverse=True)[:limit]
    kept.sort(key=lambda p: p[1].started_at)
    return kept, len(pairs) - limit


def critical_steps(snap: Snapshot) -> list[tuple[TaskView, float]]:
    """The critical path as (task, measured seconds) pairs; empty until a task started.

    The path is core's ``critical_path`` (the one the live view outlines):
    only measured time counts, so a skipped branch is never the bottleneck.
    """
    views = snap.by_id()
    steps = [(views[i], run_seconds(views[i], snap.time)) for i in critical_path(snap)]
    return steps if any(seconds > 0 for _, seconds in steps) else []


def attempt_end(attempt: Attempt, now: float) -> float:
    """When the attempt ended, or ``now`` while it still runs."""
    return attempt.ended_at if attempt.ended_at is not None else now


def wait_windows(view: TaskView, now: float) -> list[tuple[float, float]]:
    """Intervals in which the task was ready but not running (its resource waits lie inside).

    Before the first attempt: from ``ready_at``; before a retry: from the previous
    attempt's end; a task cancelled before its next attempt, up to its cancel. An attempt
    without a worker is a wait that timed out.
    """
    windows: list[tuple[float, float]] = []
    since = view.ready_at
    for attempt in view.attempts:
        if attempt.started_at is None:
            continue
        if attempt.worker is None:  # "resource-timeout": the whole attempt was a wait
            windows.append((attempt.started_at, attempt_end(attempt, now)))
        elif since is not None and attempt.started_at > since:
            windows.append((since, attempt.started_at))
        since = attempt_end(attempt, now)
    if waiting_now(view) and since is not None:
        windows.append((since, now))
    elif view.status is TaskStatus.CANCELLED and since is not None \
            and view.completed_at is not None and view.completed_at > since:
        windows.append((since, view.completed_at))  # cancelled while it waited to run
    return windows


def waiting_now(view: TaskView) -> bool:
    """True while the task is queued for a resource (``blocked_on`` can outlive the wait)."""
    return view.blocked_on is not None and view.status is TaskStatus.READY


def _conflicts(a: str, b: str) -> bool:
    return not (a == "read" and b == "read")


def waited_on(view: TaskView, snap: Snapshot) -> tuple[str | None, list[str]]:
    """The resource key this task most likely waited for, and who held it meanwhile.

    ``blocked_on`` names it while the task waits; afterwards the engine's
    per-resource wait record does. Who held it is inferred: the tasks that
    held it (in a conflicting mode) during the task's waits, longest first.
    """
    if not view.resources:
        return None, []
    windows = wait_windows(view, snap.time)
    held: dict[str, dict[str, float]] = {}  # key -> holder name -> overlap seconds
    for key, mode in view.resources:
        for other in snap.tasks:
            if other.id == view.id:
                continue
            for okey, omode in other.resources:
                if okey != key or not _conflicts(mode, omode):
                    continue
                for a in other.attempts:
                    if a.worker is None or a.started_at is None:
                        continue
                    end = attempt_end(a, snap.time)
                    overlap = sum(max(0.0, min(end, w1) - max(a.started_at, w0))
                                  for w0, w1 in windows)
                    if overlap > 0:
                        by_holder = held.setdefault(key, {})
                        by_holder[other.name] = by_holder.get(other.name, 0.0) + overlap
    if view.blocked_on is not None:  # waiting now
        key = view.blocked_on
    elif view.wait_by_resource:
        key = max(view.wait_by_resource, key=lambda pair: pair[1])[0]
    elif held:
        key = max(held, key=lambda k: sum(held[k].values()))
    else:
        key = view.resources[0][0] if len(view.resources) == 1 else None
    holders = held.get(key, {}) if key is not None else {}
    return key, sorted(holders, key=holders.__getitem__, reverse=True)
