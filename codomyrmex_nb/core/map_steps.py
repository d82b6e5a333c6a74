"""The scheduler's steps for mapped tasks (a mixin of ``Scheduler``; see ``mapping``).

A mapped record runs in three phases, each a transition of the record itself:

1. **expand** (READY -> RUNNING on a worker, like an attempt): the worker reads the
   sources and returns a ``mapping.Plan``; ``_expanded`` installs it and the
   record stays RUNNING while its items run (an engine stop returns it to READY, its
   cursor off the heap, and the next start resumes it: ``stop_steps``). A *chained* map (mapped over a mapped
   task) skips this: it starts when its source expanded and takes item *i* as soon
   as the source's item *i* completed.
2. **items**: the record sits in the ready heap as a *cursor* while it has items to
   hand out; ``next_ticket`` pops it and ``_take_item`` makes the next item's light
   record (None -> READY), pushing the cursor back if more may go. From then on an
   item is a record like any other for dispatch, resources, timeouts, retries and
   cancel; its transitions count in the map's own counts, not the task counts.
3. **collect**: when the last item ended, the record ends COMPLETED with a
   ``MapResult`` (failures within ``tolerate``) or FAILED (its result data still
   the ``MapResult``), and its dependents are readied or skipped as for any task.

Everything here runs under the engine lock, like the rest of the scheduler.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable
from typing import Any

from .exceptions import TaskCancelledError, UpstreamFailedError
from .mapping import (
    DONE_FP,
    DONE_VALUE,
    MapResult,
    Plan,
    combined_fingerprint,
    done_entry,
    expand,
)
from .model import Attempt, TaskResult, TaskStatus
from .records import ItemRecord

S = TaskStatus
_ENDED_OK = S.COMPLETED
_RUNNING = S.RUNNING


_FP_OF = operator.itemgetter(DONE_FP)


def _all_compact(items: list[Any]) -> bool:
    """Is every entry a compactly kept completed item (``mapping.done_entry``)? At C speed."""
    return not items or set(map(type, items)) == {tuple}


class MapItemsFailed(Exception):
    """More items of a mapped task failed than it tolerates."""


class MapSteps:
    """Mixed into ``Scheduler``: everything that concerns items."""

    # -- finding ---------------------------------------------------------------------------
    def known(self, rec: Any) -> bool:
        """Is ``rec`` (a task or an item) still the scheduler's?"""
        parent = rec.parent
        if parent is None:
            return self.records.get(rec.id) is rec
        items = parent.mapping.items
        return self.records.get(parent.id) is parent and rec.index < len(items) \
            and items[rec.index] is rec

    def item(self, rec: Any, index: int) -> Any:
        """Item ``index`` of mapped record ``rec`` (made now if not dispatched yet, so it can
        be cancelled); raises ``LookupError`` with the reason."""
        m = rec.mapping
        if m is None:
            raise LookupError(f"task {rec.name!r} is not mapped; drop map_index")
        if not m.expanded:
            if m.spec.literal_count() is not None:
                raise LookupError(f"task {rec.name!r} has not made its items yet (it makes them "
                                  "as it starts); cancel the task, or its item once it runs")
            raise LookupError(f"task {rec.name!r} has not expanded yet (its items are known once "
                              "its sources completed)")
        if not 0 <= index < m.n:
            raise LookupError(f"task {rec.name!r} has {m.n} items; map_index {index} is out of "
                              "range")
        return item_at(rec, index)

    # -- phase 1: expansion ----------------------------------------------------------------
    def _expanded(self, rec: Any, plan: Plan, now: float) -> None:
        """The worker read the sources: install the items and let them run."""
        m = rec.mapping
        m.plan, m.n = plan, plan.n
        m.items = [None] * plan.n
        m.counts = dict.fromkeys(S, 0)
        self._map_started(rec, now)

    def _map_started(self, rec: Any, now: float) -> None:
        m = rec.mapping
        for down in rec.downs:  # maps chained on this one start now, item by item
            if down.mapping is not None and down.status is S.PENDING and self._chains_on(down, rec):
                self._start_chained(down, rec, now)
        if m.finished():
            self._map_done(rec, now)
        elif m.can_dispatch():
            self._push_map(rec)

    def _chains_on(self, down: Any, source: Any) -> bool:
        """``down`` is mapped over ``source``'s items alone, and every other upstream task of
        it completed: it can take item *i* as soon as the source's item *i* completed."""
        if down.rule is not None or down.retry_token is not None:
            return False
        spec = down.mapping.spec
        if len(spec.bindings) != 1:
            return False
        (ref,) = spec.bindings.values()
        if isinstance(ref, list) or source_record(down, ref) is not source:
            return False
        return all(up is source or up.status is S.COMPLETED for up in down.ups)

    def _start_chained(self, rec: Any, source: Any, now: float) -> None:
        m, sm = rec.mapping, source.mapping
        m.source, m.n, m.depth = source, sm.n, sm.depth + 1
        m.items = [None] * m.n
        m.counts = dict.fromkeys(S, 0)
        if rec not in sm.chained:
            sm.chained.append(rec)
        rec.ready_at = rec.started_at = now
        rec.wait_dependencies = now - (rec.queued_at or now)
        rec.runnable_since = now
        self._move(rec, S.READY, "chained")
        self._move(rec, S.RUNNING, f"{m.n} items, item by item after {source.name!r}")
        for i, item in enumerate(sm.items):  # items of the source that completed already
            if is_done(item):
                m.ready.append(i)
        if sm.closing or source.status.is_terminal:
            m.source_ended = True
        self._map_started(rec, now)

    def _try_chain(self, rec: Any, now: float) -> None:
        """A mapped record just settled, waiting: chain it on its source if that map runs."""
        (ref,) = rec.mapping.spec.bindings.values() if len(rec.mapping.spec.bindings) == 1 \
            else (None,)
        source = None if ref is None or isinstance(ref, list) else source_record(rec, ref)
        if source is not None and source.mapping is not None and source.status is S.RUNNING \
                and source.mapping.expanded and not source.mapping.closing \
                and self._chains_on(rec, source):
            self._start_chained(rec, source, now)

    # -- phase 2: items -----------------------------------------------------------------------
    def _push_map(self, rec: Any) -> None:
        """Queue the mapped record as a cursor on its items (once). A chained map goes ahead
        of its source among equals, so its items follow theirs depth first."""
        m = rec.mapping
        if m.in_heap or rec.status is not _RUNNING:  # not while a stop paused it (READY:
            return  # popped, it would be expanded again); ``_resume_map`` queues it then
        m.in_heap = True
        token = rec.heap_token = next(self._tokens)
        heapq.heappush(self._heap, (rec.prio, urgency(rec), rec.order, token, rec))
        self._ready_live += 1

    def _take_item(self, rec: Any, push: bool = True, taken: bool = False) -> Any:
        """Under ``next_ticket``: make the mapped record's next item READY (None if none);
        the cursor goes back on the heap while more may go (``push``: now, else the
        caller's to do once it has taken several). ``taken``: a worker takes it at once
        (``take_items``): it is made without a state, and ``start`` moves it to RUNNING."""
        m = rec.mapping
        m.in_heap = False
        if not m.can_dispatch() or m.closing:
            return None
        index = m.next_index()
        while index is not None and index in m.unwinding:
            m.held.add(index)  # a body given up on still runs: this one waits for it to return
            index = m.next_index()
        if index is None:
            if m.finished():  # what was queued had been cancelled meanwhile: it is over
                self._map_done(rec, self._now())
            return None
        item = self._make_item(rec, index, taken)
        if push and m.can_dispatch():
            self._push_map(rec)
        return item

    def take_items(self, rec: Any, most: int, worker: str | None) -> list[Any]:
        """Under the lock: up to ``most`` tickets for mapped record ``rec``'s next items,
        started by ``worker``, while its cursor is still the best ready entry (no granted
        ticket, nothing of higher priority), else none. A worker takes the items of a
        tiny-item map this way, several at once: one heap pop and push for all of them."""
        heap = self._heap
        if self._granted or not heap:
            return []
        entry = heap[0]
        if entry[4] is not rec or entry[3] != rec.heap_token:
            return []
        heapq.heappop(heap)
        rec.heap_token = -1
        self._ready_live -= 1
        m = rec.mapping
        m.in_heap = False  # popped: pushed back below while more may go
        tickets = self._take_fresh(rec, m, most, worker) \
            if m.source is None and not m.ready and not m.unwinding and not m.closing \
            and m.spec.max_parallel is None else []
        while len(tickets) < most:  # the general way: queued items, limits, the map's end
            item = self._take_item(rec, push=False, taken=True)
            if item is None:
                break
            ticket = self._new_ticket(item)
            self.start(ticket, worker)
            tickets.append(ticket)
        if m.can_dispatch() and not m.closing:
            self._push_map(rec)  # more may go: the cursor waits its turn again
        return tickets

    def _take_fresh(self, rec: Any, m: Any, most: int, worker: str | None) -> list[Any]:
        """``take_items``' usual case, the map's next fresh items in index order (not
        chained, nothing queued or unwinding, no ``max_parallel``): each made and started as
        ``_take_item`` and ``start`` would (the same fields, one move None -> RUNNING), at
        one clock reading for all. Stops at an item made out of turn (a cancel by index),
        which the general way then handles."""
        items, index = m.items, m.next
        end = min(m.n, index + most)
        if index >= end or items[index] is not None:
            return []
        now = self._now()
        new_ticket, running, move, order = self._new_ticket, self.running, self._move, rec.order
        tickets = []
        while index < end and items[index] is None:
            item = items[index] = ItemRecord(rec, index, order)
            item.queued_at = item.ready_at = item.runnable_since = item.started_at = now
            ticket = new_ticket(item)
            attempt = ticket.attempt = Attempt(1, worker, now)
            item.attempts = (attempt,)
            item.current = ticket
            running[item.id] = ticket
            move(item, _RUNNING, now=now)
            tickets.append(ticket)
            index += 1
        m.next = index
        m.live += len(tickets)
        if self.first_start is None:
            self.first_start = now
        return tickets

    def begin_now(self, ticket: Any) -> None:
        """Under the lock: an item taken in a batch begins now, after the items before it;
        its attempt starts (and its wait for a worker ends) now, not when it was taken."""
        if ticket.abandoned:
            return
        now = self._now()
        item, attempt = ticket.rec, ticket.attempt
        item.wait_worker += now - attempt.started_at
        item.started_at = attempt.started_at = now
        item.view = None

    def _make_item(self, rec: Any, index: int, taken: bool = False) -> Any:
        m = rec.mapping
        item = ItemRecord(rec, index, rec.order)
        m.items[index] = item
        m.live += 1
        now = self._now()
        item.queued_at = item.ready_at = item.runnable_since = now
        if not taken:  # else its first move is to RUNNING, as the worker starts it
            self._move(item, S.READY, now=now)
        return item

    def _item_body_returned(self, item: Any) -> None:
        """An abandoned body of ``item`` returned: its slot under ``max_parallel`` is free, and
        a fresh item held back for it (a rerun or redefinition meanwhile) may go."""
        rec = item.parent
        m = rec.mapping
        if m is None:  # redefined as a plain task since
            return
        m.body_returned(item.index)
        if rec.status is S.RUNNING and not m.closing and m.can_dispatch():
            self._push_map(rec)

    def _item_ended(self, item: Any, now: float) -> None:
        """An item reached a terminal state: chained items follow, the map may be done."""
        rec = item.parent
        m = rec.mapping
        m.live -= 1
        if m.next < m.n and m.items[m.next] is not None:
            m.advance()
        ok = item.status is _ENDED_OK
        for down in m.chained:
            dm = down.mapping
            if ok and not dm.closing and dm.items[item.index] is None:
                dm.ready.append(item.index)
                if dm.can_dispatch():
                    self._push_map(down)
        if m.closing:
            return
        if not m.live and m.finished():  # (``finished`` asks ``live`` first: one call less)
            self._map_done(rec, now)
        elif not m.in_heap and m.can_dispatch():  # its cursor is queued already, mostly
            self._push_map(rec)

    def compact(self, item: Any) -> None:
        """Under the lock, once an item's outcome is recorded: a plainly completed item is
        kept as a compact entry (``mapping.done_entry``), light for the garbage collector."""
        entry = done_entry(item) if item.status is _ENDED_OK else None
        if entry is not None:
            items = item.parent.mapping.items
            if items[item.index] is item:
                items[item.index] = entry
                # the record may live on until the journal's next commit reads its latest
                # move: its attempt and result go now (no one reads them from it any more)
                item.attempts, item.result = (), None

    def item_completed(self, ticket: Any, value: Any, elapsed: float, cpu_time: float | None,
                       run_delay: float | None) -> bool:
        """Under the lock: ``finish`` for the usual item of a batch, its first attempt
        returned a plain value and printed nothing: it completes kept compact at once (no
        result object made only to be folded into its entry). False, changing nothing, for
        any other (the caller then calls ``finish``)."""
        item = ticket.rec
        m = item.parent.mapping
        if item.current is not ticket or ticket.claims or ticket.abandoned or item.retry_count \
                or item.restored is not None or len(item.attempts) != 1 or m is None \
                or m.items[item.index] is not item:
            return False
        now = self._now()
        attempt = ticket.attempt
        started = attempt.started_at
        self.busy_ended += now - started
        item.current = None
        del self.running[item.id]
        item.completed_at = self.last_end = now
        self._move(item, _ENDED_OK, execution_time=elapsed, now=now)
        # ``done_entry``'s tuple, written out (its fields are listed there)
        m.items[item.index] = (value, item.fingerprint, item.queued_at, started, now, elapsed,
                               cpu_time, attempt.worker, item.wait_worker, run_delay, None,
                               item.jseq, item.jtime)
        item.attempts = ()
        if m.live > 1 and m.in_heap and not m.chained and not m.closing \
                and (m.next >= m.n or m.items[m.next] is None):
            m.live -= 1  # _item_ended's usual case: other items run, its cursor waits queued
        else:
            self._item_ended(item, now)
        return True

    def item_restored(self, item: Any, when: float, source: str) -> None:
        """The item (or a task looked up as it started: ``Recorder.kept_at_start``) just
        completed with a result read back from the journal (or its map's definition
        before), not run. It shows as a task restored at definition does (``restore``):
        no attempt, no start time, 0 attempts and retries in its result, its worker's
        lookup no run time in the totals; its ``restored`` time set."""
        item.restored = when
        item.attempts = ()  # the worker only looked it up
        item.started_at = None
        item.view = None
        if item.counted_time is not None:  # a task: no run time (``recount`` agrees)
            self.run_time_total -= item.counted_time
            self.run_time_n -= 1
            item.counted_time = None
        result = item.result
        if result is not None:
            meta = result.metadata
            meta.pop("worker", None)
            meta.update(attempts=0, retries=0, restored=True, restored_from=source,
                        recorded_at=when)

    # -- phase 3: collect -------------------------------------------------------------------
    def map_result(self, rec: Any) -> MapResult:
        """The mapped record's items as they stand."""
        m = rec.mapping
        items = m.items
        if len(items) == m.n and _all_compact(items):  # the usual end: at C speed
            return MapResult(None, {}, ["completed"] * m.n, rec.name, list(enumerate(items)))
        done: list[tuple[int, Any]] = []
        failed: dict[int, Any] = {}
        states: list[str] = []  # ``MapState.state_of`` of each, in the same pass
        for i, item in enumerate(items):
            if item is None:
                states.append(m.state_of(i))
                continue
            if item.__class__ is tuple:  # completed, kept compactly: its value is in it
                done.append((i, item))
                states.append("completed")
                continue
            status = item.status
            states.append("removed" if status is None else status.value)
            if status is _ENDED_OK:
                done.append((i, item.result))  # read (back) on first use, not under the lock
            elif status is S.FAILED or status is S.CANCELLED:
                res = item.result
                failed[i] = (res.exception or res.error_message) if res is not None else status.value
        states.extend(map(m.state_of, range(len(items), m.n)))
        return MapResult(None, failed, states, rec.name, done)

    def _map_done(self, rec: Any, now: float, source_state: str | None = None) -> None:
        """Every item ended: the record completes (failures within ``tolerate``) or fails."""
        m = rec.mapping
        result = self.map_result(rec)
        m.source_ended = True
        bad = len(result.failed)
        allowed = m.spec.allowed_failures(m.n)
        source = m.source
        upstream_bad = source is not None and source.status is not S.COMPLETED
        elapsed = now - (rec.started_at or now)
        if bad <= allowed and not upstream_bad:
            rec.fingerprint = self._map_fingerprint(rec)
            rec.result = self._result(rec, True, elapsed, None, data=result,
                                      items=m.n, items_failed=bad)
            self._ended(rec, S.COMPLETED, now, f"{len(result)} of {m.n} items")
            self._source_over(rec, now)
            self._completed_upstream(rec, now)
            return
        if upstream_bad:  # skipped, upstream failed, as a map over it defined after its end
            # would be (one outcome for one definition); the items that ran stay in its result
            self._chain_stopped(rec, result, elapsed, now, source_state)
            return
        first = min(result.failed)
        error = MapItemsFailed(
            f"{bad} of {m.n} items of {rec.name!r} failed (tolerated: {allowed}); first: "
            f"[{first}] {result.failed[first]!r}. Their details: "
            f"get_task_result({rec.name!r}, map_index={first}); tolerate more with "
            "tolerate=N or '10%'")
        rec.result = self._result(rec, False, elapsed, None, data=result, error=error,
                                  error_type="MapItemsFailed", items=m.n, items_failed=bad)
        self._ended(rec, S.FAILED, now, f"{bad} of {m.n} items failed")
        self._skip_downstream(rec, now)
        self._source_over(rec, now)

    def _chain_stopped(self, rec: Any, result: MapResult, elapsed: float, now: float,
                       source_state: str | None) -> None:
        """A chained map whose source ended without completing: RUNNING -> SKIPPED (upstream
        failed), its result the MapResult of the items that ran, its tasks after it skipped."""
        m, source = rec.mapping, rec.mapping.source
        cause = source.name
        if source.status is S.SKIPPED and source.result is not None:
            cause = source.result.metadata.get("root_cause", source.name)
        error = UpstreamFailedError(
            f"mapped task {rec.name!r} stopped: the map it follows, {source.name!r}, "
            f"{source_state or source.status.value}")
        rec.result = self._result(rec, False, elapsed, None, data=result, error=error,
                                  error_type="UpstreamFailedError", items=m.n,
                                  items_failed=len(result.failed),
                                  skipped_because=[source.name], root_cause=cause)
        self._ended(rec, S.SKIPPED, now, f"upstream failed: {cause!r}")
        self._skip_downstream(rec, now)
        self._source_over(rec, now)

    def _map_fingerprint(self, rec: Any) -> str | None:
        """What tasks downstream see of the map: its items' fingerprints, in order (None while
        the journal gave them none)."""
        m = rec.mapping
        if m.base_fp is None:
            return None
        items = m.items
        if _all_compact(items):
            return combined_fingerprint(m.base_fp, map(_FP_OF, items))
        return combined_fingerprint(m.base_fp, (
            None if i is None else i[DONE_FP] if i.__class__ is tuple else i.fingerprint
            for i in items))

    def _source_over(self, rec: Any, now: float) -> None:
        """``rec`` (a map) ended without completing: maps chained on it get no more items."""
        for down in rec.mapping.chained:
            dm = down.mapping
            if not dm.source_ended:
                dm.source_ended = True
                if dm.finished() and down.status is S.RUNNING:
                    self._map_done(down, now)

    # -- cancelling and re-queueing ------------------------------------------------------------
    def _close_map(self, rec: Any, why: str = "cancelled") -> list[Any]:
        """Stop a mapped record's items: those in flight are cancelled (``why``) and the
        undispatched never run. The record's own state is the caller's to change; so are
        the maps chained on it that this leaves with nothing to run, returned, to end
        once the record has (``_end_chained``): their reason then names its state."""
        m = rec.mapping
        if m.closing or not m.items:
            m.closing = True
            return []
        m.closing = True
        m.ready.clear()
        m.held.clear()
        err = TaskCancelledError(f"task {rec.name!r} was {why}")
        for item in m.items:
            if item is not None and not status_of(item).is_terminal:
                self._cancel_now(item, err)
        ended = []
        for down in m.chained:
            if not down.mapping.source_ended:
                down.mapping.source_ended = True
                ended.append(down)
        return ended

    def _stop_map(self, rec: Any) -> None:
        """Before a mapped record is re-queued or its map replaced: its items in flight are
        interrupted and the undispatched never run, the maps chained on it end, its items'
        retries leave the totals, and its map starts afresh."""
        self._end_chained(self._close_map(rec, "interrupted"), "interrupted")
        self._withdraw(rec)
        self._forget_items(rec)
        rec.mapping.reset()

    def _end_chained(self, downs: list[Any], source_state: str | None = None) -> None:
        """End the chained maps ``_close_map`` left with nothing to run (``source_state``:
        what their reason says of the source, else its state now)."""
        now = self._now()
        for down in downs:
            if down.status is S.RUNNING and down.mapping.finished():
                self._map_done(down, now, source_state)

    def _reusable_items(self, rec: Any) -> dict[str, Any]:
        """Before a mapped task is redefined (a cell run again after its list changed): its
        completed items' results by fingerprint. An item of the new definition with the same
        fingerprint (the same code, parameters and content) takes that result instead of
        running; fingerprints are made only with the journal on."""
        m = rec.mapping
        out = {}
        for entry in m.items:
            if entry.__class__ is tuple:
                if entry[DONE_FP]:
                    out[entry[DONE_FP]] = done_result(rec.id, entry)  # only the value is read
            elif is_done(entry) and entry.fingerprint and entry.result is not None:
                out[entry.fingerprint] = entry.result
        return out

    def _forget_items(self, rec: Any) -> None:
        """The map's items are about to be dropped (re-queued, removed): their retries no
        longer count in the totals."""
        m = rec.mapping
        self.retries -= sum(retries_of(i) for i in m.items if i is not None)
        source = m.source
        if source is not None and source.mapping is not None and rec in source.mapping.chained:
            source.mapping.chained.remove(rec)  # its source no longer feeds it

    def cancel_item(self, rec: Any, index: int) -> bool:
        """Cancel one item (made now if it was not dispatched yet); False if it ended."""
        item = self.item(rec, index)
        if item is None:
            if rec.status.is_terminal or rec.mapping.closing:
                return False
            item = self._make_item(rec, index)
        if item.status.is_terminal:
            return False
        self._cancel_now(item, TaskCancelledError(f"item {item.name!r} was cancelled"))
        if rec.mapping.finished() and rec.status is S.RUNNING:
            self._map_done(rec, self._now())
        return True

    def unsuccessful_items(self, rec: Any) -> list[int]:
        """The items of an ended map that did not complete: failed, cancelled, or never
        dispatched (a chained map's undispatched ones only where their source item completed
        and the map was cancelled: the others had no source item to follow)."""
        m = rec.mapping
        return [i for i, item in enumerate(m.items)
                if (item is None and (m.source is None or m.state_of(i) == "cancelled"))
                or (item is not None and status_of(item) in (S.FAILED, S.CANCELLED))]

    def rerun_items(self, rec: Any, indices: list[int]) -> None:
        """Run these items of an ended map again (and everything downstream of the map)."""
        m = rec.mapping
        source = m.source
        if source is not None:  # chained: an item runs again only after its source item
            if source.status is not S.COMPLETED:
                raise ValueError(f"{rec.name!r} follows {source.name!r} item by item, and "
                                 f"{source.name!r} did not complete; rerun {source.name!r}")
            done = source.mapping.items
            indices = [i for i in indices if is_done(done[i])]
        now = self._now()
        chain = self.descendants(rec)
        for down in chain:
            if down.mapping is not None and down.mapping.source is rec:
                raise ValueError(f"{down.name!r} is mapped item by item over {rec.name!r}; rerun "
                                 f"{rec.name!r} whole (rerun({rec.name!r}))")
        fresh = self._requeue_recs(chain, now)
        if m.jmoved:  # moves of these items the journal has not read: read from the old ones
            unread = set(m.jmoved)
            old = {i: m.items[i] for i in indices if i in unread}
            if old:
                m.jold = [*(m.jold or ()), (old, list(old))]
        for i in indices:
            item = m.items[i]
            if item is not None:
                m.counts[status_of(item)] -= 1
                m.items[i] = None
                self.retries -= retries_of(item)
            m.ready.append(i)
        m.closing = m.in_heap = False
        m.next = m.n
        if rec.counted_time is not None:
            self.run_time_total -= rec.counted_time
            self.run_time_n -= 1
            rec.counted_time = None
        rec.result = None
        rec.completed_at = None
        rec.started_at = now  # its items run again from now: what views time this run from
        rec.forget_fingerprint()
        self._move(rec, S.PENDING, "requeued")
        self._move(rec, S.READY, "requeued items")
        if not self.stopped:  # else it waits READY, as a stop leaves a map: ``started``
            self._move(rec, S.RUNNING, f"{len(indices)} items again")  # resumes it
        self.structure_version += 1
        self._settle_all(fresh, now)  # they wait for the map again
        if m.finished():  # nothing failed: it ends again at once, and its dependents run
            self._map_done(rec, now)
        elif m.can_dispatch():
            self._push_map(rec)


