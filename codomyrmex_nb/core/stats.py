"""The execution-statistics snapshot, computed under the engine lock in one pass.

``pending`` counts every task not started yet: waiting for dependencies,
ready (queued for resources or a worker) and waiting to retry; ``ready`` is
the subset queued for a worker. So ``pending == running == 0`` means all work
has ended. Times are in seconds; ``makespan`` runs from the first attempt's
start to the last task's end (or now, while work remains).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .model import TaskStatus

if TYPE_CHECKING:
    from .engine import Engine

S = TaskStatus


def execution_stats(engine: Engine) -> dict[str, Any]:
    """Counts by state plus timings; call with the engine's lock held."""
    c = engine._counts
    tasks = engine._graph.tasks.values()
    run_times = [t.result.execution_time for t in tasks
                 if t.result is not None and t.status in (S.COMPLETED, S.FAILED) and t.attempts]
    busy = sum(a.ended_at - a.started_at for t in tasks for a in t.attempts
               if a.worker is not None and a.ended_at is not None and a.started_at is not None)
    now = time.time()
    busy += sum(now - r.attempt.started_at for r in engine._runs.values() if r.attempt is not None)
    start = engine._first_start
    unfinished = engine._unfinished()
    end = now if unfinished or engine._last_end is None else engine._last_end
    makespan = max(0.0, end - start) if start is not None else 0.0
    finished = c[S.COMPLETED] + c[S.FAILED]
    total = sum(run_times)
    return {
        "total_tasks": len(engine._graph.tasks),
        "pending": c[S.PENDING] + c[S.READY],
        "ready": c[S.READY],
        "waiting_retry": sum(1 for t in tasks if t.retry_at is not None and t.status is S.PENDING),
        "waiting_resources": len(engine._resource_waits),
        "running": c[S.RUNNING],
        "completed": c[S.COMPLETED],
        "failed": c[S.FAILED],
        "cancelled": c[S.CANCELLED],
        "skipped": c[S.SKIPPED],
        "retries": sum(t.retry_count for t in tasks),
        "total_execution_time": total,
        "average_execution_time": total / len(run_times) if run_times else 0.0,
        "makespan": makespan,
        "throughput": finished / makespan if makespan > 0 else 0.0,
        "worker_utilization": min(1.0, busy / (makespan * engine.max_workers)) if makespan > 0 else 0.0,
        "max_workers": engine.max_workers,
        "is_running": engine._running,
    }
