"""The live view: recolouring without layout, grouping, fallbacks, and never stalling the engine."""

from __future__ import annotations

import re
import threading
import time

import pytest
from conftest import view_threads, wait_until_status

from codomyrmex_nb import Task, TaskStatus, live_view
from codomyrmex_nb.notebook import drawing, live_copies, view_context
from codomyrmex_nb.notebook.live_view import LiveView
from codomyrmex_nb.palette import fill

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def noop() -> None:
    return None


def boom() -> None:
    raise ValueError("boom")


def node_fill(svg: str, node_id: str) -> str:
    body = re.search(rf'<g id="{node_id}" class="node">(.*?)</g>', svg, re.S)
    assert body is not None, f"no node {node_id}"
    return re.search(r'<path fill="([^"]*)"', body.group(1)).group(1)


def node_of(view: LiveView, name: str) -> str:
    by_id = {t.id: t.name for t in view.orchestrator.snapshot().tasks}
    return next(n for n, tid in view._painter.drawing.nodes.items() if by_id[tid] == name)


@pytest.mark.needs_dot
def test_svg_has_one_node_per_task_and_colours_follow_states(orch, views):
    ok = orch.create_task("ok", func=noop)
    orch.create_task("bad", func=boom)
    orch.create_task("after_bad", func=noop, dependencies=["bad"])
    view = views(orch)
    svg = view.svg
    assert svg.startswith("<?xml") and svg.count('class="node"') == 3
    assert node_fill(svg, node_of(view, "ok")) in (fill("pending"), fill("ready"))
    orch.start_execution()
    orch.wait_for_completion(30)
    assert view.flush(30)
    svg = view.svg
    assert node_fill(svg, node_of(view, "ok")) == fill("completed")
    assert node_fill(svg, node_of(view, "bad")) == fill("failed")
    assert node_fill(svg, node_of(view, "after_bad")) == fill("upstream_failed")
    assert "1/3 done · 1 failed (" in view.summary() and ok.id in view._painter.tracker.states


@pytest.mark.needs_dot
def test_status_changes_never_call_the_layout(orch, views, monkeypatch):
    calls = []
    real = drawing.layout

    def counting(graph):
        calls.append(graph)
        return real(graph)

    monkeypatch.setattr(drawing, "layout", counting)
    orch.add_tasks([Task(name=f"t{i}", func=noop, dependencies=[f"t{i - 1}"] if i else [])
                    for i in range(30)])
    view = views(orch, interval=0.01)
    assert len(calls) == 1
    orch.start_execution()
    orch.wait_for_completion(30)
    assert view.flush(30)
    assert view.frames > 1 and len(calls) == 1 == view.layouts  # 90 status changes, one layout
    orch.add_task(Task(name="late", func=noop, dependencies=["t29"]))  # structure changed
    orch.wait_for_completion(30)
    assert view.flush(30)
    assert len(calls) == 2 and view.svg.count('class="node"') == 31


@pytest.mark.needs_dot
def test_browser_frames_carry_only_changed_nodes(orch, views):
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(20)])
    view = views(orch, full_interval=3600)
    picture = view.picture
    assert len(picture) > 5000 and view.patch == {}
    nid = node_of(view, "t3")
    tid = view._painter.drawing.nodes[nid]
    from codomyrmex_nb.core import Event, TaskStatus

    view._frame([Event("status", tid, "t3", TaskStatus.RUNNING, TaskStatus.READY)])
    patch = view.patch
    assert view.picture == picture  # the big SVG is not sent again
    assert f"#{nid} path{{fill:var(--codo-running,{fill('running')})}}" in patch["css"]
    assert len(patch["css"]) < 300 and set(patch["tips"]) == {nid}  # its hover text too
    assert "t3\n" in patch["tips"][nid] and "running" in patch["tips"][nid]


@pytest.mark.needs_dot
def test_big_graphs_are_grouped(orch, views):
    orch.add_tasks([Task(name=f"x{i}", func=noop, tags=[f"stage{i % 3}"]) for i in range(40)])
    view = views(orch, threshold=10)
    assert view.svg.count('class="node"') == 3
    orch.start_execution()
    orch.wait_for_completion(30)
    assert view.flush(30)
    assert view.svg.count(fill("completed")) >= 3 and "3 groups of 40 tasks" in view.head


