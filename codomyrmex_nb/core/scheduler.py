"""The scheduler: a pure state machine, the one writer of task state (no threads, no clock).

Shaped like ``graphlib.TopologicalSorter`` and dask's ``local.py``: callers hand
it definitions and outcomes, it decides what happens, and it reports back
through two channels the engine drains after every call:

- **transitions**: every change of a task's state goes through ``_move``, which
  updates the counts, stamps the next sequence number and, while someone
  listens, emits an ``Event(seq, time, task, previous -> status, detail)``;
- **effects**: what the driver must do in the world (``interrupt`` an
  abandoned attempt, arm a ``retry`` timer, arm or cancel a resource-wait
  timer). The scheduler never sleeps, locks, or touches a thread.

The engine calls every method under its one lock.

States and transitions (``_ALLOWED``; anything else is a bug and raises)::

    (new) ----define----> PENDING
    PENDING --ready-----> READY            every upstream task COMPLETED (or its trigger rule fired)
    READY ----start-----> RUNNING          a worker took it (resources granted)
    RUNNING --finish----> COMPLETED
    RUNNING --fail------> PENDING "retry"  retries left: waits retry_delay, then READY
                       \\-> FAILED          no retries left, or "not retried: <why>"
    READY ----fail------> PENDING | FAILED  a resource wait timed out (counts as an attempt)
    RUNNING --stop------> READY "interrupted"   the engine stopped; runs again on start
    PENDING|READY|RUNNING --cancel--> CANCELLED
    PENDING|READY --skip-----------> SKIPPED   an upstream task ended without success
                                               (or the task's trigger rule can no longer hold)
    any ------requeue---> PENDING "requeued"   rerun / re-add / redefine: it and its downstream
    any ------reset-----> (forgotten)

Every path ends in a terminal state: a task that ends without success skips
every pending task downstream of it, and a (re-)queued task whose upstream
already failed is skipped when it is settled (in topological order, so its
own dependents are skipped too).

Trigger rules (``trigger_rules``): a task whose rule is not the default
``all_success`` keeps a tally of how its upstream tasks ended (success, failed
or cancelled, upstream failed, not needed), counted when it is settled and
bumped where a default task's ``unmet`` drops or where it would be skipped; the
rule then fires (READY), waits, or can never hold (SKIPPED, its result saying
*upstream failed* or *not needed*; its dependents are then decided in turn). It
fires only once every upstream task ended, but for ``one_*`` rules, which may
fire earlier; a rule task that fired ignores later upstream outcomes. A task
skipped as not needed counts as skipped (not upstream failed) for the rules
downstream, and a default task after it is not needed either. Default tasks pay
one attribute test per edge for this. A rule task is restored from the journal
only once every upstream task completed.

Priority: among READY tasks the highest ``priority`` dispatches first, then the
longest remaining critical path (tasks still downstream, counting itself;
exact after a periodic O(V+E) pass, a one-level estimate between passes, so
amortised O(1) per definition; the pass is skipped while only tasks without
edges were defined, which change no path, and waits while at most one task is
ready, when there is nothing to choose: a chain never needs it), then
submission order.

Resources: a task's claims are granted all at once or queued (FIFO, with
reservations so a waiting writer is not overtaken for ever); see
``resources``. An abandoned attempt (timed out, cancelled, stopped) keeps its
resources until its thread returns, and its task does not start again until
then: a task never has two bodies running.

Retries: attempt ``n`` (1-based) that fails is retried while ``retry_count <
max_retries`` after ``min(MAX_DELAY, retry_delay * retry_backoff ** (n - 1)
+ uniform(0, retry_jitter))`` seconds, unless waiting cannot help
(``retry_on.not_retried``): a ``TypeError`` binding the call to the function
(a definition error) is never retried, and with ``retry_on`` set only failures
that are instances of those classes are. Such a failure ends FAILED at once,
its event detail and ``result.metadata["not_retried"]`` saying why. A late
event (a finish, retry-due or deadline for a superseded attempt or token)
changes nothing.

Costs: defining a task costs O(its own edges) (a cycle can only close when a
*known* task's dependencies change, so only then is the graph searched);
ready, dispatch and finish cost O(log n + own edges); the statistics are kept
incrementally (``stats`` is O(running attempts)).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .definitions import NameIndex, check_capacities, check_cycles, resolve, topological
from .events import Event
from .exceptions import (
    NotNeededError,
    ResourceTimeout,
    TaskCancelledError,
    TaskTimeoutError,
    UpstreamFailedError,
)
from .map_steps import MapSteps, urgency
from .model import (
    DEFINITION_FIELDS,
    MAX_DELAY,
    Attempt,
    OutputRef,
    Task,
    TaskResult,
    TaskStatus,
)
from .records import Record, Ticket
from .resources import ResourceManager
from .retry_on import not_retried
from .trigger_rules import FIRE, NOT_NEEDED, WAIT, decide, reason

S = TaskStatus
PENDING, READY, RUNNING = S.PENDING, S.READY, S.RUNNING
COMPLETED, FAILED, CANCELLED, SKIPPED = S.COMPLETED, S.FAILED, S.CANCELLED, S.SKIPPED
_UNFINISHED = (PENDING, READY, RUNNING)
_ENDED = frozenset(s for s in S if s.is_terminal)
_ALLOWED = frozenset({
    (None, PENDING), (PENDING, READY), (READY, RUNNING), (RUNNING, COMPLETED),
    (RUNNING, PENDING), (RUNNING, FAILED), (READY, PENDING), (READY, FAILED), (RUNNING, READY),
    (PENDING, CANCELLED), (READY, CANCELLED), (RUNNING, CANCELLED),
    (PENDING, SKIPPED), (READY, SKIPPED), (READY, READY), (PENDING, COMPLETED),
    (READY, COMPLETED), (None, READY),  # an item is made READY when dispatched
    *((s, PENDING) for s in S), *((s, None) for s in S),
})
_VERB = {FAILED: "failed", CANCELLED: "was cancelled", SKIPPED: "was skipped",
         COMPLETED: "completed"}
NOT_NEEDED_TYPE = "NotNeededError"  # the error type of a task skipped as not needed
# A rule task's tally: how each ended upstream task counts (trigger_rules' indices).
_SUCCESS, _FAILED, _UP_FAILED, _SKIPPED = 0, 1, 2, 3


def is_not_needed(rec: Record) -> bool:
    """Skipped because a trigger rule did not fire (Airflow's ``skipped``), not because an
    upstream task failed (``upstream_failed``)."""
    result = rec.result
    return rec.status is SKIPPED and result is not None and result.error_type == NOT_NEEDED_TYPE


def _outcome(rec: Record) -> int:
    """How an ended upstream task counts for a trigger rule."""
    status = rec.status
    if status is COMPLETED:
        return _SUCCESS
    if status is SKIPPED:
        return _SKIPPED if is_not_needed(rec) else _UP_FAILED
    return _FAILED  # failed or cancelled


def retry_delay(retry_delay: float, backoff: float, jitter: float, attempt: int,
                rand: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds before retry number ``attempt`` (1-based), never above ``MAX_DELAY``."""
    delay = retry_delay
    if backoff != 1.0 and delay > 0:
        exponent = attempt - 1
        if exponent * math.log(backoff) + math.log(delay) >= math.log(MAX_DELAY):
            return MAX_DELAY
        delay = delay * backoff ** exponent
    if jitter:
        delay += rand(0.0, jitter)
    return min(delay, MAX_DELAY)


class Scheduler(MapSteps):
    """Records, readiness, dispatch order, resources, retries and counts of one orchestrator."""

    def __init__(self, new_ticket: Callable[[Record], Any] = Ticket,
                 clock: Callable[[], float] = time.time) -> None:
        self.records: dict[str, Record] = {}
        self.by_name = NameIndex()
        self.counts = dict.fromkeys(S, 0)
        self.unfinished = 0
        self.seq = 0
        self.listener: Callable[[Event], None] | None = None  # views: Event objects
        self.recorder: Any = None  # the journal's ``Recorder``: each move goes onto its queue
        self.effects: list[tuple[Any, ...]] = []
        self.resources = ResourceManager()
        self.structure_version = 0
        self.running: dict[str, Any] = {}  # task id -> ticket in flight
        self._new_ticket, self._now = new_ticket, clock
        self._order = itertools.count()
        self._tokens = itertools.count()
        self._heap: list[tuple[int, int, int, int, Record]] = []
        self._ready_live = 0
        self._granted: deque[Any] = deque()
        self._defined_since_pass = 0
        self._paths_changed = False  # an edge added or removed since the last pass
        # statistics, kept as they change
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.run_time_total = 0.0
        self.run_time_n = 0
        self.busy_ended = 0.0
        self.retries = 0
        self.waiting_retry = 0
        self.waiting_resources = 0

    # == the one writer ===========================================================
    def _move(self, rec: Record, to: TaskStatus | None, detail: str | None = None,
              kind: str = "status", execution_time: float | None = None,
              now: float | None = None) -> None:
        """Every change of a task's state passes here: counts, sequence number, record out.
        ``now``: the clock as the caller just read it (one reading less per move)."""
        frm = rec.status
        if (frm, to) not in _ALLOWED:
            raise AssertionError(f"scheduler bug: {rec.name!r} cannot go {frm} -> {to}")
        parent = rec.parent
        m = None if parent is None else parent.mapping
        counts = self.counts if m is None else m.counts
        if frm is not None:
            counts[frm] -= 1
            if parent is None and (frm is PENDING or frm is READY or frm is RUNNING):
                self.unfinished -= 1
        if to is not None:
            counts[to] += 1
            if parent is None and (to is PENDING or to is READY or to is RUNNING):
                self.unfinished += 1
        if parent is not None and kind == "status":
            kind = "item"
        rec.status = to
        rec.view = None
        self.seq += 1
        listener, recorder = self.listener, self.recorder
        if listener is not None or recorder is not None:
            if now is None:
                now = self._now()
            if recorder is not None:  # the journal reads the record's latest move
                rec.jseq, rec.jtime, rec.jdetail = self.seq, now, detail
                sink = recorder.sink  # the journal of the open run, else None
                if m is not None and (sink is not None or
                                      (sink := recorder.open_run()) is not None):
                    # an item: its index onto its map's list, its map onto the journal's
                    # queue once per commit (the journal reads the items' latest moves)
                    if to is RUNNING:
                        recorder.worked = True
                    if not m.jmoved:
                        sink._mapped.append((parent, m))
                    m.jmoved.append(rec.index)
                    if sink._idle:
                        sink._rouse()
                elif sink is None:  # no run open yet: this move opens one
                    recorder.on_transition(self.seq, now, rec.id, rec.name, frm, to, detail)
                else:  # four times a task: one reference onto a deque, no row made here
                    if to is RUNNING:
                        recorder.worked = True
                    sink._touched.append(rec)
                    if sink._idle:
                        sink._rouse()
            if listener is not None:
                listener(Event(kind, rec.id, rec.name, to, frm, detail, now,
                               execution_time, self.seq))

    # == defining ==================================================================
    def lookup(self, ref: Any) -> Record | None:
        """A record by Task, id or name (the latest task of that name)."""
        if isinstance(ref, Task):
            rec = ref._record
            return rec if rec is not None and self.records.get(rec.id) is rec else None
        rec = self.records.get(ref)
        if rec is None and isinstance(ref, str):
            rec = self.by_name.last(ref)
        return rec

    def restore(self, rec: Record, value: Any, when: float, source: str,
                fingerprint: str | None = None) -> None:
        """PENDING -> COMPLETED without running: its result came back from the journal.

        Only at definition (or when a resume is asked for a task not started yet):
        the task never reaches a worker. ``source`` says from where, for the result.
        A task with a trigger rule is restored only once every upstream task completed:
        its recorded result may have been computed after a failure.
        """
        if rec.rule is not None and any(up.status is not COMPLETED for up in rec.ups):
            return
        if rec.status is READY and not rec.attempts:
            self._withdraw(rec)  # queued but never started: it need not run at all
        elif rec.status is not PENDING or rec.retry_token is not None:
            return
        now = self._now()
        rec.restored = when
        rec.fingerprint = fingerprint
        rec.result = TaskResult(True, value, task_id=rec.id, execution_time=0.0,
                                metadata={"attempts": 0, "retries": 0, "restored": True,
                                          "restored_from": source, "recorded_at": when})
        rec.completed_at = self.last_end = now
        self._move(rec, COMPLETED, "restored", execution_time=0.0)
        self._completed_upstream(rec, now)

    def _completed_upstream(self, rec: Record, now: float) -> None:
        """``rec`` just completed (ran or restored): each pending dependent has one unmet
        upstream task fewer (ready at none), or counts a success for its trigger rule. A
        dependent not settled yet (later in the batch a restore is settling) counts when it is:
        its ``unmet`` may still be 0, its tally None."""
        for down in rec.downs:
            if down.status is PENDING and down.retry_token is None:
                if down.rule is None:
                    if down.unmet > 0:
                        down.unmet -= 1
                        if down.unmet == 0:
                            self._make_ready(down, now)
                elif self._rule_step(down, _SUCCESS, now):
                    self._skip_downstream(down, now)

    def define_new(self, task: Task) -> None:
        """The common case, ``create_task``: one task just built (so validated), unknown here.

        Costs O(its own edges): a task nothing depends on yet cannot close a
        cycle, so only its dependencies are looked up. Anything unusual (an
        unknown, ambiguous or foreign dependency, output placeholders,
        resources) takes the general path, which explains.
        """
        ups = self._plain_upstream(task)
        if ups is None:
            return self.define([task])
        now = self._now()
        rec = self._add(task, ups, now)
        self.structure_version += 1
        self._settle_all([rec], now)

    def _plain_upstream(self, task: Task) -> list[Record] | None:
        """The records ``task`` depends on, if every one is a plain, unambiguous reference."""
        records = self.records
        if task._record is not None or task.id in records or task._resources:
            return None
        for value in task.parameters.values():
            if isinstance(value, OutputRef | list | tuple | set | dict):
                return None
        ups: list[Record] = []
        for spec in task.dependencies:
            if type(spec) is Task:
                rec = spec._record
                if rec is None or records.get(rec.id) is not rec:
                    return None
            elif type(spec) is str:
                rec = records.get(spec)
                if rec is None:
                    rec = self.by_name.one(spec)
                    if rec is None:
                        return None
            else:
                return None
            ups.append(rec)
        return list(dict.fromkeys(ups)) if len(ups) > 1 else ups

    def _add(self, task: Task, ups: list[Record], now: float, order: int | None = None) -> Record:
        """A new record for ``task``, linked to its upstream records and PENDING; ``order`` is
        its place in submission order (ties between equally urgent tasks go by it)."""
        rec = Record(task, next(self._order) if order is None else order)
        self.records[task.id] = rec
        self.by_name.add(task.name, rec)
        task._record = rec
        self._link(rec, ups)
        self._move(rec, PENDING, kind="added", now=now)
        rec.queued_at = now
        return rec

    def define(self, batch: list[Task], restored: dict[str, Any] | None = None) -> None:
        """Add new tasks and re-queue known ones; validated whole first (all or nothing).

        A refused batch leaves each known Task's ``dependencies`` as the
        scheduler has them, so nothing rejected lingers on the object.
        ``restored`` maps task id -> (value, when, source) for new tasks whose
        result came back from the journal: they complete without running.
        """
        try:
            self._define(batch, restored or {})
        except ValueError:
            self._restore_dependencies(batch)
            raise

    def _define(self, batch: list[Task], restored: dict[str, Any]) -> None:
        known = {t.id: self.records.get(t.id) for t in batch}
        for t in batch:
            rec = t._record
            if rec is not None and known[t.id] is not rec:
                raise ValueError(f"task {t.name!r} already belongs to another orchestrator; "
                                 "build a new Task for this one")
            if rec is None and known[t.id] is not None:
                raise ValueError(f"task id {t.id} is already used by {known[t.id].task!r}")
            if not t.is_plain():
                t.validate()
        check_capacities(batch, self.resources)
        resolved = resolve(batch, self.records, self.by_name)
        changed = [t for t in batch if known[t.id] is not None
                   and tuple(u.id for u in known[t.id].ups) != tuple(resolved[t.id])]
        check_cycles(batch, resolved, self.records, bool(changed))
        for t in changed:
            state = known[t.id].status
            if state is READY or state is RUNNING:
                raise ValueError(f"task {t.name!r} is already {state.value}; cancel it before "
                                 "changing its dependencies (or use rerun/redefine)")
        for t in batch:
            for res in t._resources or ():
                if res.capacity is not None:
                    self.resources.set_capacity(res.key, res.capacity)
        now = self._now()
        fresh: list[Record] = []
        # Records are made upstream first, but numbered in the order they were submitted.
        base = next(self._order)
        self._order = itertools.count(base + len(batch))
        submitted = {t.id: base + i for i, t in enumerate(batch)}
        for t in topological(batch, resolved):
            rec = known[t.id]
            if rec is None:
                fresh.append(self._add(t, [self.records[u] for u in resolved[t.id]], now,
                                       submitted[t.id]))
            elif rec.status.is_terminal:
                self._apply_asks(rec)
                self._relink(rec, resolved[t.id])
                fresh.extend(self._requeue_chain(rec, now))
            elif rec.status is PENDING and rec.retry_token is None:
                self._apply_asks(rec)
                self._relink(rec, resolved[t.id])
                rec.tally = None  # counted afresh when settled
                self.structure_version += 1
                fresh.append(rec)
            else:
                t._asked = None  # pending a retry, ready or running: left alone
                t.dependencies = [u.id for u in rec.ups]
        self.structure_version += 1
        self._settle_all(fresh, now, restored)

    def _restore_dependencies(self, batch: list[Task]) -> None:
        """A refused re-add leaves each known Task's dependencies as the scheduler has them."""
        for t in batch:
            rec = self.records.get(t.id)
            if rec is not None and rec.task is t:
                t.dependencies = [u.id for u in rec.ups]

    def _link(self, rec: Record, ups: list[Record]) -> None:
        rec.ups = tuple(ups)
        for up in ups:
            if up.downs:
                up.downs.append(rec)
            else:
                up.downs = [rec]
        rec.task.dependencies = [u.id for u in ups]
        self._defined_since_pass += 1
        if not ups:  # no path changed but its own, which its downstream tasks (if it was
            return  # redefined) already set
        self._paths_changed = True
        # Cheap estimate until the next full pass: a fresh sink, one level up.
        mine = rec.critical
        for up in ups:
            if up.critical <= mine:
                up.critical = mine + 1

    def _relink(self, rec: Record, upstream: list[str]) -> None:
        if [u.id for u in rec.ups] == upstream:
            rec.task.dependencies = list(upstream)
            return
        for up in rec.ups:
            up.downs.remove(rec)
        if rec.ups:  # an edge gone: its upstream task's path may be shorter now
            self._paths_changed = True
        self._link(rec, [self.records[u] for u in upstream])

    def _apply_asks(self, rec: Record) -> None:
        """Act on the user's writes to the Task: its definition and a ``retry_count`` request."""
        task = rec.task
        if task.name != rec.name:
            self._rename(rec, task.name)
        claimed = rec.claims
        rec.read_definition()
        if claimed and claimed != rec.claims:
            self._free_pools(claimed)
        asked, task._asked = task._asked, None
        if asked and "retry_count" in asked:
            self.retries += asked["retry_count"] - rec.retry_count
            rec.retry_count = asked["retry_count"]

    def _rename(self, rec: Record, name: str) -> None:
        self.by_name.remove(rec.name, rec)
        self.by_name.add(name, rec)
        rec.name = name

    def redefine(self, rec: Record, probe: Task) -> None:
        """Give ``rec``'s Task the definition of ``probe`` (a validated copy with the same id),
        re-wire it and re-queue it with everything downstream; raises before changing anything."""
        resolved = resolve([probe], self.records, self.by_name)[probe.id]
        for res in probe.resources:
            if self._pool_used(res.key, besides=rec):  # its only user may resize a pool
                self.resources.check_capacity(res)
        if resolved != [u.id for u in rec.ups]:
            check_cycles([probe], {probe.id: resolved}, self.records, True)
        task = rec.task
        for field in DEFINITION_FIELDS:
            setattr(task, field, getattr(probe, field))
        self._relink(rec, resolved)
        for res in task.resources:
            if res.capacity is not None:
                self.resources.set_capacity(res.key, res.capacity)
        reuse = self._reusable_items(rec) if rec.mapping is not None else None
        self.requeue(rec, fresh_budget=True)
        if reuse:  # a changed list: the items whose content and code did not change are kept
            rec.mapping.reuse = reuse

    # == re-queueing ================================================================
    def requeue(self, rec: Record, fresh_budget: bool = False) -> None:
        """Queue ``rec`` and everything downstream again, interrupting any of them that runs.

        ``rec``'s Task is re-read (validated first), so fields the user changed
        take effect; tasks downstream keep the definition they had.
        """
        if not rec.task.is_plain():
            rec.task.validate()
        now = self._now()
        if fresh_budget:
            self.retries -= rec.retry_count
            rec.retry_count = 0
        self._apply_asks(rec)
        chain = self._requeue_chain(rec, now)
        self.structure_version += 1
        self._settle_all(chain, now)

    def _requeue_chain(self, root: Record, now: float) -> list[Record]:
        return self._requeue_recs(self.descendants(root, include_self=True), now, root)

    def _requeue_recs(self, chain: list[Record], now: float,
                      root: Record | None = None) -> list[Record]:
        for rec in chain:
            status = rec.status
            if rec.mapping is not None:
                self._end_chained(self._close_map(rec, "interrupted"), "interrupted")
                self._withdraw(rec)
                self._forget_items(rec)
                rec.mapping.reset()
            if status is RUNNING and rec.current is not None:
                self._abandon(rec.current, "interrupted")
            elif not status.is_terminal:
                self._withdraw(rec)
            if rec is not root:
                self.retries -= rec.retry_count
                rec.retry_count = 0  # a fresh run downstream gets its full retry budget
            if rec.counted_time is not None:
                self.run_time_total -= rec.counted_time
                self.run_time_n -= 1
                rec.counted_time = None
            rec.result = None
            rec.ready_at = rec.started_at = rec.completed_at = None
            rec.wait_dependencies = rec.wait_resources = rec.wait_worker = 0.0
            rec.wait_by_resource = None
            rec.restored = None
            rec.forget_fingerprint()  # made again as it starts: its upstream may have changed
            if self.recorder is not None:
                self.recorder.run_at_start(rec.id)  # asked to run: never restored as it starts
            rec.tally = None  # a rule task counts its upstream afresh when settled
            rec.queued_at = now
            self._move(rec, PENDING, "requeued")
        return chain

    def descendants(self, root: Record, include_self: bool = False) -> list[Record]:
        """Every record downstream of ``root``, in topological order (Kahn within the set)."""
        seen: dict[Record, int] = {root: 0}
        stack = [root]
        while stack:
            for down in stack.pop().downs:
                if down not in seen:
                    seen[down] = 0
                    stack.append(down)
        for rec in seen:
            for down in rec.downs:
                seen[down] += 1
        order = [root]
        for rec in order:  # grows while we walk it
            for down in rec.downs:
                seen[down] -= 1
                if seen[down] == 0:
                    order.append(down)
        return order if include_self else order[1:]

    def _settle_all(self, recs: list[Record], now: float,
                    restored: dict[str, Any] | None = None) -> None:
        """Place (re-)queued PENDING tasks, upstream first: skipped, waiting, or ready
        (or completed at once, when ``restored`` holds its result from the journal)."""
        for rec in recs:
            if rec.status is not PENDING or rec.retry_token is not None:
                continue  # skipped meanwhile by an upstream failure
            if restored and rec.id in restored:
                rec.unmet = sum(1 for up in rec.ups if up.status is not COMPLETED)
                self.restore(rec, *restored[rec.id])
                if rec.status is not PENDING:
                    continue
            if rec.rule is not None:
                self._settle_rule(rec, now)
                continue
            unmet, blocked, unneeded = 0, None, None
            for up in rec.ups:
                status = up.status
                if status is not COMPLETED:
                    if status in _ENDED:  # failed, cancelled or skipped: this one cannot run
                        if status is SKIPPED and is_not_needed(up):
                            unneeded = unneeded or up  # a failure, if any, is the cause
                            continue
                        blocked = up
                        break
                    unmet += 1
            blocked = blocked or unneeded
            if blocked is not None:
                self._skip(rec, blocked, blocked, now)
                self._skip_downstream(rec, now)
                continue
            rec.unmet = unmet
            if unmet == 0:
                self._make_ready(rec, now)
            elif rec.mapping is not None:
                self._try_chain(rec, now)

    # == trigger rules (tasks whose rule is not all_success; see trigger_rules) ===========
    def _settle_rule(self, rec: Record, now: float) -> None:
        """Count how a (re-)queued rule task's upstream tasks ended so far, and decide."""
        tally = rec.tally = [0, 0, 0, 0]
        for up in rec.ups:
            if up.status in _ENDED:
                tally[_outcome(up)] += 1
        verdict = decide(rec.rule, len(rec.ups), *tally)
        if verdict is FIRE:
            self._make_ready(rec, now)
        elif verdict is not WAIT:
            self._rule_skip(rec, verdict, now)
            self._skip_downstream(rec, now)

    def _rule_step(self, rec: Record, outcome: int, now: float) -> bool:
        """One more upstream task of the PENDING rule task ``rec`` ended; True if that
        decided it can never run (it is SKIPPED: the caller skips onwards). A task not
        settled yet (defined or re-queued in the batch being settled) counts when it is."""
        tally = rec.tally
        if tally is None:
            return False
        tally[outcome] += 1
        verdict = decide(rec.rule, len(rec.ups), *tally)
        if verdict is WAIT:
            return False
        if verdict is FIRE:
            self._make_ready(rec, now)
            return False
        self._rule_skip(rec, verdict, now)
        return True

    def _rule_skip(self, rec: Record, verdict: str, now: float) -> None:
        """PENDING -> SKIPPED: ``rec``'s rule can no longer hold; the result says why, and
        whether it was not needed or its upstream failed."""
        self._withdraw(rec)
        ended = [u for u in rec.ups if u.status in _ENDED and u.status is not COMPLETED]
        if verdict is NOT_NEEDED:
            msg = reason(rec.rule, verdict, len(rec.ups), *rec.tally)
            error: BaseException = NotNeededError(msg)
            kind, cause = NOT_NEEDED_TYPE, None
        else:
            failed = [u for u in ended if not is_not_needed(u)]
            first = failed[0] if failed else None
            msg = reason(rec.rule, verdict, len(rec.ups), *rec.tally,
                         names=", ".join(repr(u.name) for u in failed))
            error, kind = UpstreamFailedError(msg), "UpstreamFailedError"
            cause = None if first is None else (
                first.result.metadata.get("root_cause", first.name)
                if first.status is SKIPPED and first.result is not None else first.name)
        rec.result = self._result(rec, False, 0.0, None, error=error, error_type=kind,
                                  skipped_because=[u.name for u in ended], root_cause=cause,
                                  trigger_rule=rec.rule)
        self._ended(rec, SKIPPED, now, msg)

    def not_needed(self) -> list[Record]:
        """Tasks skipped as not needed (a trigger rule that did not fire, or a task upstream
        of them not needed): not failures, so a run with only these ended well."""
        if not self.counts[SKIPPED]:
            return []
        return [r for r in self.records.values() if is_not_needed(r)]

    # == readiness and dispatch ===================================================
    def _make_ready(self, rec: Record, now: float, detail: str | None = None) -> None:
        if rec.ready_at is None:  # first time since (re-)queued: dependencies just finished
            rec.ready_at = now
            rec.wait_dependencies = now - (rec.queued_at or now)
        rec.runnable_since = now
        self._move(rec, READY, detail, now=now)
        if rec.unwinding:
            rec.parked = True  # its previous attempt's thread has not returned yet
        else:
            self._push(rec)

    def _push(self, rec: Record) -> None:
        token = rec.heap_token = next(self._tokens)
        heapq.heappush(self._heap, (rec.prio, -rec.critical, rec.order, token, rec))
        self._ready_live += 1

    def runnable(self) -> int:
        """How many tasks a worker could take now (an upper bound: some may wait on resources)."""
        return self._ready_live + len(self._granted)

    def next_ticket(self) -> Any | None:
        """The best READY task whose resources are granted, as a ticket to ``start``; or None."""
        granted = self._granted
        while granted:
            ticket = granted.popleft()
            rec = ticket.rec
            if rec.status is READY and rec.waiting is ticket:
                rec.waiting = None
                return ticket
            self._release(ticket)  # withdrawn meanwhile
        if self._defined_since_pass and self._defined_since_pass * 4 >= len(self.records) + 16 \
                and self._ready_live > 1:  # with one task ready there is nothing to choose
            if self._paths_changed:
                self._critical_pass()
            else:  # only tasks without edges since the last pass: every path is exact
                self._defined_since_pass = 0
        heap = self._heap
        while heap:
            entry = heapq.heappop(heap)
            rec = entry[4]
            if rec.heap_token != entry[3]:
                continue
            rec.heap_token = -1
            self._ready_live -= 1
            if rec.status is not READY:
                if rec.mapping is None or rec.status is not RUNNING:
                    continue
                rec = self._take_item(rec)  # a mapped task's next item
                if rec is None:
                    continue
            ticket = self._new_ticket(rec)
            if not rec.claims:
                return ticket
            ticket.claims = rec.claims
            if self.resources.acquire(ticket, ticket.claims):
                return ticket
            self._wait_for_resources(rec, ticket)
        return None

    def _wait_for_resources(self, rec: Record, ticket: Any) -> None:
        now = self._now()
        ticket.wait_since = now
        rec.waiting = ticket
        rec.blocked_on = self.resources.blocking_key(ticket)
        self.waiting_resources += 1
        if rec.resource_timeout is not None:
            self.effects.append(("resource_wait", ticket, rec.resource_timeout))
        self._move(rec, READY, f"waiting for {rec.blocked_on}")

    def start(self, ticket: Any, worker: str | None) -> Attempt:
        """READY -> RUNNING: the worker took the ticket; returns the new attempt."""
        rec = ticket.rec
        now = self._now()
        rec.wait_worker += now - rec.runnable_since
        if rec.fingerprint and not rec.attempts and rec.parent is None and rec.mapping is None:
            rec.forget_fingerprint()  # made early, to look a task up: made again as it
            # starts, from what it reads now (a global changed since would be recorded under
            # the old)
        attempt = Attempt(len(rec.attempts) + 1, worker, now)
        rec.attempts += (attempt,)
        ticket.attempt = attempt
        rec.current = ticket
        self.running[rec.id] = ticket
        if rec.started_at is None:
            rec.started_at = now
        if self.first_start is None:
            self.first_start = now
        self._move(rec, RUNNING, now=now)
        return attempt

    # == outcomes ===================================================================
    def finish(self, ticket: Any, ok: bool, value: Any = None, error: BaseException | None = None,
               tb: str | None = None, elapsed: float = 0.0, logs: str | None = None,
               cpu_time: float | None = None, peak_memory: int | None = None,
               displays: list[Any] | None = None, unbound: bool = False,
               run_delay: float | None = None) -> bool:
        """The attempt's code returned (or raised). False if it was abandoned or superseded.

        ``unbound``: the error is a ``TypeError`` binding the call (never retried).

        What the attempt printed and cost is kept on its ``Attempt`` either way (a
        timed-out body's last lines explain the timeout); the result of an
        abandoned or superseded attempt is dropped.
        """
        rec = ticket.rec
        self._release(ticket)
        attempt = ticket.attempt
        if attempt is not None and (logs is not None or cpu_time is not None):
            attempt.logs, attempt.cpu_time, attempt.peak_memory = logs, cpu_time, peak_memory
            attempt.displays, attempt.run_delay = displays, run_delay
            rec.view = None
            result = rec.result
            if ticket.abandoned and result is not None and result.logs is None \
                    and rec.attempts and rec.attempts[-1] is attempt:
                result.logs = logs
            if ticket.abandoned and self.listener is not None:  # a cancelled attempt's output
                self.listener(Event("output", rec.id, rec.name, rec.status, rec.status,
                                    "output", self._now()))  # arrived: an open inspector shows it
        if ticket.abandoned:
            rec.unwinding -= 1
            if rec.parked and not rec.unwinding:
                rec.parked = False
                if rec.status is READY:
                    self._push(rec)
            if rec.parent is not None:
                self._item_body_returned(rec)
            return False
        if rec.current is not ticket:
            return False
        now = self._now()
        if ok and rec.mapping is not None:  # a mapped task's items are known: they run now
            self._end_attempt(rec, ticket, "expanded", now)
            self._expanded(rec, value, now)
            return True
        attempt = self._end_attempt(rec, ticket, "completed" if ok else "failed", now)
        if ok:
            rec.result = self._result(rec, True, elapsed, attempt, data=value)
            rec.result.logs, rec.result.displays = logs, displays
            self._ended(rec, COMPLETED, now)
            self._completed_upstream(rec, now)
        else:
            self._failed(rec, error, tb, elapsed, attempt, now, unbound=unbound)
            rec.result.logs, rec.result.displays = logs, displays
        return True

    def _end_attempt(self, rec: Record, ticket: Any, outcome: str, now: float) -> Attempt:
        attempt = ticket.attempt
        attempt.ended_at = now
        attempt.outcome = outcome
        self.busy_ended += now - attempt.started_at
        rec.current = None
        del self.running[rec.id]
        return attempt

    def _ended(self, rec: Record, status: TaskStatus, now: float,
               detail: str | None = None) -> None:
        rec.completed_at = self.last_end = now
        result = rec.result
        parent = rec.parent
        if parent is None and result is not None and rec.attempts \
                and (status is COMPLETED or status is FAILED):
            took = rec.counted_time = result.execution_time
            self.run_time_total += took
            self.run_time_n += 1
        self._move(rec, status, detail,
                   execution_time=None if result is None else result.execution_time, now=now)
        if parent is not None:
            self._item_ended(rec, now)

    def _result(self, rec: Record, success: bool, elapsed: float, attempt: Attempt | None,
                data: Any = None, error: BaseException | None = None, tb: str | None = None,
                error_type: str | None = None, **metadata: Any) -> TaskResult:
        result = TaskResult.of_attempts(rec.id, success, len(rec.attempts), rec.retry_count,
                                        None if attempt is None else attempt.worker, data,
                                        error, error_type, elapsed, tb)
        if metadata:
            result.metadata.update(metadata)
        return result

    def _failed(self, rec: Record, error: BaseException | None, tb: str | None, elapsed: float,
                attempt: Attempt | None, now: float, error_type: str | None = None,
                final: TaskStatus = FAILED, unbound: bool = False) -> None:
        rec.result = self._result(rec, False, elapsed, attempt, error=error, tb=tb,
                                  error_type=error_type)
        detail = None
        if final is FAILED and rec.retry_count < rec.max_retries and rec.mapping is None:
            why = not_retried(rec.retry_on, error, unbound)
            if why is None:
                rec.retry_count += 1
                self.retries += 1
                delay = retry_delay(rec.retry_delay, rec.retry_backoff, rec.retry_jitter,
                                    rec.retry_count)
                rec.retry_at = now + delay
                token = rec.retry_token = next(self._tokens)
                self.waiting_retry += 1
                self._move(rec, PENDING, "retry")
                self.effects.append(("retry", rec, token, delay))
                return
            rec.result.metadata["not_retried"] = why  # retries are left, but waiting cannot help
            detail = f"not retried: {why}"
        self._ended(rec, final, now, detail)
        self._skip_downstream(rec, now)

    def retry_due(self, rec: Record, token: int) -> None:
        """A retry delay ran out; a stale token (cancelled, re-queued) changes nothing."""
        if rec.retry_token != token or rec.status is not PENDING or not self.known(rec):
            return
        self._clear_retry(rec)
        self._make_ready(rec, self._now(), "retry due")

    def _clear_retry(self, rec: Record) -> None:
        rec.retry_token = rec.retry_at = None
        self.waiting_retry -= 1
        self.effects.append(("cancel_retry", rec))

    def deadline(self, ticket: Any) -> None:
        """The attempt ran past its timeout."""
        rec = ticket.rec
        if rec.current is not ticket or ticket.abandoned:
            return
        limit = f" after {rec.timeout:g}s" if rec.timeout is not None else ""
        err = TaskTimeoutError(f"task {rec.name!r} timed out{limit}")
        started = ticket.attempt.started_at
        self._abandon(ticket, "timeout")
        now = self._now()
        self._failed(rec, err, None, now - started, ticket.attempt, now, "TimeoutError")

    def resource_timeout(self, ticket: Any) -> None:
        """The task waited longer than its resource timeout; charged as a failed attempt."""
        rec = ticket.rec
        if rec.waiting is not ticket or rec.status is not READY or not ticket.wait_since:
            return
        key = rec.blocked_on
        waited_since = ticket.wait_since
        self._withdraw(rec)
        now = self._now()
        waited = now - waited_since
        rec.attempts += (Attempt(len(rec.attempts) + 1, None, waited_since, now,
                                 "resource-timeout"),)
        err = ResourceTimeout(
            f"task {rec.name!r} waited longer than its resource timeout for {key}; "
            "raise TaskResource.timeout or free the resource sooner")
        rec.wait_resources += waited
        if key is not None:
            self._add_resource_wait(rec, key, waited)
        self._failed(rec, err, None, 0.0, None, now, "ResourceTimeout")

    def _add_resource_wait(self, rec: Record, key: str, seconds: float) -> None:
        if rec.wait_by_resource is None:
            rec.wait_by_resource = {}
        rec.wait_by_resource[key] = rec.wait_by_resource.get(key, 0.0) + seconds

    # == cancelling, skipping, stopping ==============================================
    def cancel(self, rec: Record) -> bool:
        """Cancel a pending, ready or running task (dependents are skipped); False if it ended."""
        if rec.status.is_terminal:
            return False
        chained = self._close_map(rec) if rec.mapping is not None else []  # its items first:
        # cancelled, the undispatched never run; then the record; then maps chained on it
        self._cancel_now(rec, TaskCancelledError(f"task {rec.name!r} was cancelled"))
        self._end_chained(chained)
        return True

    def _cancel_now(self, rec: Record, err: BaseException) -> None:
        """An unfinished task or item ends CANCELLED now (a running attempt is abandoned)."""
        now = self._now()
        ticket, attempt, elapsed = rec.current, None, 0.0
        if ticket is not None:
            attempt = ticket.attempt
            elapsed = now - attempt.started_at
            self._abandon(ticket, "cancelled")
        else:
            self._withdraw(rec)
        self._failed(rec, err, None, elapsed, attempt, now, "CancelledError", final=CANCELLED)

    def _abandon(self, ticket: Any, why: str) -> None:
        """Give up on a running attempt; its resources stay held until its thread returns."""
        rec = ticket.rec
        ticket.abandoned = why
        self._end_attempt(rec, ticket, why, self._now())
        rec.unwinding += 1
        if rec.parent is not None:  # an item: its map knows too, beyond a rerun or redefinition
            rec.parent.mapping.body_abandoned(rec.index)
        self.effects.append(("interrupt", ticket, why))

    def _withdraw(self, rec: Record) -> None:
        """Take a task that is not running out of every queue it may be in."""
        if rec.retry_token is not None:
            self._clear_retry(rec)
        rec.blocked_on = None
        rec.parked = False
        if rec.heap_token >= 0:
            rec.heap_token = -1
            self._ready_live -= 1
            if rec.mapping is not None:
                rec.mapping.in_heap = False
        ticket = rec.waiting
        if ticket is not None:
            rec.waiting = None
            if ticket.wait_since:  # still queued for its resources
                ticket.wait_since = 0.0
                self.waiting_resources -= 1
                self.effects.append(("cancel_resource_wait", ticket))
                for granted in self.resources.withdraw(ticket):
                    self._grant(granted)
            else:  # granted, not yet taken by a worker
                self._release(ticket)

    def _skip_downstream(self, root: Record, now: float) -> None:
        """``root`` ended without success: skip every pending task downstream of it, but for
        tasks whose trigger rule may still fire (or fires now: a cleanup ``all_done``)."""
        stack = [root]
        while stack:
            node = stack.pop()
            for down in node.downs:
                if down.rule is None:
                    if down.status is PENDING or down.status is READY:
                        self._skip(down, node, root, now)
                        stack.append(down)
                elif down.status is PENDING and down.retry_token is None \
                        and self._rule_step(down, _outcome(node), now):
                    stack.append(down)

    def _skip(self, rec: Record, blocked: Record, root: Record, now: float) -> None:
        self._withdraw(rec)
        if is_not_needed(blocked):  # Airflow's all_success after a skipped upstream: skipped
            msg = f"not needed: upstream task {blocked.name!r} was not needed"
            rec.result = self._result(rec, False, 0.0, None, error=NotNeededError(msg),
                                      error_type=NOT_NEEDED_TYPE, skipped_because=[blocked.name])
            self._ended(rec, SKIPPED, now, msg)
            return
        msg = f"skipped because upstream task {blocked.name!r} {_VERB[blocked.status]}"
        cause = root
        if blocked.status is SKIPPED and blocked.result is not None:
            cause_name = blocked.result.metadata.get("root_cause", blocked.name)
        else:
            cause_name = cause.name
        if cause_name != blocked.name:
            msg += f" (root cause: {cause_name!r})"
        rec.result = self._result(rec, False, 0.0, None, error=UpstreamFailedError(msg),
                                  error_type="UpstreamFailedError",
                                  skipped_because=[blocked.name], root_cause=cause_name)
        self._ended(rec, SKIPPED, now, f"upstream failed: {cause_name!r}")

    def started(self) -> None:
        """The engine starts: waits count from now for the tasks it could not run before.

        A task defined while the engine was stopped did not wait for anything the
        engine could have done: its queue time moves to now (its dependency wait
        then runs from now to its last upstream's end), a task already ready is
        ready from now (no dependency wait), and a task waiting for a worker or a
        retry waits from now. ``created_at`` keeps when it was defined.
        """
        now = self._now()
        for rec in self.records.values():
            if rec.status is not PENDING and rec.status is not READY:
                continue
            if rec.runnable_since < now:
                rec.runnable_since = now
            if rec.started_at is not None:
                continue
            if rec.ready_at is None:
                if rec.queued_at is None or rec.queued_at < now:
                    rec.queued_at = now
            elif rec.ready_at < now:
                rec.queued_at = rec.ready_at = now
                rec.wait_dependencies = 0.0

    def stop(self) -> None:
        """The engine stops: running attempts are abandoned and their tasks go back to READY."""
        now = self._now()
        for ticket in list(self.running.values()):
            rec = ticket.rec
            self._abandon(ticket, "interrupted")
            self._make_ready(rec, now, "interrupted")
            if rec.parent is None and rec.mapping is None:  # fingerprinted again as it starts
                rec.forget_fingerprint()  # in the next run (what it reads may change
                # meanwhile), so that run defines it too

    def interrupted(self, ticket: Any, logs: str | None = None) -> None:
        """An inline attempt's body raised ``KeyboardInterrupt`` (Ctrl-C while debugging with
        the sync executor): the attempt ends as interrupted and its task goes back to READY,
        as a stop leaves it, neither failed nor retried; the next wait runs it again."""
        rec = ticket.rec
        self._release(ticket)
        if ticket.abandoned or rec.current is not ticket:
            return
        now = self._now()
        attempt = self._end_attempt(rec, ticket, "interrupted", now)
        attempt.logs = logs
        self._make_ready(rec, now, "interrupted")

    def release(self, ticket: Any) -> None:
        """A ticket's thread returned without an outcome to record (executor error paths)."""
        self._release(ticket)

    def _release(self, ticket: Any) -> None:
        if not ticket.claims:
            return
        for granted in self.resources.release(ticket):
            self._grant(granted)
        ticket.claims = ()

    def _grant(self, ticket: Any) -> None:
        rec = ticket.rec
        self.waiting_resources -= 1
        self.effects.append(("cancel_resource_wait", ticket))
        now = self._now()
        waited = now - ticket.wait_since
        ticket.wait_since = 0.0  # granted: no longer waiting
        if rec.blocked_on is not None:
            self._add_resource_wait(rec, rec.blocked_on, waited)
        rec.blocked_on = None
        rec.runnable_since = now
        rec.wait_resources += waited
        self._granted.append(ticket)

    # == forgetting ================================================================
    def reset(self) -> int:
        """Forget every task (cancelling unfinished ones first); returns how many."""
        for rec in list(self.records.values()):
            if not rec.status.is_terminal:
                self.cancel(rec)
        recs = list(self.records.values())
        for rec in reversed(recs):
            task = rec.task
            task._status, task._result, task._retry_count = rec.status, rec.result, rec.retry_count
            task._started_at, task._completed_at = rec.started_at, rec.completed_at
            task._record = None
            self._move(rec, None, kind="removed")
        self.records.clear()
        self.by_name.clear()
        self._heap.clear()
        self._granted.clear()
        self._ready_live = 0
        self.resources.forget_capacities()
        self.structure_version += 1
        self.first_start = self.last_end = None
        self.run_time_total, self.run_time_n, self.busy_ended = 0.0, 0, 0.0
        self.retries = self.waiting_retry = self.waiting_resources = 0
        return len(recs)

    def remove(self, rec: Record) -> None:
        """Forget one task that nothing depends on (cancelling it first if unfinished)."""
        if rec.downs:
            raise ValueError(
                f"task {rec.name!r} cannot be removed: {', '.join(repr(d.name) for d in rec.downs)} "
                "depend on it; remove those first")
        if not rec.status.is_terminal:
            self.cancel(rec)
        for up in rec.ups:
            up.downs.remove(rec)
        if rec.counted_time is not None:
            self.run_time_total -= rec.counted_time
            self.run_time_n -= 1
        self.retries -= rec.retry_count
        if rec.mapping is not None:
            self._forget_items(rec)
        task = rec.task
        task._status, task._result, task._retry_count = rec.status, rec.result, rec.retry_count
        task._started_at, task._completed_at = rec.started_at, rec.completed_at
        task._record = None
        self.by_name.remove(rec.name, rec)
        del self.records[rec.id]
        self._free_pools(rec.claims)
        self.structure_version += 1
        self._move(rec, None, kind="removed")

    def _free_pools(self, claims: tuple[tuple[str, str], ...]) -> None:
        """Forget the declared capacity of each of these keys no task claims any more: the
        pool's last user went (removed or redefined), so it may be declared with another size."""
        for key, _ in claims:
            if self.resources.declared(key) and not self._pool_used(key):
                self.resources.forget_capacity(key)

    def _pool_used(self, key: str, besides: Record | None = None) -> bool:
        """Whether a task (other than ``besides``) claims ``key``. A scan, but only on the
        rare paths that change a declared pool (removing or redefining one of its users)."""
        return any(r is not besides and any(k == key for k, _ in r.claims)
                   for r in self.records.values() if r.claims)

    # == the critical path ==========================================================
    def _critical_pass(self) -> None:
        """Exact critical paths over unfinished tasks, then re-key the ready heap."""
        self._defined_since_pass, self._paths_changed = 0, False
        live = [r for r in self.records.values() if not r.status.is_terminal]
        pending_downs = {r: 0 for r in live}
        for rec in live:
            for down in rec.downs:
                if down in pending_downs:
                    pending_downs[rec] += 1
        stack = [r for r, n in pending_downs.items() if n == 0]  # sinks first
        while stack:
            rec = stack.pop()
            best = 0
            for down in rec.downs:
                if down in pending_downs and down.critical > best:
                    best = down.critical
            rec.critical = best + 1
            for up in rec.ups:
                if up in pending_downs:
                    pending_downs[up] -= 1
                    if pending_downs[up] == 0:
                        stack.append(up)
        entries = [(p, urgency(r), o, tok, r) for p, _, o, tok, r in self._heap
                   if r.heap_token == tok]  # a chained map's cursor keeps its place
        heapq.heapify(entries)
        self._heap = entries

    # == statistics =================================================================
    def stats(self, max_workers: int, running: bool) -> dict[str, Any]:
        """Counts by state plus timings, from the running figures (O(attempts in flight))."""
        c = self.counts
        now = self._now()
        busy = self.busy_ended + sum(now - t.attempt.started_at for t in self.running.values())
        start = self.first_start
        end = now if self.unfinished or self.last_end is None else self.last_end
        makespan = max(0.0, end - start) if start is not None else 0.0
        finished = c[COMPLETED] + c[FAILED]
        n = self.run_time_n
        total = max(0.0, self.run_time_total) if n else 0.0
        return {
            "total_tasks": len(self.records),
            "pending": c[PENDING] + c[READY],
            "ready": c[READY],
            "waiting_retry": self.waiting_retry,
            "waiting_resources": self.waiting_resources,
            "running": c[RUNNING],
            "completed": c[COMPLETED],
            "failed": c[FAILED],
            "cancelled": c[CANCELLED],
            "skipped": c[SKIPPED],
            "retries": self.retries,
            "total_execution_time": total,
            "average_execution_time": total / n if n else 0.0,
            "makespan": makespan,
            "throughput": finished / makespan if makespan > 0 else 0.0,
            "worker_utilization": min(1.0, busy / (makespan * max_workers)) if makespan > 0 else 0.0,
            "max_workers": max_workers,
            "is_running": running,
        }

    def recount(self) -> dict[str, Any]:
        """The incremental figures recomputed from the records (tests compare the two)."""
        tasks = list(self.records.values())
        counts = dict.fromkeys(S, 0)
        for r in tasks:
            counts[r.status] += 1
        timed = [r.result.execution_time for r in tasks if r.result is not None and r.attempts
                 and r.status in (COMPLETED, FAILED)]
        items = [i for r in tasks if r.mapping is not None for i in r.mapping.items
                 if i is not None and i.__class__ is not tuple]  # compact: nothing to count
        recs = tasks + items  # retries, waits and attempts in flight count items too
        return {
            "counts": counts,
            "unfinished": sum(counts[s] for s in _UNFINISHED),
            "run_time_total": sum(timed), "run_time_n": len(timed),
            "retries": sum(r.retry_count for r in recs),
            "waiting_retry": sum(1 for r in recs if r.retry_token is not None),
            "waiting_resources": sum(1 for r in recs if r.waiting is not None and r.waiting.wait_since),
            "running": len([r for r in recs if r.current is not None]),
        }
