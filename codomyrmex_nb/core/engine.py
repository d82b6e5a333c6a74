"""The engine: the driver that carries out what the scheduler decides.

It owns the one lock, the worker threads, the clock and the executor; the
scheduler (``scheduler.py``) owns every task's state and is only called under
the lock. User code, callbacks, imports and executor start-up never run under
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
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from . import capture, frame_names, waiting
from .actions import ActionRegistry
from .clock import Clock, TimerHandle
from .cpu_clock import CpuClock
from .events import Event, EventBus
from .executors import Executor, ThreadExecutor
from .invoke import (
    Outcome,
    Run,
    binding_failed,
    build_kwargs,
    format_traceback,
    takes_map_index,
    upstream_value,
    wants_upstream,
)
from .journal_tables import TRIVIAL_TYPES
from .map_steps import item_binding, plan_of
from .mapping import INDEX
from .memory_budget import MemoryBudget
from .model import Task, TaskStatus
from .recorder import Recorder
from .records import Record
from .result_bytes import NO_SIZE
from .result_store import ResultStore
from .scheduler import Scheduler
from .snapshot import Snapshot, build_snapshot, copy_rows, paused_gc
from .trigger_rules import NoResult

log = logging.getLogger(__name__)

TINY = 100e-6  # seconds: attempts shorter than this on average run one worker at a time
STANDBY = 0.002  # seconds: a worker whose attempt began this recently is cycling tiny tasks
BATCH = 16  # items of a map of tiny items a worker takes at once (one lock, one heap pop)

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


def user_interrupt(error: BaseException | None) -> KeyboardInterrupt | None:
    """The user's Ctrl-C behind an attempt's error: the error itself, or what it was raised
    while handling (an engine interrupt for a timeout, pending while the body sat in a C
    call, lands as the body unwinds from the Ctrl-C and takes its place)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, KeyboardInterrupt):
            return error
        error, seen = error.__context__, seen + 1
    return None


