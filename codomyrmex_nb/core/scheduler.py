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

One class, in parts: this module holds the state, ``_move``, readiness and
dispatch, the critical path and the statistics; its mixins hold the steps of
one concern each (``define_steps``: defining and re-queueing; ``rule_steps``:
trigger rules; ``outcome_steps``: what an attempt came to, retries; ``stop_steps``:
cancel, skip, stop, reset; ``map_steps``: mapped tasks and their items). Every
step changes state through ``_move`` alone.

States and transitions (``_ALLOWED``; anything else is a bug and raises)::

    (new) ----define----> PENDING
    (new item) ---------> READY | RUNNING  dispatched; RUNNING when a worker takes it in a batch
    PENDING --ready-----> READY            every upstream task COMPLETED (or its trigger rule fired)
    READY ----start-----> RUNNING          a worker took it (resources granted)
    RUNNING --finish----> COMPLETED
    RUNNING --fail------> PENDING "retry"  retries left: waits retry_delay, then READY
                       \\-> FAILED          no retries left, or "not retried: <why>"
    READY ----fail------> PENDING | FAILED  a resource wait timed out (counts as an attempt)
    RUNNING --stop------> READY "interrupted"   the engine stopped; runs again on start
                                        (a map whose items run: its items resume, below)
    READY ----resume----> RUNNING "resumed"     a map the stop left READY: the engine started
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
submission order. A task with a ``one_*`` trigger rule reacts (an alert): its key
sits half a step above its priority (``records``), ahead of every ready task and
map item of that priority, behind the next.

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
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .define_steps import DefineSteps
from .definitions import NameIndex
from .events import Event
from .map_steps import MapSteps, urgency
from .model import Attempt, TaskStatus
from .outcome_steps import OutcomeSteps, retry_delay
from .records import Record, Ticket
from .resources import ResourceManager
from .rule_steps import RuleSteps
from .states import CANCELLED, COMPLETED, FAILED, PENDING, READY, RUNNING, SKIPPED, UNFINISHED, S
from .stop_steps import StopSteps

__all__ = ["Scheduler", "retry_delay"]

_ALLOWED = frozenset({
    (None, PENDING), (PENDING, READY), (READY, RUNNING), (RUNNING, COMPLETED),
    (RUNNING, PENDING), (RUNNING, FAILED), (READY, PENDING), (READY, FAILED), (RUNNING, READY),
    (PENDING, CANCELLED), (READY, CANCELLED), (RUNNING, CANCELLED),
    (PENDING, SKIPPED), (READY, SKIPPED), (READY, READY), (PENDING, COMPLETED),
    (READY, COMPLETED), (None, READY),  # an item is made READY when dispatched
    (None, RUNNING),  # or RUNNING, when a worker takes it with others of a batch
    (RUNNING, SKIPPED),  # a chained map whose source map failed: its items stop
    *((s, PENDING) for s in S), *((s, None) for s in S),
})


class Scheduler(DefineSteps, RuleSteps, OutcomeSteps, StopSteps, MapSteps):
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
        self.stopped = False  # the engine stopped since it last started (``stop``)
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
                if sink is None and to is None:
                    pass  # forgotten (reset) after its run ended: it opens no run of its own
                elif m is not None and (sink is not None or
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
        rec.wait_worker += now - rec.runnable_since  # queued until a worker took it; the
        # grant restarts the worker wait (``_grant``), so ready-to-start is the sum of both
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
            "unfinished": sum(counts[s] for s in UNFINISHED),
            "run_time_total": sum(timed), "run_time_n": len(timed),
            "retries": sum(r.retry_count for r in recs),
            "waiting_retry": sum(1 for r in recs if r.retry_token is not None),
            "waiting_resources": sum(1 for r in recs if r.waiting is not None and r.waiting.wait_since),
            "running": len([r for r in recs if r.current is not None]),
        }
