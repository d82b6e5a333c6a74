"""The DAG drawing: a pure function from a ``Snapshot`` to a ``graphviz.Digraph``.

Each node gets a stable SVG id (``<prefix>n<i>``, edges ``<prefix>e<i>``) so
that a view can later recolour the laid-out SVG without running ``dot``
again (see ``svg_patch``). A task node reads ``<glyph> <name>`` over its run
time; above ``threshold`` tasks the drawing shows groups instead (see
``grouping``). Layout (``dot``) lives in ``layout()`` alone: the one slow,
external step, called only when the graph's structure changes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import NamedTuple

import graphviz

from ..core.snapshot import Snapshot, TaskView, critical_path
from ..palette import STATES, fill, font_colour, glyph
from .grouping import Grouping, count_states, counts_line, dominant, group_tasks

DEFAULT_THRESHOLD = 200
INSTALL_HINT = ("graphviz's `dot` program is not installed, so the DAG cannot be drawn "
                "(the engine is unaffected): apt install graphviz | conda install graphviz | "
                "brew install graphviz")
EDGE_COLOUR = "#707070"
CRITICAL_COLOUR = "#1f3a93"
FIGURE_SPACE = "\u2007"  # as wide as a digit: reserves room for a run time
_MAX_NAME = 36


class DotMissing(RuntimeError):
    """The ``dot`` program is not on PATH."""


class Look(NamedTuple):
    """What a node shows; everything a recolour may change."""

    fill: str
    font: str
    glyph: str
    line2: str
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Drawing:
    graph: graphviz.Digraph
    nodes: dict[str, str]               # node id -> task id (or group key when grouped)
    edges: dict[str, tuple[str, str]]   # edge id -> (upstream key, downstream key)
    grouping: Grouping | None
    structure_version: int


def runtime_text(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``3m05s``; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 600:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def task_look(state: str, runtime: float | None = None, critical: bool = False) -> Look:
    done = state in ("completed", "failed")
    return Look(fill(state), font_colour(state), glyph(state),
                runtime_text(runtime) if done else "", critical)


def group_look(counts: dict[str, int]) -> Look:
    state = dominant(counts)
    return Look(fill(state), font_colour(state), glyph(state), counts_line(counts))


def short(name: str) -> str:
    return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 1] + "\u2026"


def runtime_of(task: TaskView) -> float | None:
    return task.execution_time if task.attempts and task.state in ("completed", "failed") else None


def build_drawing(snapshot: Snapshot, *, threshold: int = DEFAULT_THRESHOLD, prefix: str = "cv",
                  max_groups: int = 40) -> Drawing:
    """Lay out nothing: describe the graph of ``snapshot`` for ``dot``, with stable ids."""
    graph = graphviz.Digraph(name="codomyrmex", format="svg")
    graph.attr(rankdir="LR", nodesep="0.12", ranksep="0.3", bgcolor="white")
    graph.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10",
               margin="0.08,0.03", height="0.3", color="#505050")
    graph.attr("edge", color=EDGE_COLOUR, arrowsize="0.6")
    if len(snapshot.tasks) > threshold:
        return _grouped(graph, snapshot, prefix, max_groups)
    ids = {t.id: f"{prefix}n{i}" for i, t in enumerate(snapshot.tasks)}
    crit = critical_path(snapshot)
    on_path = set(crit)
    crit_edges = set(zip(crit, crit[1:], strict=False))
    for t in snapshot.tasks:
        look = task_look(t.state, runtime_of(t), t.id in on_path)
        reserve = FIGURE_SPACE * 6
        graph.node(ids[t.id], label=f"{look.glyph} {short(t.name)}\n{look.line2 or reserve}",
                   id=ids[t.id], fillcolor=look.fill, fontcolor=look.font,
                   penwidth="2.5" if look.critical else "1")
    edges: dict[str, tuple[str, str]] = {}
    for t in snapshot.tasks:
        for dep in t.dependencies:
            if dep in ids:
                eid = f"{prefix}e{len(edges)}"
                edges[eid] = (dep, t.id)
                hot = (dep, t.id) in crit_edges
                graph.edge(ids[dep], ids[t.id], id=eid,
                           **({"color": CRITICAL_COLOUR, "penwidth": "2"} if hot else {}))
    return Drawing(graph, {v: k for k, v in ids.items()}, edges, None, snapshot.structure_version)


def _grouped(graph: graphviz.Digraph, snapshot: Snapshot, prefix: str, max_groups: int) -> Drawing:
    grouping = group_tasks(snapshot, max_groups)
    state = {t.id: t.state for t in snapshot.tasks}
    ids = {key: f"{prefix}n{i}" for i, key in enumerate(grouping.members)}
    for key, members in grouping.members.items():
        counts = count_states(state[m] for m in members)
        look = group_look(counts)
        # Reserve room for the widest counts line this group can show.
        widest = " ".join(f"{STATES[s][1]}{len(members)}" for s in ("completed", "running",
                                                                      "pending", "failed"))
        line2 = look.line2.ljust(len(widest), FIGURE_SPACE)
        graph.node(ids[key], label=f"{look.glyph} {short(key)} ({len(members)})\n{line2}",
                   id=ids[key], fillcolor=look.fill, fontcolor=look.font, penwidth="1.5")
    edges = {}
    for up, down in grouping.edges:
        eid = f"{prefix}e{len(edges)}"
        edges[eid] = (up, down)
        graph.edge(ids[up], ids[down], id=eid)
    return Drawing(graph, {v: k for k, v in ids.items()}, edges, grouping,
                   snapshot.structure_version)


def to_digraph(snapshot: Snapshot, *, threshold: int = DEFAULT_THRESHOLD) -> graphviz.Digraph:
    """The drawing of ``snapshot`` as a ``graphviz.Digraph`` (display it, or ``.render()`` it)."""
    return build_drawing(snapshot, threshold=threshold).graph


def dot_available() -> bool:
    return shutil.which("dot") is not None


def layout(graph: graphviz.Digraph) -> str:
    """Run ``dot`` once: the laid-out SVG text. Raises ``DotMissing`` without ``dot``."""
    if not dot_available():
        raise DotMissing(INSTALL_HINT)
    try:
        return graph.pipe(format="svg", engine="dot", encoding="utf-8")
    except graphviz.ExecutableNotFound as exc:
        raise DotMissing(INSTALL_HINT) from exc