class Engine:
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

    # -- the worker loop --------------------------------------------------------------------------
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
        perf_counter = time.perf_counter
        runs: list[Run] = []  # taken under the lock: one ticket, or a batch of tiny items
        done: list[tuple[Run, Outcome, Any, float, Any]] = []  # ran, not recorded yet
        unrecorded = 0  # of ``runs``
        shared: _SharedCapture | None = None  # a batch's output capture
        clock = CpuClock()  # this thread's CPU clock, for the attempts it runs itself
        try:
            while True:
                with self.lock:
                    for run, outcome, prepared, busy_for, held in done:
                        interrupt = None if until is None else user_interrupt(outcome.error)
                        if interrupt is not None:  # Ctrl-C while debugging inline: the
                            self._interrupted_inline(run, outcome)  # wait stops, the task
                            unrecorded -= 1  # waits for the next one
                            raise interrupt
                        self._record(run, outcome, prepared, busy_for, held)
                        unrecorded -= 1
                    done.clear()  # the blobs are queued: let them go
                    # nor keep the last attempt's call (its inputs) and value alive while this
                    # worker waits: a result the memory budget dropped would stay in RAM
                    runs, run, last, outcome, prepared, held = [], None, None, None, None, None
                    budget = self.budget
                    if budget is None or not budget.over() or not self._running:
                        run = self._next_run(me, until)
                        if run is None:
                            return
                        runs = self._batch(run, me) if until is None else [run]
                        unrecorded = len(runs)
                if not runs:  # results wait for their journal commit: let it catch up
                    budget.pause(self._go_on)  # before taking a task (no timeout runs meanwhile)
                    continue
                last = runs[-1]
                shared = _SharedCapture() if len(runs) > 1 else None
                for k, run in enumerate(runs):
                    if shared is not None:  # its items begin one by one: each its own time
                        run.taken_at = perf_counter()
                        run.box = shared.box  # it cuts its output from the batch's capture
                    run.clock = clock
                    outcome = self._execute(run)
                    if shared is not None:
                        shared.took_back(more=run is not last)
                    prepared = held = None
                    if outcome.ok and not run.abandoned and run.rec.mapping is None:
                        # a result to keep (not a map's expansion): readied with no lock held
                        recorder, budget = self.recorder, self.budget
                        if recorder is not None and (run.rec.parent is None or
                                                     outcome.value.__class__ not in TRIVIAL_TYPES):
                            prepared = recorder.prepare_result(run.rec, outcome.value)
                        if budget is not None and budget.limit is not None \
                                and outcome.value.__class__ not in NO_SIZE:  # (no size to hold)
                            held = self._store.measure(run.rec, outcome.value, prepared)
                    if run is last:  # recorded as the next ticket is taken; its time
                        # is taken now: a wait for the lock is no part of the attempt (that
                        # wait, counted, pushed the tiny-task average up under contention,
                        # which let every worker contend: a convoy that fed itself)
                        done.append((run, outcome, prepared, perf_counter() - run.taken_at, held))
                        continue
                    busy_for = perf_counter() - run.taken_at
                    with self.lock:  # each item is recorded as it ends: a stop or cancel
                        unrecorded -= 1  # meanwhile drops no finished item's result
                        self._record(run, outcome, prepared, busy_for, held)
                        self.sched.begin_now(runs[k + 1])
        finally:
            if shared is not None:
                shared.box.stop()  # torn down mid-batch (stopping twice does nothing)
            with self.lock:
                if until is not None and unrecorded:  # inline, an interrupt outside the body
                    for run in runs[len(runs) - unrecorded:]:  # (pickling its result): the
                        self._interrupted_inline(run, None)  # attempt ends as interrupted
                    unrecorded = 0
                self._busy -= unrecorded  # taken but never recorded (the thread is torn down)
                self._workers.discard(me)
                self._changed.notify_all()

    def _batch(self, run: Run, me: threading.Thread) -> list[Run]:
        """Under the lock, ``run`` just taken: with more items of the same map, if its items
        are tiny (``BATCH``). Items with a timeout or resources, and other executors than
        threads, go one at a time: a deadline is armed as an attempt is taken."""
        rec = run.rec
        parent = rec.parent
        if parent is None or self._avg_attempt >= TINY or rec.timeout is not None or rec.claims \
                or self.executor.__class__ is not ThreadExecutor:
            return [run]
        more = self.sched.take_items(parent, BATCH - 1, me.name)
        self._busy += len(more)
        return [run, *more]

    def _go_on(self) -> bool:
        """A worker paused for the journal: may it go on pausing (the engine runs)?"""
        return self._running

    def _record(self, run: Run, outcome: Outcome, prepared: tuple[Any, ...] | None,
                busy_for: float, held: Any = None) -> None:
        """Under the lock: the attempt's outcome (``busy_for``: seconds its worker spent on it,
        shipping and capture included, which the tiny-task average follows)."""
        self._busy -= 1
        self._avg_attempt += (busy_for - self._avg_attempt) * 0.125
        if outcome.ok and prepared is None and held is None and run.timer is None \
                and run.rec.parent is not None and not outcome.logs \
                and outcome.displays is None and outcome.restored is None \
                and outcome.peak_memory is None and self.sched.item_completed(
                    run, outcome.value, outcome.ended - outcome.started, outcome.cpu_time,
                    outcome.run_delay):
            sched = self.sched  # the usual item of a batch, kept compact at once: ``settle``
            if sched.effects or not sched.unfinished:  # only when it has something to do
                self.settle(wake=False)
            return
        if run.abandoned:
            self._stuck -= 1
        elif run.timer is not None:
            run.timer.cancel()
        counted = self.sched.finish(run, outcome.ok, outcome.value, outcome.error,
                                    outcome.traceback, outcome.ended - outcome.started,
                                    outcome.logs, outcome.cpu_time, outcome.peak_memory,
                                    outcome.displays, outcome.unbound, outcome.run_delay)
        if counted and outcome.restored is not None:
            self.sched.item_restored(run.rec, *outcome.restored)
        if counted and held is not None and self.budget is not None:  # before its row is
            self._store.hold(run.rec, held, prepared)  # queued: the commit may be quick
        if counted and prepared is not None and self.recorder is not None:
            self.recorder.record_result(run.rec, prepared)
        if counted and run.rec.parent is not None:
            self.sched.compact(run.rec)  # a plainly completed item: light from now on
        self.settle(wake=False)

    def _interrupted_inline(self, run: Run, outcome: Outcome | None) -> None:
        """Under the lock: ``_record`` for an inline attempt the user interrupted (in its
        body, or with ``outcome`` None while the engine readied its result); its task goes
        back to READY (``Scheduler.interrupted``) and runs again at the next wait. One the
        engine had given up on already (a timeout) is recorded as given up on."""
        if run.abandoned:
            now = time.perf_counter()
            self._record(run, outcome or Outcome(False, None, KeyboardInterrupt(), None, now,
                                                 now), None, 0.0)
            return
        self._busy -= 1
        if run.timer is not None:
            run.timer.cancel()
        self.sched.interrupted(run, None if outcome is None else outcome.logs)
        self.settle(wake=False)

    def _execute(self, run: Run) -> Outcome:
        rec = run.rec
        if rec.mapping is not None:  # a mapped task's first step: read its sources
            return self._expand(run)
        try:
            if rec.parent is not None:
                m, recorder = rec.parent.mapping, self.recorder
                binding = m.plan.binding(rec.index) if m.source is None else item_binding(rec)
                if recorder is not None and (m.fps is None or m.reuse or rec.task.cache
                                             or recorder.resume_from is not None):
                    restored = self._item_kept(rec, binding)
                    if restored is not None:
                        return restored
                elif recorder is not None and rec.fingerprint is None:  # the usual run: the
                    rec.fingerprint = m.fps[rec.index]  # expansion's (``item_started``)
                fn = rec.func or self.actions.resolve(rec.module, rec.action)
                run.call, kwargs = self._item_call(rec, m, fn, binding)
                return self._run_call(run, fn, kwargs)
            elif self.recorder is not None:
                if rec.fingerprint is None:
                    self.recorder.before_attempt(rec)
                if self.recorder.deferred:  # a lookup its definition could not make
                    kept = self.recorder.kept_at_start(rec)  # (after a map): see there
                    if kept is not None:
                        now = time.perf_counter()
                        return Outcome(True, kept[0], started=now, ended=now,
                                       restored=(kept[1], kept[2]))
            fn = rec.func or self.actions.resolve(rec.module, rec.action)
            kwargs: dict[str, Any] | None = None
            if rec.parameters or rec.ups or wants_upstream(fn):
                kwargs = build_kwargs(rec, fn, self.sched.records)
                run.call = functools.partial(fn, **kwargs) if kwargs else fn
            else:
                run.call = fn
            return self._run_call(run, fn, kwargs)
        except BaseException as exc:  # noqa: BLE001 - resolution errors fail the task, whole
            now = time.perf_counter()
            return Outcome(False, None, exc, frame_names.rename(format_traceback(exc)), now, now)

    def _run_call(self, run: Run, fn: Any, kwargs: dict[str, Any] | None) -> Outcome:
        """Run the attempt's call on the executor (``run.execute`` in this thread, for
        threads); a failure's traceback names cells as the notebook does."""
        executor = self.executor
        outcome = run.execute() if executor.__class__ is ThreadExecutor else executor.run(run)
        if not outcome.ok:
            if outcome.error.__class__ is TypeError:
                outcome.unbound = binding_failed(outcome.error, fn, kwargs or {})
            outcome.traceback = frame_names.rename(outcome.traceback)  # "Cell In[5]"
        return outcome

    def _item_call(self, item: Record, m: Any, fn: Any,
                   binding: dict[str, Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
        """An item's call: ``fn`` with its binding (its own dict, made for this attempt) and
        what else it takes (parameters, upstream results, ``map_index``), worked out once
        per definition of its map (``MapState.call_plan``; an item keeps the definition it
        was made with)."""
        params, ups = item.parameters, item.ups
        plan = m.call_plan
        if plan is None or plan[0] is not fn or plan[1] is not params or plan[2] is not ups:
            plan = m.call_plan = (fn, params, ups, bool(params or ups or wants_upstream(fn)),
                                  takes_map_index(fn))
        if plan[3]:
            kwargs = build_kwargs(item, fn, self.sched.records)
            kwargs.update(binding)
        else:
            kwargs = binding
        if plan[4]:
            kwargs[INDEX] = item.index
        return (functools.partial(fn, **kwargs) if kwargs else fn), kwargs

    def _expand(self, run: Run) -> Outcome:
        """Read a mapped task's sources into its items (``mapping.expand``), in this worker
        whatever the executor: an iterator is read once, and a source that cannot be mapped
        over fails the task with what to do (never retried: waiting cannot change it). The
        read is user code (a generator's body runs in it): run as an attempt's call, a cancel
        or stop interrupts it (``_interrupt``), and what it prints is its output."""
        rec = run.rec
        run.call = functools.partial(plan_of, rec, functools.partial(_mapped_value, rec))
        outcome = run.execute()
        if outcome.ok and self.recorder is not None:
            try:
                self.recorder.expanded(rec, outcome.value)
            except Exception as exc:  # noqa: BLE001 - the mapped task fails, with the reason
                outcome = Outcome(False, None, exc, format_traceback(exc), outcome.started,
                                  time.perf_counter(), logs=outcome.logs)
        if not outcome.ok:
            outcome.traceback = frame_names.rename(outcome.traceback)
        return outcome

    def _item_kept(self, rec: Record, binding: dict[str, Any]) -> Outcome | None:
        """Fingerprint an item as it starts; its result if the journal holds it (resume or
        ``cache``) or its map's definition before this one had it: the item then completes
        without running."""
        recorder = self.recorder
        if recorder is None:
            return None
        hit = recorder.item_started(rec, binding)
        reuse = rec.parent.mapping.reuse
        if hit is None and reuse and rec.fingerprint in reuse:  # unchanged since redefined
            kept = reuse[rec.fingerprint]
            hit = kept.read_data(), kept.metadata.get("recorded_at") or time.time(), \
                "its definition before this one"
        if hit is None:
            return None
        now = time.perf_counter()
        value, when, source = hit
        return Outcome(True, value, started=now, ended=now, restored=(when, source))

    def _next_run(self, me: threading.Thread, until: float | None = None) -> Run | None:
        """Under the lock: the next attempt for worker ``me``, or None when it should exit."""
        sched = self.sched
        while True:
            if not self._running or len(self._workers) - self._stuck > self.max_workers:
                self._workers.discard(me)
                if self._idle and sched.runnable():
                    self._work.notify()  # leaving: hand any runnable work to a peer
                return None
            if until is not None and time.monotonic() >= until:  # inline, out of time: the
                self._workers.discard(me)  # wait returns (False) with work left
                return None
            if until is None and self._someone_cycling():
                run = None  # tiny tasks: the cycling worker takes this work next (see above)
                if sched.runnable():
                    self._arm_standby()
            else:
                run = sched.next_ticket()
                if sched.effects:
                    self._apply_effects()
            if run is not None:
                sched.start(run, me.name)
                run.taken_at = time.perf_counter()
                self._busy += 1
                if run.on_begin is not None:
                    run.timer = self._arm_deadline(run)
                if self._idle and sched.runnable():
                    self._wake_one(taking=True)  # pass the wake-up along while work remains
                return run
            wait = None
            if until is not None:  # inline: stop when all has ended or time is up
                wait = until - time.monotonic()
                if not sched.unfinished or wait <= 0:
                    self._workers.discard(me)
                    return None
                wait = min(wait, 0.1)  # the caller's thread: stay responsive to interrupts
            self._idle += 1
            self._work.wait(wait)
            self._idle -= 1

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
                if self.recorder is not None:
                    self.recorder.end_run("stopped" if self.sched.unfinished else "finished",
                                          final=True)
                self._work.notify_all()
                self._changed.notify_all()
                workers = [w for w in self._workers if w is not me]
            if self.budget is not None:
                self.budget.wake()  # a worker paused for the journal goes on (and ends)
            self._stopping_executor()  # it may end given-up bodies it would wait for
            deadline = time.monotonic() + min(max(0.0, timeout), threading.TIMEOUT_MAX / 2)
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
                    raise RuntimeError(
                        f"{sched.unfinished} tasks are waiting but the engine is not running: "
                        "call start_execution() first")
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
        with paused_gc():
            return build_snapshot(rows, stats, version, running, self.max_workers, seq)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return self.sched.stats(self.max_workers, self._running)


class _SharedCapture:
    """The output capture a worker's batch of tiny items shares (see "Tiny items go in
    batches" above)."""

    __slots__ = ("box",)

    def __init__(self) -> None:
        self.box = capture.Capture(level=capture.LOG_LEVEL, limit=capture.LIMIT).start()

    def took_back(self, more: bool) -> None:
        """An item returned. A thread it started that still writes keeps this capture; the
        next item (``more``) gets a new one."""
        if not more or self.box.owns_threads():
            self.box.stop()
            if more:
                self.box = capture.Capture(level=capture.LOG_LEVEL, limit=capture.LIMIT).start()


def _mapped_value(rec: Record, up: Record) -> Any:
    """An upstream result mapped record ``rec`` expands over; a ``NoResult`` cannot be mapped
    over, nor an iterator read before (by this map, another, or a read a stop interrupted):
    it would give what was left of it, often nothing, as if the source were empty."""
    value = upstream_value(up)
    if isinstance(value, NoResult):
        raise ValueError(f"cannot map over {up.name!r}: it has no result ({value.state})")
    if isinstance(value, Iterator):
        mine = (rec.name,)  # a new tuple: whoever set the mark first is known by identity
        first = up.result.metadata.setdefault("iterator_read_by", mine)
        if first is not mine:
            by = "an earlier attempt of this map" if first[0] == rec.name else f"{first[0]!r}"
            raise ValueError(
                f"cannot map over {up.name!r}: its result is an iterator "
                f"({type(value).__name__}) that {by} read already, and an iterator can be read "
                f"once; return a list from {up.name!r}, or rerun {up.name!r} to make a new one")
    return value
