"""The scheduler on its own: transitions, late events, skipping, and a random walk of steps.

No threads here: the tests play the engine's part (take a ticket, start it,
finish it, fire a retry or a deadline) and check the one writer's books.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from codomyrmex_nb import DependencyCycleError, ResourceType, Task, TaskResource, TaskStatus
from codomyrmex_nb.core.model import MAX_DELAY
from codomyrmex_nb.core.scheduler import Scheduler, retry_delay
from codomyrmex_nb.core.states import outcome_of
from codomyrmex_nb.core.trigger_rules import FIRE, RULES, WAIT, decide

S = TaskStatus


class Clock:
    """A fake clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(listen: bool = True) -> tuple[Scheduler, list]:
    events: list = []
    sched = Scheduler(clock=Clock())
    if listen:
        sched.listener = events.append
    return sched, events


def t(name: str, *deps: Task, **kw) -> Task:
    return Task(name=name, func=lambda: None, dependencies=list(deps), **kw)


def start_a(**kw) -> tuple[Scheduler, Task, object]:
    """A scheduler holding one task ``a`` (``kw``: its fields), its first attempt started
    on ``w1``; returns the scheduler, the task and that attempt's ticket."""
    sched, _ = make()
    a = t("a", **kw)
    sched.define([a])
    ticket = sched.next_ticket()
    sched.start(ticket, "w1")
    return sched, a, ticket


def run_one(sched: Scheduler, ok: bool = True, value=None):
    """Take the best ticket, start it, finish it; returns the ticket."""
    ticket = sched.next_ticket()
    assert ticket is not None
    sched.start(ticket, "w1")
    sched.finish(ticket, ok, value, None if ok else RuntimeError("boom"))
    return ticket


def drain(sched: Scheduler) -> None:
    """Run everything that is runnable, firing due retries, until nothing is left."""
    for _ in range(10_000):
        ticket = sched.next_ticket()
        if ticket is not None:
            sched.start(ticket, "w")
            sched.finish(ticket, True, 1)
            continue
        due = [e for e in sched.effects if e[0] == "retry"]
        sched.effects.clear()
        if not due:
            return
        for _, rec, token, _delay in due:
            sched.retry_due(rec, token)


def test_every_change_is_one_numbered_record_and_counts_follow():
    sched, events = make()
    a, b = t("a"), t("b")
    sched.define([a])
    sched.define([b])
    run_one(sched)
    run_one(sched)
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(events) + 1)) and sched.seq == len(events)
    assert [(e.name, e.previous, e.status) for e in events] == [
        ("a", None, S.PENDING), ("a", S.PENDING, S.READY), ("b", None, S.PENDING),
        ("b", S.PENDING, S.READY), ("a", S.READY, S.RUNNING), ("a", S.RUNNING, S.COMPLETED),
        ("b", S.READY, S.RUNNING), ("b", S.RUNNING, S.COMPLETED)]
    assert sched.counts[S.COMPLETED] == 2 and sched.unfinished == 0
    assert a.status is S.COMPLETED and a.attempts[0].outcome == "completed"


def test_an_illegal_transition_is_a_loud_bug():
    sched, _ = make()
    sched.define([t("a")])
    rec = sched.lookup("a")
    with pytest.raises(AssertionError, match="cannot go"):
        sched._move(rec, S.SKIPPED)
        sched._move(rec, S.RUNNING)  # SKIPPED -> RUNNING: an ended task never starts


def test_dependents_wait_for_all_upstream_and_then_become_ready():
    sched, _ = make()
    a, b = t("a"), t("b")
    c = t("c", a, b)
    sched.define([a, b, c])
    assert c.status is S.PENDING and sched.lookup("c").unmet == 2
    run_one(sched)
    assert c.status is S.PENDING
    run_one(sched)
    assert c.status is S.READY


