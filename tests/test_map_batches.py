"""Property-based stress on maps of tiny items, which workers take in batches (the engine's
fast paths: ``Scheduler._take_fresh``, ``MapSteps.item_completed``, ``Engine._execute_item``,
the batch's shared capture, the compact collect step), on real threads.

Random operation sequences (cancels by index ahead of and behind the map's cursor, cancels
of the whole map, stops and starts, whole re-runs) hit maps whose items print, raise, return
big values, sleep or start threads, with 1, 2 or 4 workers; every item counts its calls. Then
every item must be in a terminal state; no item ran twice at once; a completed item's value
is what its last call returned (an item that completed and ran again, or whose result went
to another, shows); without a stop or a re-run no item ran twice; the collected
``MapResult``, ``map_items``, ``tasks_frame(items=True)`` and ``get_task_result(name,
map_index=i)`` agree item by item; ``rerun(only="failed")`` then completes every item. With
the journal on, a map stopped part way and resumed in a new orchestrator restores exactly
the items that completed before the stop (their values), and runs each other item once.
"""

from __future__ import annotations

import collections
import sqlite3
import sys
import threading
import time
import types

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codomyrmex_nb import TaskOrchestrator, TaskStatus

S = TaskStatus
TERMINAL = ("completed", "failed", "cancelled", "skipped")
BIG = 200_000  # bytes of an item's big value


class Calls:
    """Each item's calls, from inside its body: how many, which at once, the last one's token."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: collections.Counter = collections.Counter()
        self.live: collections.Counter = collections.Counter()
        self.last: dict = {}
        self.overlaps: list = []
        self.phase = 0  # items fail on purpose only in phase 0 (before rerun(only="failed"))

    def enter(self, key: tuple) -> tuple:
        with self.lock:
            self.live[key] += 1
            if self.live[key] > 1:
                self.overlaps.append(key)
            self.count[key] += 1
            token = self.last[key] = (*key, self.count[key])
            return token

    def leave(self, key: tuple) -> None:
        with self.lock:
            self.live[key] -= 1


KINDS = ["plain"] * 12 + ["print", "raise", "big", "sleep", "thread"]


def body_for(calls: Calls, name: str, kinds: list[str]):
    def body(item, map_index):
        token = calls.enter((name, map_index))
        try:
            kind = kinds[map_index % len(kinds)]
            if kind == "print":
                print("item", map_index)
            elif kind == "raise" and calls.phase == 0:
                raise ValueError(f"{name}[{map_index}] fails on purpose")
            elif kind == "big":
                return (token, bytes(BIG))
            elif kind == "sleep":
                time.sleep(0.001)
            elif kind == "thread":  # a thread that goes on printing after the item returned
                threading.Thread(target=lambda: [print("bg", k) or time.sleep(0.0005)
                                                 for k in range(3)], daemon=True).start()
            return token
        finally:
            calls.leave((name, map_index))
    return body


def token_of(value):
    """An item's token, out of a big value."""
    return value[0] if isinstance(value, tuple) and len(value) == 2 \
        and isinstance(value[1], bytes) else value


OPS = st.sampled_from(["cancel", "cancel_ahead", "cancel_behind", "cancel_map", "stop_start",
                       "rerun", "sleep", "sleep"])


def cursor(orch, name: str) -> int:
    with orch._engine.lock:
        rec = orch._engine.sched.lookup(name)
        m = rec.mapping if rec is not None else None
        return 0 if m is None else m.next


def apply(orch, op: str, arg: int, names: list[str], n: int, cancelled: set) -> None:
    """Carry out one operation; ``cancelled``: the items a cancel by index ended (a re-run
    of the map, or of the map it follows, runs them again)."""
    name = names[arg % len(names)]
    try:
        if op == "cancel":
            if orch.cancel_task(name, map_index=arg % n):
                cancelled.add((name, arg % n))
        elif op in ("cancel_ahead", "cancel_behind"):  # by index, at the cursor of fresh items
            at = cursor(orch, "m")
            for d in ((0, 1, 2, 15, 16, 17) if op == "cancel_ahead" else (-1, -2, -16)):
                if 0 <= at + d < n and orch.cancel_task("m", map_index=at + d):
                    cancelled.add(("m", at + d))
        elif op == "cancel_map":
            orch.cancel_task(name)
        elif op == "stop_start":
            orch.stop_execution()
            orch.start_execution()
        elif op == "rerun":
            orch.rerun(name)
            for key in [k for k in cancelled if k[0] == name or name == "m"]:
                cancelled.discard(key)
        else:
            time.sleep(0.0005 * (arg % 8))
    except ValueError as exc:  # its items are not made yet: nothing to cancel by index
        assert "yet" in str(exc), exc


