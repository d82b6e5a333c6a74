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