def test_late_events_change_nothing():
    sched, events = make()
    a = t("a", timeout=1.0, max_retries=1, retry_delay=5.0)
    sched.define([a])
    first = sched.next_ticket()
    sched.start(first, "w1")
    sched.deadline(first)  # times out: abandoned, waits to retry
    assert a.status is S.PENDING and a.waiting_retry and first.abandoned == "timeout"
    (_, rec, token, delay), = [e for e in sched.effects if e[0] == "retry"]
    assert delay == 5.0
    before = len(events)
    sched.deadline(first)  # a second deadline for the abandoned attempt
    sched.finish(first, True, "late")  # its thread finally returns
    assert len(events) == before and a.result.error_type == "TimeoutError"
    sched.retry_due(rec, token)
    assert a.status is S.READY
    sched.retry_due(rec, token)  # the same token again: nothing
    second = sched.next_ticket()
    sched.start(second, "w1")
    sched.finish(second, True, "ok")
    assert a.status is S.COMPLETED and a.result.data == "ok"


def test_a_cancelled_retry_never_comes_back():
    sched, _ = make()
    a = t("a", max_retries=2)
    sched.define([a])
    run_one(sched, ok=False)
    (_, rec, token, _), = [e for e in sched.effects if e[0] == "retry"]
    assert sched.cancel(rec)
    sched.retry_due(rec, token)
    assert a.status is S.CANCELLED and sched.waiting_retry == 0


def test_a_task_cancelled_before_its_retry_started_keeps_its_last_attempts_time():
    """Cancelled while waiting for a retry (its delay, or ready after it): its
    execution_time is the failed attempt's run time, and the retry that never started is
    not counted (retries == attempts - 1 for an ended task); the books still balance."""
    for due in (False, True):
        sched, a, ticket = start_a(max_retries=2, retry_delay=5.0)
        sched._now.now += 0.05
        sched.finish(ticket, False, None, RuntimeError("boom"), elapsed=0.05)
        assert a.retry_count == 1 and sched.retries == 1 and a.status is S.PENDING
        assert a.result.metadata["attempts"] == 1  # read meanwhile (by a view, the user)
        if due:
            (_, rec, token, _), = [e for e in sched.effects if e[0] == "retry"]
            sched.retry_due(rec, token)
            assert a.status is S.READY
        assert sched.cancel(sched.lookup(a))
        assert a.status is S.CANCELLED and a.execution_time == pytest.approx(0.05)
        assert a.retry_count == 0 and len(a.attempts) == 1
        assert sched.stats(1, False)["retries"] == 0 == sched.recount()["retries"]
        assert a.result.metadata["retries"] == 0 and a.result.metadata["attempts"] == 1
        assert a.can_retry()  # the guide's recipe: a cancelled task may be retried by hand


def test_a_task_cancelled_after_a_stop_keeps_the_interrupted_attempts_time():
    sched, a, ticket = start_a()
    sched._now.now += 0.25
    sched.stop()
    assert sched.cancel(sched.lookup(a))
    assert a.execution_time == pytest.approx(0.25) and a.retry_count == 0


def test_an_abandoned_attempt_keeps_its_task_back_until_its_thread_returns():
    sched, a, first = start_a()
    sched.stop()  # the engine stops: RUNNING -> READY, the old body still unwinding
    assert a.status is S.READY
    assert sched.next_ticket() is None  # no second body while the first one runs
    sched.finish(first, True, None)  # its code returned
    second = sched.next_ticket()
    assert second is not None and second is not first