def urgency(rec: Any) -> int:
    """A ready record's second heap key (lower goes first): its critical path, and a chained
    map ahead of the maps it follows, so items run depth first."""
    m = rec.mapping
    return -(rec.critical + (CHAINED * m.depth if m is not None else 0))


CHAINED = 1_000_000  # a map one step further down a chain outranks any critical path


def item_binding(item: Any) -> dict[str, Any]:
    """The keyword values of one item, read in its worker (outside the engine lock: a chained
    item's source item completed and cannot change while this one runs)."""
    m = item.parent.mapping
    if m.source is not None:
        (name,) = m.spec.bindings
        done = m.source.mapping.items[item.index]
        return {name: done[DONE_VALUE] if done.__class__ is tuple else done.result.read_data()}
    return m.plan.binding(item.index)


def never_ran(rec: Any, index: int) -> tuple[BaseException, str] | None:
    """Why item ``index`` of ended map ``rec`` never ran, with its error type: cancelled
    with its map, or (a chained map's item) its source item did not complete; else None."""
    state = rec.mapping.state_of(index)
    if state == "cancelled":
        return TaskCancelledError(f"item {rec.name}[{index}] never ran: {rec.name!r} was "
                                  "cancelled"), "CancelledError"
    if state == "skipped":
        return UpstreamFailedError(f"item {rec.name}[{index}] never ran: its source item "
                                   f"{rec.mapping.source.name}[{index}] did not complete"), \
            "UpstreamFailedError"
    return None


