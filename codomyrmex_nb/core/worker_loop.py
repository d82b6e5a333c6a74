"""The engine's worker threads: each takes the next attempt under the engine's lock, runs
it outside the lock and records its outcome (a mixin of ``Engine``; see ``engine`` for the
design: one writer, tiny tasks cycled by one worker, tiny map items taken in batches).

A worker takes one ticket, or up to ``BATCH`` items of a map of tiny items (one lock, one
heap pop); each item of a batch still begins, is timed, captured and recorded on its own
(``_record``), so a stop or cancel meanwhile drops no finished item's result.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

from . import capture, frame_names
from .capture import THREADS_STARTED as started_threads
from .cpu_clock import CpuClock
from .executors import ThreadExecutor
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
from .records import Record
from .result_bytes import NO_SIZE
from .trigger_rules import NoResult

TINY = 100e-6  # seconds: attempts shorter than this on average run one worker at a time
BATCH = 16  # items of a map of tiny items a worker takes at once (one lock, one heap pop)


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


class WorkerLoop:
    """Mixed into ``Engine``: a worker's life, from taking a ticket to recording its outcome."""

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
                        run = self._next_run(me, until, clock)
                        if run is None:
                            return
                        runs = self._batch(run, me) if until is None else [run]
                        unrecorded = len(runs)
                if not runs:  # results wait for their journal commit: let it catch up
                    budget.pause(self._go_on)  # before taking a task (no timeout runs meanwhile)
                    clock.rested()
                    continue
                last = runs[-1]
                shared = _SharedCapture() if len(runs) > 1 else None
                for k, run in enumerate(runs):
                    if shared is not None:  # its items begin one by one: each its own time
                        run.taken_at = perf_counter()
                        run.box = shared.box  # it cuts its output from the batch's capture
                    run.clock = clock
                    if shared is None:
                        outcome = self._execute(run)
                    else:  # an item of a batch (``_execute``'s item step, one call less)
                        outcome = self._execute_item(run)
                        if run is last or started_threads:  # else its capture goes on
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
        if rec.parent is not None:
            return self._execute_item(run)
        try:
            if self.recorder is not None:
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
            return _not_called(exc)

    def _execute_item(self, run: Run) -> Outcome:
        """``_execute`` for an item: its binding, its fingerprint (or its result from the
        journal), its call."""
        rec = run.rec
        try:
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
            # how its items are called, worked out once per definition of its map
            # (``MapState.call_plan``; an item keeps the definition it was made with):
            # (fn, parameters, upstream, takes more than its binding, takes map_index)
            params, ups = rec.parameters, rec.ups
            plan = m.call_plan
            if plan is None or plan[0] is not fn or plan[1] is not params or plan[2] is not ups:
                plan = m.call_plan = (fn, params, ups, bool(params or ups or wants_upstream(fn)),
                                      takes_map_index(fn))
            if plan[3]:
                kwargs = build_kwargs(rec, fn, self.sched.records)
                kwargs.update(binding)  # its binding: its own dict, made for this attempt
            else:
                kwargs = binding
            if plan[4]:
                kwargs[INDEX] = rec.index
            run.call = functools.partial(fn, **kwargs) if kwargs else fn
            executor = self.executor  # _run_call, written out (once per item)
            outcome = run.execute() if executor.__class__ is ThreadExecutor else executor.run(run)
            return outcome if outcome.ok else _named_failure(outcome, fn, kwargs)
        except BaseException as exc:  # noqa: BLE001 - resolution errors fail the item, whole
            return _not_called(exc)

    def _run_call(self, run: Run, fn: Any, kwargs: dict[str, Any] | None) -> Outcome:
        """Run the attempt's call on the executor (``run.execute`` in this thread, for
        threads); a failure's traceback names cells as the notebook does."""
        executor = self.executor
        outcome = run.execute() if executor.__class__ is ThreadExecutor else executor.run(run)
        return outcome if outcome.ok else _named_failure(outcome, fn, kwargs)

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

    def _next_run(self, me: threading.Thread, until: float | None = None,
                  clock: CpuClock | None = None) -> Run | None:
        """Under the lock: the next attempt for worker ``me``, or None when it should exit
        (``clock``: its CPU clock, read again after it waited)."""
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
            if clock is not None:
                clock.rested()


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


def _named_failure(outcome: Outcome, fn: Any, kwargs: dict[str, Any] | None) -> Outcome:
    """A failed attempt's outcome as the user reads it: a ``TypeError`` binding the call
    marked as such (never retried), the traceback naming cells as the notebook does."""
    if outcome.error.__class__ is TypeError:
        outcome.unbound = binding_failed(outcome.error, fn, kwargs or {})
    outcome.traceback = frame_names.rename(outcome.traceback)  # "Cell In[5]"
    return outcome


def _not_called(exc: BaseException) -> Outcome:
    """The outcome of an attempt whose call could not be made (an action that does not
    resolve, an item's binding): failed, whole, at once."""
    now = time.perf_counter()
    return Outcome(False, None, exc, frame_names.rename(format_traceback(exc)), now, now)


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