def test_rerun_settles_upstream_first_so_nothing_stays_pending():
    # r, f (fails), x (after r, f), y (after r, x): re-running r must skip y too.
    sched, _ = make()
    r, f = t("r"), t("f")
    x = t("x", r, f)
    y = t("y", r, x)
    sched.define([r, f, x, y])
    tickets = {}
    while (ticket := sched.next_ticket()) is not None:
        tickets[ticket.task.name] = ticket
        sched.start(ticket, "w")
    sched.finish(tickets["r"], True)
    sched.finish(tickets["f"], False, error=RuntimeError("no"))
    assert (x.status, y.status) == (S.SKIPPED, S.SKIPPED)
    sched.requeue(sched.lookup("r"), fresh_budget=True)
    drain(sched)
    assert sched.unfinished == 0
    assert (r.status, x.status, y.status) == (S.COMPLETED, S.SKIPPED, S.SKIPPED)
    assert "upstream task 'x' was skipped" in y.result.error_message


def test_readding_a_pending_task_after_a_failed_one_skips_its_dependents():
    sched, _ = make()
    s, f = t("s"), t("f")
    p = t("p", s)
    q = t("q", p)
    sched.define([s, f, p, q])
    ts = sched.next_ticket()
    sched.start(ts, "w")
    run_one(sched, ok=False)  # f fails
    p.dependencies = [s.id, f.id]
    sched.define([p])
    assert (p.status, q.status) == (S.SKIPPED, S.SKIPPED)
    sched.finish(ts, True)
    assert sched.unfinished == 0


def test_a_task_is_defined_in_o_of_its_own_edges():
    sched, _ = make(listen=False)
    ups = [t(f"u{i}") for i in range(20_000)]
    sched.define(ups)
    wide = t("wide", *ups)
    sched.define([wide])
    assert sched.lookup("wide").unmet == 20_000
    chain = [t("c0")]
    sched.define(chain)
    for i in range(1, 5_000):  # one at a time, as users do: no whole-graph search per add
        chain.append(t(f"c{i}", chain[-1]))
        sched.define([chain[-1]])
    assert chain[-1].dependencies == [chain[-2].id]


def test_a_cycle_through_known_tasks_is_refused_and_leaves_nothing_behind():
    sched, _ = make()
    a = t("a")
    b = t("b", a)
    c = t("c", b)
    sched.define([a, b, c])
    a.dependencies = ["c"]
    with pytest.raises(DependencyCycleError, match="a -> b -> c -> a"):
        sched.define([a])
    assert a.dependencies == [] and sched.lookup("a").ups == ()


def test_two_capacities_for_one_resource_in_one_batch_are_refused():
    sched, _ = make()
    one = t("one", resources=[TaskResource(ResourceType.DATABASE, "db", "write", capacity=2)])
    two = t("two", resources=[TaskResource(ResourceType.DATABASE, "db", "write", capacity=3)])
    with pytest.raises(ValueError, match=r"database:db.*capacity 2.*'one'.*3.*'two'"):
        sched.define([one, two])
    assert not sched.records


@pytest.mark.parametrize("delay,backoff,attempt", [
    (1.0, 1e200, 3), (1e10, 1.0, 1), (0.01, 10.0, 400), (1e300, 2.0, 2)])
def test_retry_delays_never_overflow(delay, backoff, attempt):
    value = retry_delay(delay, backoff, 0.0, attempt)
    assert math.isfinite(value) and 0 <= value <= MAX_DELAY


def test_retry_delay_formula():
    assert retry_delay(2.0, 3.0, 0.0, 1) == 2.0
    assert retry_delay(2.0, 3.0, 0.0, 3) == 18.0
    assert retry_delay(2.0, 1.0, 0.5, 1, rand=lambda lo, hi: hi) == 2.5


# -- a random walk of steps, with the books checked after each -------------------------------

SOLE = TaskResource(ResourceType.DATABASE, "db", "write")
SHARED = TaskResource(ResourceType.DATABASE, "db", "read")


def rule_verdict(rec) -> str:
    """What the record's trigger rule says of its upstream tasks as they are now."""
    tally = [0, 0, 0, 0]
    for up in rec.ups:
        if up.status.is_terminal:
            tally[outcome_of(up)] += 1
    return decide(rec.rule or "all_success", len(rec.ups), *tally)


