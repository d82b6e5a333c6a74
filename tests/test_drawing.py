"""The drawing (pure: snapshot -> Digraph), grouping, and recolouring a laid-out SVG."""

from __future__ import annotations

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
    assert "#pn1 path{fill:" + fill("failed") + "}" in css
    assert "#pn0" not in css and len(css) < 200


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
