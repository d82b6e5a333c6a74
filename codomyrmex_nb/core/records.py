"""The scheduler's records: what it knows of each task (``Record``), of each item of a
mapped task (``ItemRecord``, a light record made only as the item is dispatched) and of
each dispatch (``Ticket``).

Plain slotted objects, written only by the scheduler (``scheduler.py``, the one writer
of task state, and its map steps, ``map_steps.py``); a record copies the definition in
force from its ``Task`` when it is queued, so later writes to the Task wait for a
re-queue. Read by the engine, the journal's recorder and the views' snapshot.
"""

from __future__ import annotations

from typing import Any

from .mapping import MapState, item_id
from .model import MAX_DELAY, Attempt, Task, TaskPriority, TaskResult, TaskStatus
from .resources import claims_of
from .trigger_rules import DEFAULT as DEFAULT_RULE
from .trigger_rules import REACTING

_HEAP_PRIO = {p: -p.value for p in TaskPriority}  # an enum's .value is a slow descriptor
# a task with a ``one_*`` rule reacts: ahead of its priority's ready tasks, behind the next
_REACTING_PRIO = {p: -p.value - 0.5 for p in TaskPriority}


class Ticket:
    """One dispatch of a task: the holder of its resources and (once started) its attempt.

    The engine uses its own richer ticket (``invoke.Run``); this one serves
    thread-free tests.
    """

    __slots__ = ("rec", "task", "attempt", "claims", "wait_since", "abandoned", "resource_timer")

    def __init__(self, rec: Record) -> None:
        self.rec, self.task = rec, rec.task
        self.attempt: Attempt | None = None
        self.claims: tuple[tuple[str, str], ...] = ()
        self.wait_since = 0.0
        self.abandoned: str | None = None
        self.resource_timer: Any = None


class Record:
    """The scheduler's record of one task: its state and what it needs to run."""

    __slots__ = (
        "task", "id", "name", "status", "ups", "downs", "unmet", "order", "critical", "prio",
        # the definition in force (read from the Task when it is queued)
        "func", "module", "action", "parameters", "timeout", "max_retries", "retry_delay",
        "retry_backoff", "retry_jitter", "retry_on", "claims", "resource_timeout",
        "rule",  # its trigger rule; None for the default (all_success: ``unmet`` counts)
        "tally",  # a rule task's upstream outcomes so far: [success, failed, up_failed, skipped]
        # state
        "attempts", "current", "waiting", "retry_count", "retry_token", "retry_at", "result",
        "queued_at", "ready_at", "runnable_since", "started_at", "completed_at",
        "wait_dependencies", "wait_resources", "wait_worker", "blocked_on", "wait_by_resource",
        "heap_token", "unwinding", "parked", "counted_time",
        "view",  # the snapshot row of an ended task, kept until it changes again
        "fingerprint",  # what the task computes (journal); None until known, "" if unhashable
        "restored",  # when its result came back from the journal (a time), else None
        "parent",  # an item's mapped record (None for a task)
        "mapping",  # a mapped task's items (``mapping.MapState``), else None
        # its latest move, as the journal reads it at its next commit (Recorder.collect):
        # sequence number, time, detail; set by every move while a journal records
        "jseq", "jtime", "jdetail",
        # its small result (``Recorder.prepare_result``) until the journal reads it: the
        # value, and the fingerprint it is stored under (None: no small result waiting)
        "jsmall", "jsfp",
        "jdef",  # its fingerprint, to be defined with its next move the journal reads
    )

    def __init__(self, task: Task, order: int) -> None:
        self.task, self.id, self.name = task, task.id, task.name
        self.status: TaskStatus | None = None
        self.ups: tuple[Record, ...] = ()
        self.downs: list[Record] | tuple[()] = ()  # a list from the first dependent on
        self.unmet = 0
        self.order = order
        self.critical = 1
        self.attempts: tuple[Attempt, ...] = ()  # a tuple: most tasks run once
        self.current: Any = None  # the ticket of the attempt in flight
        self.waiting: Any = None  # the ticket queued for resources
        self.retry_count = 0
        self.retry_token: int | None = None
        self.retry_at: float | None = None
        self.result: TaskResult | None = None
        self.queued_at: float | None = None
        self.ready_at: float | None = None
        self.runnable_since = 0.0
        self.started_at: float | None = None
        self.completed_at: float | None = None
        self.wait_dependencies = self.wait_resources = self.wait_worker = 0.0
        self.blocked_on: str | None = None
        self.wait_by_resource: dict[str, float] | None = None
        self.heap_token = -1
        self.unwinding = 0  # abandoned attempts whose thread has not returned yet
        self.parked = False  # READY, held back until ``unwinding`` drops to 0
        self.counted_time: float | None = None  # its share of the run-time totals
        self.view: Any = None
        self.fingerprint: str | None = None
        self.restored: float | None = None
        self.tally: list[int] | None = None
        self.parent: Record | None = None
        self.mapping: MapState | None = None
        self.jseq = self.jtime = self.jdetail = self.jsmall = self.jsfp = self.jdef = None
        self.read_definition()

    def forget_fingerprint(self) -> None:
        """Made again as its next attempt starts; the definition the journal had still to
        write for it goes too (it would be written after the new one, as the latest)."""
        self.fingerprint = self.jdef = None

    def read_definition(self) -> None:
        """Copy the task's (validated) definition: later writes to the Task wait for a re-queue."""
        t = self.task
        self.name = t.name
        self.prio = _HEAP_PRIO[t.priority]
        self.func, self.module, self.action, self.parameters = t.func, t.module, t.action, t.parameters
        self.timeout = None if t.timeout is None else min(t.timeout, MAX_DELAY)
        self.max_retries, self.retry_delay = t.max_retries, t.retry_delay
        self.retry_backoff, self.retry_jitter = t.retry_backoff, t.retry_jitter
        self.retry_on = t.retry_on
        rule = t.trigger_rule
        if rule is DEFAULT_RULE:
            self.rule = None
        else:
            self.rule = rule
            if rule in REACTING:
                self.prio = _REACTING_PRIO[t.priority]
        spec = t._map
        if spec is None:
            self.mapping = None
        elif self.mapping is None or self.mapping.spec is not spec:  # bodies of items given
            old = self.mapping  # up on still count as running (``MapState.unwinding``)
            self.mapping = MapState(spec, None if old is None else old.unwinding)
        if t._resources:
            self.claims = claims_of(t._resources)
            limits = [r.timeout for r in t._resources if r.timeout is not None]
            self.resource_timeout = min(min(limits), MAX_DELAY) if limits else None
        else:
            self.claims, self.resource_timeout = (), None


