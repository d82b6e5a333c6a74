"""The engine: the driver that carries out what the scheduler decides.

It owns the one lock, the worker threads (their loop: ``worker_loop.py``), the
clock and the executor; the scheduler (``scheduler.py``) owns every task's state
and is only called under the lock. User code, callbacks, imports and executor start-up never run under
it.

There is no scheduler thread. A worker that finishes an attempt takes the
lock once, hands the outcome to the scheduler (which records it, frees
resources, retries, skips or readies dependents) and takes its next ticket in
the same critical section, so a chain of quick tasks costs no thread hand-off.
Idle workers sleep on a condition and are woken one at a time, each waking the
next while runnable work remains.

**Tiny tasks run one worker at a time.** Under the GIL, several workers
taking turns at the lock for bodies of a few microseconds cost more in
hand-offs than the bodies themselves (10,000 no-op tasks: about 10 µs each
on one worker, 25 µs on four). So while the running average of attempt times
(the time a worker spends per attempt, shipping and capture included, but not
its wait for the lock to record it: counted, a busy lock raised the average and
let every worker contend, which made the lock busier still; averaged as attempts
end) is under ``TINY``, a worker leaves runnable work to
another worker whose attempt began less than ``STANDBY`` seconds ago: that
one is cycling through tiny tasks and takes the work next. A worker in a
longer attempt (a slow task among tiny ones) never holds work back. A
standby timer covers the one case left, the cycling worker's current task
turning out long: it looks again ``STANDBY`` seconds later and wakes an idle
worker unless some attempt began meanwhile. It is armed only while tiny
tasks wait, at most once per ``STANDBY``.

**Tiny items go in batches.** While attempts are tiny, a worker that takes an
item of a mapped task takes up to ``BATCH`` of its next items in the same
critical section (each made READY and started through the scheduler's one
transition function, as one at a time), runs them one after another, and
records each as it ends (a stop or a cancel never drops more than the one item
running). The batch shares one output capture, started once: each item cuts
its own output from it as it returns. (Every attempt a worker runs itself gets its CPU
time from the worker's ``cpu_clock.CpuClock``, read at most once a millisecond.) An
item that started a thread
which still writes ends the shared capture, and the next item gets a new one,
so that thread's late lines never land in another item's output. An item
waiting in a batch can be cancelled: its attempt is abandoned and never
begins. Items with a timeout or resources, and other executors, go one at a
time.

Deadlines (timeouts, retry delays, resource waits) are timers on one clock
thread. After every scheduler call the engine
drains the scheduler's *effects* (interrupt an attempt, arm or cancel a
timer) and wakes whoever must act. Views hear about changes through events.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from . import capture, waiting
from .actions import ActionRegistry
from .clock import Clock, TimerHandle
from .events import Event, EventBus
from .executors import Executor, ThreadExecutor
from .invoke import (
    Run,
)
from .memory_budget import MemoryBudget
from .model import Task, TaskStatus
from .recorder import Recorder
from .records import Record
from .result_store import ResultStore
from .scheduler import Scheduler
from .snapshot import Snapshot, build_snapshot, copy_rows, paused_gc
from .worker_loop import TINY, WorkerLoop

log = logging.getLogger(__name__)

STANDBY = 0.002  # seconds: a worker whose attempt began this recently is cycling tiny tasks

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register  # after journal.py's own: runs before the journals close
def _end_runs_at_exit() -> None:
    """A clean exit ends each open run (one that only restored results too), so the next
    process does not take it for a crash; a killed process never gets here. No lock: a
    worker may hold it, and exiting must not hang."""
    for engine in list(_engines):
        recorder = engine.recorder
        if recorder is not None and recorder.run_id is not None:
            recorder.end_run("stopped" if engine.sched.unfinished else "finished", final=True)


class Engine(WorkerLoop):
    """Worker threads, clock and executor around one ``Scheduler``, under one lock."""

    def __init__(self, max_workers: int, executor: Executor | None = None,
                 executor_name: str | None = None, recorder: Recorder | None = None) -> None:
        self.max_workers = max_workers
        self.use_executor(executor or ThreadExecutor(), executor_name)
        self.lock = threading.Lock()
        self._work = threading.Condition(self.lock)
        self._changed = threading.Condition(self.lock)
        # serialises start/stop (and ``reconfigure``, which calls both); never held with user
        # code
        self._lifecycle = threading.RLock()
        self.sched = Scheduler(new_ticket=self._ticket)
        self.clock = Clock()
        self.events = EventBus()
        self.actions = ActionRegistry()
        self._workers: set[threading.Thread] = set()
        self._stuck = 0  # abandoned attempts whose thread has not come back yet
        self._idle = 0
        self._running = False
        self._started_at: float | None = None  # time.time() of the last start (snapshots)
        self._worker_seq = 0
        self._retry_timers: dict[str, TimerHandle] = {}
        self.recorder = recorder  # the run journal's link (None: no journal)
        _engines.add(self)
        self._busy = 0  # workers between taking a ticket and recording its outcome
        self._avg_attempt = 1.0  # running average of attempt seconds; starts "long"
        self._standby: TimerHandle | None = None
        self.budget: MemoryBudget | None = None  # the memory budget for results (None: none)
        self._store = ResultStore(self)  # its link to the journal, spill files and this lock
        self._listen()

    def _listen(self) -> None:
        """Under the lock (or before any thread): who hears the scheduler's transitions."""
        bus, recorder = self.events, self.recorder
        self.sched.listener = bus.publish if bus.active else None
        self.sched.recorder = recorder
        if recorder is not None:
            recorder.resolve = self.actions.resolve  # actions are fingerprinted by their code
            recorder.engine_lock = self.lock  # the journal reads moved records under it
            budget = self.budget
            recorder.use_hooks(None if budget is None else budget.committed,
                               None if budget is None else budget.release)

    def use_recorder(self, recorder: Recorder | None) -> None:
        """Switch journals (while idle); the old one commits and closes."""
        with self.lock:
            old, self.recorder = self.recorder, recorder
            if old is not None:
                old.end_run("stopped" if self.sched.unfinished else "finished", final=True)
            self._listen()
        if old is not None:
            old.close()

    # -- the memory budget --------------------------------------------------------------------
    def use_budget(self, limit: int | None) -> None:
        """Set the memory budget for results (bytes; None: no budget, every result stays)."""
        if self.budget is not None:
            self.budget.set_limit(limit)
        elif limit is not None:
            budget = self._store.make_budget(limit)
            with self.lock:
                self.budget = budget
                self._listen()

    def hold_restored(self, rec: Record) -> None:
        """Under the lock: a result restored from the journal (and recorded again)."""
        if self.budget is not None:
            self._store.hold_restored(rec)

    def use_executor(self, executor: Executor, name: str | None = None) -> None:
        """Switch executors (while stopped); ``inline`` marks the sync executor."""
        self.executor = executor
        self._inline = bool(getattr(executor, "inline", False))
        self.executor_name = name or getattr(executor, "name", "custom")

    @property
    def running(self) -> bool:
        return self._running

    # -- tickets and effects (under the lock) ----------------------------------------------
    def _ticket(self, rec: Record) -> Run:
        run = Run(rec.task, rec)
        if rec.timeout is not None and rec.mapping is None:  # a map's timeout is its items'
            run.on_begin = self._arm_deadline  # (reading its sources is not timed by it)
        return run

    def _arm_deadline(self, run: Run) -> TimerHandle:
        """At dispatch, and again from ``Run.begin`` after a held deadline (a cold start)."""
        run.deadline_gen += 1
        run.timed_from = time.time()  # the scheduler's clock: a timeout's time counts from here
        return self.clock.call_later(run.rec.timeout, self._on_deadline, run, run.deadline_gen)

    @contextlib.contextmanager
    def changing(self) -> Iterator[Scheduler]:
        """Hold the lock for one change to the scheduler, then carry out what it decided.

        The journal's file is opened first, outside the lock: checking a file and
        starting its writer never stall the engine.
        """
        self._open_journal()
        with self.lock:
            yield self.sched
            self.settle()

    def define_new(self, task: Task) -> None:
        """``changing()`` for ``create_task``'s one new task, without a context manager's
        cost (it is paid once per task defined)."""
        recorder = self.recorder  # _open_journal written out: a run open means it is open
        if recorder is not None and recorder.sink is None and not recorder.is_open:
            recorder.ensure_open()
        with self.lock:
            self.sched.define_new(task)
            self.settle()

    def _open_journal(self) -> None:
        """Before a change, outside the lock: open the journal's file if it is closed."""
        recorder = self.recorder
        if recorder is not None and not recorder.is_open:
            recorder.ensure_open()

    def settle(self, wake: bool = True) -> None:
        """After every scheduler call: carry out its effects, wake workers and waiters.

        A worker that just recorded an outcome passes ``wake=False``: it takes
        the next ticket itself (a chain never hands off between threads) and
        wakes a peer only if work is left after that.
        """
        sched = self.sched
        if sched.effects:
            self._apply_effects()
        if wake and self._idle and sched.runnable():
            self._wake_one()
        if not sched.unfinished:
            self._changed.notify_all()
            if self.recorder is not None and self.recorder.run_id is not None and self._running:
                self.recorder.end_run("finished")

    def _wake_one(self, taking: bool = False) -> None:
        """Under the lock, work is runnable: wake an idle worker, unless a worker cycling
        through tiny tasks takes it next (see the module docstring). ``taking``: the caller
        just took an attempt, so while tasks are tiny it is that worker (no need to look)."""
        if (self._avg_attempt < TINY) if taking else self._someone_cycling():
            self._arm_standby()
        else:
            self._work.notify()

    def _someone_cycling(self) -> bool:
        """Under the lock: tasks are tiny and some worker's attempt began under STANDBY ago."""
        if not self._busy or self._avg_attempt >= TINY:
            return False
        recent = time.perf_counter() - STANDBY  # monotonic: a wall-clock step cannot fool it
        return any(run.taken_at > recent for run in self.sched.running.values())

    def _arm_standby(self) -> None:
        if self._standby is None and self._running:
            self._standby = self.clock.call_later(STANDBY, self._on_standby)

    def _on_standby(self) -> None:
        """Clock thread: runnable work was left to a worker cycling through tiny tasks."""
        with self.lock:
            self._standby = None
            if self._running and self._idle and self.sched.runnable():
                self._wake_one()  # no attempt began meanwhile: a peer joins

    def _apply_effects(self) -> None:
        sched = self.sched
        effects, sched.effects = sched.effects, []
        clock = self.clock
        for effect in effects:
            kind = effect[0]
            if kind == "interrupt":
                self._interrupt(effect[1], effect[2])
            elif kind == "retry":
                _, rec, token, delay = effect
                self._retry_timers[rec.id] = clock.call_later(delay, self._on_retry_due, rec, token)
            elif kind == "cancel_retry":
                timer = self._retry_timers.pop(effect[1].id, None)
                if timer is not None:
                    timer.cancel()
            elif kind == "resource_wait":
                _, ticket, seconds = effect
                ticket.resource_timer = clock.call_later(seconds, self._on_resource_timeout, ticket)
            elif kind == "cancel_resource_wait":
                ticket = effect[1]
                if ticket.resource_timer is not None:
                    ticket.resource_timer.cancel()
                    ticket.resource_timer = None

    def _interrupt(self, run: Run, why: str) -> None:
        """Stop an abandoned attempt; its worker counts as stuck until its code returns."""
        began = run.abandon(why)
        self._stuck += 1
        here = run.rec.mapping is not None  # a map's read of its sources: in a worker thread
        if began:
            try:
                if here:
                    run.interrupt(why)
                else:
                    self.executor.interrupt(run, why)
            except Exception:
                log.exception("could not interrupt %r", run.task)
        if (here or self.executor.__class__ is ThreadExecutor) and not run.in_user_code:
            return  # not in its code (waiting in a batch, or returned): its thread comes back
        if self._running and not self._inline and len(self._workers) - self._stuck < self.max_workers:
            self._spawn_worker()  # keep max_workers free while the old thread unwinds

    # -- deadlines (clock thread) ---------------------------------------------------------------
    def _on_retry_due(self, rec: Record, token: int) -> None:
        with self.lock:
            self.sched.retry_due(rec, token)
            self.settle()

    def _on_deadline(self, run: Run, generation: int) -> None:
        with self.lock:
            if generation == run.deadline_gen:  # else re-armed since: a later deadline counts
                self.sched.deadline(run, run.timed_from)
                self.settle()

    def _on_resource_timeout(self, run: Run) -> None:
        with self.lock:
            self.sched.resource_timeout(run)
            self.settle()

    # -- starting and stopping -------------------------------------------------------------------
    def start(self) -> None:
        """Start the executor (outside the lock), the clock and the workers; idempotent."""
        with self._lifecycle:
            with self.lock:
                if self._running:
                    return
            try:
                self.executor.start(self.max_workers)
            except Exception as exc:
                self._shutdown_executor()
                raise RuntimeError(
                    f"the {self.executor_name!r} executor could not start ({type(exc).__name__}: "
                    f"{exc}); the orchestrator stays stopped. Fix the cause (for Dask: the "
                    "address or cluster options) and call start_execution() again") from exc
            except BaseException:
                self._shutdown_executor()
                raise
            self.clock.start()
            self._open_journal()  # before any worker moves a task
            capture.acquire()  # output hooks stay installed while running: cheaper attempts
            with self.lock:
                self._running = True
                self._started_at = time.time()  # before any attempt of this start begins
                self.sched.started()  # waits count from now, not from when tasks were defined
                self._standby = None  # the clock dropped any timer when it stopped
                if not self._inline:
                    for _ in range(self.max_workers - (len(self._workers) - self._stuck)):
                        self._spawn_worker()
                self.settle()
        self._publish_engine("started")

    def stop(self, timeout: float = 5.0, only_if_idle: bool = False) -> bool:
        """Stop (idempotent): running attempts are interrupted and their tasks made READY again.
        ``only_if_idle``: unless it runs with a task unfinished (decided under the lock, so
        no task can start in between); False if it did not stop for that."""
        me = threading.current_thread()
        with self._lifecycle:
            with self.lock:
                if only_if_idle and self._running and self.sched.unfinished:
                    return False
                was_running, self._running = self._running, False
                self.sched.stop()
                self.settle()
                if self.recorder is not None and was_running:
                    self.recorder.end_run("stopped" if self.sched.unfinished else "finished",
                                          final=True)
                elif self.recorder is not None:
                    # A stop that stopped nothing ends no run: the run that defining tasks
                    # opened stays open (across the journal's close below) and is the one
                    # the next start runs them in; ending it here left a run "stopped" in
                    # which nothing ran before the real one. Its moves so far are queued
                    # for the close to commit (a crash meanwhile: an open run, resumable).
                    self.recorder.keep_run()
                self._work.notify_all()
                self._changed.notify_all()
                workers = [w for w in self._workers if w is not me]
            if self.budget is not None:
                self.budget.wake()  # a worker paused for the journal goes on (and ends)
            self._stopping_executor()  # it may end given-up bodies it would wait for
            # a stop of a stopped engine does not wait again for bodies the first stop gave up
            # on (stuck in C): they are its threads' own business now
            wait = min(max(0.0, timeout), threading.TIMEOUT_MAX / 2) if was_running else 0.0
            deadline = time.monotonic() + wait
            try:
                for thread in workers:
                    thread.join(max(0.0, deadline - time.monotonic()))
            finally:
                self.clock.stop()
                self._shutdown_executor()
                if was_running:
                    capture.release()
                if self.recorder is not None:
                    self.recorder.close()  # commits what is queued; reopened when needed
        self._publish_engine("stopped")
        self.events.close()
        return True

    def reconfigure(self, executor: Executor | None, name: str | None, workers: int) -> bool:
        """Switch the executor (None: keep it) and the worker count while stopped, or while
        running with no task unfinished (then restarted); False (nothing changed) if it runs
        with a task unfinished. No other thread's start or stop comes in between, and no
        task starts meanwhile: one defined meanwhile waits for the restart."""
        with self._lifecycle:
            was_running = self._running
            if not self.stop(only_if_idle=True):
                return False
            if executor is not None:
                self.use_executor(executor, name)
            self.max_workers = workers
            if was_running:
                self.start()
        return True

    def _stopping_executor(self) -> None:
        """Tell an executor that has ``stopping()`` (Dask) that the engine stops: outside the
        lock, before the workers are joined, so their threads need not wait for bodies it
        can end (or stop waiting for)."""
        stopping = getattr(self.executor, "stopping", None)
        if stopping is None:
            return
        try:
            stopping()
        except Exception:
            log.exception("the %s executor could not prepare to stop", self.executor_name)

    def _shutdown_executor(self) -> None:
        try:
            self.executor.shutdown()
        except Exception:
            log.exception("the %s executor did not shut down cleanly", self.executor_name)

    def _publish_engine(self, what: str) -> None:
        if self.events.active:
            self.events.publish(Event("engine", detail=what))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every task has ended; True if none failed or was skipped (tasks not
        needed, whose trigger rule did not fire, do not count)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sched = self.sched
        if self._inline and self._running:
            with self.lock:
                self._workers.add(threading.current_thread())
            self._worker_main(until=float("inf") if deadline is None else deadline)
        # The main thread wakes at least every 0.1 s: an interrupt from
        # _thread.interrupt_main() does not wake a blocked lock by itself.
        step = 0.1 if threading.current_thread() is threading.main_thread() else None
        # A poke (core.waiting: the notebook layer has clicks for this thread to answer)
        # wakes the wait; the chore runs outside the engine lock, then the wait goes on.
        with waiting.watch(self._wake_waiters) as chores, self._changed:
            while sched.unfinished:
                if chores.due():
                    chores.run(holding=self.lock)
                    continue
                if not self._running:
                    n = sched.unfinished
                    raise RuntimeError(
                        f"{n} task{'s are' if n != 1 else ' is'} waiting but the engine is not "
                        "running: call start_execution() first")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                waits = [w for w in (remaining, step, threading.TIMEOUT_MAX) if w is not None]
                self._changed.wait(min(waits))
            counts = sched.counts
            skipped = counts[TaskStatus.SKIPPED]  # not needed (a rule did not fire) is no failure
            return counts[TaskStatus.FAILED] == 0 and (
                skipped == 0 or skipped == len(sched.not_needed()))

    def _wake_waiters(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- observing ----------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        unsubscribe = self.events.subscribe(callback)
        with self.lock:
            self._listen()

        def stop_listening() -> None:
            unsubscribe()
            with self.lock:
                self._listen()

        return stop_listening

    def snapshot(self) -> Snapshot:
        """A frozen copy of every task's state at one sequence number (see core.snapshot)."""
        with paused_gc(), self.lock:
            rows = copy_rows(self.sched)
            stats = self.sched.stats(self.max_workers, self._running)
            stats["executor"] = self.executor_name
            seq, version, running = self.sched.seq, self.sched.structure_version, self._running
            started = self._started_at
        with paused_gc():
            return build_snapshot(rows, stats, version, running, self.max_workers, seq, started)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return self.sched.stats(self.max_workers, self._running)