def status_of(entry: Any) -> TaskStatus | None:
    """The state of a made item: a record's, or COMPLETED for a compact entry."""
    return _ENDED_OK if entry.__class__ is tuple else entry.status


def retries_of(entry: Any) -> int:
    """The retries a made item took (a compact entry took none)."""
    return 0 if entry.__class__ is tuple else entry.retry_count


def is_done(entry: Any) -> bool:
    """Is this ``MapState.items`` entry a completed item (a record or a compact entry)?"""
    return entry is not None and status_of(entry) is _ENDED_OK


def done_attempt(entry: tuple[Any, ...]) -> Attempt:
    """The one attempt of a compact entry, as it was recorded."""
    (_, _, _, started_at, completed_at, _, cpu_time, worker, _, run_delay, logs, *_) = entry
    attempt = Attempt(1, worker, started_at, completed_at, "completed")
    attempt.logs, attempt.cpu_time, attempt.run_delay = logs, cpu_time, run_delay
    return attempt


def done_result(item_id: str, entry: tuple[Any, ...]) -> TaskResult:
    """The result of a compact entry, as it was recorded."""
    (value, _, _, _, _, elapsed, _, worker, _, _, logs, *_) = entry
    result = TaskResult.of_attempts(item_id, True, 1, 0, worker, value, execution_time=elapsed)
    result.logs = logs
    return result