class SchedulerWalk(RuleBasedStateMachine):
    """Random define / dispatch / finish / fail / deadline / cancel / rerun / remove / stop / reset,
    with random trigger rules."""

    @initialize()
    def setup(self) -> None:
        self.clock = Clock()
        self.sched = Scheduler(clock=self.clock)
        self.events: list = []
        self.sched.listener = self.events.append
        self.tasks: list[Task] = []
        self.in_flight: list = []  # started tickets whose "thread" has not returned
        self.n = 0

    def _retries(self) -> list:
        due = [e for e in self.sched.effects if e[0] == "retry"]
        self.sched.effects = [e for e in self.sched.effects if e[0] != "retry"]
        return due

    @rule(deps=st.lists(st.integers(0, 50), max_size=3), retries=st.integers(0, 2),
          res=st.sampled_from([None, SOLE, SHARED]), batch=st.booleans(),
          trigger=st.sampled_from(["all_success", *RULES]))
    def define(self, deps, retries, res, batch, trigger) -> None:
        known = [self.tasks[i % len(self.tasks)] for i in deps] if self.tasks else []
        self.n += 1
        task = Task(name=f"t{self.n}", func=lambda: None, dependencies=known,
                    max_retries=retries, timeout=1.0, resources=[res] if res else [],
                    trigger_rule=trigger)
        new = [task]
        if batch:
            self.n += 1
            new.append(Task(name=f"t{self.n}", func=lambda: None, dependencies=[task]))
        self.sched.define(new)
        self.tasks.extend(new)

    @rule()
    def dispatch(self) -> None:
        ticket = self.sched.next_ticket()
        if ticket is not None:
            assert rule_verdict(ticket.rec) == FIRE, ticket.rec.name  # never before its rule
            self.sched.start(ticket, "w")
            self.in_flight.append(ticket)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10), ok=st.booleans())
    def thread_returns(self, i, ok) -> None:
        ticket = self.in_flight.pop(i % len(self.in_flight))
        self.clock.now += 0.01
        self.sched.finish(ticket, ok, 1, None if ok else RuntimeError("x"))

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10))
    def deadline(self, i) -> None:
        self.sched.deadline(self.in_flight[i % len(self.in_flight)])

    @rule()
    def retry_due(self) -> None:
        for _, rec, token, _ in self._retries():
            self.sched.retry_due(rec, token)

    @precondition(lambda self: self.tasks)
    @rule(i=st.integers(0, 100))
    def cancel(self, i) -> None:
        rec = self.sched.lookup(self.tasks[i % len(self.tasks)])
        if rec is not None:
            self.sched.cancel(rec)

    @precondition(lambda self: self.tasks)
    @rule(i=st.integers(0, 100))
    def rerun(self, i) -> None:
        rec = self.sched.lookup(self.tasks[i % len(self.tasks)])
        if rec is not None:
            self.sched.requeue(rec, fresh_budget=True)

    @precondition(lambda self: self.tasks)
    @rule(i=st.integers(0, 100))
    def readd(self, i) -> None:
        task = self.tasks[i % len(self.tasks)]
        if self.sched.lookup(task) is not None:
            self.sched.define([task])

    @precondition(lambda self: self.tasks)
    @rule(i=st.integers(0, 100))
    def remove_leaf(self, i) -> None:
        task = self.tasks[i % len(self.tasks)]
        rec = self.sched.lookup(task)
        if rec is not None and not rec.downs:
            self.sched.remove(rec)
            self.tasks.remove(task)

    @rule()
    def stop(self) -> None:
        self.sched.stop()

    @rule()
    def reset(self) -> None:
        self.sched.reset()
        self.tasks.clear()

    @invariant()
    def books_balance(self) -> None:
        sched = self.sched
        again = sched.recount()
        assert again["counts"] == sched.counts
        assert again["unfinished"] == sched.unfinished
        assert math.isclose(again["run_time_total"], sched.run_time_total, abs_tol=1e-6)
        assert again["run_time_n"] == sched.run_time_n
        assert again["retries"] == sched.retries
        assert again["waiting_retry"] == sched.waiting_retry
        assert again["waiting_resources"] == sched.waiting_resources
        assert again["running"] == len(sched.running) == sched.counts[S.RUNNING]

    @invariant()
    def at_most_one_body_per_task(self) -> None:
        bodies: dict[str, int] = {}
        for ticket in self.in_flight:
            bodies[ticket.rec.id] = bodies.get(ticket.rec.id, 0) + 1
        assert all(n <= 1 for n in bodies.values()), bodies

    @invariant()
    def a_sole_resource_is_never_held_twice(self) -> None:
        holds = self.sched.resources._holds.values()
        modes = [mode for claims in holds for key, mode in claims if key == SOLE.key]
        assert modes.count("write") <= 1
        assert not ("write" in modes and "read" in modes)

    @invariant()
    def nothing_waits_for_ever(self) -> None:
        for rec in self.sched.records.values():
            if rec.status is S.PENDING and rec.retry_token is None and rec.rule is not None:
                assert rule_verdict(rec) == WAIT, (rec.name, rec.rule)  # decided at once
                assert rec.tally == [sum(u.status.is_terminal and outcome_of(u) == i
                                         for u in rec.ups) for i in range(4)]
            elif rec.status is S.PENDING and rec.retry_token is None:
                assert all(u.status in (S.PENDING, S.READY, S.RUNNING, S.COMPLETED) for u in rec.ups)
                assert rec.unmet == sum(u.status is not S.COMPLETED for u in rec.ups) > 0

    @invariant()
    def sequence_numbers_only_grow(self) -> None:
        seqs = [e.seq for e in self.events]
        assert seqs == sorted(set(seqs)) and (not seqs or seqs[-1] == self.sched.seq)

    def teardown(self) -> None:
        """Every task reaches a terminal state once the threads return and retries fire."""
        sched = self.sched
        for ticket in self.in_flight:
            sched.finish(ticket, True, 1)
        for _ in range(1000):
            for _, rec, token, _ in self._retries():
                sched.retry_due(rec, token)
            ticket = sched.next_ticket()
            if ticket is None and not any(e[0] == "retry" for e in sched.effects):
                break
            if ticket is not None:
                sched.start(ticket, "w")
                sched.finish(ticket, True, 1)
        assert sched.unfinished == 0, {r.name: r.status for r in sched.records.values()}


