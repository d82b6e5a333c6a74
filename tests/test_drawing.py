"""The drawing (pure: snapshot -> Digraph), grouping, and recolouring a laid-out SVG."""

from __future__ import annotations

import html
import re

import graphviz
import pytest

from codomyrmex_nb import Task, TaskOrchestrator
from codomyrmex_nb.notebook import drawing
from codomyrmex_nb.notebook.drawing import (
    INSTALL_HINT,
    DotMissing,
    build_drawing,
    runtime_text,
    task_look,
    to_digraph,
)
from codomyrmex_nb.notebook.grouping import OTHER, counts_line, dominant, group_tasks, name_prefix
from codomyrmex_nb.notebook.svg_patch import GLYPHS, Template, style_frame
from codomyrmex_nb.palette import fill, glyph


def noop() -> None:
    return None


def chain(n: int, **kwargs) -> list[Task]:
    return [Task(name=f"step_{i}", func=noop, dependencies=[f"step_{i - 1}"] if i else [], **kwargs)
            for i in range(n)]


def snapshot_of(tasks: list[Task]):
    orch = TaskOrchestrator(max_workers=1)
    orch.add_tasks(tasks)
    return orch.snapshot()


def node_fill(svg: str, node_id: str) -> str:
    body = re.search(rf'<g id="{node_id}" class="node">(.*?)</g>', svg, re.S)
    assert body is not None, f"no node {node_id} in the SVG"
    return re.search(r'<path fill="([^"]*)"', body.group(1)).group(1)


def node_count(svg: str) -> int:
    return len(re.findall(r'class="node"', svg))


def test_one_node_per_task_with_stable_ids_and_edges():
    snap = snapshot_of(chain(5))
    d = build_drawing(snap, prefix="p")
    assert list(d.nodes) == [f"pn{i}" for i in range(5)]
    assert list(d.nodes.values()) == [t.id for t in snap.tasks]
    assert len(d.edges) == 4
    source = d.graph.source
    assert source.count("->") == 4
    for t in snap.tasks:  # each node shows its state's glyph, not only its colour
        assert f'label="{glyph(t.state)} {t.name}' in source
    assert isinstance(to_digraph(snap), graphviz.Digraph)


def test_grouping_by_tag_then_module_action_then_name_prefix():
    tasks = ([Task(name=f"a{i}", func=noop, tags=["etl"]) for i in range(3)]
             + [Task(name=f"m{i}", module="static_analysis", action="analyze_code_quality")
                for i in range(2)]
             + [Task(name=f"fetch_{i}", func=noop) for i in range(4)])
    grouping = group_tasks(snapshot_of(tasks))
    sizes = {k: len(v) for k, v in grouping.members.items()}
    assert sizes == {"#etl": 3, "static_analysis.analyze_code_quality": 2, "fetch": 4}
    assert name_prefix("load-users-17") == "load" and name_prefix("t17") == "t"


def test_big_graph_draws_groups_with_counts_and_caps_their_number():
    tasks = [Task(name=f"g{i % 7}x_{i}", func=noop, tags=[f"tag{i % 7}"]) for i in range(70)]
    d = build_drawing(snapshot_of(tasks), threshold=50, max_groups=5)
    assert d.grouping is not None
    assert len(d.nodes) == 5 and OTHER in d.nodes.values()
    assert "(10)" in d.graph.source  # group size in the label
    assert counts_line({"completed": 3, "failed": 1}) == f"{glyph('completed')}3 {glyph('failed')}1"
    assert dominant({"completed": 5, "failed": 1}) == "failed"


def test_runtime_text():
    assert runtime_text(None) == "" and runtime_text(0.123) == "0.12s"
    assert runtime_text(42.0) == "42.0s" and runtime_text(725) == "12m05s"


@pytest.mark.needs_dot
def test_template_recolours_a_node_without_running_dot_again():
    snap = snapshot_of(chain(3))
    d = build_drawing(snap, prefix="p")
    template = Template.parse(drawing.layout(d.graph))
    assert template.node_ids == list(d.nodes)
    looks = {n: task_look("pending") for n in d.nodes}
    svg = template.render(looks)
    assert node_count(svg) == 3 and node_fill(svg, "pn1") == fill("pending")
    looks["pn1"] = task_look("running")
    svg = template.render(looks)
    assert node_fill(svg, "pn1") == fill("running") and node_fill(svg, "pn0") == fill("pending")
    assert glyph("running") in svg
    looks["pn1"] = task_look("completed", runtime=1.5)
    svg = template.render(looks)
    assert node_fill(svg, "pn1") == fill("completed") and "1.50s" in svg
    css = template.render(looks, css=True)
    assert all(g in css for g in GLYPHS)  # every glyph present, CSS picks one


