"""Map: one task run once per item, chained item by item, collected as a MapResult
(issue 18 items 1, 3-6). Engine tests run real workers; the state machine at the end
walks the pure scheduler with maps, cancels and failures."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from codomyrmex_nb import MapResult, Task, TaskOrchestrator, TaskStatus
from codomyrmex_nb.core.map_steps import plan_of
from codomyrmex_nb.core.mapping import check_spec, expand
from codomyrmex_nb.core.scheduler import Scheduler

S = TaskStatus


def run(orch, timeout=20.0) -> bool:
    orch.start_execution()
    return orch.wait_for_completion(timeout=timeout)


# -- 1. map in Python ---------------------------------------------------------------------------

def test_a_map_over_an_upstream_list_runs_once_per_item_and_collects_in_order(make_orch):
    orch = make_orch(3)
    orch.create_task("numbers", func=lambda: [3, 1, 2])
    orch.create_task("square", func=lambda item: item * item, map="numbers")
    orch.create_task("total", func=lambda upstream: (list(upstream["square"]),
                                                     sum(upstream["square"])),
                     dependencies=["square"])
    assert run(orch)
    result = orch.get_task_result("square").data
    assert isinstance(result, MapResult)
    assert list(result) == [9, 1, 4] and result.states == ["completed"] * 3
    assert orch.get_task_result("total").data == ([9, 1, 4], 14)
    assert orch.get_task_result("square", map_index=1).data == 1


def test_every_kind_of_iterable_maps_and_an_iterator_is_read_once(make_orch):
    reads = []

    def gen():
        def items():
            for i in range(3):
                reads.append(i)
                yield i
        return items()

    orch = make_orch(2)
    orch.create_task("t", func=lambda: (1, 2))
    orch.create_task("r", func=lambda: range(4))
    orch.create_task("s", func=lambda: {5})
    orch.create_task("g", func=gen)
    orch.create_task("d", func=lambda: {"a": 1})
    for src in "trsgd":
        orch.create_task(f"m_{src}", func=lambda item: item, map=src)
    assert run(orch)
    assert list(orch.get_task_result("m_t").data) == [1, 2]
    assert list(orch.get_task_result("m_r").data) == [0, 1, 2, 3]
    assert list(orch.get_task_result("m_s").data) == [5]
    assert list(orch.get_task_result("m_g").data) == [0, 1, 2] and reads == [0, 1, 2]
    assert list(orch.get_task_result("m_d").data) == [("a", 1)]


def test_a_dataframe_or_a_string_is_refused_with_what_to_map_over(make_orch):
    pd = pytest.importorskip("pandas")
    orch = make_orch(2)
    orch.create_task("df", func=lambda: pd.DataFrame({"a": [1, 2]}))
    orch.create_task("over_df", func=lambda item: item, map="df", max_retries=3)
    orch.create_task("text", func=lambda: "abc")
    orch.create_task("over_text", func=lambda item: item, map="text")
    assert not run(orch)
    df_err = orch.get_task_result("over_df")
    assert orch.get_task("over_df").status is S.FAILED
    assert "itertuples" in df_err.error_message
    assert orch.get_task("over_df").retry_count == 0  # never retried
    assert "wrap it as [value]" in orch.get_task_result("over_text").error_message


def test_zip_binds_several_parameters_and_unequal_lengths_name_both(make_orch):
    orch = make_orch(2)
    orch.create_task("xs", func=lambda: [1, 2, 3])
    orch.create_task("ys", func=lambda: ["a", "b", "c"])
    orch.create_task("short", func=lambda: [1])
    orch.create_task("pairs", func=lambda x, y, k: f"{x}{y}{k}", parameters={"k": "!"},
                     map={"x": "xs", "y": "ys"})
    orch.create_task("bad", func=lambda x, y: 0, map={"x": "xs", "y": "short"})
    assert not run(orch)
    assert list(orch.get_task_result("pairs").data) == ["1a!", "2b!", "3c!"]
    msg = orch.get_task_result("bad").error_message
    assert "'xs' has 3" in msg and "'short' has 1" in msg and "product" in msg


def test_zipped_literal_lists_of_unequal_lengths_are_refused_at_definition(make_orch):
    orch = make_orch(2)
    with pytest.raises(ValueError) as err:
        orch.create_task("z", func=lambda a, b: a + b, map={"a": [1, 2, 3], "b": [1, 2]})
    assert str(err.value) == ("map_mode='zip' needs sources of equal length: 'a' has 3, 'b' has "
                              "2; shorten one or use map_mode='product'")
    assert orch.list_tasks() == []  # nothing half-added
    with pytest.raises(ValueError, match="'a' has 1, 'b' has 2"):
        Task("z", func=print).map = {"a": [1], "b": [1, 2]}
    # crossed they are fine; with an upstream task's result the length is known at run time
    orch.create_task("crossed", func=lambda a, b: a + b, map={"a": [1, 2, 3], "b": [10, 20]},
                     map_mode="product")
    orch.create_task("xs", func=lambda: [1, 2, 3])
    orch.create_task("mixed", func=lambda a, b: a + b, map={"a": "xs", "b": [1, 2]})
    assert not run(orch)
    assert len(orch.get_task_result("crossed").data) == 6
    assert "'xs' has 3, 'b' has 2" in orch.get_task_result("mixed").error_message


def test_product_crosses_and_a_literal_list_is_a_static_grid(make_orch):
    orch = make_orch(2)
    orch.create_task("grid", func=lambda n, lr: (n, lr),
                     map={"n": [50, 100], "lr": [0.1, 0.2, 0.3]}, map_mode="product")
    orch.create_task("plain", func=lambda item: item + 1, map=[1, 2])
    assert run(orch)
    assert list(orch.get_task_result("grid").data) == [
        (50, 0.1), (50, 0.2), (50, 0.3), (100, 0.1), (100, 0.2), (100, 0.3)]
    assert list(orch.get_task_result("plain").data) == [2, 3]


def test_map_index_is_passed_where_the_function_names_it_and_upstream_is_broadcast(make_orch):
    orch = make_orch(2)
    orch.create_task("base", func=lambda: 100)
    orch.create_task("xs", func=lambda: ["a", "b"])
    orch.create_task("m", func=lambda item, map_index, upstream: (map_index, item, upstream["base"]),
                     map="xs", dependencies=["base"])
    assert run(orch)
    assert list(orch.get_task_result("m").data) == [(0, "a", 100), (1, "b", 100)]


def test_bad_map_arguments_are_refused_at_definition_naming_the_fix(make_orch):
    orch = make_orch(1)
    with pytest.raises(ValueError, match="map_mode must be 'zip' or 'product'"):
        orch.create_task("a", func=print, map=[1], map_mode="cross")
    with pytest.raises(ValueError, match="tolerate must be"):
        orch.create_task("a", func=print, map=[1], tolerate="lots")
    with pytest.raises(ValueError, match="max_parallel must be"):
        orch.create_task("a", func=print, map=[1], max_parallel=0)
    with pytest.raises(ValueError, match="apply to mapped tasks only"):
        orch.create_task("a", func=print, tolerate=2)
    with pytest.raises(ValueError, match="parameter name"):
        orch.create_task("a", func=print, map={"upstream": [1]})
    assert orch.list_tasks() == []  # nothing half-added


def test_tolerate_as_a_share_rounds_down():
    assert check_spec([1], tolerate="25%").allowed_failures(10) == 2
    assert check_spec([1], tolerate=3).allowed_failures(10) == 3
    plan = expand(("a", "b"), [[1, 2], [3, 4, 5]], ["a", "b"], "product")
    assert plan.n == 6 and plan.binding(5) == {"a": 2, "b": 5}


# -- 3. collect ------------------------------------------------------------------------------------

def test_an_empty_input_gives_an_empty_map_result_and_the_task_completes(make_orch):
    orch = make_orch(2)
    orch.create_task("nothing", func=lambda: [])
    orch.create_task("m", func=lambda item: item, map="nothing")
    orch.create_task("after", func=lambda upstream: upstream["m"], dependencies=["m"])
    assert run(orch)
    assert orch.get_task("m").status is S.COMPLETED
    seen = orch.get_task_result("after").data
    assert isinstance(seen, MapResult) and len(seen) == 0 and seen is not None


def test_a_failed_item_fails_the_map_but_every_other_item_still_runs(make_orch):
    ran = []
    lock = threading.Lock()

    def body(item):
        with lock:
            ran.append(item)
        if item == 2:
            raise ValueError("bad item")
        return item * 10

    orch = make_orch(2)
    orch.create_task("m", func=body, map=list(range(6)))
    orch.create_task("after", func=lambda upstream: 1, dependencies=["m"])
    assert not run(orch)
    assert sorted(ran) == list(range(6))  # partial results are never lost
    res = orch.get_task_result("m")
    assert orch.get_task("m").status is S.FAILED and orch.get_task("after").status is S.SKIPPED
    assert "1 of 6 items" in res.error_message and "map_index=2" in res.error_message
    assert res.data.by_index == {0: 0, 1: 10, 3: 30, 4: 40, 5: 50}
    assert list(res.data.failed) == [2] and isinstance(res.data.failed[2], ValueError)


def test_tolerated_failures_complete_the_map_and_by_index_keeps_positions(make_orch):
    orch = make_orch(2)
    orch.create_task("m", func=lambda item: 10 // item, map=[1, 0, 5, 0], tolerate=2)
    orch.create_task("after", func=lambda upstream: upstream["m"].by_index,
                     dependencies=["m"])
    assert run(orch)
    assert orch.get_task("m").status is S.COMPLETED
    assert list(orch.get_task_result("m").data) == [10, 2]
    assert orch.get_task_result("after").data == {0: 10, 2: 2}
    assert orch.get_task_result("m").data.states == ["completed", "failed", "completed", "failed"]


def test_a_rule_task_after_a_failed_map_sees_its_partial_result_never_none(make_orch):
    orch = make_orch(2)
    orch.create_task("m", func=lambda item: 1 // item, map=[0])
    orch.create_task("report", func=lambda upstream: upstream["m"], dependencies=["m"],
                     trigger_rule="all_done")
    run(orch)
    seen = orch.get_task_result("report").data
    assert isinstance(seen, MapResult) and list(seen) == [] and seen.states == ["failed"]
    assert isinstance(seen.failed[0], ZeroDivisionError)


# -- 4. chained maps run item by item -------------------------------------------------------------

def test_a_chained_map_starts_item_i_as_soon_as_its_source_item_i_completed(make_orch):
    cube_0_ran = threading.Event()
    waited = []

    def first(item):
        if item == 3:  # square's last item ends only once cube's first item ran
            waited.append(cube_0_ran.wait(10))
        return item

    def second(item):
        if item == 0:
            cube_0_ran.set()
        return item

    orch = make_orch(2)
    orch.create_task("square", func=first, map=[0, 1, 2, 3])
    orch.create_task("cube", func=second, map="square")
    orch.create_task("total", func=lambda upstream: sum(upstream["cube"]), dependencies=["cube"])
    assert run(orch)
    assert waited == [True]  # breadth first, cube would wait for square[3]: a deadlock


def test_a_chained_item_whose_source_item_failed_is_skipped_and_not_counted(make_orch):
    orch = make_orch(2)
    orch.create_task("square", func=lambda item: 1 // item, map=[1, 0, 1], tolerate=1)
    orch.create_task("cube", func=lambda item: item * 2, map="square")
    assert run(orch)
    cube = orch.get_task_result("cube").data
    assert orch.get_task("cube").status is S.COMPLETED
    assert cube.by_index == {0: 2, 2: 2} and cube.states[1] == "skipped" and not cube.failed


def test_a_chain_stops_when_its_source_map_fails(make_orch):
    orch = make_orch(2)
    orch.create_task("square", func=lambda item: 1 // item, map=[1, 0])
    orch.create_task("cube", func=lambda item: item, map="square")
    orch.create_task("after", func=lambda: 1, dependencies=["cube"])
    assert not run(orch)
    assert orch.get_task("square").status is S.FAILED
    cube = orch.get_task_result("cube")
    assert orch.get_task("cube").status is S.SKIPPED  # upstream failed, as any task after it
    assert "map it follows, 'square'" in cube.error_message
    assert cube.error_type == "UpstreamFailedError" and cube.metadata["root_cause"] == "square"
    assert list(cube.data) == [1]  # the item that ran keeps its value
    assert orch.get_task("after").status is S.SKIPPED
    assert "root cause: 'square'" in orch.get_task_result("after").error_message


def test_a_map_over_a_failed_map_ends_alike_whether_it_followed_it_or_came_after(make_orch):
    """One definition, one outcome: chained while its source ran, or defined after its source
    failed, a map over a failed map is skipped as upstream failed."""
    orch = make_orch(2)
    orch.create_task("a", func=lambda item: 1 // (item - 2), map=[1, 2, 3])
    orch.create_task("before", func=lambda item: item, map="a")
    assert not run(orch)
    orch.create_task("after", func=lambda item: item, map="a")
    assert not orch.wait_for_completion(10)
    before, after = orch.get_task("before"), orch.get_task("after")
    assert before.status is after.status is S.SKIPPED
    assert before.result.error_type == after.result.error_type == "UpstreamFailedError"
    rule = orch.create_task("report", func=lambda upstream: upstream["before"],
                            dependencies=["before"], trigger_rule="all_done")
    orch.wait_for_completion(10)
    assert list(rule.result.data) == [-1, 1]  # the chained items that ran


# -- 5. items are first-class for the engine -----------------------------------------------------

def test_each_item_retries_and_times_out_on_its_own(make_orch):
    tries: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(item):
        with lock:
            tries[item] = tries.get(item, 0) + 1
            n = tries[item]
        if item == 1 and n < 3:
            raise RuntimeError("flaky")
        if item == 2:
            for _ in range(500):  # Python-level waits: the timeout interrupts between them
                time.sleep(0.01)
        return item

    orch = make_orch(3)
    orch.create_task("m", func=flaky, map=[0, 1, 2], max_retries=2, timeout=0.5, tolerate=1)
    t0 = time.monotonic()
    assert run(orch)
    assert time.monotonic() - t0 < 4  # the slow item timed out (twice retried) within bounds
    assert tries[0] == 1 and tries[1] == 3
    one = orch.get_task_result("m", map_index=1)
    assert one.success and one.metadata["retries"] == 2
    two = orch.get_task_result("m", map_index=2)
    assert not two.success and two.error_type == "TimeoutError"
    stats = orch.get_execution_stats()
    assert stats["total_tasks"] == 1 and stats["completed"] == 1  # items are not tasks


def test_cancel_one_item_and_cancel_the_whole_map(make_orch):
    gate = threading.Event()
    orch = make_orch(2)
    orch.create_task("m", func=lambda item: gate.wait(10) and item, map=list(range(20)),
                     max_parallel=2, tolerate=1)
    orch.start_execution()
    deadline = time.monotonic() + 5
    while orch.map_items("m")[0]["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.01)  # its items made (RUNNING alone may still be the read of its list)
    assert orch.cancel_task("m", map_index=15)  # not dispatched yet: never runs
    assert not orch.cancel_task("m", map_index=15)
    gate.set()
    assert orch.wait_for_completion(timeout=10)
    res = orch.get_task_result("m").data
    assert res.states[15] == "cancelled" and 15 not in res.by_index and len(res) == 19
    with pytest.raises(ValueError, match="has 20 items"):
        orch.get_task_result("m", map_index=20)

    gate2 = threading.Event()
    orch2 = make_orch(2)
    orch2.create_task("big", func=lambda item: gate2.wait(10), map=list(range(50)))
    orch2.create_task("after", func=lambda: 1, dependencies=["big"])
    orch2.start_execution()
    deadline = time.monotonic() + 5
    while orch2.get_task("big").status is not S.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert orch2.cancel_task("big")
    gate2.set()
    orch2.wait_for_completion(timeout=10)
    assert orch2.get_task("big").status is S.CANCELLED
    assert orch2.get_task("after").status is S.SKIPPED
    items = orch2.map_items("big")
    assert all(i["state"] in ("cancelled", "completed") for i in items)
    assert sum(i["state"] == "completed" for i in items) <= 4  # the undispatched never ran


def test_map_index_must_be_a_whole_number_not_a_bool(make_orch):
    import numpy as np

    gate = threading.Event()
    orch = make_orch(1)
    orch.create_task("m", func=lambda item: gate.wait(10) and item * 2, map=[10, 20, 30],
                     max_parallel=1)
    orch.start_execution()
    deadline = time.monotonic() + 5
    while orch.get_task("m").status is not S.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    said = "map_index must be an item's position, a whole number, got True (bool)"
    for call in (orch.cancel_task, orch.get_task_result, orch.item_views):
        with pytest.raises(ValueError) as err:
            call("m", map_index=True)  # was item 1 ("m[True]")
        assert str(err.value) == said
    with pytest.raises(ValueError, match=r"got 1.0 \(float\)"):
        orch.get_task_result("m", map_index=1.0)
    gate.set()
    assert orch.wait_for_completion(timeout=10)
    assert orch.get_task_result("m").data.states == ["completed"] * 3  # item 1 not cancelled
    assert orch.get_task_result("m", map_index=np.int64(1)).data == 40  # a NumPy int is fine
    assert [v.map_index for v in orch.item_views("m", map_index=np.int64(2))] == [2]


def test_max_parallel_bounds_items_in_flight(make_orch):
    live = [0]
    peak = [0]
    lock = threading.Lock()

    def body(item):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.01)
        with lock:
            live[0] -= 1

    orch = make_orch(4)
    orch.create_task("m", func=body, map=list(range(16)), max_parallel=2)
    assert run(orch)
    assert peak[0] == 2


def test_rerun_only_failed_runs_just_those_items_and_the_collect_step(make_orch):
    calls = []
    lock = threading.Lock()
    broken = {3}

    def body(item):
        with lock:
            calls.append(item)
        if item in broken:
            raise ValueError("broken")
        return item

    orch = make_orch(2)
    orch.create_task("m", func=body, map=list(range(5)))
    orch.create_task("total", func=lambda upstream: sum(upstream["m"]), dependencies=["m"])
    assert not run(orch)
    broken.clear()
    calls.clear()
    assert orch.rerun("m", only="failed")
    assert orch.wait_for_completion(timeout=10)
    assert calls == [3]
    assert orch.get_task_result("total").data == 10
    with pytest.raises(ValueError, match="takes 'failed'"):
        orch.rerun("m", only="everything")


def _blocking_once(at, calls, started, lock):
    """An item body that records its calls and blocks (until the stop interrupts it) the
    first time it runs item ``at``."""
    def body(item):
        with lock:
            calls.append(item)
            first = calls.count(item) == 1
        if item == at and first:
            started.set()
            for _ in range(3000):  # interrupted by the stop
                time.sleep(0.01)
        return item * 10
    return body


def test_a_stopped_engine_shows_no_map_running_and_resumes_its_items_on_start(make_orch):
    """A stop while a map's items run leaves nothing running: the map goes back to READY
    ("interrupted") with its items' outcomes kept, as an interrupted plain task does; the
    next start resumes it: items that completed do not run again, the interrupted one does."""
    started, calls, lock = threading.Event(), [], threading.Lock()
    orch = make_orch(1)
    orch.create_task("m", func=_blocking_once(2, calls, started, lock), map=[0, 1, 2, 3])
    orch.create_task("total", func=lambda upstream: sum(upstream["m"]), dependencies=["m"])
    orch.start_execution()
    assert started.wait(5)
    orch.stop_execution()
    assert orch.get_task("m").status is S.READY
    assert orch.get_execution_stats()["running"] == 0
    assert orch.snapshot().stats["running"] == 0
    frame = orch.tasks_frame()
    assert "running" not in set(frame["state"])
    assert frame.set_index("name").loc["m", "state"] == "ready"
    items = orch.tasks_frame(items=True).set_index("name")["state"].to_dict()
    assert items == {"m[0]": "completed", "m[1]": "completed", "m[2]": "ready",
                     "m[3]": "pending"}
    assert orch.get_task_result("m", map_index=1).data == 10  # kept across the stop
    assert run(orch)
    assert sorted(calls) == [0, 1, 2, 2, 3]  # 0 and 1 not again; 2 (interrupted) again
    assert list(orch.get_task_result("m").data) == [0, 10, 20, 30]
    assert orch.get_task_result("total").data == 60
    assert orch.get_task("m").status is S.COMPLETED


def test_a_chained_map_stopped_mid_way_resumes_both_maps(make_orch):
    """A map over a map, stopped while the second runs an item: both go back to READY with
    what their items did; the next start finishes both, running nothing twice that ended."""
    started, calls, lock = threading.Event(), [], threading.Lock()
    firsts: list = []
    orch = make_orch(1)
    orch.create_task("m1", func=lambda item: firsts.append(item) or item + 1, map=[0, 1, 2, 3])
    orch.create_task("m2", func=_blocking_once(2, calls, started, lock), map="m1")
    orch.start_execution()
    assert started.wait(5)
    orch.stop_execution()
    stats = orch.get_execution_stats()
    assert stats["running"] == 0 and stats["pending"] == 2
    states = orch.tasks_frame().set_index("name")["state"].to_dict()
    assert states == {"m1": "ready", "m2": "ready"}
    items = orch.tasks_frame(items=True)
    assert "running" not in set(items["state"])
    assert items.set_index("name").loc["m2[1]", "state"] == "ready"  # item 1 is m1's 2
    assert len(firsts) < 4  # the stop came mid-way through m1 too (depth first)
    assert run(orch)
    assert list(orch.get_task_result("m2").data) == [10, 20, 30, 40]
    assert sorted(firsts) == [0, 1, 2, 3]  # none twice
    assert sorted(calls) == [1, 2, 2, 3, 4]  # the interrupted one again


def test_rerun_failed_items_while_stopped_waits_for_the_start(make_orch):
    """``rerun(name, only="failed")`` on a stopped engine queues the items; the map shows
    READY (not running) until the engine starts and runs them."""
    tries = []
    orch = make_orch(2)

    def body(item):
        tries.append(item)
        if item == 1 and tries.count(1) == 1:
            raise ValueError("first time")
        return item

    orch.create_task("m", func=body, map=[0, 1, 2])
    assert not run(orch)
    orch.stop_execution()
    orch.rerun("m", only="failed")
    assert orch.get_task("m").status is S.READY
    assert orch.get_execution_stats()["running"] == 0
    assert run(orch)
    assert list(orch.get_task_result("m").data) == [0, 1, 2] and sorted(tries) == [0, 1, 1, 2]


def test_a_chained_map_a_stop_paused_ends_with_its_source_cancelled_meanwhile():
    """A chained map a stop left READY is not skipped at once when its source is cancelled
    while stopped (its interrupted items are still queued): as a running chain does, it runs
    the items whose source item completed once started, then ends skipped with their values."""
    clock = _Clock()
    sched = Scheduler(clock=clock)
    sched.define([Task(name="m1", func=lambda item: item, map=[0, 1, 2]),
                  Task(name="m2", func=lambda item: item, map="m1")])
    m1, m2 = sched.lookup("m1"), sched.lookup("m2")

    def value_of(up):
        return up.result.data

    ticket = sched.next_ticket()
    sched.start(ticket, "w")
    sched.finish(ticket, True, plan_of(m1, value_of))
    first = sched.next_ticket()  # m1[0]
    sched.start(first, "w")
    sched.finish(first, True, 0)
    chained = sched.next_ticket()  # m2[0], ahead of m1[1]: depth first
    assert chained.rec.parent is m2
    sched.start(chained, "w")
    sched.stop()
    assert m1.status is S.READY and m2.status is S.READY and sched.counts[S.RUNNING] == 0
    assert sched.cancel(m1)
    assert m2.status is S.READY and m2.mapping.live == 1  # not skipped with an item queued
    sched.started()
    assert m2.status is S.RUNNING
    sched.finish(chained, True, 0)  # the interrupted body returns: its result is dropped
    again = sched.next_ticket()
    assert again.rec is m2.mapping.items[0]
    sched.start(again, "w")
    sched.finish(again, True, 0)
    assert m2.status is S.SKIPPED and m2.mapping.live == 0
    assert list(m2.result.data) == [0]
    assert sched.recount()["counts"] == sched.counts


def test_rerun_whole_map_recomputes_every_item(make_orch):
    calls = []
    orch = make_orch(2)
    orch.create_task("m", func=lambda item: calls.append(item) or item, map=[1, 2])
    assert run(orch)
    orch.rerun("m")
    assert orch.wait_for_completion(timeout=10)
    assert sorted(calls) == [1, 1, 2, 2]
    assert list(orch.get_task_result("m").data) == [1, 2]


# -- 6. per-item journal --------------------------------------------------------------------------

def _cached_pipeline(tmp_path, items, calls):
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")

    def body(item):
        calls.append(item)
        return item * 2

    orch.create_task("m", func=body, map=list(items), cache=True)
    orch.create_task("total", func=lambda upstream: sum(upstream["m"]), dependencies=["m"])
    orch.start_execution()
    assert orch.wait_for_completion(timeout=20)
    total = orch.get_task_result("total").data
    restored = [i for i in range(len(items))
                if orch.get_task_result("m", map_index=i).metadata.get("restored")]
    orch.stop_execution()
    return total, restored


def test_changing_one_item_of_a_cached_map_reruns_that_item_only(tmp_path):
    calls: list = []
    total, restored = _cached_pipeline(tmp_path, [1, 2, 3, 4], calls)
    assert total == 20 and sorted(calls) == [1, 2, 3, 4] and restored == []
    calls.clear()
    total, restored = _cached_pipeline(tmp_path, [1, 2, 30, 4], calls)
    assert calls == [30] and total == 74 and restored == [0, 1, 3]
    calls.clear()
    total, restored = _cached_pipeline(tmp_path, [0, 1, 2, 30, 4], calls)  # an item inserted
    assert calls == [0] and total == 74 and restored == [1, 2, 3, 4]


def test_restored_items_show_as_restored_tasks_do(tmp_path):
    """Restored from the journal, an item (and a task after the map, looked up as it
    starts) shows as a task restored at definition does: 0 attempts, no start time, no
    worker, the restored flag; its result's metadata says 0 attempts too."""
    pd = pytest.importorskip("pandas")
    for _ in range(2):
        orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
        try:
            orch.create_task("p", func=lambda: 5, cache=True)
            orch.create_task("m", func=lambda item: item * 2, map=[1, 2, 3], cache=True)
            orch.create_task("after", func=lambda upstream: sum(upstream["m"]),
                             dependencies=["m"], cache=True)
            assert run(orch)
            tasks = orch.tasks_frame().set_index("name")
            items = orch.tasks_frame(items=True)
            stats = orch.get_execution_stats()
        finally:
            orch.stop_execution()
    assert list(orch.get_task_result("m").data) == [2, 4, 6]
    for name in ("p", "after"):  # restored at definition, and as its attempt started
        row = tasks.loc[name]
        assert row["attempts"] == 0 and pd.isna(row["started_at"]) and bool(row["restored"])
        assert orch.get_task_result(name).metadata["attempts"] == 0
        assert len(orch.get_task(name).attempts) == 0
    assert (items["attempts"] == 0).all() and items["started_at"].isna().all()
    assert items["restored"].all() and items["worker"].isna().all()
    assert (items["execution_time"] == 0).all()
    meta = orch.get_task_result("m", map_index=1).metadata
    assert meta["attempts"] == 0 and meta["restored"] and "worker" not in meta
    assert stats["total_execution_time"] == tasks.loc["m", "execution_time"]  # only m ran