@pytest.mark.needs_dot
def test_without_a_widget_front_end_the_bundle_is_svg_and_text(orch, views, monkeypatch):
    orch.create_task("a", func=noop)
    view = views(orch)
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/html", "image/svg+xml", "text/plain"}
    assert "<svg" in bundle["text/html"] and "0/1</b> done" in bundle["text/html"]
    assert bundle["image/svg+xml"].count('class="node"') == 1
    assert "0/1 done" in bundle["text/plain"]
    monkeypatch.setattr(view_context, "has_widget_frontend", lambda: True)
    assert WIDGET_MIME in view._repr_mimebundle_()


def test_without_dot_a_hint_and_the_engine_unaffected(orch, views, monkeypatch):
    monkeypatch.setattr(drawing.shutil, "which", lambda name: None)
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(5)])
    view = views(orch)
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/plain"}
    hint, summary = bundle["text/plain"].split("\n")
    assert "apt install graphviz" in hint and "0/5 done" in summary
    assert view.svg == "" and "apt install graphviz" in view.picture
    orch.start_execution()
    assert orch.wait_for_completion(30)
    assert view.flush(30) and "5/5 done" in view.summary()


def test_a_slow_view_never_stalls_the_engine(orch, views):
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(500)])
    view = views(orch)
    entered, release = threading.Event(), threading.Event()

    def slow_frame(events, final=False, snapshot=None):
        entered.set()
        release.wait(60)

    view._frame = slow_frame
    orch.start_execution()
    try:
        assert orch.wait_for_completion(30)  # while the view is stuck in a frame
        assert entered.wait(30)
    finally:
        release.set()


def test_a_raising_view_never_stalls_the_engine(orch, views):
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(500)])
    view = views(orch, interval=0.001)
    failures = []

    def broken_frame(events, final=False, snapshot=None):
        failures.append(len(events))
        raise RuntimeError("view bug")

    view._frame = broken_frame
    orch.start_execution()
    assert orch.wait_for_completion(30)
    assert view.flush(30) and failures  # the thread survived its failures and kept going


def _fail_once(monkeypatch, owner, name, when) -> list[str]:
    """``owner.name`` raises once, the first time ``when(args)`` holds; returns what fired."""
    original, fired = getattr(owner, name), []

    def flaky(*args, **kwargs):
        if not fired and when(args):
            fired.append(name)
            raise RuntimeError(f"a transient error in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return fired


def _failure_known(view: LiveView) -> bool:
    return view._painter.tracker.counts["failed"] > 0


@pytest.mark.needs_dot
@pytest.mark.parametrize("where", ["folding events", "drawing", "sending"])
@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "ungrouped"])
def test_a_frame_that_failed_once_loses_nothing_the_next_shows_the_failure(
        orch, views, monkeypatch, where, grouped):
    orch.add_tasks([Task(name=f"ok{i}", func=noop, tags=["ok"]) for i in range(20)])
    bad = orch.create_task("bad", func=boom, tags=["late"],  # fails last: in the last frame
                           dependencies=[f"ok{i}" for i in range(20)])
    view = views(orch, interval=0.01, threshold=10 if grouped else 200)
    assert (view._painter.grouping is not None) is grouped
    view.select("#late" if grouped else bad.id)  # its panel is open
    if where == "folding events":  # the batch holding the failure is lost midway
        fired = _fail_once(monkeypatch, view._painter.tracker, "apply", lambda args: any(
            e.name == "bad" and e.status is not None and e.status.value == "failed"
            for e in args[0]))
    elif where == "drawing":  # the failure is folded in, its picture never made
        fired = _fail_once(monkeypatch, view._painter, "looks", lambda args: _failure_known(view))
    else:  # the picture is made, never sent
        fired = _fail_once(monkeypatch, view, "hold_sync", lambda args: _failure_known(view))
    orch.start_execution()
    assert orch.wait_for_completion(30) is False
    assert view.flush(10) and fired
    assert "20/21</b> done · 1 failed" in view.head  # what the widget shows, not stale
    assert "20/21 done · 1 failed (✓ success 20, ✗ failed 1)" in view.summary()
    if grouped:
        texts = re.findall(r"<text[^>]*>([^<]*)</text>", view.picture)
        assert "✗ #late (1)" in texts and "✓ #ok (20)" in texts
        assert "✗ bad" in view.detail  # the group's open panel
    else:
        assert "ValueError" in view.detail and "boom" in view.detail  # the task's open panel