def test_style_frame_names_only_changed_nodes():
    assert style_frame({}) == ""
    css = style_frame({"pn1": task_look("failed")})
    assert "#pn1 path{fill:var(--codo-failed," + fill("failed") + ")}" in css  # theme variable
    assert "#pn0" not in css and len(css) < 250


def test_layout_without_dot_raises_a_hint(monkeypatch):
    monkeypatch.setattr(drawing.shutil, "which", lambda name: None)
    with pytest.raises(DotMissing, match="apt install graphviz"):
        drawing.layout(to_digraph(snapshot_of(chain(2))))
    assert "brew install graphviz" in INSTALL_HINT


def test_layout_turns_executable_not_found_into_the_hint(monkeypatch):
    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(drawing, "dot_available", lambda: True)
    monkeypatch.setattr(graphviz.Digraph, "pipe", missing)
    with pytest.raises(DotMissing):
        drawing.layout(to_digraph(snapshot_of(chain(2))))


# -- layout and palette ----------------------------------------------------------------------
def laid_out(tasks: list[Task], **kwargs):
    snap = snapshot_of(tasks)
    d = build_drawing(snap, prefix="p", **kwargs)
    return snap, d, drawing.layout(d.graph)


def node_y(svg: str, node_id: str) -> float:
    body = re.search(rf'<g id="{node_id}" class="node">(.*?)</g>', svg, re.S).group(1)
    return float(re.search(r'<text[^>]* y="([-\d.]+)"', body).group(1))


def svg_size(svg: str) -> tuple[float, float]:
    m = re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    return float(m.group(1)), float(m.group(2))


def test_task_labels_are_one_line_with_room_for_the_run_time():
    source = build_drawing(snapshot_of(chain(3)), prefix="p").graph.source
    labels = re.findall(r'label="([^"]*)"', source)
    assert labels and all("\\n" not in label and "\n" not in label for label in labels)
    assert all(label.endswith(drawing.RESERVE) for label in labels)


@pytest.mark.needs_dot
def test_independent_tasks_stack_in_submission_order():
    snap, d, svg = laid_out([Task(name=f"solo_{i}", func=noop) for i in range(6)]
                            + chain(2))
    ys = [node_y(svg, n) for n in list(d.nodes)[:6]]
    assert ys == sorted(ys), ys  # top to bottom (y grows downwards in the SVG)
    assert node_y(svg, "pn6") > ys[-1]  # the chain submitted after them sits below them


@pytest.mark.needs_dot
def test_a_wide_fan_out_wraps_into_a_grid_with_source_and_sink_in_sight():
    tasks = ([Task(name="source", func=noop)]
             + [Task(name=f"fetch_{i}", func=noop, dependencies=["source"]) for i in range(60)]
             + [Task(name="sink", func=noop, dependencies=[f"fetch_{i}" for i in range(60)])])
    snap, d, svg = laid_out(tasks)
    assert len(d.bundles) == 1 and len(d.bundles[0]) == 60
    assert len(d.edges) == 2  # source -> grid, grid -> sink (not 120 edges)
    assert sum(len(pairs) for pairs in d.edges.values()) == 120
    width, height = svg_size(svg)
    assert height < 800 and width < 1000, (width, height)  # not a 2,700 px column
    assert node_count(svg) == 62 and 'class="cluster"' in svg
    template = Template.parse(svg, d.titles)
    assert len(template.node_ids) == 62  # every member is still its own node: recolourable
    assert "<title>cluster_" not in template.render({})  # the grid's hover says what it is


@pytest.mark.needs_dot
def test_shared_resources_get_a_lock_node_and_dashed_lines():
    from codomyrmex_nb import ResourceType, TaskResource

    db = [TaskResource(type=ResourceType.CPU, identifier="db", mode="write")]
    tasks = [Task(name="a", func=noop, resources=db), Task(name="b", func=noop, resources=db),
             Task(name="c", func=noop, resources=[TaskResource(type=ResourceType.CPU,
                                                               identifier="solo")])]
    snap, d, svg = laid_out(tasks)
    assert list(d.lock_nodes.values()) == ["cpu:db"]  # "solo" is claimed once: no lock node
    assert sorted(tid for _, tid in d.locks.values()) == sorted(t.id for t in snap.tasks[:2])
    assert "lock cpu:db" in svg and "stroke-dasharray" in svg
    assert node_y(svg, "pn0") < node_y(svg, "pn1") < node_y(svg, "pn2")  # submission order
    template = Template.parse(svg, d.titles)
    lock_edge = next(iter(d.locks))
    looks = {n: task_look("pending") for n in d.nodes}
    waiting = template.render(looks, lock_states={lock_edge: "waiting"})
    body = re.search(rf'<g id="{lock_edge}" class="edge">(.*?)</g>', waiting, re.S).group(1)
    assert 'stroke="#d97706" stroke-width="2.5"' in body


