"""The scheduler's steps for defining and re-queueing tasks (a mixin of ``Scheduler``).

Defining validates a batch whole, links records to their upstream records and
settles each new or re-queued record (ready, waiting, skipped, or completed at
once from the journal), upstream first; re-queueing does the same for a task and
everything downstream of it.
"""

from __future__ import annotations

import itertools
from typing import Any

from .definitions import check_capacities, check_cycles, resolve, topological
from .model import DEFINITION_FIELDS, OutputRef, Task, TaskResult
from .records import Record
from .states import COMPLETED, ENDED, PENDING, READY, RUNNING, SKIPPED, is_not_needed
from .trigger_rules import SUCCESS


class DefineSteps:
    """Mixed into ``Scheduler`` (see there); runs under the engine lock."""

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
                elif self._rule_step(down, SUCCESS, now):
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
        if rec.mapping is not None and rec.mapping.spec is not task._map:
            self._stop_map(rec)  # its items stop under the map they belong to, before the
            # new definition replaces that map (their bodies still count: ``unwinding``)
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
                self._stop_map(rec)
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
                    if status in ENDED:  # failed, cancelled or skipped: this one cannot run
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
