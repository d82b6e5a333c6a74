"""A map's items and the bodies that run them: never two bodies of one item at once (across a
rerun of the map), ``max_parallel`` counting bodies given up on, a cancelled chained map's
items run again by ``rerun(only="failed")``, and sources that cannot be read again."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from codomyrmex_nb import Task, TaskOrchestrator, TaskStatus
from codomyrmex_nb.core.map_steps import plan_of
from codomyrmex_nb.core.scheduler import Scheduler

S = TaskStatus


class Bodies:
    """Counts the bodies running at once, per item and in all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: dict[object, int] = {}
        self.peak = 0
        self.twice: list[object] = []

    def enter(self, item: object) -> None:
        with self.lock:
            self.active[item] = self.active.get(item, 0) + 1
            if self.active[item] > 1:
                self.twice.append(item)
            self.peak = max(self.peak, sum(self.active.values()))

    def leave(self, item: object) -> None:
        with self.lock:
            self.active[item] -= 1


def _expand(sched: Scheduler, task: Task) -> None:
    ticket = sched.next_ticket()
    assert ticket is not None and ticket.rec.name == task.name
    sched.start(ticket, "w")
    sched.finish(ticket, True, plan_of(sched.lookup(task), lambda up: None))


def test_a_map_rerun_while_an_item_runs_holds_that_item_until_its_old_body_returns():
    sched = Scheduler()
    task = Task(name="m", func=lambda item: item, map=[0, 1])
    sched.define([task])
    _expand(sched, task)
    old = sched.next_ticket()
    sched.start(old, "w")
    assert old.rec.name == "m[0]"

    sched.requeue(sched.lookup(task), fresh_budget=True)  # m[0]'s body goes on meanwhile
    _expand(sched, task)
    other = sched.next_ticket()
    assert other.rec.name == "m[1]"  # the other item goes on
    sched.start(other, "w")
    assert sched.next_ticket() is None  # m[0] waits for its old body

    sched.finish(old, True, 0)  # the old body returns (its result is dropped)
    again = sched.next_ticket()
    assert again is not None and again.rec.name == "m[0]" and again.rec is not old.rec
    sched.start(again, "w")
    sched.finish(again, True, 0)
    sched.finish(other, True, 1)
    rec = sched.lookup(task)
    assert rec.status is S.COMPLETED and list(rec.result.data) == [0, 1]


def test_rerunning_a_map_in_the_engine_never_runs_an_item_twice_at_once():
    bodies, gate, inside = Bodies(), threading.Event(), threading.Event()

    def work(item):
        bodies.enter(item)
        try:
            inside.set()
            gate.wait(10)  # blocked in C: an interrupt lands only once it returns
            return item * 2
        finally:
            bodies.leave(item)

    orch = TaskOrchestrator(max_workers=4, journal=False)
    try:
        orch.create_task("m", func=work, map=[5])
        orch.start_execution()
        assert inside.wait(10)
        inside.clear()
        orch.rerun("m")
        assert not inside.wait(0.3), "m[0] started again while its old body still ran"
        gate.set()
        assert orch.wait_for_completion(10)
        assert list(orch.get_task_result("m").data) == [10]
        assert bodies.twice == []
    finally:
        gate.set()
        orch.stop_execution()


def test_max_parallel_counts_the_bodies_of_items_given_up_on_until_they_return():
    bodies = Bodies()

    def slow(item):
        bodies.enter(item)
        try:
            time.sleep(0.4)  # in C: each item times out, and its body runs on
        finally:
            bodies.leave(item)

    orch = TaskOrchestrator(max_workers=4, journal=False)
    try:
        orch.create_task("m", func=slow, map=[0, 1, 2], max_parallel=1, timeout=0.1,
                         tolerate="100%")
        orch.start_execution()
        assert orch.wait_for_completion(20)
        while any(bodies.active.values()):  # the last body returns after its timeout
            time.sleep(0.01)
    finally:
        orch.stop_execution()
    states = orch.get_task_result("m").data.states
    assert states == ["failed"] * 3  # every item timed out
    assert bodies.peak == 1, f"{bodies.peak} bodies ran at once under max_parallel=1"