@pytest.mark.needs_dot
def test_hover_texts_name_the_task_not_graphviz_ids():
    tasks = chain(3)
    snap, d, svg = laid_out(tasks)
    template = Template.parse(svg, d.titles)
    looks = {n: task_look("failed", tip=drawing.tip_text(f"step_{i}", "failed", error="disk full"))
             for i, n in enumerate(d.nodes)}
    out = template.render(looks)
    titles = re.findall(r"<title>([^<]*)</title>", out)
    assert not any(re.fullmatch(r"p[nek]\d+|codomyrmex|.*&#45;&gt;.*", t) for t in titles), titles
    assert "step_1\n\u2717 failed\ndisk full" in out
    assert "step_0 \u2192 step_1" in out  # edges say what they join


def test_tip_text_says_state_retries_waits_and_error():
    tip = drawing.tip_text("load", "ready", retries=2, waiting="cpu:db", holders=("a",))
    assert tip.splitlines() == ["load", f"{glyph('ready')} ready \u00b7 \u21bb2 retries",
                                "waiting for cpu:db (held by a)"]


def test_suffix_marks_retries_and_run_time():
    assert task_look("completed", 1.5, retries=2).line2 == "\u21bb2 1.50s"
    assert task_look("running", 1.5).line2 == ""
    assert task_look("up_for_retry", retries=1).line2 == "\u21bb1"


def test_critical_path_is_estimated_and_provisional_until_the_run_ends():
    import time as _time

    orch = TaskOrchestrator(max_workers=2)
    orch.add_tasks([Task(name="setup", func=noop),
                    Task(name="analyze", func=noop, dependencies=["setup"]),
                    Task(name="fetch", func=lambda: _time.sleep(0.3))])
    orch.start_execution()
    try:
        assert orch.wait_for_completion(30)
        path, provisional = drawing.critical_estimate(orch.snapshot())
        names = {t.id: t.name for t in orch.snapshot().tasks}
        assert [names[p] for p in path] == ["fetch"] and not provisional
        orch.rerun("fetch")  # running again: at least as long as last time, and provisional
        snap = orch.snapshot()
        path, provisional = drawing.critical_estimate(snap)
        assert provisional and [names[p] for p in path] == ["fetch"]
    finally:
        orch.stop_execution()


def test_theme_css_maps_baked_colours_to_dark_variants():
    from codomyrmex_nb.palette import DARK, theme_css

    css = theme_css("sc", standalone=True)
    assert 'body[data-jp-theme-light="false"] .sc{' in css and "prefers-color-scheme: dark" in css
    assert f"--codo-pending:{DARK['pending'][0]}" in css
    assert f'.sc g.node > [fill="{fill("pending")}"]{{fill:var(--codo-pending,' in css
    assert "bgcolor=transparent" in build_drawing(snapshot_of(chain(1))).graph.source


def test_a_restored_task_is_marked_in_its_label_and_tip():
    from codomyrmex_nb.notebook.drawing import RESTORED_MARK, suffix_text, tip_text

    assert suffix_text("completed", 1.5, restored=True) == f"{RESTORED_MARK} restored"
    assert suffix_text("completed", 1.5) == "1.50s"
    assert "restored from the run journal" in tip_text("load", "completed", restored=True)
    assert "restored" not in tip_text("load", "completed")


@pytest.mark.skipif(not drawing.dot_available(), reason=INSTALL_HINT)
def test_a_name_with_backslashes_is_drawn_whole():
    names = ["load data\\raw.csv", "C:\\new\\table", "tail\\"]
    snap = snapshot_of([Task(name=n, func=noop) for n in names])
    svg = build_drawing(snap, prefix="b").graph.pipe(format="svg").decode()
    texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    for name in names:  # graphviz read \r, \n, \t in them as its own escapes
        assert any(name in text for text in texts), (name, texts)
