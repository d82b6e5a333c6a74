"""``TaskOrchestrator``: the guide's API on top of the engine.

Definitions are validated whole before anything changes (unknown or ambiguous
dependencies, cycles, resource capacities), so a bad batch leaves no trace.
Re-adding a known task that has ended re-queues it together with everything
downstream of it (their inputs are about to change); a task still pending,
ready or running is left alone. Tasks may be added while the engine runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .engine import Engine
from .events import Event
from .exceptions import TaskCancelledError
from .executors import Executor, make_executor
from .model import Attempt, Task, TaskPriority, TaskResource, TaskResult, TaskStatus
from .snapshot import Snapshot, build_snapshot, copy_rows
from .stats import execution_stats

S = TaskStatus


def default_workers() -> int:
    return max(4, os.cpu_count() or 1)


class TaskOrchestrator(Engine):
    """Runs tasks by dependency, priority and resources on a pool of workers."""

    def __init__(self, max_workers: int | None = None, executor: str | Executor = "threads",
                 client: Any = None, address: str | None = None) -> None:
        workers = default_workers() if max_workers is None else max_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"max_workers must be a whole number >= 1, got {max_workers!r}")
        built = make_executor(executor, client=client, address=address) \
            if isinstance(executor, str) else executor
        super().__init__(workers, built)
        self.structure_version = 0

    def __repr__(self) -> str:
        with self._lock:
            c = self._counts
            return (f"<TaskOrchestrator {self.executor_name} x{self.max_workers} "
                    f"{'running' if self._running else 'stopped'}: {len(self._graph.tasks)} tasks, "
                    f"{c[S.COMPLETED]} completed, {c[S.FAILED]} failed>")

    # -- defining tasks -----------------------------------------------------------------
    def add_task(self, task: Task) -> str:
        """Add (or re-queue) one task; returns its id."""
        return self.add_tasks([task])[0]

    def add_tasks(self, tasks: Iterable[Task]) -> list[str]:
        """Add a batch in any order; all or nothing."""
        batch = list(tasks)
        for t in batch:
            if not isinstance(t, Task):
                raise ValueError(f"add_tasks expects Task objects, got {t!r}; build one with Task(...)")
        if len({id(t) for t in batch}) != len({t.id for t in batch}):
            raise ValueError("two different Task objects in the batch share an id")
        batch = list({t.id: t for t in batch}.values())
        with self._lock:
            graph = self._graph
            for t in batch:
                known = graph.tasks.get(t.id)
                if known is not None and known is not t:
                    raise ValueError(f"task id {t.id} is already used by {known!r}")
                for res in t.resources:
                    self._resources.check_capacity(res)
            resolved = graph.resolve(batch)
            for t in batch:  # refuse before changing anything
                state = self._state_of(t)
                if state in (S.READY, S.RUNNING) and resolved[t.id] != graph.upstream.get(t.id):
                    raise ValueError(f"task {t.name!r} is already {state.value}; cancel it before "
                                     "changing its dependencies")
            for t in batch:
                for res in t.resources:
                    if res.capacity is not None:
                        self._resources.set_capacity(res.key, res.capacity)
            self._insert(batch, resolved)
        return [t.id for t in batch]

    def _state_of(self, task: Task) -> TaskStatus | None:
        known = self._graph.tasks.get(task.id)
        return None if known is None else self._state[task.id]

    def _insert(self, batch: list[Task], resolved: dict[str, tuple[str, ...]]) -> None:
        graph, fresh = self._graph, []
        for t in _topological(batch, resolved):
            state = self._state_of(t)
            if state is None:
                self._counts[S.PENDING] += 1
                self._state[t.id] = S.PENDING
                t.status = S.PENDING
                graph.insert(t, resolved[t.id])
                fresh.append(t)
                self._publish_added(t)
            elif state.is_terminal:
                graph.insert(t, resolved[t.id])
                fresh.extend(self._requeue_with_downstream(t))
            elif state is S.PENDING and t.retry_at is None:
                graph.insert(t, resolved[t.id])
                fresh.append(t)
        self.structure_version += 1
        now = time.time()
        for t in fresh:
            t.queued_at = now
            self._settle(t)

    def _requeue_with_downstream(self, task: Task) -> list[Task]:
        graph = self._graph
        chain = [task] + [graph.tasks[i] for i in graph.descendants(task.id)]
        requeued = []
        for t in chain:
            state = self._state[t.id]
            if state is S.RUNNING:
                run = self._runs.get(t.id)
                if run is not None:
                    self._abandon(run, "interrupted", TaskCancelledError("re-queued"))
            elif not state.is_terminal:
                self._withdraw(t)
            if t is not task:
                t.retry_count = 0  # a fresh run downstream gets its full retry budget
            t.result = None
            t.ready_at = t.started_at = t.completed_at = None
            t.wait_dependencies = t.wait_resources = t.wait_worker = 0.0
            t.wait_by_resource = {}
            self._set_status(t, S.PENDING, "requeued")
            requeued.append(t)
        return requeued

    def _settle(self, task: Task) -> None:
        """Decide where a newly (re-)queued PENDING task goes: skipped, waiting, or ready."""
        graph = self._graph
        if not graph.upstream[task.id]:
            self._make_ready(task)
            return
        blocked = graph.blocked_by(task.id)
        if blocked:
            self._skip_one(task, graph.tasks[blocked[0]])
        elif graph.count_unmet(task.id) == 0:
            self._make_ready(task)

    def _publish_added(self, task: Task) -> None:
        if self._events.active:
            self._events.publish(Event("added", task.id, task.name, task.status))

    def create_task(self, name: str, module: str = "", action: str = "",
                    parameters: dict[str, Any] | None = None,
                    dependencies: list[str | Task] | None = None,
                    priority: TaskPriority | str = TaskPriority.NORMAL,
                    resources: list[TaskResource] | None = None, timeout: float | None = None,
                    max_retries: int = 0, retry_delay: float = 0.0, retry_backoff: float = 1.0,
                    retry_jitter: float = 0.0, tags: list[str] | None = None,
                    metadata: dict[str, Any] | None = None,
                    func: Callable[..., Any] | None = None) -> Task:
        """Build a task and add it; returns the Task (its ``id`` names it later)."""
        task = Task(name=name, module=module, action=action, parameters=parameters or {},
                    dependencies=dependencies or [], priority=priority, resources=resources or [],
                    timeout=timeout, max_retries=max_retries, retry_delay=retry_delay,
                    retry_backoff=retry_backoff, retry_jitter=retry_jitter, tags=tags or [],
                    metadata=metadata or {}, func=func)
        self.add_task(task)
        return task

    def register_action(self, module: str, action: str,
                        func: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """Register ``module.action`` for this orchestrator only; usable as a decorator."""
        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._actions.register(module, action, fn)
            return fn
        return decorate(func) if func is not None else decorate

    def rerun(self, task: str | Task) -> bool:
        """Re-queue a task and everything downstream, interrupting any of them that runs."""
        with self._lock:
            found = self._lookup(task)
            if found is None:
                return False
            found.retry_count = 0
            fresh = self._requeue_with_downstream(found)
            self.structure_version += 1
            now = time.time()
            for t in fresh:
                t.queued_at = now
                self._settle(t)
            return True

    # -- looking up -----------------------------------------------------------------------
    def _lookup(self, ref: str | Task) -> Task | None:
        graph = self._graph
        if isinstance(ref, Task):
            return graph.tasks.get(ref.id)
        task = graph.tasks.get(ref)
        if task is None:
            ids = graph.by_name.get(ref, ())
            task = graph.tasks[ids[-1]] if ids else None
        return task

    def get_task(self, task_id: str) -> Task | None:
        """The task with this id (or name), or None."""
        with self._lock:
            return self._lookup(task_id)

    def get_task_result(self, task_id: str) -> TaskResult | None:
        with self._lock:
            task = self._lookup(task_id)
            return task.result if task is not None else None

    def list_tasks(self, status: TaskStatus | str | None = None) -> list[Task]:
        """Tasks in the order they were added, optionally only those in ``status``."""
        if isinstance(status, str):
            status = TaskStatus(status.lower())
        with self._lock:
            tasks = list(self._graph.tasks.values())
            return tasks if status is None else [t for t in tasks if self._state[t.id] is status]

    def dependencies_of(self, task: str | Task) -> list[Task]:
        with self._lock:
            found = self._lookup(task)
            return [] if found is None else [self._graph.tasks[i] for i in self._graph.upstream[found.id]]

    # -- cancelling and forgetting ----------------------------------------------------------------
    def cancel_task(self, task_id: str) -> bool:
        """Cancel a pending, ready or running task; False if it ended already or is unknown."""
        with self._lock:
            task = self._lookup(task_id)
            if task is None or self._state[task.id].is_terminal:
                return False
            err = TaskCancelledError(f"task {task.name!r} was cancelled")
            attempt: Attempt | None = None
            run = self._runs.get(task.id)
            if run is not None:
                self._abandon(run, "cancelled", err)
                attempt = run.attempt
            else:
                self._withdraw(task)
            self._attempt_failed(task, err, None, 0.0 if attempt is None else
                                 time.time() - attempt.started_at, attempt,
                                 error_type="CancelledError", final_status=S.CANCELLED)
            return True

    def reset(self) -> int:
        """Forget every task (cancelling unfinished ones first); returns how many were forgotten."""
        with self._lock:
            for task in list(self._graph.tasks.values()):
                if not self._state[task.id].is_terminal:
                    self.cancel_task(task.id)
            ids = list(self._graph.tasks)
            for tid in reversed(ids):
                task = self._graph.remove(tid)
                self._counts[self._state.pop(tid)] -= 1
                if self._events.active:
                    self._events.publish(Event("removed", tid, task.name))
            self.structure_version += 1
            self._first_start = self._last_end = None
            return len(ids)

    # -- running --------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._running

    def start_execution(self) -> None:
        """Start the workers (idempotent); queued tasks start at once."""
        with self._lock:
            if self._running:
                return
            self._running = True
            self._executor.start(self.max_workers)
            self._clock.start()
            for _ in range(0 if self._inline else self.max_workers - (len(self._workers) - self._stuck)):
                self._spawn_worker()
        self._publish_engine("started")

    def stop_execution(self, timeout: float = 5.0) -> None:
        """Stop the workers (idempotent); running attempts are interrupted and re-queued.

        Waits up to ``timeout`` seconds for the worker threads; a thread blocked
        inside C code (a long ``time.sleep``) ends as soon as that call returns.
        """
        with self._lock:
            self._running = False
            for run in list(self._runs.values()):
                self._abandon(run, "interrupted", TaskCancelledError("engine stopped"))
                self._set_status(run.task, S.PENDING, "interrupted")
                self._make_ready(run.task)
            self._work.notify_all()
            self._changed.notify_all()
            workers = list(self._workers)
        deadline = time.monotonic() + timeout
        for thread in workers:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._clock.stop()
        self._executor.shutdown()
        self._publish_engine("stopped")
        self._events.close()

    def _publish_engine(self, what: str) -> None:
        if self._events.active:
            self._events.publish(Event("engine", detail=what))

    def wait_for_completion(self, timeout: float | None = None) -> bool:
        """Wait until every task has ended; True if none failed or was skipped.

        Returns False when ``timeout`` passes first. A notebook interrupt
        (KeyboardInterrupt) ends the wait at once; the tasks keep running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._inline and self._running:
            with self._lock:
                self._workers.add(threading.current_thread())
            self._worker_main(until=float("inf") if deadline is None else deadline)
        # The main thread wakes at least every 0.1 s: an interrupt from
        # _thread.interrupt_main() does not wake a blocked lock by itself.
        step = 0.1 if threading.current_thread() is threading.main_thread() else None
        with self._changed:
            while self._unfinished():
                if not self._running:
                    raise RuntimeError(
                        f"{self._unfinished()} tasks are waiting but the engine is not running: "
                        "call start_execution() first")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                waits = [w for w in (remaining, step) if w is not None]
                self._changed.wait(min(waits) if waits else None)
            return self._counts[S.FAILED] == 0 and self._counts[S.SKIPPED] == 0

    # -- observing ---------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``callback(event)`` on every later change (on a dispatcher thread); returns unsubscribe."""
        return self._events.subscribe(callback)

    def snapshot(self) -> Snapshot:
        """A frozen copy of every task's state, for views and frames (see core.snapshot)."""
        with self._lock:
            rows, stats = copy_rows(self)
            version, running = self.structure_version, self._running
        return build_snapshot(rows, stats, version, running, self.max_workers)

    def flush_events(self, timeout: float | None = None) -> bool:
        """Wait until every event published so far reached the subscribers; False on timeout.

        ``wait_for_completion`` returns when the tasks end, which can be just
        before subscribers have heard of the last change.
        """
        return self._events.flush(timeout)

    def get_execution_stats(self) -> dict[str, Any]:
        """One consistent snapshot of counts and timings (see DESIGN.md "Stats")."""
        with self._lock:
            return execution_stats(self)

    # -- DataFrames and pictures (pandas / matplotlib imported on first use) -----------------------------
    def tasks_frame(self):  # noqa: ANN201 - pandas is imported lazily
        from ..analysis.frames import tasks_frame
        return tasks_frame(self)

    def results_frame(self):  # noqa: ANN201
        from ..analysis.frames import results_frame
        return results_frame(self)

    def stats_frame(self):  # noqa: ANN201
        from ..analysis.frames import stats_frame
        return stats_frame(self)

    def bottlenecks(self):  # noqa: ANN201
        from ..analysis.frames import bottlenecks
        return bottlenecks(self)

    def timeline(self, ax: Any = None):  # noqa: ANN201
        from ..analysis.timeline import timeline
        return timeline(self, ax=ax)


def _topological(batch: list[Task], resolved: dict[str, tuple[str, ...]]) -> list[Task]:
    """The batch with every task after its upstream tasks from the same batch."""
    by_id = {t.id: t for t in batch}
    indeg = {t.id: sum(1 for u in resolved[t.id] if u in by_id) for t in batch}
    down: dict[str, list[str]] = {}
    for t in batch:
        for u in resolved[t.id]:
            if u in by_id:
                down.setdefault(u, []).append(t.id)
    order, ready = [], deque(t.id for t in batch if indeg[t.id] == 0)
    while ready:
        tid = ready.popleft()
        order.append(by_id[tid])
        for d in down.get(tid, ()):
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    return order
