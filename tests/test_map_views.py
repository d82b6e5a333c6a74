"""Mapped tasks in the views: one node with counts and a bar, items listed on a click,
item rows in the frames, item logs, the timeline and the bottleneck report."""

from __future__ import annotations

import re
import threading

import pandas as pd
import pytest

from codomyrmex_nb.core.events import Event
from codomyrmex_nb.core.model import TaskStatus
from codomyrmex_nb.notebook import map_node
from codomyrmex_nb.notebook.logs_view import logs_text
from codomyrmex_nb.notebook.painter import Painter
from codomyrmex_nb.notebook.tracker import Tracker
from codomyrmex_nb.palette import fill


def square(item):
    print(f"squaring {item}")
    if item == 3:
        raise ValueError("three is bad")
    return item * item


def mapped(orch, n=5, tolerate=1):
    orch.create_task("numbers", func=lambda: list(range(n)))
    sq = orch.create_task("square", func=square, map="numbers", tolerate=tolerate)
    orch.create_task("plain", func=lambda: 1)
    return sq


def run(orch):
    orch.start_execution()
    assert orch.wait_for_completion(60) is not None
    orch.flush_events(10)


# -- frames ---------------------------------------------------------------------------------------
def test_tasks_frame_has_item_counts_per_mapped_task_and_missing_for_plain_tasks(orch):
    mapped(orch)
    run(orch)
    frame = orch.tasks_frame().set_index("name")
    assert str(frame["items"].dtype) == "Int64"
    assert frame.loc["square", ["items", "items_ok", "items_failed"]].tolist() == [5, 4, 1]
    assert frame.loc["plain", ["items", "items_ok", "items_failed"]].isna().all()
    assert len(frame) == 3  # one row per task, never one per item


def test_tasks_frame_items_gives_one_row_per_item_with_its_map_index(orch):
    mapped(orch)
    run(orch)
    items = orch.tasks_frame(items=True)
    assert items["map_index"].tolist() == [0, 1, 2, 3, 4]
    assert set(items["task"]) == {"square"}
    assert items["name"].tolist()[3] == "square[3]"
    by = items.set_index("map_index")
    assert by.loc[3, "state"] == "failed" and "three is bad" in by.loc[3, "error_message"]
    assert by.loc[2, "state"] == "completed" and by.loc[2, "attempts"] == 1
    assert (items["execution_time"] >= 0).all()
    assert items["started_at"].notna().all() and items["completed_at"].notna().all()
    assert str(items["state"].dtype) == "category"


def test_items_frame_before_expansion_is_empty_with_its_columns(orch):
    mapped(orch)
    items = orch.tasks_frame(items=True)
    assert items.empty and "map_index" in items.columns
    with pytest.raises(TypeError, match="orchestrator"):
        from codomyrmex_nb.analysis.frames import tasks_frame
        tasks_frame(orch.snapshot(), items=True)


# -- the node: counts and bar ---------------------------------------------------------------------
def test_bar_cells_split_by_state_in_proportion_and_keep_a_rare_state_visible():
    cells = map_node.cells({"completed": 97, "failed": 2, "running": 1})
    assert len(cells) == map_node.CELLS
    assert cells[0] == "completed" and cells.count("failed") >= 1 and cells.count("running") >= 1
    assert cells.count("completed") >= map_node.CELLS - 3
    assert map_node.cells({"pending": 10}) == ("pending",) * map_node.CELLS
    assert map_node.cells({"completed": 1, "pending": 1}).count("completed") == map_node.CELLS // 2
    many = {s: 1 for s in map_node.ORDER}
    assert len(map_node.cells(many)) == map_node.CELLS


def test_suffix_reads_count_then_ended_and_running_items():
    assert map_node.suffix({"completed": 97, "failed": 2, "running": 1}) == \
        "\u00d7100 \u271397 \u27172 \u25b61"  # ×100 ✓97 ✗2 ▶1
    assert map_node.suffix(None) == "\u00d7?"
    assert map_node.suffix({}) == "\u00d70"


@pytest.mark.needs_dot
def test_a_big_map_is_one_node_with_counts_and_a_bar(orch):
    mapped(orch, n=1000, tolerate=1)
    painter = Painter("mv", 200, 40, 5.0)
    painter.paint([], orch.snapshot(), orch.snapshot)
    assert len(painter.drawing.nodes) == 3  # numbers, square, plain: never one per item
    sq = orch.get_task("square").id
    node = painter._key_to_node[sq]
    assert painter.looks()[node].line2 == "\u00d7?"  # not expanded yet
    run(orch)
    frame = painter.paint([], orch.snapshot(), orch.snapshot)
    look = painter.looks()[node]
    assert look.line2 == "\u00d71000 \u2713999 \u27171"
    assert look.bar.count("failed") == 1 and look.bar[0] == "completed"
    body = re.search(rf'<g id="{node}" class="node">(.*?)</g>', frame.picture, re.S).group(1)
    assert f'<tspan fill="{fill("failed")}"' in body and "\u00d71000" in body
    assert "1000 items" in look.tip and "click" in look.tip