def test_a_cancelled_chained_map_runs_its_cancelled_items_again_with_rerun_failed():
    gate, inside = threading.Event(), threading.Event()

    def times_ten(item):
        inside.set()
        gate.wait(10)
        return item * 10

    orch = TaskOrchestrator(max_workers=2, journal=False)
    try:
        orch.create_task("b", func=lambda item: item, map=[1, 2, 3, 4])
        orch.create_task("c", func=times_ten, map="b", max_parallel=1)
        orch.create_task("total", func=lambda upstream: sum(upstream["c"]), dependencies=["c"])
        orch.start_execution()
        assert inside.wait(10)
        deadline = time.monotonic() + 10
        while orch.get_task("b").status is not S.COMPLETED:  # polling in a test is fine
            assert time.monotonic() < deadline
            time.sleep(0.01)
        orch.cancel_task("c")  # c[0] runs, c[1:] wait for max_parallel: b's items completed
        gate.set()
        orch.wait_for_completion(10)
        items = orch.tasks_frame(items=True).query("task == 'c'")
        assert items["state"].tolist() == ["cancelled"] * 4
        frame = orch.tasks_frame().set_index("name")
        assert frame.loc["c", "items_failed"] == 4

        orch.rerun("c", only="failed")
        assert orch.wait_for_completion(10)
        assert list(orch.get_task_result("c").data) == [10, 20, 30, 40]
        assert orch.get_task_result("total").data == 100
    finally:
        gate.set()
        orch.stop_execution()


def test_an_iterator_source_read_already_fails_the_map_with_what_to_do():
    orch = TaskOrchestrator(max_workers=2, journal=False)
    try:
        orch.create_task("src", func=lambda: (i for i in range(4)))
        orch.create_task("m", func=lambda item: item, map="src")
        orch.create_task("m2", func=lambda item: item, map="src", dependencies=["m"])
        orch.start_execution()
        assert not orch.wait_for_completion(10)
        assert list(orch.get_task_result("m").data) == [0, 1, 2, 3]
        second = orch.get_task("m2")
        assert second.status is S.FAILED
        assert second.result.error_message == (
            "cannot map over 'src': its result is an iterator (generator) that 'm' read "
            "already, and an iterator can be read once; return a list from 'src', or rerun "
            "'src' to make a new one")

        orch.rerun("m")  # its generator was read: again, it would find nothing
        orch.wait_for_completion(10)
        assert orch.get_task("m").status is S.FAILED
        assert "that an earlier attempt of this map read already" in \
            orch.get_task("m").result.error_message

        orch.rerun("src")  # a new generator: both maps read it anew, in turn
        orch.wait_for_completion(10)
        assert list(orch.get_task_result("m").data) == [0, 1, 2, 3]
    finally:
        orch.stop_execution()


def test_map_index_cannot_be_bound_by_map():
    orch = TaskOrchestrator(journal=False)
    with pytest.raises(ValueError, match="'map_index' must be a parameter name .* not "
                                         "'upstream' or 'map_index', which the engine passes"):
        orch.create_task("m", func=lambda map_index: map_index, map={"map_index": [7, 8]})
    assert orch.get_task("m") is None


def test_cancelling_a_map_ends_the_map_chained_on_it_after_it_saying_so():
    sched = Scheduler()
    events: list = []
    sched.listener = events.append
    source = Task(name="b", func=lambda item: item, map=[1, 2, 3])
    chained = Task(name="c", func=lambda item: item, map="b")
    sched.define([source, chained])
    _expand(sched, source)
    first = sched.next_ticket()
    sched.start(first, "w")
    assert first.rec.name == "b[0]"
    sched.cancel(sched.lookup(source))
    ends = [(e.name, e.status) for e in events if e.status in (S.CANCELLED, S.FAILED)
            and e.name in ("b", "c")]
    ends = [(e.name, e.status) for e in events if e.status in (S.CANCELLED, S.SKIPPED)
            and e.name in ("b", "c")]
    assert ends == [("b", S.CANCELLED), ("c", S.SKIPPED)]  # the source first
    assert sched.lookup(chained).result.error_message == (
        "mapped task 'c' stopped: the map it follows, 'b', cancelled")


def _fails_on_two(item):
    if item == 2:
        raise ValueError("two")
    return item * 10


def test_a_task_after_a_failed_map_sees_its_partial_map_result():
    orch = TaskOrchestrator(max_workers=2, journal=False)
    try:
        orch.create_task("m", func=_fails_on_two, map=[1, 2, 3])
        report = orch.create_task("report", func=lambda upstream: upstream["m"],
                                  dependencies=["m"], trigger_rule="all_done")
        again = orch.create_task("again", func=lambda item: item + 1, map="m",
                                 trigger_rule="all_done")
        orch.start_execution()
        orch.wait_for_completion(10)
        assert orch.get_task("m").status is S.FAILED
        partial = report.result.data
        assert list(partial) == [10, 30] and list(partial.failed) == [1]
        assert list(again.result.data) == [11, 31]  # mapped over the successful values
    finally:
        orch.stop_execution()