def test_close_and_stop_leave_no_view_thread(orch, views):
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(50)])
    view = views(orch)
    orch.start_execution()
    orch.wait_for_completion(30)
    assert view.flush(30)
    thread = view.thread
    assert thread is not None and thread.is_alive()
    orch.stop_execution()  # the "stopped" event: final frame, then the thread exits
    thread.join(30)
    assert not thread.is_alive() and view.thread is None
    orch.start_execution()  # the next event starts a thread again ...
    orch.add_task(Task(name="again", func=noop))
    orch.wait_for_completion(30)
    assert view.flush(30) and view.thread is not None
    view.close()  # ... and close() joins it
    assert view.thread is None and view_threads() == []
    view.close()  # idempotent


def test_live_view_reuses_one_view_per_orchestrator(orch):
    view = live_view(orch)
    try:
        assert live_view(orch) is view
        assert repr(view).startswith("<LiveView 0/0 done")
    finally:
        view.close()
    other = live_view(orch)
    assert other is not view
    other.close()
    assert view_threads() == []


# -- runs, retries, waits ------------------------------------------------------------------
def test_elapsed_and_throughput_are_per_run_and_the_header_names_the_run(orch, views):
    import time

    orch.create_task("first", func=lambda: time.sleep(0.2))
    view = views(orch, interval=0.01)
    orch.start_execution()
    assert orch.wait_for_completion(30) and view.flush(30)
    tracker = view._painter.tracker
    assert tracker.run == 1 and 0.15 < tracker.elapsed() < 1.0
    time.sleep(0.6)  # idle time between runs does not count
    orch.create_task("second", func=noop)
    assert orch.wait_for_completion(30) and view.flush(30)
    assert tracker.run == 2 and tracker.elapsed() < 0.3, tracker.summary()
    assert "run 2 \u00b7 started " in view.summary() and "run 2" in view.head
    assert "2/2 done" in view.summary()


def test_after_a_stop_mid_run_and_a_restart_the_header_shows_the_new_runs_start(
        orch, views, tmp_path):
    """Stopped mid-run, left stopped, started again: the header said "run 2 · started
    <run 1's first attempt>" and its elapsed time counted the time the engine sat
    stopped. It shows the run the restart began (the journal's run 2) from that start."""
    from codomyrmex_nb.notebook.tracker import clock

    gate = threading.Event()

    def held() -> None:
        while not gate.is_set():
            time.sleep(0.005)

    orch.use_journal(tmp_path / "j.sqlite")
    orch.create_task("first", func=noop)
    task = orch.create_task("held", func=held, dependencies=["first"])
    view = views(orch, interval=0.01)
    try:
        orch.start_execution()
        assert wait_until_status(orch, task, TaskStatus.RUNNING, 30)
        orch.stop_execution()
        assert view.flush(30)
        time.sleep(0.6)  # stopped: in no run
        gate.set()
        restarted = time.time()
        orch.start_execution()
        assert orch.wait_for_completion(30) and view.flush(30)
    finally:
        gate.set()
    tracker = view._painter.tracker
    assert orch.journal_run == 2 and tracker.run == 2, tracker.summary()
    assert tracker.started is not None and tracker.started >= restarted - 0.01
    assert tracker.elapsed() < 0.5, tracker.summary()  # not the 0.6 s it sat stopped
    assert f"run 2 \u00b7 started {clock(tracker.started)}" in view.summary()
    assert f"run 2 \u00b7 started {clock(tracker.started)}" in view.head
    later = views(orch)._painter.tracker  # a view made after the restart: the same run
    assert later.started is not None and later.started >= restarted - 0.01, later.summary()


@pytest.mark.needs_dot
def test_retries_are_marked_on_their_node(orch, views):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("not yet")

    orch.create_task("flaky", func=flaky, max_retries=3, retry_delay=0.01)
    view = views(orch, interval=0.01)
    orch.start_execution()
    assert orch.wait_for_completion(30) and view.flush(30)
    assert "\u21bb2" in view.svg and "\u21bb2 retries" in view.svg  # label and hover text
    assert view._painter.tracker.retries[orch.snapshot().tasks[0].id] == 2