def item_at(rec: Any, index: int) -> Any:
    """Item ``index`` of mapped record ``rec`` as a record (None if not made yet): a compact
    entry (``mapping.done_entry``) is made a record again, for this reader only."""
    entry = rec.mapping.items[index]
    if entry.__class__ is not tuple:
        return entry
    (_, fingerprint, queued_at, started_at, completed_at, _, _, _, wait_worker, *_) = entry
    item = ItemRecord(rec, index, rec.order)
    item.status, item.fingerprint = _ENDED_OK, fingerprint
    item.queued_at = item.ready_at = item.runnable_since = queued_at
    item.started_at, item.completed_at, item.wait_worker = started_at, completed_at, wait_worker
    item.attempts = (done_attempt(entry),)
    item.result = done_result(item.id, entry)
    return item


def plan_of(rec: Any, value_of: Callable[[Any], Any]) -> Plan:
    """The items of mapped record ``rec``: its literal lists, and ``value_of(up)`` for each
    upstream record it maps over (the engine reads the upstream result there)."""
    spec = rec.mapping.spec
    sources, labels = [], []
    for name, ref in spec.bindings.items():
        if isinstance(ref, list):
            sources.append(ref)
            labels.append(name)
        else:
            up = source_record(rec, ref)
            sources.append(value_of(up))
            labels.append(up.name)
    return expand(tuple(spec.bindings), sources, labels, spec.mode)


def source_record(rec: Any, ref: Any) -> Any:
    """The upstream record a map binding names (a Task, an id or a name) among ``rec.ups``."""
    for up in rec.ups:
        if up.task is ref or up.id == ref:
            return up
    for up in reversed(rec.ups):
        if up.name == ref:
            return up
    return None