def test_the_expansion_is_journaled_before_items_run(tmp_path):
    from codomyrmex_nb.core.journal import Journal
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
    orch.create_task("m", func=lambda item: item, map=["a", "b", "c"])
    assert run(orch)
    task_id = orch.get_task("m").id
    orch.stop_execution()
    journal = Journal(tmp_path / "j.sqlite")
    try:
        run_id = journal.history()[0].run_id
        defined = {row[0]: row[2] for row in journal.definitions(run_id)}
    finally:
        journal.close()
    fps = [defined.get(f"{task_id}[{i}]") for i in range(3)]
    assert all(fps) and len(set(fps)) == 3


# -- the state machine: maps, chains, cancels and failures on the pure scheduler ------------------



class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _body_key(rec) -> tuple:
    """Who a body runs for: a task, or an item of a map (by index: a rerun makes new records)."""
    return (rec.id,) if rec.parent is None else (rec.parent.id, rec.index)


class MapWalk(RuleBasedStateMachine):
    """Random plain and mapped tasks (over literals, plain tasks, or other maps: chained),
    dispatched, finished, failed, timed out, cancelled (whole or by item), re-run (whole or
    only failed items), stopped and started again."""

    @initialize()
    def setup(self) -> None:
        self.clock = _Clock()
        self.sched = Scheduler(clock=self.clock)
        self.sched.listener = lambda e: None
        self.tasks: list[Task] = []
        self.in_flight: list = []
        self.n = 0
        self.stopped = False

    def _rec(self, i: int):
        return self.sched.lookup(self.tasks[i % len(self.tasks)])

    @rule(size=st.integers(0, 4), retries=st.integers(0, 1), kind=st.sampled_from(
        ["plain", "literal", "over_task", "over_map"]), tolerate=st.integers(0, 2),
        parallel=st.sampled_from([None, 1, 2]), pick=st.integers(0, 100),
        trigger=st.sampled_from(["all_success", "all_done"]))
    def define(self, size, retries, kind, tolerate, parallel, pick, trigger) -> None:
        self.n += 1
        name = f"t{self.n}"
        maps = [t for t in self.tasks if t.map is not None and self.sched.lookup(t)]
        plains = [t for t in self.tasks if t.map is None and self.sched.lookup(t)]
        if kind == "plain" or (kind == "over_task" and not plains) \
                or (kind == "over_map" and not maps):
            deps = [self.tasks[pick % len(self.tasks)]] if self.tasks and pick % 3 == 0 else []
            task = Task(name=name, func=lambda: None, dependencies=deps, max_retries=retries,
                        timeout=1.0, trigger_rule=trigger, parameters={"size": size})
        elif kind == "literal":
            task = Task(name=name, func=lambda item: item, map=list(range(size)),
                        max_retries=retries, timeout=1.0, tolerate=tolerate,
                        max_parallel=parallel)
        else:
            source = (plains if kind == "over_task" else maps)[pick % len(plains if kind ==
                                                                          "over_task" else maps)]
            task = Task(name=name, func=lambda item: item, map=source.name, max_retries=retries,
                        timeout=1.0, tolerate=tolerate, max_parallel=parallel)
        self.sched.define([task])
        self.tasks.append(task)

    def _value_of(self, rec):
        """What a finished attempt returns: a plain task a list of its size, an item 1."""
        if rec.parent is not None:
            return 1
        return list(range(rec.parameters.get("size", 0)))

    def _plan(self, rec):
        def value_of(up):
            assert up.status is S.COMPLETED, "a map expanded before its source completed"
            return up.result.data
        return plan_of(rec, value_of)

    @precondition(lambda self: not self.stopped)  # a stopped engine starts nothing
    @rule()
    def dispatch(self) -> None:
        ticket = self.sched.next_ticket()
        if ticket is None:
            return
        rec = ticket.rec
        # a body (given up on or not) runs until its thread returns: never two of one task or
        # item at once, even across a rerun (new item records), nor over a map's max_parallel
        key = _body_key(rec)
        assert all(_body_key(t.rec) != key for t in self.in_flight), f"{rec.name} twice at once"
        if rec.parent is not None and rec.parent.mapping.spec.max_parallel is not None:
            bodies = sum(1 for t in self.in_flight if t.rec.parent is rec.parent)
            assert bodies < rec.parent.mapping.spec.max_parallel, (rec.name, bodies)
        if rec.parent is None and rec.rule is None:
            for up in rec.ups:  # a collect step never runs before its map's last item ended
                assert up.status is S.COMPLETED, (rec.name, up.name, up.status)
                if up.mapping is not None:
                    assert all(i is None or i.status.is_terminal for i in up.mapping.items)
        if rec.parent is not None and rec.parent.mapping.source is not None:
            src = rec.parent.mapping.source.mapping.items[rec.index]
            assert src is not None and src.status is S.COMPLETED  # chained: item after item
        self.sched.start(ticket, "w")
        self.in_flight.append(ticket)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10), ok=st.booleans())
    def thread_returns(self, i, ok) -> None:
        ticket = self.in_flight.pop(i % len(self.in_flight))
        self.clock.now += 0.01
        rec = ticket.rec
        if rec.mapping is not None and not ticket.abandoned and rec.current is ticket:
            self.sched.finish(ticket, True, self._plan(rec))
        else:
            self.sched.finish(ticket, ok, self._value_of(rec), None if ok else RuntimeError("x"))

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10))
    def deadline(self, i) -> None:
        self.sched.deadline(self.in_flight[i % len(self.in_flight)])

    @rule()
    def retry_due(self) -> None:
        due = [e for e in self.sched.effects if e[0] == "retry"]
        self.sched.effects = [e for e in self.sched.effects if e[0] != "retry"]
        for _, rec, token, _ in due:
            self.sched.retry_due(rec, token)

    @precondition(lambda self: self.tasks)
    @rule(i=st.integers(0, 100))
    def cancel(self, i) -> None:
        rec = self._rec(i)
        if rec is not None:
            self.sched.cancel(rec)

    def _maps(self, expanded: bool, ended: bool) -> list:
        return [r for r in self.sched.records.values() if r.mapping is not None
                and r.mapping.expanded == expanded and r.status.is_terminal == ended]

    @precondition(lambda self: self._maps(True, False))
    @rule(i=st.integers(0, 100), index=st.integers(0, 4))
    def cancel_item(self, i, index) -> None:
        maps = self._maps(True, False)
        rec = maps[i % len(maps)]
        if rec.mapping.n:
            self.sched.cancel_item(rec, index % rec.mapping.n)

    @precondition(lambda self: self.tasks)
    @rule(i=st.integers(0, 100))
    def rerun(self, i) -> None:
        rec = self._rec(i)
        if rec is not None:
            self.sched.requeue(rec, fresh_budget=True)

    @precondition(lambda self: self._maps(True, False))
    @rule(i=st.integers(0, 100))
    def rerun_running_map(self, i) -> None:
        """A map re-run while its items run: their bodies go on until their threads return."""
        maps = self._maps(True, False)
        self.sched.requeue(maps[i % len(maps)], fresh_budget=True)

    @precondition(lambda self: self._maps(True, True))
    @rule(i=st.integers(0, 100))
    def rerun_failed_items(self, i) -> None:
        maps = self._maps(True, True)
        rec = maps[i % len(maps)]
        m = rec.mapping
        if any(d.mapping is not None and d.mapping.source is rec
               for d in self.sched.descendants(rec)):
            with pytest.raises(ValueError, match="item by item"):
                self.sched.rerun_items(rec, [])
            return
        bad = [j for j, it in enumerate(m.items) if it is not None
               and it.status in (S.FAILED, S.CANCELLED)]
        if m.source is not None and m.source.status is not S.COMPLETED:
            with pytest.raises(ValueError, match="did not complete"):
                self.sched.rerun_items(rec, bad)
            return
        self.sched.rerun_items(rec, bad)

    @rule()
    def stop(self) -> None:
        self.sched.stop()
        self.stopped = True

    @precondition(lambda self: self.stopped)
    @rule()
    def start(self) -> None:
        self.sched.started()
        self.stopped = False

    @invariant()
    def a_stopped_engine_runs_nothing(self) -> None:
        """After a stop no task shows RUNNING, a map whose items ran included (until the next
        start resumes it), nor any item; every such map's cursor is off the ready heap."""
        if not self.stopped:
            return
        sched = self.sched
        assert sched.counts[S.RUNNING] == 0 and not sched.running
        for rec in sched.records.values():
            if rec.mapping is not None and rec.mapping.counts:
                assert not rec.mapping.counts.get(S.RUNNING), rec.name
            if rec.mapping is not None and rec.status is S.READY and rec.mapping.expanded:
                assert rec.heap_token < 0 and not rec.mapping.in_heap, rec.name

    @invariant()
    def books_balance(self) -> None:
        sched = self.sched
        again = sched.recount()
        assert again["counts"] == sched.counts
        assert again["unfinished"] == sched.unfinished
        assert again["retries"] == sched.retries
        assert again["waiting_retry"] == sched.waiting_retry
        assert again["running"] == len(sched.running)
        for rec in sched.records.values():
            m = rec.mapping
            if m is None or not m.items:
                continue
            made = [i for i in m.items if i is not None]
            assert sum(m.counts.values()) == len(made)
            assert m.live == sum(not i.status.is_terminal for i in made)
            if rec.status.is_terminal:
                assert m.live == 0, (rec.name, rec.status)  # no item outlives its map

    def teardown(self) -> None:
        """Every task and item ends once the threads return and retries fire."""
        sched = self.sched
        if self.stopped:
            sched.started()
        for ticket in self.in_flight:
            rec = ticket.rec
            if rec.mapping is not None and rec.current is ticket:
                sched.finish(ticket, True, self._plan(rec))
            else:
                sched.finish(ticket, True, self._value_of(rec))
        for _ in range(3000):
            due = [e for e in sched.effects if e[0] == "retry"]
            sched.effects = [e for e in sched.effects if e[0] != "retry"]
            for _, rec, token, _ in due:
                sched.retry_due(rec, token)
            ticket = sched.next_ticket()
            if ticket is None and not due:
                break
            if ticket is not None:
                sched.start(ticket, "w")
                rec = ticket.rec
                if rec.mapping is not None:
                    sched.finish(ticket, True, self._plan(rec))
                else:
                    sched.finish(ticket, True, self._value_of(rec))
        assert sched.unfinished == 0, {r.name: r.status for r in sched.records.values()}
        for rec in sched.records.values():
            if rec.mapping is not None and rec.mapping.items:
                assert all(i is None or i.status.is_terminal for i in rec.mapping.items)