def test_a_task_waiting_for_a_lock_says_so_and_its_line_is_painted(orch, views):
    import threading

    from codomyrmex_nb import ResourceType, TaskResource

    release = threading.Event()
    db = [TaskResource(type=ResourceType.CPU, identifier="db", mode="write")]
    orch.create_task("holder", func=lambda: release.wait(30), resources=db)
    orch.create_task("waiter", func=noop, resources=db)
    view = views(orch, interval=0.01, full_interval=3600)
    orch.start_execution()
    try:
        snap = orch.snapshot()
        ids = {t.name: t.id for t in snap.tasks}
        deadline = __import__("time").monotonic() + 10
        while view._painter.tracker.waiting.get(ids["waiter"]) != "cpu:db":
            assert __import__("time").monotonic() < deadline, "no 'waiting for' event seen"
            view.flush(5)
        looks = view._painter.looks()
        waiter_node = node_of(view, "waiter")
        assert "waiting for cpu:db (held by holder)" in looks[waiter_node].tip
        assert "var(--codo-waiting)" in view.patch["css"]  # the waiter's dashed line
        assert "var(--codo-holding)" in view.patch["css"]  # the holder's
    finally:
        release.set()
    assert orch.wait_for_completion(30)


# -- clicks --------------------------------------------------------------------------------
def test_a_click_on_a_failed_node_opens_its_details_and_retry_reruns_it(orch, views):
    attempts = []

    def fails_once():
        attempts.append(1)
        print("working on it")
        if len(attempts) == 1:
            raise ValueError("first time fails")
        return 7

    orch.create_task("once", func=fails_once)
    view = views(orch, interval=0.01)
    orch.start_execution()
    orch.wait_for_completion(30)
    assert view.flush(30)
    nid = node_of(view, "once")
    view._on_front_end_message(view, {"kind": "select", "node": nid}, [])
    assert view.selected == nid and "first time fails" in view.detail
    assert "ValueError" in view.detail and 'data-codo-action="retry"' in view.detail
    view._on_front_end_message(view, {"kind": "retry", "task": view._selected_task}, [])
    assert orch.wait_for_completion(30) and view.flush(30)
    assert "completed" not in view.detail or "7" in view.detail
    assert "<code>7</code>" in view.detail  # the panel followed the task: now its result
    view._on_front_end_message(view, {"kind": "close"}, [])
    assert view.detail == "" and view.selected == ""
    view._on_front_end_message(view, {"kind": "select", "node": "nonsense"}, [])  # no raise
    view._on_front_end_message(view, "not a dict", [])


def test_a_task_whose_id_looks_like_an_items_opens_as_itself(orch, views):
    orch.add_task(Task(name="bracket", func=noop, id="step[1]"))
    view = views(orch, interval=0.01)
    view.select("step[1]")
    assert "bracket" in view.detail and "no task" not in view.detail
    assert view.selected == node_of(view, "bracket")


def test_the_selection_follows_its_task_when_a_task_before_it_is_removed(orch, views):
    tasks = {n: orch.create_task(n, func=noop) for n in ("aaa", "bbb", "ccc", "ddd")}
    view = views(orch, interval=0.01)
    view.select(tasks["ccc"].id)
    assert view.selected == node_of(view, "ccc")
    orch.remove_task(tasks["aaa"])  # laid out anew: node ids are positions
    assert view.flush(10)
    assert view.selected == node_of(view, "ccc")


def test_a_groups_open_panel_follows_its_members(orch, views):
    for i in range(30):
        orch.create_task(f"t{i}", func=noop)
    view = views(orch, interval=0.01, threshold=10)
    view.select("t")  # a click on the group node
    assert "\u2713" not in view.detail  # none completed yet
    orch.start_execution()
    assert orch.wait_for_completion(30) and view.flush(10)
    assert view.detail.count("\u2713") >= 30  # every member shown completed, without a click


def test_one_group_is_said_in_the_singular(orch, views):
    for i in range(12):
        orch.create_task(f"t{i}", func=noop)
    view = views(orch, interval=0.01, threshold=10)
    assert "1 group of 12 tasks" in view.head


