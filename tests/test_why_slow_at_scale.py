"""bottlenecks() on long runs: the GIL finding takes O(n log n), and ``top`` caps its rows
however many stretches of contention the run had (constructed snapshots, as in
test_why_slow)."""

from __future__ import annotations

import time

from test_why_slow import kinds, snapshot, view

from codomyrmex_nb.analysis.bottlenecks import bottlenecks


def alternating(n: int) -> list:
    """Two threads, each running short busy tasks back to back, CPU/wall 0.5: the GIL."""
    return [view(f"t{i}", [(0.05 * (i // 2), 0.05 * (i // 2) + 0.05, 0.025,
                            f"codo-worker-{i % 2 + 1}")]) for i in range(n)]


def test_thousands_of_busy_thread_tasks_are_read_in_well_under_a_minute():
    views = alternating(8000)  # was O(n^2): about 75 s here, minutes on a busy machine
    took = time.perf_counter()
    frame = bottlenecks(snapshot(*views, workers=2), executor="threads")
    took = time.perf_counter() - took
    assert took < 15
    assert not kinds(frame, "gil_contention").empty


def test_top_caps_gil_rows_over_many_stretches_and_the_first_row_sums_them_up():
    frame = bottlenecks(snapshot(*alternating(40), workers=2), executor="threads", top=5)
    gil = kinds(frame, "gil_contention")
    assert len(gil) == 5  # was one or two rows per stretch: 40 rows
    assert "20 such stretches, 40 tasks in all, 1.00 s runnable but not running" \
        in gil.iloc[0]["detail"]
    two_groups = [view(f"a{i}", [(0.0, 2.0, 0.5, f"codo-worker-{i}")]) for i in range(4)] + \
        [view(f"b{i}", [(10.0, 12.0, 0.5, f"codo-worker-{i}")]) for i in range(4)]
    gil = kinds(bottlenecks(snapshot(*two_groups), executor="threads", top=3), "gil_contention")
    assert len(gil) == 3
    assert "4 thread tasks ran together" in gil.iloc[0]["detail"]


class _Orchestrator:
    """What bottlenecks() reads of an orchestrator: a snapshot and the items."""

    executor_name = "threads"

    def __init__(self, snap, items) -> None:
        self._snap, self._items = snap, items

    def snapshot(self):
        return self._snap

    def item_views(self):
        return list(self._items)


def test_cpu_bound_items_of_a_map_on_threads_are_gil_contention():
    # the commonest GIL contention of all: a map of pure-Python items on threads, two at a
    # time, each getting half a core; the items were not read, so nothing was said
    from test_why_slow import T0

    from codomyrmex_nb.core.item_views import ItemView
    from codomyrmex_nb.core.model import Attempt

    crunch = view("crunch", [(0.0, 2.0, 0.0, "w0")])._replace(map_tally={"completed": 4})
    items = []
    for i in range(4):
        start = T0 + (i // 2)
        attempt = Attempt(1, f"codo-worker-{i % 2 + 1}", start, start + 1.0, "completed")
        attempt.cpu_time = 0.5
        items.append(ItemView(f"{crunch.id}[{i}]", f"crunch[{i}]", crunch.id, "crunch", i,
                              "completed", (attempt,), 0, start, start, start + 1.0, 1.0, True,
                              None, None, attempt.worker, 0.5, None, None))
    snap = snapshot(crunch, workers=2)
    gil = kinds(bottlenecks(_Orchestrator(snap, items)), "gil_contention")
    assert sorted(gil["task"]) == [f"crunch[{i}]" for i in range(4)]
    assert "processes" in gil.iloc[0]["cure"] or "one CPU core" in gil.iloc[0]["cure"]
    assert kinds(bottlenecks(snap, executor="threads"), "gil_contention").empty  # no items