def check_items(orch, calls: Calls, name: str, n: int, once: bool,
                cancelled: set = frozenset()) -> None:
    rec = orch.get_task(name)
    assert rec.status.is_terminal, (name, rec.status)
    result = orch.get_task_result(name)
    data = result.data
    rows = {row["map_index"]: row for row in orch.map_items(name)}
    assert sorted(rows) == list(range(n)) or data is None
    if data is None:  # cancelled before its items were made
        assert all(row["state"] != "completed" for row in rows.values())
        return
    frame = orch.tasks_frame(items=True)
    frame = frame[frame["task"] == name].set_index("map_index")
    chained = name != "m"
    for i in range(n):
        state = rows[i]["state"]
        assert state in TERMINAL, (name, i, state)
        assert frame.loc[i, "state"] == state, (name, i, frame.loc[i, "state"], state)
        # a chained map cancelled while its source ran: its unmade items' states were
        # frozen as 'skipped' and show 'cancelled' once their source item completed
        assert data.states[i] == state or (chained and data.states[i] == "skipped"
                                           and state == "cancelled"), (name, i, state)
        item = orch.get_task_result(name, map_index=i)
        key = (name, i)
        if key in cancelled:  # cancelled by index: it stays so (a batch never takes it)
            assert state == "cancelled", (name, i, state, calls.count[key])
        if state == "completed":
            assert item is not None and item.success, (name, i)
            assert token_of(item.data) == calls.last.get(key), (name, i, item.data,
                                                               calls.count[key])
            assert token_of(data.by_index[i]) == token_of(item.data)
            assert item.execution_time is not None and item.execution_time >= 0
        else:
            assert i not in data.by_index, (name, i, state)
            if item is not None:
                assert not item.success, (name, i, state)
        if once:
            assert calls.count[key] <= 1, (name, i, calls.count[key])
    assert [token_of(v) for v in data] == [token_of(data.by_index[i]) for i in sorted(data.by_index)]
    assert len(data) == sum(row["state"] == "completed" for row in rows.values())