def test_a_map_rerun_of_its_failed_items_is_timed_from_when_they_run_again(orch, views):
    fixed = threading.Event()

    def item_work(item):
        time.sleep(0.2)
        if item == 1 and not fixed.is_set():
            raise ValueError(item)
        return item

    orch.create_task("m", func=item_work, map=[0, 1, 2], tolerate=3)
    orch.create_task("after", func=lambda upstream: len(upstream["m"]), dependencies=["m"])
    view = views(orch, interval=0.01)
    orch.start_execution()
    assert orch.wait_for_completion(30) and view.flush(30)
    fixed.set()
    orch.rerun("m", only="failed")
    assert orch.wait_for_completion(30) and view.flush(30)
    elapsed = float(re.search(r"elapsed ([\d.]+) s", view.summary()).group(1))
    assert "run 2" in view.summary() and elapsed >= 0.15, view.summary()  # the item's 0.2 s


def test_the_headers_clock_stops_with_the_engine(orch, views):
    gate = threading.Event()

    def long():
        while not gate.is_set():  # in Python: the stop's interrupt lands at once
            time.sleep(0.01)

    orch.create_task("long", func=long)
    view = views(orch, interval=0.01)
    orch.start_execution()
    try:
        assert changed_to(view, lambda: view.ticks.get("run") is not None)
        orch.stop_execution()  # the task goes back to ready: nothing runs, nothing counts
        assert view.flush(10)
        assert view.ticks["run"] is None and view.ticks["nodes"] == {}
    finally:
        gate.set()


def changed_to(view, check, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check():  # polling in a test is fine
        if time.monotonic() > deadline:
            return False
        view.flush(1)
        time.sleep(0.01)
    return True


def test_cancel_from_the_panel(orch, views):
    import threading

    gate = threading.Event()
    orch.create_task("long", func=lambda: gate.wait(30))
    orch.create_task("after", func=noop, dependencies=["long"])
    view = views(orch, interval=0.01)
    orch.start_execution()
    try:
        task = orch.snapshot().tasks[0].id
        view.select(task)
        assert 'data-codo-action="cancel"' in view.detail and "disabled" not in view.detail.split(
            'data-codo-action="cancel"')[1].split(">")[0]
        view._on_front_end_message(view, {"kind": "cancel", "task": task}, [])
        orch.wait_for_completion(30)
        assert view.flush(30)
        assert orch.snapshot().tasks[0].state == "cancelled"
    finally:
        gate.set()


# -- what a saved notebook keeps -----------------------------------------------------------
@pytest.fixture
def shown(monkeypatch):
    """Record display() and update_display() calls; pretend a widget front end is there."""
    import IPython.display as ipd

    calls: list[tuple[str, dict, str | None]] = []
    monkeypatch.setattr(ipd, "display", lambda data, raw=False, display_id=None, **kw:
                        calls.append(("display", data, display_id)))
    monkeypatch.setattr(ipd, "update_display", lambda data, raw=False, display_id=None, **kw:
                        calls.append(("update", data, display_id)))
    monkeypatch.setattr(view_context, "has_widget_frontend", lambda: True)
    return calls


def _updates(shown: list, display_id: str) -> list[dict]:
    return [data for kind, data, did in shown if kind == "update" and did == display_id]


@pytest.mark.needs_dot
def test_the_static_copy_is_updated_when_the_run_settles(orch, views, shown):
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(3)])
    view = views(orch, interval=0.01)
    view._ipython_display_()
    (kind, widget, _), (_, static, display_id), (_, picture, picture_id) = shown
    assert WIDGET_MIME in widget and display_id is not None and picture_id is not None
    assert "0/3 done" in static["text/plain"] and "codo-static" in static["text/html"]
    orch.start_execution()
    assert orch.wait_for_completion(30) and view.flush(30)
    updates = _updates(shown, display_id)
    assert updates
    final = updates[-1]
    assert "3/3 done" in final["text/plain"] and "<b>3/3</b> done" in final["text/html"]
    assert final["text/html"].count(f'<path fill="{fill("completed")}"') == 3
    assert _updates(shown, picture_id)[-1]["image/png"]  # the picture follows too
    # That copy showed run 1; a later run leaves it as it was (the widget shows run 2).
    count = len([c for c in shown if c[0] == "update"])
    orch.create_task("later", func=noop)
    assert orch.wait_for_completion(30) and view.flush(30)
    live_copies._settle_copies()
    assert len([c for c in shown if c[0] == "update"]) == count


