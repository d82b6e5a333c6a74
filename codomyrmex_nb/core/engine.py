"""The engine: worker threads that schedule for themselves under one lock.

There is no scheduler thread. A worker that finishes an attempt takes the
engine lock once, records the outcome (result, retries, skipped dependents,
released resources, newly ready tasks) and takes its next task in the same
critical section, so a chain of quick tasks costs no thread hand-off. Idle
workers sleep on a condition and are woken one at a time, each waking the next
while ready work remains. Deadlines (timeouts, retry delays, resource waits)
are timers on one clock thread. Views hear about changes through events.

Task states: PENDING (waiting for dependencies, or for a retry) -> READY
(dependencies done; queued for resources and a worker) -> RUNNING ->
COMPLETED | FAILED, plus CANCELLED and SKIPPED (an upstream task ended without
success). Every path ends in a terminal state.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from typing import Any

from .actions import ActionRegistry
from .clock import Clock
from .events import Event, EventBus
from .exceptions import ResourceTimeout, TaskTimeoutError, UpstreamFailedError
from .executors import Executor, ThreadExecutor
from .graph import TaskGraph
from .invoke import Outcome, Run, build_kwargs, format_traceback
from .model import Attempt, Task, TaskResult, TaskStatus
from .resources import ResourceManager, claims_of

log = logging.getLogger(__name__)
S = TaskStatus
_VERB = {S.FAILED: "failed", S.CANCELLED: "was cancelled", S.SKIPPED: "was skipped",
         S.COMPLETED: "completed"}


class Engine:
    """State and worker loop; ``TaskOrchestrator`` adds the public API on top."""

    def __init__(self, max_workers: int, executor: Executor | None = None) -> None:
        self.max_workers = max_workers
        self.use_executor(executor or ThreadExecutor())
        self._lock = threading.RLock()
        self._work = threading.Condition(self._lock)
        self._changed = threading.Condition(self._lock)
        self._graph = TaskGraph()
        self._resources = ResourceManager()
        self._clock = Clock()
        self._events = EventBus()
        self._actions = ActionRegistry()
        self._counts = dict.fromkeys(S, 0)
        self._state: dict[str, TaskStatus] = {}  # the engine's truth; task.status mirrors it
        self._granted: deque[tuple[Task, Run]] = deque()
        self._resource_waits: dict[str, Run] = {}
        self._runs: dict[str, Run] = {}  # task id -> attempt in flight
        self._workers: set[threading.Thread] = set()
        self._stuck = 0  # abandoned attempts whose thread has not come back yet
        self._idle = 0
        self._running = False
        self._worker_seq = 0
        self._retry_tokens: dict[str, object] = {}
        self._first_start: float | None = None
        self._last_end: float | None = None

    def use_executor(self, executor: Executor, name: str | None = None) -> None:
        """Switch executors (while stopped); ``inline`` marks the sync executor."""
        self._executor = executor
        self._inline = bool(getattr(executor, "inline", False))
        self.executor_name = name or getattr(executor, "name", "custom")

    # -- status bookkeeping ------------------------------------------------------------
    def _set_status(self, task: Task, status: TaskStatus, detail: str | None = None) -> None:
        previous = self._state[task.id]
        counts = self._counts
        counts[previous] -= 1
        counts[status] += 1
        self._state[task.id] = task.status = status
        if self._events.active:
            took = task.result.execution_time if status.is_terminal and task.result else None
            self._events.publish(Event("status", task.id, task.name, status, previous, detail,
                                       execution_time=took))
        if status.is_terminal and self._unfinished() == 0:
            self._changed.notify_all()

    def _unfinished(self) -> int:
        c = self._counts
        return c[S.PENDING] + c[S.READY] + c[S.RUNNING]

    def _make_ready(self, task: Task) -> None:
        now = time.time()
        if task.ready_at is None:  # first time since (re-)queued: dependencies just finished
            task.ready_at = now
            task.wait_dependencies = now - (task.queued_at or now)
        task.runnable_since = now
        self._set_status(task, S.READY)
        self._graph.push_ready(task)
        if self._idle:
            self._work.notify()

    # -- the worker loop ----------------------------------------------------------------
    def _spawn_worker(self) -> None:
        self._worker_seq += 1
        thread = threading.Thread(target=self._worker_main, name=f"codo-worker-{self._worker_seq}",
                                  daemon=True)
        self._workers.add(thread)
        thread.start()

    def _worker_main(self, until: float | None = None) -> None:
        """A worker's life; with ``until`` (the sync executor) it runs in the caller's thread
        and returns once every task has ended or that monotonic deadline passed."""
        me = threading.current_thread()
        run: Run | None = None
        outcome: Outcome | None = None
        try:
            while True:
                with self._lock:
                    if run is not None:
                        self._end_attempt(run, outcome)
                        run = None
                        if until is not None and isinstance(outcome.error, KeyboardInterrupt):
                            raise outcome.error  # debugging inline: an interrupt stops the run
                        outcome = None
                    run = self._next_run(me, until)
                    if run is None:
                        return
                outcome = self._execute(run)
        finally:
            with self._lock:
                self._workers.discard(me)
                self._changed.notify_all()

    def _execute(self, run: Run) -> Outcome:
        try:
            fn = run.task.func or self._actions.resolve(run.task.module, run.task.action)
            kwargs = build_kwargs(run.task, fn, self._graph.tasks)
            run.call = lambda: fn(**kwargs)
            return self._executor.run(run)
        except BaseException as exc:  # noqa: BLE001 - resolution errors fail the task, whole
            now = time.perf_counter()
            return Outcome(False, None, exc, format_traceback(exc), now, now)

    def _excess_workers(self) -> bool:
        return len(self._workers) - self._stuck > self.max_workers

    def _next_run(self, me: threading.Thread, until: float | None = None) -> Run | None:
        """Under the lock: the next attempt for worker ``me``, or None when it should exit."""
        while True:
            if not self._running or self._excess_workers():
                self._workers.discard(me)
                return None
            picked = self._take_runnable()
            if picked is not None:
                task, run = picked
                if self._idle and (self._granted or self._graph.ready_count()):
                    self._work.notify()  # pass the wake-up along while work remains
                return self._begin_attempt(task, run, me.name)
            wait = None
            if until is not None:  # inline: stop when all has ended or time is up
                wait = until - time.monotonic()
                if self._unfinished() == 0 or wait <= 0:
                    self._workers.discard(me)
                    return None
                wait = min(wait, 0.1)  # the caller's thread: stay responsive to interrupts
            self._idle += 1
            self._work.wait(wait)
            self._idle -= 1

    def _take_runnable(self) -> tuple[Task, Run] | None:
        while self._granted:
            task, run = self._granted.popleft()
            if task.status is S.READY:
                task.wait_worker += time.time() - task.runnable_since
                return task, run
            self._release(run)
        graph, resources = self._graph, self._resources
        while (task := graph.pop_ready()) is not None:
            now = time.time()
            task.wait_worker += now - task.runnable_since
            run = Run(task)
            if not task.resources:
                return task, run
            run.claims = claims_of(task.resources)
            if resources.acquire(run, run.claims):
                return task, run
            run.wait_since = now
            self._wait_for_resources(task, run)
        return None

    def _wait_for_resources(self, task: Task, run: Run) -> None:
        task.blocked_on = self._resources.blocking_key(run)
        self._resource_waits[task.id] = run
        limits = [r.timeout for r in task.resources if r.timeout is not None]
        if limits:
            run.resource_timer = self._clock.call_later(min(limits), self._on_resource_timeout, run)
        if self._events.active:
            self._events.publish(Event("status", task.id, task.name, S.READY, S.READY,
                                       f"waiting for {task.blocked_on}"))

    def _begin_attempt(self, task: Task, run: Run, worker: str) -> Run:
        now = time.time()
        run.attempt = Attempt(len(task.attempts) + 1, worker, now)
        task.attempts.append(run.attempt)
        if task.started_at is None:
            task.started_at = now
        if self._first_start is None:
            self._first_start = now
        self._runs[task.id] = run
        if task.timeout is not None:
            run.timer = self._clock.call_later(task.timeout, self._on_deadline, run)
        self._set_status(task, S.RUNNING)
        return run

    def _end_attempt(self, run: Run, outcome: Outcome | None) -> None:
        """Under the lock, in the worker that ran it: record the outcome."""
        task = run.task
        if run.abandoned:  # the engine already gave up on it; its thread is free again now
            self._stuck -= 1
            self._release(run)
            return
        if run.timer is not None:
            run.timer.cancel()
        self._runs.pop(task.id, None)
        self._release(run)
        assert outcome is not None
        run.attempt.ended_at = time.time()
        elapsed = outcome.ended - outcome.started
        if outcome.ok:
            run.attempt.outcome = "completed"
            self._complete(task, outcome.value, elapsed, run.attempt)
        else:
            run.attempt.outcome = "failed"
            self._attempt_failed(task, outcome.error, outcome.traceback, elapsed, run.attempt)

    def _release(self, run: Run) -> None:
        if not run.claims:
            return
        for granted in self._resources.release(run):
            self._grant(granted)

    def _grant(self, run: Run) -> None:
        task = run.task
        self._resource_waits.pop(task.id, None)
        if run.resource_timer is not None:
            run.resource_timer.cancel()
        waited = time.time() - run.wait_since
        if task.blocked_on is not None:
            task.wait_by_resource[task.blocked_on] = task.wait_by_resource.get(task.blocked_on, 0.0) + waited
        task.blocked_on = None
        task.runnable_since = run.wait_since + waited
        task.wait_resources += waited
        self._granted.append((task, run))
        if self._idle:
            self._work.notify()

    # -- outcomes -------------------------------------------------------------------------
    def _result(self, task: Task, success: bool, elapsed: float, attempt: Attempt | None,
                data: Any = None, error: BaseException | None = None, tb: str | None = None,
                error_type: str | None = None, **metadata: Any) -> TaskResult:
        meta = {"attempts": len(task.attempts), "retries": task.retry_count}
        if attempt is not None:
            meta["worker"] = attempt.worker
        meta.update(metadata)
        return TaskResult(task.id, success, data,
                          None if error is None else (str(error) or type(error).__name__),
                          error_type or (None if error is None else type(error).__name__),
                          tb, elapsed, meta, error)

    def _complete(self, task: Task, value: Any, elapsed: float, attempt: Attempt) -> None:
        task.result = self._result(task, True, elapsed, attempt, data=value)
        task.completed_at = self._last_end = time.time()
        self._set_status(task, S.COMPLETED)
        for freed in self._graph.completed(task.id):
            self._make_ready(freed)

    def _attempt_failed(self, task: Task, error: BaseException | None, tb: str | None,
                        elapsed: float, attempt: Attempt | None, error_type: str | None = None,
                        final_status: TaskStatus = S.FAILED) -> None:
        task.result = self._result(task, False, elapsed, attempt, error=error, tb=tb,
                                   error_type=error_type)
        if final_status is S.FAILED and task.retry_count < task.max_retries:
            task.retry_count += 1
            delay = task.retry_delay * task.retry_backoff ** (task.retry_count - 1)
            if task.retry_jitter:
                delay += random.uniform(0, task.retry_jitter)
            task.retry_at = time.time() + delay
            token = self._retry_tokens[task.id] = object()
            self._set_status(task, S.PENDING, "retry")
            self._clock.call_later(delay, self._on_retry_due, task, token)
            return
        task.completed_at = self._last_end = time.time()
        self._set_status(task, final_status)
        self._skip_downstream(task)

    def _skip_downstream(self, root: Task) -> None:
        """Skip every unfinished task downstream of ``root``, which ended without success."""
        graph = self._graph
        for tid in graph.descendants(root.id):
            task = graph.tasks[tid]
            if not task.status.is_terminal and task.status is not S.RUNNING:
                self._skip_one(task, root)

    def _skip_one(self, task: Task, root: Task) -> None:
        graph = self._graph
        blocked = [graph.tasks[i] for i in graph.blocked_by(task.id)] or [root]
        self._withdraw(task)
        msg = f"skipped because upstream task {blocked[0].name!r} {_VERB[blocked[0].status]}"
        if blocked[0] is not root:
            msg += f" (root cause: {root.name!r} {_VERB[root.status]})"
        task.result = self._result(task, False, 0.0, None, error=UpstreamFailedError(msg),
                                   error_type="UpstreamFailedError",
                                   skipped_because=[t.name for t in blocked], root_cause=root.name)
        task.completed_at = time.time()
        self._set_status(task, S.SKIPPED)

    def _withdraw(self, task: Task) -> None:
        """Take a not-yet-running task out of every queue it may be in."""
        task.retry_at = None
        task.blocked_on = None
        self._retry_tokens.pop(task.id, None)
        run = self._resource_waits.pop(task.id, None)
        if run is not None:
            if run.resource_timer is not None:
                run.resource_timer.cancel()
            for granted in self._resources.withdraw(run):
                self._grant(granted)

    # -- deadlines (clock thread) ------------------------------------------------------------
    def _on_retry_due(self, task: Task, token: object) -> None:
        with self._lock:
            if self._retry_tokens.get(task.id) is not token or task.status is not S.PENDING:
                return
            del self._retry_tokens[task.id]
            task.retry_at = None
            if self._graph.count_unmet(task.id) == 0:
                self._make_ready(task)

    def _on_deadline(self, run: Run) -> None:
        with self._lock:
            task = run.task
            if self._runs.get(task.id) is not run or run.abandoned:
                return
            err = TaskTimeoutError(f"task {task.name!r} timed out after {task.timeout:g}s")
            self._abandon(run, "timeout", err)
            self._attempt_failed(task, err, None, time.time() - run.attempt.started_at,
                                 run.attempt, error_type="TimeoutError")

    def _on_resource_timeout(self, run: Run) -> None:
        with self._lock:
            task = run.task
            if self._resource_waits.get(task.id) is not run:
                return
            key = task.blocked_on
            self._withdraw(task)
            if key is not None:
                task.wait_by_resource[key] = task.wait_by_resource.get(key, 0.0) + time.time() - run.wait_since
            err = ResourceTimeout(
                f"task {task.name!r} waited longer than its resource timeout for {key}; "
                "raise TaskResource.timeout or free the resource sooner")
            now = time.time()
            # Charged as an attempt, so retries apply as to any other failure.
            task.attempts.append(Attempt(len(task.attempts) + 1, None, run.wait_since, now,
                                         "resource-timeout"))
            task.wait_resources += now - run.wait_since
            self._attempt_failed(task, err, None, 0.0, None, error_type="ResourceTimeout")

    def _abandon(self, run: Run, why: str, error: BaseException) -> None:
        """Give up on a running attempt: interrupt it and keep its resources until its thread returns."""
        run.abandoned = why
        run.attempt.ended_at = time.time()
        run.attempt.outcome = why
        if run.timer is not None:
            run.timer.cancel()
        self._runs.pop(run.task.id, None)
        self._stuck += 1
        try:
            self._executor.interrupt(run, why)
        except Exception:
            log.exception("could not interrupt %r", run.task)
        if self._running and not self._inline and len(self._workers) - self._stuck < self.max_workers:
            self._spawn_worker()  # keep max_workers free while the old thread unwinds