SchedulerWalk.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_scheduler_walk = SchedulerWalk.TestCase


def test_remove_forgets_a_leaf_and_refuses_a_task_others_need():
    sched, events = make()
    a = t("a")
    b = t("b", a)
    sched.define([a, b])
    with pytest.raises(ValueError, match=r"'a' cannot be removed: 'b' depend"):
        sched.remove(sched.lookup("a"))
    sched.remove(sched.lookup("b"))  # pending: cancelled, then forgotten
    assert sched.lookup("b") is None and b.status is S.CANCELLED and sched.unfinished == 1
    assert events[-1].kind == "removed" and sched.lookup("a").downs == []
    assert sched.recount()["counts"] == sched.counts


def test_name_index_keeps_every_task_of_a_name_in_order():
    from codomyrmex_nb.core.definitions import NameIndex

    index, a, b, c = NameIndex(), object(), object(), object()
    index.add("x", a)
    assert (index.get("x"), index.one("x"), index.last("x")) == ((a,), a, a)
    index.add("x", b)
    index.add("x", c)
    assert (index.get("x"), index.one("x"), index.last("x")) == ((a, b, c), None, c)
    index.remove("x", b)
    index.remove("x", a)
    assert (index.get("x"), index.one("x")) == ((c,), c)
    index.remove("x", c)
    assert "x" not in index and index.get("x") == () and index.last("x") is None
    assert len(index) == 0 and list(index) == []