class ItemRecord(Record):
    """One item of a mapped task: made when it is dispatched (``map_steps``), with the
    definition of its mapped record; not in ``Scheduler.records``, not in the task counts."""

    __slots__ = ("index",)

    def __init__(self, parent: Record, index: int, order: int) -> None:  # noqa: PLW0231
        self.parent, self.index, self.mapping = parent, index, None
        self.jseq = self.jtime = self.jdetail = self.jsmall = self.jsfp = self.jdef = None
        self.task = parent.task
        self.id, self.name = item_id(parent.id, index), f"{parent.name}[{index}]"
        self.status = None
        self.ups, self.downs, self.unmet = parent.ups, (), 0
        self.order, self.critical, self.prio = order, parent.critical, parent.prio
        # the mapped record's definition in force (written out: one item is made per dispatch)
        self.func, self.module, self.action = parent.func, parent.module, parent.action
        self.parameters, self.timeout = parent.parameters, parent.timeout
        self.max_retries, self.retry_delay = parent.max_retries, parent.retry_delay
        self.retry_backoff, self.retry_jitter = parent.retry_backoff, parent.retry_jitter
        self.retry_on, self.claims = parent.retry_on, parent.claims
        self.resource_timeout = parent.resource_timeout
        self.rule = self.tally = None
        self.attempts = ()
        self.current = self.waiting = self.retry_token = self.retry_at = self.result = None
        self.queued_at = self.ready_at = self.started_at = self.completed_at = None
        self.runnable_since = 0.0
        self.wait_dependencies = self.wait_resources = self.wait_worker = 0.0
        self.retry_count, self.heap_token, self.unwinding = 0, -1, 0
        self.blocked_on = self.wait_by_resource = self.counted_time = None
        self.parked = False
        self.view = self.fingerprint = self.restored = None

    def read_definition(self) -> None:
        """An item keeps the definition its mapped record had when it was made."""
