"""The live view: recolouring without layout, grouping, fallbacks, and never stalling the engine."""

from __future__ import annotations

import re
import threading

import pytest

from codomyrmex_nb import Task, live_view
from codomyrmex_nb.notebook import drawing
from codomyrmex_nb.notebook import live_view as live_view_mod
from codomyrmex_nb.notebook.live_view import LiveView
from codomyrmex_nb.palette import fill

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def noop() -> None:
    return None


def boom() -> None:
    raise ValueError("boom")


def view_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("codo-view")]


def node_fill(svg: str, node_id: str) -> str:
    body = re.search(rf'<g id="{node_id}" class="node">(.*?)</g>', svg, re.S)
    assert body is not None, f"no node {node_id}"
    return re.search(r'<path fill="([^"]*)"', body.group(1)).group(1)


def node_of(view: LiveView, name: str) -> str:
    by_id = {t.id: t.name for t in view.orchestrator.snapshot().tasks}
    return next(n for n, tid in view._painter.drawing.nodes.items() if by_id[tid] == name)


@pytest.fixture
def views():
    made: list[LiveView] = []

    def make(orch, **options) -> LiveView:
        view = LiveView(orch, **options)
        made.append(view)
        return view

    yield make
    for view in made:
        view.close()
    assert view_threads() == []


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
    assert "3/3 done" in view.summary() and ok.id in view._painter.tracker.states


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
    monkeypatch.setattr(live_view_mod, "has_widget_frontend", lambda: True)
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