@pytest.mark.needs_dot
def test_a_copy_shows_the_tasks_of_its_cell_not_those_defined_later(orch, views, shown):
    """A fast Run All: a later cell adds a task before this cell's run has ended."""
    gate = threading.Event()
    orch.add_tasks([Task(name="first", func=lambda: gate.wait(30)),
                    Task(name="second", func=noop, dependencies=["first"])])
    view = views(orch, interval=0.01)
    view._ipython_display_()
    display_id = shown[1][2]
    orch.start_execution()
    orch.create_task("defined_later", func=noop)  # five cells later, while "first" still runs
    gate.set()
    assert orch.wait_for_completion(30) and view.flush(30)
    live_copies._settle_copies()
    first = shown[1][1]  # saved now, or with its kernel gone, it must not look live
    assert "before its tasks ended: redrawn once they do" in first["text/plain"]
    assert "before its tasks ended" in first["text/html"]
    final = _updates(shown, display_id)[-1]
    assert "2/2 done" in final["text/plain"], final["text/plain"]
    assert "before its tasks ended" not in final["text/plain"] + final["text/html"]
    assert "defined_later" not in final["text/html"]
    assert "3/3 done" in view.summary()  # the widget shows every task


@pytest.mark.needs_dot
def test_a_retry_from_its_own_widget_brings_the_copy_up_to_date(orch, views, shown):
    flaky = {"fail": True}

    def sometimes():
        if flaky["fail"]:
            raise ValueError("not yet")

    orch.add_tasks([Task(name="ok", func=noop), Task(name="sometimes", func=sometimes)])
    view = views(orch, interval=0.01)
    view._ipython_display_()
    display_id = shown[1][2]
    orch.start_execution()
    orch.wait_for_completion(30)  # False: one failed
    assert view.flush(30)
    live_copies._settle_copies()
    assert "1/2 done · 1 failed" in _updates(shown, display_id)[-1]["text/plain"]
    # A run started elsewhere (another cell) leaves the copy alone ...
    flaky["fail"] = False
    task = next(t.id for t in orch.snapshot().tasks if t.name == "sometimes")
    count = len(_updates(shown, display_id))
    orch.rerun(task)
    assert orch.wait_for_completion(30) and view.flush(30)
    live_copies._settle_copies()
    assert len(_updates(shown, display_id)) == count
    # ... a Retry clicked in its own widget (the front end names the copy) is followed.
    flaky["fail"] = True
    orch.rerun(task)
    orch.wait_for_completion(30)
    flaky["fail"] = False
    view._on_front_end_message(view, {"kind": "retry", "task": task, "copy": display_id}, [])
    assert orch.wait_for_completion(30) and view.flush(30)
    live_copies._settle_copies()
    assert "2/2 done" in _updates(shown, display_id)[-1]["text/plain"]


@pytest.mark.needs_dot
def test_the_copy_survives_a_sanitiser_as_a_line_and_a_picture(orch, views, shown):
    """Untrusted notebooks and GitHub drop <style> and inline SVG: what is left must read well."""
    import base64

    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(3)])
    view = views(orch, interval=0.01)
    view._ipython_display_()
    (_, _, _), (_, static, _), (_, picture, _) = shown
    html = static["text/html"]
    # The rich part (header chips and the SVG, whose labels would run on as text) is hidden
    # unless the copy's own style (trusted pages, nbconvert) shows it; the plain line is not.
    rich = re.search(r'<div class="codo-rich" hidden style="display:none">', html)
    assert rich is not None and "<svg" in html[rich.end():]
    plain = re.search(r'<div class="codo-plain">([^<]*)</div>', html)
    assert plain is not None and plain.start() < rich.start()
    assert plain.group(1).startswith("0/3 done") and "\n" not in plain.group(1)
    assert "side panel" not in html  # no claim a sanitiser would leave standing
    assert picture["text/plain"].startswith("0/3 done")  # no dot run while the cell runs
    orch.start_execution()
    assert orch.wait_for_completion(30) and view.flush(30)
    live_copies._settle_copies()
    final = _updates(shown, shown[2][2])[-1]  # the picture, once its tasks have ended
    assert base64.b64decode(final["image/png"]).startswith(b"\x89PNG")
    assert final["text/plain"].startswith("3/3 done")


