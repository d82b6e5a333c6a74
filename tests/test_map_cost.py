"""What a map holds and costs per item (issue 18: "a map of 100,000 items holds under 300
bytes per pending item"; items "may be handed to a worker in batches, as long as per-item
timeout, cancel and logs work in the configuration that is benchmarked").

The memory bound is asserted at 20,000 items with the shipped defaults (journal on,
so every item's fingerprint is made and its definition journaled at expansion): the
map is expanded and its first item runs while the others wait (``max_parallel=1``).
The list mapped over is the caller's and is not counted. Then the benchmarked
configuration (threads, tiny items, so a worker takes several at once): each item
keeps its own logs, an item waiting in a worker's batch can be cancelled and never
runs, and a timeout still stops one slow item among tiny ones.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from collections import Counter

from codomyrmex_nb import TaskOrchestrator, TaskStatus

_BEGAN, _GATE = threading.Event(), threading.Event()  # globals, so items stay fingerprinted


def first_waits(item: int) -> int:
    _BEGAN.set()
    _GATE.wait(60)
    return item


def test_a_pending_item_holds_under_300_bytes(tmp_path):
    n = 20_000
    items = list(range(n))
    _BEGAN.clear()
    _GATE.clear()
    gc.collect()
    tracemalloc.start()
    orch = TaskOrchestrator(max_workers=2, journal=tmp_path / "j.sqlite")
    try:
        base = tracemalloc.get_traced_memory()[0]
        orch.create_task("held", func=first_waits, map=items, max_parallel=1)
        orch.start_execution()
        assert _BEGAN.wait(60)
        assert orch._engine.recorder.journal.flush(60)  # the expansion's rows are written
        state = orch._engine.sched.lookup("held").mapping
        assert state.n == n and state.fps is not None and len(state.fps) == n
        assert sum(item is not None for item in state.items) == 1
        gc.collect()
        per_item = (tracemalloc.get_traced_memory()[0] - base) / n
    finally:
        tracemalloc.stop()
        _GATE.set()
    assert orch.wait_for_completion(120)
    orch.stop_execution()
    assert per_item < 300, f"{per_item:.0f} bytes per pending item"
    assert list(orch.get_task_result("held").data) == items


# -- tiny items go to a worker in batches: logs, cancel and timeouts still per item ------

_RAN: list[int] = []
_BLOCKED: list[int] = []  # the item that blocks: from 500 on, the first with the next waiting
# in its batch
_ORCH: list[TaskOrchestrator] = []


def printing(item: int) -> int:
    print(f"item {item}")
    return item


def _next_is_running(item: int) -> bool:
    """Is item ``item + 1`` taken and not begun (waiting in this item's batch)? Read without
    the lock: a glance as cheap as a tiny item, so the items stay tiny and batched."""
    state = _ORCH[0]._engine.sched.lookup("m").mapping
    following = state.items[item + 1]
    ticket = None if following is None else following.current
    return ticket is not None and not ticket.begun


def one_blocks(item: int) -> int:
    _RAN.append(item)
    if not _BLOCKED and 500 <= item < 1999 and _next_is_running(item):
        _BLOCKED.append(item)
        _BEGAN.set()
        _GATE.wait(60)
    return item


def _blocking_map(tmp_path, workers: int, **options) -> TaskOrchestrator:
    """A map of 2,000 tiny items, one of which blocks while items after it wait in its batch."""
    _RAN.clear()
    _BLOCKED.clear()
    _BEGAN.clear()
    _GATE.clear()
    orch = TaskOrchestrator(max_workers=workers, journal=tmp_path / "j.sqlite")
    _ORCH[:] = [orch]
    orch.create_task("m", func=one_blocks, map=list(range(2000)), **options)
    orch.start_execution()
    assert _BEGAN.wait(60)
    return orch


def one_sleeps(item: int) -> int:
    if item == 300:
        time.sleep(5)
    return item


def _most_running(orch: TaskOrchestrator) -> list[int]:
    """Follows item events; the list's one value is the most items RUNNING at once."""
    running: set[str] = set()
    most = [0]

    def on_event(event) -> None:
        if event.kind != "item":
            return
        if event.status is TaskStatus.RUNNING:
            running.add(event.task_id)
        else:
            running.discard(event.task_id)
        most[0] = max(most[0], len(running))

    orch.subscribe(on_event)
    return most


def _ran_map(tmp_path, func, n: int, workers: int = 1) -> tuple[TaskOrchestrator, list[int]]:
    """A map of ``func`` over ``range(n)`` run to the end and stopped, with the most items
    seen RUNNING at once (more than one on one worker: they went as a batch)."""
    orch = TaskOrchestrator(max_workers=workers, journal=tmp_path / "j.sqlite")
    most = _most_running(orch)
    orch.create_task("m", func=func, map=list(range(n)))
    orch.start_execution()
    assert orch.wait_for_completion(60)
    orch.stop_execution()
    return orch, most


def test_tiny_items_are_batched_and_each_keeps_its_own_logs(tmp_path):
    orch, most = _ran_map(tmp_path, printing, 2000)
    assert most[0] > 1  # one worker, several items RUNNING: taken as a batch
    for i in (0, 150, 1000, 1999):
        result = orch.get_task_result("m", map_index=i)
        assert result.success and result.data == i
        assert result.logs.strip() == f"item {i}"
    assert list(orch.get_task_result("m").data) == list(range(2000))


def mixed(item: int):
    """Items of every kind in one batch: plain values (kept compact at once), a value the
    journal packs, output, an error."""
    if item % 7 == 3:
        raise ValueError(f"bad {item}")
    if item % 5 == 1:
        print(f"said {item}")
    return {"n": item} if item % 4 == 2 else None if item % 3 == 0 else item


def test_a_batch_of_mixed_items_keeps_each_items_value_output_and_error(tmp_path):
    orch = TaskOrchestrator(max_workers=1, journal=tmp_path / "j.sqlite")
    most = _most_running(orch)
    orch.create_task("m", func=mixed, map=list(range(600)), tolerate="20%")
    orch.start_execution()
    assert orch.wait_for_completion(60)
    orch.stop_execution()
    assert most[0] > 1  # batched
    result = orch.get_task_result("m").data
    assert sorted(result.failed) == [i for i in range(600) if i % 7 == 3]
    assert all(str(result.failed[i]) == f"bad {i}" for i in result.failed)
    for i in range(600):
        item = orch.get_task_result("m", map_index=i)
        if i % 7 == 3:
            assert not item.success and item.error_type == "ValueError"
            continue
        want = {"n": i} if i % 4 == 2 else None if i % 3 == 0 else i
        assert item.success and item.data == want and result.by_index[i] == want
        assert (item.logs or "").strip() == (f"said {i}" if i % 5 == 1 else "")
    frame = orch.tasks_frame(items=True)
    assert (frame["state"] == "completed").sum() == 600 - len(result.failed)


def test_an_item_waiting_in_a_batch_can_be_cancelled_and_never_runs(tmp_path):
    orch = _blocking_map(tmp_path, 1, tolerate=1)
    try:
        waiting = [d["map_index"] for d in orch.map_items("m")
                   if d["state"] == "running" and d["map_index"] > _BLOCKED[0]]
        assert waiting, "no item waits in a batch behind the blocked one"
        target = waiting[-1]
        assert orch.cancel_task("m", map_index=target)
    finally:
        _GATE.set()
    assert orch.wait_for_completion(60)
    orch.stop_execution()
    states = {d["map_index"]: d["state"] for d in orch.map_items("m")}
    assert states[target] == "cancelled" and target not in _RAN
    assert sorted(_RAN) == [i for i in range(2000) if i != target]
    assert list(orch.get_task_result("m").data) == [i for i in range(2000) if i != target]


def test_items_cancelled_ahead_of_the_batches_never_run_and_the_rest_run_once(tmp_path):
    """Batches take the next fresh items in one pass (``take_items``); an item made out of
    turn by a cancel (ahead of the cursor, in the middle of a later batch) stops that pass
    and is never run, and every other item runs once, in order on one worker."""
    orch = _blocking_map(tmp_path, 1, tolerate=3)
    try:
        ahead = [_BLOCKED[0] + 40, _BLOCKED[0] + 41, 1998]  # not dispatched yet
        for index in ahead:
            assert orch.cancel_task("m", map_index=index)
    finally:
        _GATE.set()
    assert orch.wait_for_completion(60)
    orch.stop_execution()
    assert _RAN == [i for i in range(2000) if i not in ahead]
    states = {d["map_index"]: d["state"] for d in orch.map_items("m")}
    assert [i for i, state in states.items() if state != "completed"] == ahead
    assert all(states[i] == "cancelled" for i in ahead)
    result = orch.get_task_result("m").data
    assert list(result) == [i for i in range(2000) if i not in ahead]
    frame = orch.tasks_frame(items=True).set_index("map_index")
    done = frame.drop(index=ahead)
    assert (done["attempts"] == 1).all() and done["worker"].notna().all()
    assert (done["started_at"] >= done["queued_at"]).all()


def test_a_timeout_holds_for_an_item_among_tiny_ones(tmp_path):
    orch = TaskOrchestrator(max_workers=1, journal=tmp_path / "j.sqlite")
    orch.create_task("m", func=one_sleeps, map=list(range(600)), timeout=0.5, tolerate=1)
    began = time.monotonic()
    orch.start_execution()
    assert orch.wait_for_completion(60)
    took = time.monotonic() - began
    orch.stop_execution()
    assert took < 4
    failed = orch.get_task_result("m", map_index=300)
    assert not failed.success and failed.error_type == "TimeoutError"
    assert list(orch.get_task_result("m").data) == [i for i in range(600) if i != 300]


def _workers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("codo-worker")]