def test_an_items_result_before_its_map_read_its_sources_is_none():
    gate = threading.Event()
    orch = TaskOrchestrator(max_workers=2, journal=False)
    try:
        orch.create_task("src", func=lambda: gate.wait(10) and [1, 2])
        orch.create_task("m", func=lambda item: item, map="src")
        orch.start_execution()
        assert orch.get_task_result("m", map_index=0) is None
        gate.set()
        assert orch.wait_for_completion(10)
        assert orch.get_task_result("m", map_index=1).data == 2
        with pytest.raises(ValueError, match="has 2 items; map_index 5 is out of range"):
            orch.get_task_result("m", map_index=5)
    finally:
        gate.set()
        orch.stop_execution()


def test_an_item_waiting_to_retry_is_named_alike_in_map_items_and_the_items_frame():
    failed = threading.Event()

    def flaky(item):
        failed.set()
        raise RuntimeError("not yet")

    orch = TaskOrchestrator(max_workers=2, journal=False)
    try:
        orch.create_task("m", func=flaky, map=[1], max_retries=1, retry_delay=30)
        orch.start_execution()
        assert failed.wait(10)
        deadline = time.monotonic() + 10
        while orch.map_items("m")[0]["state"] == "running":  # polling in a test is fine
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert orch.map_items("m")[0]["state"] == "up_for_retry"
        assert orch.tasks_frame(items=True)["state"].tolist() == ["up_for_retry"]
    finally:
        orch.stop_execution()


def test_a_maps_timeout_bounds_each_item_not_the_read_of_its_source():
    def slow_source():
        for i in range(3):
            time.sleep(0.2)  # reading the whole source takes 0.6 s, over the items' timeout
            yield i

    orch = TaskOrchestrator(max_workers=2, journal=False)
    try:
        orch.create_task("src", func=slow_source)
        orch.create_task("m", func=lambda item: item * 2, map="src", timeout=0.3)
        orch.start_execution()
        assert orch.wait_for_completion(10)
        assert list(orch.get_task_result("m").data) == [0, 2, 4]
    finally:
        orch.stop_execution()


def test_redefining_a_running_map_with_a_new_list_stops_its_items_under_the_old_map():
    """Its items in flight are interrupted and counted against max_parallel until their bodies
    return; the new list's items all run, and nothing of the old map leaks into the new."""
    bodies, died = Bodies(), []

    def body(item):
        bodies.enter(item)
        try:
            for _ in range(30):  # Python code: an interrupt lands between these sleeps
                time.sleep(0.01)
            return item * 10
        finally:
            bodies.leave(item)

    hook, threading.excepthook = threading.excepthook, died.append  # a worker that dies
    orch = TaskOrchestrator(max_workers=6, journal=False)
    try:
        orch.create_task("m", func=body, map=list(range(8)), max_parallel=3)
        orch.start_execution()
        while sum(bodies.active.values()) < 3:
            time.sleep(0.005)
        new = orch.redefine("m", map=list(range(10)))
        assert orch.wait_for_completion(20)
        counts = orch._engine.sched.recount()["counts"]
        assert counts == orch._engine.sched.counts and orch._engine.sched.running == {}
    finally:
        orch.stop_execution()
        threading.excepthook = hook
    assert not died, died[0].exc_value
    result = orch.get_task_result("m").data
    assert new.map.max_parallel == 3  # the new list keeps the map's options
    assert list(result) == [i * 10 for i in range(10)] and result.states == ["completed"] * 10
    assert bodies.peak <= 3, f"{bodies.peak} bodies ran at once under max_parallel=3"


@pytest.mark.parametrize("journal", [False, True])
def test_redefining_the_source_of_a_chained_map_mid_run_runs_both_over_the_new_list(
        journal, tmp_path):
    orch = TaskOrchestrator(max_workers=4, journal=tmp_path / "j.sqlite" if journal else False)
    started = threading.Event()

    def slow(item):
        started.set()
        time.sleep(0.02)
        return item

    try:
        orch.create_task("a", func=slow, map=list(range(8)))
        orch.create_task("b", func=lambda item: item * 10, map="a")
        orch.start_execution()
        assert started.wait(10)
        orch.redefine("a", map=list(range(12)))
        assert orch.wait_for_completion(20)
    finally:
        orch.stop_execution()
    assert list(orch.get_task_result("a").data) == list(range(12))
    assert list(orch.get_task_result("b").data) == [i * 10 for i in range(12)]