def _fail_a_copy_once(monkeypatch, view: LiveView, where: str) -> list[str]:
    """The first update of ``view``'s copies fails ``where``; returns what fired."""
    import graphviz

    from codomyrmex_nb.notebook import static_copy

    if where == "update raised":  # an exception while drawing it: nothing is sent
        return _fail_once(monkeypatch, live_copies, "paint", lambda args: True)
    fired: list[str] = []
    original = graphviz.Digraph.pipe
    kind = "png" if where == "no png" else "svg"

    def flaky(graph, *args, **kwargs):
        # only the copy's painter runs dot once the run has ended (the widget's drawing
        # was laid out when the tasks were added, and is recoloured from then on)
        if not fired and kwargs.get("format") == kind and not view._painter.tracker.unfinished \
                and view._painter.tracker.total:
            fired.append(where)
            raise graphviz.CalledProcessError(1, ["dot"], "", "dot: out of memory (once)")
        return original(graph, *args, **kwargs)

    monkeypatch.setattr(graphviz.Digraph, "pipe", flaky)
    assert static_copy.png_of  # the PNG, too, comes from Digraph.pipe
    return fired


@pytest.mark.needs_dot
@pytest.mark.parametrize("where", ["update raised", "layout failed", "no png"])
def test_a_copy_whose_update_failed_once_is_drawn_at_the_next_frame(orch, views, shown,
                                                                    monkeypatch, where):
    """The copy was marked shown before it was drawn: a failed draw left it stale (the first
    frame, no drawing or no picture) until a Cancel or Retry in its widget reopened it."""
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(3)])
    view = views(orch, interval=0.01)
    view._ipython_display_()
    (_, _, display_id), (_, _, picture_id) = shown[1], shown[2]
    fired = _fail_a_copy_once(monkeypatch, view, where)
    orch.start_execution()
    assert orch.wait_for_completion(30) and view.flush(30)  # no _settle_copies: the view alone
    assert fired and len(fired) == 1
    copy = _updates(shown, display_id)[-1]
    assert "3/3 done" in copy["text/plain"] and "<b>3/3</b> done" in copy["text/html"]
    assert copy["text/html"].count(f'<path fill="{fill("completed")}"') == 3  # the drawing
    assert "could not lay out" not in copy["text/plain"]
    assert _updates(shown, picture_id)[-1]["image/png"]  # and its picture
    assert not any(c.open for c in view._copies)


@pytest.mark.needs_dot
def test_a_copy_that_keeps_failing_is_tried_twice_then_again_when_its_tasks_change(
        orch, views, shown, monkeypatch):
    """No dot run at every frame for a copy that cannot be drawn while nothing changed."""
    orch.add_tasks([Task(name="t", func=noop)])
    view = views(orch, interval=0.01)
    view._ipython_display_()
    tries, real = [], view._copy_bundles

    def broken(*args):
        tries.append(time.monotonic())
        raise RuntimeError("a view bug")

    monkeypatch.setattr(view, "_copy_bundles", broken)
    orch.start_execution()
    assert orch.wait_for_completion(30) and view.flush(30)
    assert len(tries) == 2  # the frame that found its tasks ended, and one more at once
    for i in range(3):  # later frames (tasks of later cells) change nothing it shows
        orch.create_task(f"later{i}", func=noop)
        assert orch.wait_for_completion(30) and view.flush(30)
    live_copies._settle_copies()  # the end of the cell, too
    assert len(tries) == 2 and view._copies[0].open  # still to be drawn
    monkeypatch.setattr(view, "_copy_bundles", real)  # fixed; its task runs again (another
    # cell): the copy catches up
    orch.rerun(orch.snapshot().tasks[0].id)
    assert orch.wait_for_completion(30) and view.flush(30)
    assert len(tries) == 2 and not view._copies[0].open
    assert "1/1 done" in _updates(shown, shown[1][2])[-1]["text/plain"]


def test_no_scroll_box_of_its_own_holds_the_drawing(orch, views):
    view = views(orch)
    assert "max-height" not in view.static_html()
    from codomyrmex_nb.notebook.frontend import CSS

    dag_rule = re.search(r"\.codo-view \.codo-dag \{([^}]*)\}", CSS).group(1)
    assert "max-height" not in dag_rule and "overflow-y: hidden" in dag_rule


@pytest.mark.needs_dot
def test_post_execute_brings_the_copy_up_to_date_within_the_cell(orch, views, shown):
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(2)])
    view = views(orch, interval=3600)  # the view thread would draw its last frame much later
    view._ipython_display_()
    orch.start_execution()
    assert orch.wait_for_completion(30)
    live_copies._settle_copies()  # what IPython runs at the end of the cell
    updates = [c for c in shown if c[0] == "update"]
    assert updates and "2/2 done" in updates[-1][1]["text/plain"]