MapWalk.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_map_walk = MapWalk.TestCase


def test_item_results_dropped_by_the_memory_budget_are_read_back_for_the_collect_step(tmp_path):
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite", memory_limit="4MB")
    try:
        orch.create_task("blobs", func=lambda item: bytes([item]) * 2_000_000, map=list(range(8)))
        orch.create_task("sizes", func=lambda upstream: [(len(b), b[0]) for b in upstream["blobs"]],
                         dependencies=["blobs"])
        assert run(orch, timeout=60)
        items = orch._engine.sched.lookup("blobs").mapping.items
        assert sum(i.result._entry is not None and i.result._entry.dropped for i in items) >= 4
        assert orch.get_task_result("sizes").data == [(2_000_000, i) for i in range(8)]
        assert orch.get_task_result("blobs", map_index=5).data[:1] == b"\x05"
    finally:
        orch.stop_execution()


def test_fingerprints_made_at_expansion_in_one_loop_equal_each_items_own():
    """``item_fingerprints`` takes the usual map (one list of plain values) in one loop; each
    fingerprint must be what ``item_fingerprint`` gives that item, or resume would miss."""
    from codomyrmex_nb.core.mapping import item_fingerprint, item_fingerprints

    values = [1, "a", 2.5, True, None, {"k": [1, 2]}, (3, 4), "é\ud800"]
    ints = [0, -7, 10**40, 3]  # a list of ints alone takes a loop of its own
    for plan, by_index in ((expand(("x",), [values], ["x"], "zip"), False),
                           (expand(("x",), [ints], ["x"], "zip"), False),
                           (expand(("x",), [values], ["x"], "zip"), True),
                           (expand(("x", "y"), [[1, 2], ["p", None]], ["x", "y"], "product"),
                            False)):
        assert item_fingerprints("base", plan, by_index) == [
            item_fingerprint("base", plan.binding(i), i if by_index else None)
            for i in range(plan.n)]
    unhashable = expand(("x",), [[1, threading.Lock()]], ["x"], "zip")
    fps = item_fingerprints("base", unhashable, False)
    assert fps[0] == item_fingerprint("base", {"x": 1}, None) and fps[1] == ""


