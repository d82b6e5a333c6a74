"""The scheduler's steps that end tasks early or forget them (a mixin of ``Scheduler``):
cancel, skip downstream, stop and start, release resources, reset and remove.
"""

from __future__ import annotations

from typing import Any

from .exceptions import NotNeededError, TaskCancelledError, UpstreamFailedError
from .map_steps import never_ran
from .records import Record
from .states import (
    CANCELLED,
    NOT_NEEDED_TYPE,
    PENDING,
    READY,
    RUNNING,
    SKIPPED,
    VERB,
    is_not_needed,
    outcome_of,
)


class StopSteps:
    """Mixed into ``Scheduler`` (see there); runs under the engine lock."""

    # == cancelling, skipping, stopping ==============================================
    def cancel(self, rec: Record) -> bool:
        """Cancel a pending, ready or running task (dependents are skipped); False if it ended."""
        if rec.status.is_terminal:
            return False
        chained = self._close_map(rec) if rec.mapping is not None else []  # its items first:
        # cancelled, the undispatched never run; then the record; then maps chained on it
        self._cancel_now(rec, TaskCancelledError(f"task {rec.name!r} was cancelled"))
        m = rec.mapping
        if m is not None and m.expanded:  # what its items came to is kept, as for a failed
            data = rec.result.data = self.map_result(rec)  # map: never lost to a cancel
            for i, state in enumerate(data.states):  # and those it never ran count as failed
                if state == "cancelled" and i not in data.failed:
                    data.failed[i] = never_ran(rec, i)[0]
            rec.result.metadata.update(items=m.n, items_failed=len(data.failed))
        self._end_chained(chained)
        return True

    def _cancel_now(self, rec: Record, err: BaseException) -> None:
        """An unfinished task or item ends CANCELLED now (a running attempt is abandoned).

        Its ``execution_time`` is its last attempt's run time, as for any task that ended:
        the cancelled attempt's so far; else the attempt before (a retry waiting its
        delay, or ready after it: that failure's time; an attempt a stop interrupted: its
        time until then); 0.0 if it never ran (a mapped task: since it started, as a map
        that ended is timed, once its items were known). A retry scheduled but not started when it
        is cancelled is taken back: an ended task's ``retry_count`` counts the retries
        that ran (so ``attempts`` is ``retries + 1`` in ``tasks_frame()``)."""
        now = self._now()
        ticket, attempt, elapsed = rec.current, None, 0.0
        if ticket is not None:
            attempt = ticket.attempt
            elapsed = now - attempt.started_at
            self._abandon(ticket, "cancelled")
        else:
            waiting = rec.waiting
            if waiting is not None and waiting.wait_since:  # its wait for a resource so far
                waited = now - waiting.wait_since  # counts (tasks_frame, bottlenecks)
                rec.wait_resources += waited
                if rec.blocked_on is not None:
                    self._add_resource_wait(rec, rec.blocked_on, waited)
            self._withdraw(rec)
            result, last = rec.result, rec.attempts[-1] if rec.attempts else None
            if rec.mapping is not None:  # a map is timed as ``_map_done`` does: its items'
                if rec.mapping.expanded and rec.started_at is not None:  # phase so far
                    elapsed = now - rec.started_at
            elif result is not None and not result.success \
                    and result.metadata.get("attempts") == len(rec.attempts):
                # unfinished and not running, its result the failure of its last attempt
                # (a requeue drops the result): a retry of it was scheduled, never started
                attempt, elapsed = last, result.execution_time
                if rec.retry_count > 0:
                    rec.retry_count -= 1
                    self.retries -= 1
            elif last is not None and rec.started_at is not None and last.ended_at is not None:
                attempt = last  # interrupted by a stop (in this run: not before a requeue)
                elapsed = last.ended_at - last.started_at
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
        tasks whose trigger rule may still fire (or fires now: a cleanup ``all_done``), and
        for a chained map a stop paused (READY), which ends as a running one does: once its
        items ended (``_source_over``; at the latest when ``started`` resumes it)."""
        stack = [root]
        while stack:
            node = stack.pop()
            for down in node.downs:
                if down.rule is None:
                    if down.status is PENDING or (down.status is READY and not paused(down)):
                        self._skip(down, node, root, now)
                        stack.append(down)
                elif down.status is PENDING and down.retry_token is None \
                        and self._rule_step(down, outcome_of(node), now):
                    stack.append(down)

    def _skip(self, rec: Record, blocked: Record, root: Record, now: float) -> None:
        self._withdraw(rec)
        if is_not_needed(blocked):  # Airflow's all_success after a skipped upstream: skipped
            msg = f"not needed: upstream task {blocked.name!r} was not needed"
            rec.result = self._result(rec, False, 0.0, None, error=NotNeededError(msg),
                                      error_type=NOT_NEEDED_TYPE, skipped_because=[blocked.name])
            self._ended(rec, SKIPPED, now, msg)
            return
        msg = f"skipped because upstream task {blocked.name!r} {VERB[blocked.status]}"
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
        self.stopped = False
        maps = []
        for rec in self.records.values():
            if rec.status is not PENDING and rec.status is not READY:
                continue
            if paused(rec):  # a map the engine stopped while its items ran
                maps.append(rec)
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
        for rec in maps:
            self._resume_map(rec, now)

    def _resume_map(self, rec: Record, now: float) -> None:
        """A map ``stop`` paused goes on (READY -> RUNNING "resumed"): its items that ended
        keep their outcome, the interrupted ones (READY) run again, the rest are handed out
        as before; maps chained on it start now if they could not while it was paused."""
        self._move(rec, RUNNING, "resumed", now=now)
        self._map_started(rec, now)

    def stop(self) -> None:
        """The engine stops: running attempts are abandoned and their tasks go back to READY.

        So does a mapped task whose items run (RUNNING -> READY "interrupted"): a stopped
        engine runs nothing. It keeps its items (those that ended keep their results; those
        interrupted are READY again) and its cursor leaves the ready heap (popped while
        READY, it would be expanded again); ``started`` resumes it (``_resume_map``).
        """
        now = self._now()
        self.stopped = True
        for ticket in list(self.running.values()):
            rec = ticket.rec
            self._abandon(ticket, "interrupted")
            self._make_ready(rec, now, "interrupted")
            if rec.parent is None and rec.mapping is None:  # fingerprinted again as it starts
                rec.forget_fingerprint()  # in the next run (what it reads may change
                # meanwhile), so that run defines it too
        if self.counts[RUNNING]:  # what is left running is a mapped task's items' phase
            for rec in [r for r in self.records.values()
                        if r.status is RUNNING and r.mapping is not None]:
                self._withdraw(rec)  # its cursor: a READY record popped is one to expand
                rec.runnable_since = now
                self._move(rec, READY, "interrupted", now=now)

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
                f"depend{'s' * (len(rec.downs) == 1)} on it; remove "
                f"{'that' if len(rec.downs) == 1 else 'those'} first")
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


def paused(rec: Record) -> bool:
    """Is ``rec`` a mapped task a stop left READY while its items ran (``StopSteps.stop``)?"""
    return rec.status is READY and rec.mapping is not None and rec.mapping.expanded