def test_redefine_keeps_a_maps_options_unless_given_and_can_change_them(orch):
    orch.create_task("m", func=lambda item: 1 / 0 if item == 2 else item, map=[1, 2, 3],
                     tolerate=1, max_parallel=2)
    orch.create_task("p", func=lambda a, b: a + b, map={"a": [1, 2], "b": [10, 20]},
                     map_mode="product")
    orch.start_execution()
    assert orch.wait_for_completion(10)
    orch.redefine("m", map=[1, 2, 3, 4])
    orch.redefine("p", map={"a": [1, 2, 3], "b": [10, 20]})
    assert orch.wait_for_completion(10)  # one failure: still tolerated
    assert orch.get_task("m").map.max_parallel == 2
    assert list(orch.get_task_result("p").data) == [11, 21, 12, 22, 13, 23]  # still crossed
    orch.redefine("m", tolerate=0)
    assert not orch.wait_for_completion(10)
    assert orch.get_task("m").status is S.FAILED and orch.get_task("m").map.max_parallel == 2
    orch.redefine("m", tolerate="50%", max_parallel=3)
    assert orch.wait_for_completion(10)
    spec = orch.get_task("m").map
    assert (spec.tolerate, spec.max_parallel, spec.mode) == ((None, 0.5), 3, "zip")
    with pytest.raises(ValueError, match="max_parallel must be a whole number"):
        orch.redefine("m", max_parallel=0)
    assert orch.get_task("m").map.max_parallel == 3  # refused whole: nothing changed
    orch.redefine("m", map=None, func=lambda: 5)
    with pytest.raises(ValueError, match="apply to mapped tasks only"):
        orch.redefine("m", tolerate=1)


def test_a_cancelled_map_keeps_what_its_items_came_to():
    """Partial results are never lost: the items that completed before the cancel stay in its
    MapResult, which a task after it with a trigger rule sees; an item that never ran has a
    result that says so."""
    orch = TaskOrchestrator(max_workers=2, journal=False)
    two = threading.Event()

    def item_body(item):
        if item == 2:
            two.set()
            for _ in range(500):  # Python code: the cancel's interrupt lands between sleeps
                time.sleep(0.01)
        return item

    try:
        orch.create_task("m", func=item_body, map=list(range(6)), max_parallel=1)
        seen = orch.create_task("seen", func=lambda upstream: upstream["m"], dependencies=["m"],
                                trigger_rule="all_done")
        orch.start_execution()
        assert two.wait(10)
        assert orch.cancel_task("m")
        orch.wait_for_completion(10)
    finally:
        orch.stop_execution()
    result = orch.get_task_result("m")
    assert orch.get_task("m").status is S.CANCELLED and result.error_type == "CancelledError"
    assert list(result.data) == [0, 1] and sorted(result.data.failed) == [2, 3, 4, 5]
    assert result.data.states == ["completed"] * 2 + ["cancelled"] * 4
    assert result.metadata["items_failed"] == 4
    assert list(seen.result.data) == [0, 1]  # the partial MapResult, not a NoResult
    unrun = orch.get_task_result("m", map_index=5)
    assert unrun is not None and not unrun.success and unrun.error_type == "CancelledError"
    assert "never ran" in unrun.error_message
    frame = orch.tasks_frame(items=True)
    assert list(frame["state"])[-6:] == ["completed"] * 2 + ["cancelled"] * 4


@pytest.mark.parametrize("source", ["generator", "c_iterator"])
@pytest.mark.parametrize("how", ["cancel", "stop"])
def test_a_cancel_or_stop_interrupts_the_read_of_an_endless_source(source, how):
    """Reading a source is user code (a generator's body runs in it): a cancel or a stop
    interrupts it as it interrupts an item, even in an endless C iterator, and no thread
    goes on reading it after stop_execution."""
    reads = [0]

    def endless():
        if source == "c_iterator":
            return itertools.count()

        def items():
            while True:
                time.sleep(0.001)
                reads[0] += 1
                yield reads[0]
        return items()

    orch = TaskOrchestrator(max_workers=2, journal=False)
    try:
        orch.create_task("src", func=endless)
        orch.create_task("m", func=lambda item: item, map="src")
        orch.start_execution()
        deadline = time.monotonic() + 10
        while orch.get_task("m").status is not S.RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # reading
        if how == "cancel":
            assert orch.cancel_task("m")
            orch.wait_for_completion(5)
            assert orch.get_task("m").status is S.CANCELLED
        began = time.monotonic()
        orch.stop_execution()
        assert time.monotonic() - began < 2.0  # no worker left stuck in the read
    finally:
        orch.stop_execution()
    if how == "stop":
        assert orch.get_task("m").status is S.READY  # read again when the engine starts
    left = reads[0]
    time.sleep(0.05)
    assert reads[0] == left
    assert not [t for t in threading.enumerate() if t.name.startswith("codo-worker")]