def _wait_for(orch, seen, predicate):
    for _ in range(500):
        orch.flush_events(5)
        if any(predicate(e) for e in list(seen)):
            return
        threading.Event().wait(0.02)
    raise AssertionError("the event never came")


@pytest.mark.needs_dot
def test_item_events_patch_the_counts_and_bar_without_a_layout(orch):
    gate = threading.Semaphore(0)

    def slow(item):
        assert gate.acquire(timeout=30)
        return item

    orch.create_task("nums", func=lambda: [1, 2, 3, 4])
    work = orch.create_task("work", func=slow, map="nums", max_parallel=1)
    seen: list[Event] = []
    orch.subscribe(seen.append)
    painter = Painter("mv", 200, 40, 60.0)
    painter.paint([], orch.snapshot(), orch.snapshot)
    node = painter._key_to_node[work.id]
    orch.start_execution()
    try:
        _wait_for(orch, seen, lambda e: e.kind == "item" and e.status is TaskStatus.RUNNING)
        layouts = painter.layouts
        painter.paint(list(seen), None, orch.snapshot)  # expanded since: one snapshot
        tally = painter.tracker.tallies[work.id]
        assert tally["running"] == 1 and tally["pending"] == 3
        assert "\u25b61" in painter.looks()[node].line2
        seen.clear()
        gate.release()  # item 0 completes, item 1 runs
        _wait_for(orch, seen, lambda e: e.kind == "item" and e.status is TaskStatus.RUNNING)
        frame = painter.paint(list(seen), None, orch.snapshot)
        assert painter.layouts == layouts and frame.picture is None  # a patch, no layout
        assert painter.looks()[node].line2 == "\u00d74 \u27131 \u25b61"
        assert frame.patch["texts"][node] == "\u00d74 \u27131 \u25b61"
        assert f"#{node} .b :nth-child(1)" in frame.patch["css"]
    finally:
        for _ in range(4):
            gate.release()
        orch.wait_for_completion(30)


def test_item_events_for_unknown_ids_never_crash_the_tracker(orch):
    mapped(orch)
    tracker = Tracker()
    tracker.reset(orch.snapshot(), None)
    sq = orch.get_task("square").id
    odd = [Event("item", "nope[3]", "nope[3]", TaskStatus.READY, None, seq=10**6),
           Event("item", "[", "x", TaskStatus.READY, None, seq=10**6 + 1),
           Event("item", None, None, None, None, seq=10**6 + 2),
           Event("item", f"{sq}[0]", "square[0]", TaskStatus.READY, None, seq=10**6 + 3),
           Event("status", f"{sq}[0]", "square[0]", TaskStatus.RUNNING, TaskStatus.READY,
                 seq=10**6 + 4)]
    tracker.apply(odd)
    assert tracker.stale_maps  # square is known but not expanded: a snapshot will tell
    assert f"{sq}[0]" not in tracker.states and tracker.total == 3


@pytest.mark.needs_dot
def test_live_view_click_on_a_map_lists_items_failures_first_and_opens_one(orch, views):
    mapped(orch)
    view = views(orch)
    run(orch)
    assert view.flush(30)
    sq = orch.get_task("square").id
    node = view._painter.node_of(sq)
    view._on_front_end_message(view, {"kind": "select", "node": node}, [])
    detail = view.detail
    assert "items (5, 1 failed or cancelled first)" in detail
    first = re.findall(r'data-codo-action="item" data-codo-task="([^"]+)"', detail)
    assert first[0] == f"{sq}[3]" and first[1:] == [f"{sq}[{i}]" for i in (0, 1, 2, 4)]
    view._on_front_end_message(view, {"kind": "item", "task": f"{sq}[3]"}, [])
    assert view.selected == node  # its task's node stays marked
    assert "square[3]" in view.detail and "squaring 3" in view.detail
    assert "three is bad" in view.detail and "traceback" in view.detail
    view._on_front_end_message(view, {"kind": "item", "task": f"{sq}[2]"}, [])
    assert "<code>4</code>" in view.detail  # its result
    view._on_front_end_message(view, {"kind": "item", "task": f"{sq}[99]"}, [])  # no raise
    assert "out of range" in view.detail
    view._on_front_end_message(view, {"kind": "item", "task": sq}, [])  # back to the task
    assert "items (5" in view.detail