@st.composite
def workloads(draw):
    n = draw(st.integers(1, 2000))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=40))
    return {
        "n": n,
        "kinds": kinds,
        "workers": draw(st.sampled_from([1, 2, 4])),
        "chained": draw(st.booleans()),
        "expanded": draw(st.booleans()),
        "max_parallel": draw(st.sampled_from([None, None, None, 3])),
        "ops": draw(st.lists(st.tuples(OPS, st.integers(0, 10_000)), max_size=10)),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_tiny_item_maps_under_cancels_stops_and_reruns_keep_every_invariant(work):
    n, calls = work["n"], Calls()
    orch = TaskOrchestrator(max_workers=work["workers"])
    try:
        orch.create_task("m", func=body_for(calls, "m", work["kinds"]), map=list(range(n)),
                         tolerate=n, max_parallel=work["max_parallel"])
        names = ["m"]
        if work["chained"]:
            orch.create_task("c", func=body_for(calls, "c", work["kinds"][::-1]), map="m",
                             tolerate=n)
            names.append("c")
        orch.start_execution()
        if work["expanded"]:  # the operations hit the items as they run (else maybe before)
            deadline = time.monotonic() + 5
            while cursor(orch, "m") == 0 and time.monotonic() < deadline:
                time.sleep(0.0002)
        cancelled: set = set()
        for op, arg in work["ops"]:
            apply(orch, op, arg, names, n, cancelled)
        orch.wait_for_completion(timeout=30)
        assert all(orch.get_task(name).status.is_terminal for name in names), \
            {name: orch.get_task(name).status for name in names}  # no map that never ends
        assert calls.overlaps == []  # no item ran twice at once
        once = not any(op in ("stop_start", "rerun") for op, _ in work["ops"])
        for name in names:
            check_items(orch, calls, name, n, once, cancelled)
        m = orch.get_task_result("m").data
        if work["chained"] or m is None:
            return
        calls.phase = 1  # the failed and cancelled items run again, and complete
        before = dict(calls.count)
        completed = {i for i, state in enumerate(m.states) if state == "completed"}
        orch.rerun("m", only="failed")
        assert orch.wait_for_completion(timeout=30)
        check_items(orch, calls, "m", n, once=False)
        again = orch.get_task_result("m").data
        assert again.states == ["completed"] * n
        for i in completed:  # a completed item is not run again
            assert calls.count[("m", i)] == before.get(("m", i), 0), i
    finally:
        orch.stop_execution()


# -- the journal: stop part way, resume in a new orchestrator ----------------------------------
STATE = types.ModuleType("codo_test_batch_state")  # read by name: not part of a fingerprint
STATE.calls = Calls()
sys.modules[STATE.__name__] = STATE


def journaled(item, map_index):
    calls = sys.modules["codo_test_batch_state"].calls
    token = calls.enter(("m", map_index))
    try:
        if map_index % 97 == 3:
            print("item", map_index)
        if map_index % 211 == 5:
            return (token, bytes(BIG))
        return token
    finally:
        calls.leave(("m", map_index))


def as_if_dead(path) -> None:
    """The journal's runs look written by a process that is gone (see test_resume)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE runs SET pstarted = pstarted - 3600")
    finally:
        conn.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workers=st.sampled_from([1, 2, 4]), pause=st.floats(0.0, 0.03),
       cancel=st.one_of(st.none(), st.integers(0, 1499)))
def test_a_stopped_map_of_tiny_items_resumes_exactly_what_completed(tmp_path_factory, workers,
                                                                    pause, cancel):
    n = 1500
    path = tmp_path_factory.mktemp("journal") / "j.sqlite"
    calls = STATE.calls = Calls()
    orch = TaskOrchestrator(workers, journal=path)
    try:
        orch.create_task("m", func=journaled, map=list(range(n)))
        orch.start_execution()
        time.sleep(pause)
        if cancel is not None:
            try:
                orch.cancel_task("m", map_index=cancel)
            except ValueError:
                pass
    finally:
        orch.stop_execution()
    first = {row["map_index"]: token_of(orch.get_task_result("m", map_index=row["map_index"]).data)
             for row in orch.map_items("m") if row["state"] == "completed"}
    ran_first = dict(calls.count)
    as_if_dead(path)
    again = TaskOrchestrator(workers, journal=path)
    try:
        again.create_task("m", func=journaled, map=list(range(n)))
        again.start_execution()
        assert again.wait_for_completion(timeout=30)
        data = again.get_task_result("m").data
        frame = again.tasks_frame(items=True).set_index("map_index")
        for i in range(n):
            item = again.get_task_result("m", map_index=i)
            ran = calls.count[("m", i)] - ran_first.get(("m", i), 0)
            restored = bool(item.metadata.get("restored"))
            assert bool(frame.loc[i, "restored"]) == restored
            if i in first:  # completed before the stop: restored as it was, not run
                assert restored and ran == 0 and token_of(item.data) == first[i], i
            else:
                assert not restored and ran == 1, (i, ran)
                assert token_of(item.data) == calls.last[("m", i)]
            assert token_of(data.by_index[i]) == token_of(item.data)
    finally:
        again.stop_execution()
    assert calls.overlaps == []


def test_the_stress_above_takes_items_in_batches(make_orch, monkeypatch):
    """The properties above are about batches: a map of no-op items is taken in them."""
    from codomyrmex_nb.core.map_steps import MapSteps

    taken = []
    fresh = MapSteps._take_fresh

    def counting(self, *args):
        tickets = fresh(self, *args)
        taken.append(len(tickets))
        return tickets

    monkeypatch.setattr(MapSteps, "_take_fresh", counting)
    orch = make_orch(1)
    orch.create_task("m", func=lambda item: item, map=list(range(5000)))
    orch.start_execution()
    assert orch.wait_for_completion(timeout=30)
    assert sum(taken) > 0, "no batch was taken: the stress tests miss the fast paths"