def test_a_finished_maps_fingerprint_is_one_hash_of_its_items_in_order():
    """What tasks downstream of a map see of it (resume and cache key on it): the same
    digest as hashing the items' fingerprints one after another (journals written before
    keep matching), another for another order, and none while an item has none."""
    import hashlib

    from codomyrmex_nb.core.mapping import combined_fingerprint

    fps = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1000)]
    one_by_one = hashlib.sha256(b"codo-map-1;base")
    for fp in fps:
        one_by_one.update(fp.encode())
    assert combined_fingerprint("base", iter(fps)) == one_by_one.hexdigest()
    assert combined_fingerprint("base", fps[::-1]) != one_by_one.hexdigest()
    assert combined_fingerprint("base", [*fps[:5], None, *fps[6:]]) == ""
    assert combined_fingerprint("base", [*fps[:5], ""]) == ""
    assert combined_fingerprint("base", []) == hashlib.sha256(b"codo-map-1;base").hexdigest()


def test_a_literal_lists_items_show_as_pending_before_the_map_reads_it(make_orch):
    orch = make_orch(2)
    orch.create_task("m", func=lambda item: item, map=[1, 2, 3, 4])
    orch.create_task("grid", func=lambda a, b: a * b, map={"a": [1, 2], "b": [3, 4, 5]},
                     map_mode="product")
    frame = orch.tasks_frame().set_index("name")
    assert frame.loc["m", "items"] == 4 and frame.loc["grid", "items"] == 6
    items = orch.tasks_frame(items=True)
    assert len(items) == 10 and set(items["state"]) == {"pending"}
    with pytest.raises(ValueError, match="has not made its items yet"):
        orch.cancel_task("m", map_index=1)
    assert run(orch)
    assert orch.tasks_frame().set_index("name").loc["m", "items"] == 4