def test_cancel_from_an_item_panel_cancels_that_item_only(orch):
    from codomyrmex_nb.notebook import map_panel

    release = threading.Event()

    def slow(item):
        release.wait(30)
        return item

    orch.create_task("nums", func=lambda: [1, 2, 3])
    sq = orch.create_task("work", func=slow, map="nums", max_parallel=1, tolerate=1)
    orch.start_execution()
    try:
        for _ in range(200):
            if orch.tasks_frame(items=True)["state"].eq("running").any():
                break
            threading.Event().wait(0.02)
        assert map_panel.cancel(orch, f"{sq.id}[2]")
        html = map_panel.item_detail(orch, f"{sq.id}[2]")
        assert "cancelled" in html and 'data-codo-action="cancel"' in html
    finally:
        release.set()
    orch.wait_for_completion(30)
    states = orch.tasks_frame(items=True).set_index("map_index")["state"]
    assert states[2] == "cancelled" and states[0] == "completed" and states[1] == "completed"
    assert orch.get_task("work").status is TaskStatus.COMPLETED  # tolerated


# -- logs, timeline, bottlenecks ------------------------------------------------------------------
def test_codo_logs_shows_one_items_attempts_output_and_traceback(orch):
    mapped(orch)
    run(orch)
    text = logs_text(orch, "square[3]")
    assert text.startswith("square[3] · failed · 1 attempt")
    assert "squaring 3" in text and "ValueError: three is bad" in text
    assert "squaring 4" not in text
    assert "squaring 2" in logs_text(orch, "square[2]")
    with pytest.raises(ValueError, match="has 5 items; map_index 9 is out of range"):
        logs_text(orch, "square[9]")
    with pytest.raises(ValueError, match="not mapped"):
        logs_text(orch, "plain[0]")


def test_codo_logs_magic_takes_name_with_index_or_map_index(orch, capsys):
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import get_ipython

    from codomyrmex_nb import default
    from codomyrmex_nb.notebook.magics import CodoMagics

    mapped(orch)
    run(orch)
    shell = get_ipython()
    magics = CodoMagics(shell)
    old = default.current_orchestrator
    try:
        default.current_orchestrator = lambda: orch  # type: ignore[assignment]
        magics.orchestrator = lambda: orch  # type: ignore[method-assign]
        magics.codo_logs("square[1]")
        assert "squaring 1" in capsys.readouterr().out
        magics.codo_logs("square --map-index 3")
        out = capsys.readouterr().out
        assert "squaring 3" in out and "three is bad" in out
        with pytest.raises(UsageError, match="out of range"):
            magics.codo_logs("square[40]")
        with pytest.raises(UsageError, match=r"^%codo_logs: task 'square' has \d+ items; "
                                             r"map_index -1 is out of range"):
            magics.codo_logs("square --map-index -1")  # not the item's internal id
    finally:
        default.current_orchestrator = old  # type: ignore[assignment]


def test_timeline_draws_item_attempts_in_worker_lanes(orch):
    from codomyrmex_nb.analysis.timeline import attempt_bars

    sq = mapped(orch)
    run(orch)
    fig = orch.timeline()
    gids = {bar.get_gid() for bar in attempt_bars(fig)}
    assert {f"attempt:{sq.id}[{i}]:1" for i in range(5)} <= gids
    assert f"attempt:{orch.get_task('numbers').id}:1" in gids


def test_timeline_caps_item_bars_and_says_how_many_it_left_out(orch, monkeypatch):
    from codomyrmex_nb.analysis import timeline as timeline_mod

    monkeypatch.setattr(timeline_mod, "MAX_ITEM_BARS", 3)
    sq = mapped(orch, n=8, tolerate=1)
    run(orch)
    fig = orch.timeline()
    items = [b for b in timeline_mod.attempt_bars(fig) if f"{sq.id}[" in b.get_gid()]
    assert len(items) == 3
    assert "5 shorter item attempts not drawn" in fig.axes[0].get_title(loc="left")


def test_bottlenecks_name_items_of_a_map_on_the_critical_path_and_retried_items(orch):
    calls: dict[int, int] = {}

    def flaky(item):
        calls[item] = calls.get(item, 0) + 1
        if item == 1 and calls[item] == 1:
            raise RuntimeError("first time")
        threading.Event().wait(0.05 if item == 2 else 0.0)
        return item

    orch.create_task("nums", func=lambda: [0, 1, 2])
    orch.create_task("work", func=flaky, map="nums", max_retries=1, retry_delay=0)
    run(orch)
    report = orch.bottlenecks()
    path = report[report["kind"] == "critical_path"]
    row = path[path["task"] == "work"]
    assert len(row) == 1 and "3 items" in row["detail"].iloc[0]
    assert "longest work[2]" in row["detail"].iloc[0]
    retries = report[report["kind"] == "retries"]
    assert "work[1]" in retries["task"].tolist()
    assert isinstance(report, pd.DataFrame)


def test_status_table_shows_a_maps_item_counts(orch):
    from codomyrmex_nb.notebook.text_status import status_table

    mapped(orch)
    assert "square" in status_table(orch.snapshot()) and "\u00d7?" in status_table(
        orch.snapshot())
    run(orch)
    line = next(x for x in status_table(orch.snapshot()).splitlines() if "square" in x)
    assert "\u00d75 \u27134 \u27171" in line
    plain = next(x for x in status_table(orch.snapshot()).splitlines() if "plain" in x)
    assert "\u00d7" not in plain
