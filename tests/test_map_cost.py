"""What a map holds and costs per item (issue 18: "a map of 100,000 items holds under 300
bytes per pending item").

The memory bound is asserted at 20,000 items with the shipped defaults (journal on,
so every item's fingerprint is made and its definition journaled at expansion): the
map is expanded and its first item runs while the others wait (``max_parallel=1``).
The list mapped over is the caller's and is not counted.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc

from codomyrmex_nb import TaskOrchestrator

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