def test_cancelling_a_map_whose_items_wait_in_batches_spawns_no_crowd_of_threads(tmp_path):
    orch = _blocking_map(tmp_path, 2)
    try:
        assert orch.cancel_task("m")
        # an item in its code gets a replacement worker (the blocked one, and at most the
        # other worker's); items waiting in a batch, or done, need none
        assert len(_workers()) <= 4
    finally:
        _GATE.set()
    assert orch.wait_for_completion(60)
    orch.stop_execution()
    assert _workers() == []
    states = [d["state"] for d in orch.map_items("m")]
    assert set(states) <= {"completed", "cancelled"} and states.count("cancelled") >= 1000
    assert orch.get_task_result("m").error_type == "CancelledError"


def test_a_stop_while_items_wait_in_a_batch_runs_no_finished_item_again(tmp_path):
    orch = _blocking_map(tmp_path, 1)
    blocked = _BLOCKED[0]
    threading.Timer(0.3, _GATE.set).start()  # the blocked item returns as the stop waits
    orch.stop_execution()
    orch.start_execution()
    assert orch.wait_for_completion(60)
    orch.stop_execution()
    twice = {item for item, count in Counter(_RAN).items() if count > 1}
    assert twice <= {blocked}  # only the interrupted item ran again
    assert list(orch.get_task_result("m").data) == list(range(2000))