@pytest.mark.needs_dot
def test_the_cells_end_waits_for_a_copy_the_view_thread_is_redrawing(orch, views, shown,
                                                                      monkeypatch):
    """The view thread took the copy (it is no longer open) and is drawing it as the cell
    ends: the end of the cell waits for that update, or a headless run (nbconvert), which
    stops listening once the cell ended, keeps the first frame."""
    orch.add_tasks([Task(name="t", func=noop)])
    view = views(orch, interval=3600)
    view._ipython_display_()
    orch.start_execution()
    assert orch.wait_for_completion(30)
    drawing, release = threading.Event(), threading.Event()
    real = view._copy_bundles

    def slow(*args):
        drawing.set()
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(view, "_copy_bundles", slow)
    redraw = threading.Thread(target=view._update_copies)  # as the view thread after a frame
    redraw.start()
    assert drawing.wait(10)
    settle = threading.Thread(target=lambda: (live_copies._settle_copies(),
                                              shown.append(("settled", {}, None))))
    settle.start()
    settle.join(0.5)
    release.set()
    settle.join(10)
    redraw.join(10)
    kinds = [c[0] for c in shown]
    assert "update" in kinds and kinds.index("settled") > max(
        i for i, kind in enumerate(kinds) if kind == "update"), kinds


# -- the side panel ------------------------------------------------------------------------
def test_side_without_a_front_end_falls_back_inline_with_a_note(orch, capsys):
    view = live_view(orch, side=True)
    try:
        out = capsys.readouterr().out  # the note, then (where IPython runs) the inline copy
        assert out.splitlines()[0] == ("codomyrmex: no side panel (no widget front end here); "
                                       "the live view shows inline.")
        assert not view.side and not view.panel
    finally:
        view.close()


def test_side_is_claimed_only_once_the_front_end_confirms_it(orch, shown, monkeypatch):
    monkeypatch.setattr(view_context, "running_cell", lambda: 7)  # inside cell 7 of a notebook
    monkeypatch.setenv("JPY_SESSION_NAME", "/lab/side.ipynb")  # started by a Jupyter server
    view = live_view(orch, side=True)
    try:
        # The cell gets the widget (it moves itself into the panel) and the static copy; the
        # front end is asked for the panel, but nothing claims it is there yet.
        assert view.panel and not view.side
        assert WIDGET_MIME in shown[0][1] and "codo-static" in shown[1][1]["text/html"]
        assert "side panel" not in shown[1][1]["text/html"]
        view._ipython_display_()  # the cell's value, or %codo_run displaying it: nothing more
        assert len(shown) == 3
        # A front end without a panel (Notebook 7's sidecar failed here) shows it inline:
        view._on_front_end_message(view, {"kind": "placed", "where": "inline",
                                          "why": "no notebook panel"}, [])
        assert not view.side
        view._on_front_end_message(view, {"kind": "placed", "where": "side"}, [])
        assert view.side
        # Another view of it where there is no panel (an output view) takes nothing away.
        view._on_front_end_message(view, {"kind": "placed", "where": "inline", "why": "x"}, [])
        assert view.side
        view._on_front_end_message(view, {"kind": "placed", "where": "left"}, [])
        assert not view.side
        view._on_front_end_message(view, {"kind": "placed", "where": "side"}, [])
        monkeypatch.setattr(view_context, "running_cell", lambda: 8)
        view._ipython_display_()  # a later cell (%codo_dag) gets its own widget and copy
        assert len(shown) == 6
        assert live_view(orch) is view and view.side  # plain calls keep the panel
        live_view(orch, side=False)
        assert not view.side and not view.panel
    finally:
        view.close()


@pytest.mark.needs_dot
def test_a_copy_shown_before_any_task_ends_with_the_run_not_the_first_frame(orch, views, shown):
    view = views(orch, interval=0.01)
    view._ipython_display_()  # as in the quickstart: the view first, the tasks later
    assert "0/0 done (no tasks)" in shown[1][1]["text/plain"]
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(2)])
    orch.start_execution()
    assert orch.wait_for_completion(30) and view.flush(30)
    live_copies._settle_copies()
    updates = [c for c in shown if c[0] == "update"]
    assert updates and "2/2 done" in updates[-1][1]["text/plain"]
    assert all("no tasks" not in c[1]["text/plain"] for c in updates)