def test_items_of_a_batch_start_one_after_another_not_when_taken(tmp_path):
    orch, most = _ran_map(tmp_path, printing, 2000)
    assert most[0] > 1  # batched
    sched = orch._engine.sched
    rec = sched.lookup("m")
    spans = sorted((a.started_at, a.ended_at) for i in range(2000)
                   for a in sched.item(rec, i).attempts)
    assert len(spans) == 2000
    overlaps = [(one, two) for one, two in zip(spans, spans[1:], strict=False) if two[0] < one[1]]
    assert overlaps == []  # one worker: each attempt began after the one before it ended


def squared(item: int) -> int:
    return item * item


def test_a_completed_map_leaves_the_garbage_collector_almost_nothing_to_walk(tmp_path):
    """A plainly completed item is kept as one tuple of plain values, not as a record with an
    attempt and a result: a full collection walked all of them before (a third of an item's
    cost at 100,000 items). Every figure of the item is still there for whoever asks."""
    n = 5000
    orch, _ = _ran_map(tmp_path, squared, n, workers=2)
    gc.collect()
    rec = orch._engine.sched.lookup("m")
    tracked = sum(1 for entry in rec.mapping.items if gc.is_tracked(entry))
    assert tracked == 0  # the 5,000 items (with int results) add nothing the GC walks
    # the map's own result and every item's figures, as before
    assert list(orch.get_task_result("m").data) == [i * i for i in range(n)]
    result = orch.get_task_result("m", map_index=77)
    assert result.success and result.data == 77 * 77 and result.task_id == f"{rec.id}[77]"
    assert result.metadata["attempts"] == 1 and result.execution_time >= 0
    (view,) = orch.item_views("m", map_index=77)
    assert view.state == "completed" and len(view.attempts) == 1
    assert view.attempts[0].outcome == "completed" and view.worker.startswith("codo-worker")
    assert view.started_at <= view.completed_at and view.cpu_time is not None
    frame = orch.tasks_frame(items=True)
    assert len(frame) == n and set(frame["state"]) == {"completed"}
    assert frame["cpu_time"].notna().all() and frame["worker"].notna().all()
    # made records again for those readers only: the map stays light
    assert sum(1 for entry in rec.mapping.items if gc.is_tracked(entry)) == 0


def test_an_item_that_printed_or_retried_keeps_its_whole_record(tmp_path):
    orch, _ = _ran_map(tmp_path, printing, 300)
    rec = orch._engine.sched.lookup("m")
    assert all(not isinstance(entry, tuple) for entry in rec.mapping.items)  # logs to keep
    assert orch.get_task_result("m", map_index=5).logs.strip() == "item 5"


_STARTERS = (203, 403, 603)  # each starts a thread that writes while item + 2 runs
_WROTE: dict[int, threading.Event] = {}


def leaves_a_writer(item: int) -> int:
    """Item s starts a thread that writes once item s + 2 (most likely in the same batch of
    one worker) has begun, after item s returned (as a logging thread might)."""
    if item in _STARTERS:
        go, wrote = threading.Event(), threading.Event()
        _WROTE[item + 2] = wrote
        _GO[item + 2] = go

        def late() -> None:
            go.wait(5)
            print(f"late line of item {item}")
            wrote.set()

        threading.Thread(target=late).start()
    elif item in _GO:
        _GO[item].set()
        _WROTE[item].wait(2)
    print(f"item {item}")
    return item


_GO: dict[int, threading.Event] = {}


def test_items_of_a_batch_share_a_capture_but_a_late_thread_never_writes_into_another(tmp_path):
    _WROTE.clear()
    _GO.clear()
    orch, most = _ran_map(tmp_path, leaves_a_writer, 800)
    assert most[0] > 1  # batched
    assert all(event.is_set() for event in _WROTE.values())  # every late line was written
    for i in range(800):
        result = orch.get_task_result("m", map_index=i)
        assert result.logs.strip() == f"item {i}", (i, result.logs)
    cpu = [orch.item_views("m", map_index=i)[0].cpu_time for i in range(800)]
    assert all(c is not None and 0 <= c < 1 for c in cpu)
