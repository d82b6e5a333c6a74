"""The DAG drawing: a pure function from a ``Snapshot`` to a ``graphviz.Digraph``.

Each node gets a stable SVG id (``<prefix>n<i>``, edges ``<prefix>e<i>``) so
that a view can later recolour the laid-out SVG without running ``dot``
again (see ``svg_patch``). A task node reads ``<glyph> <name> <suffix>`` on
one line, the suffix (run time, ``↻2`` for retries) in room reserved at
layout time; above ``threshold`` tasks the drawing shows groups instead (see
``grouping``). Layout (``dot``) lives in ``layout()`` alone: the one slow,
external step, called only when the graph's structure changes.

Readable shapes:

- independent parts of the graph stack top to bottom in submission order
  (``dot`` packs components bottom-up in a left-to-right drawing, so they are
  declared in reverse);
- a wide rank of interchangeable tasks (ten or more with the same upstream and
  downstream tasks: a fan-out, or many independent tasks) is wrapped into a
  grid inside a dashed box, joined by one edge per neighbour instead of one
  per member, so source and sink stay in sight;
- a resource key claimed by two or more tasks is drawn as a small dashed
  ``lock`` node with a dashed line to each claimant; the view paints the
  line of a task waiting for the lock and of the one holding it.

The critical path is estimated (``critical_estimate``): finished tasks weigh
what they took, running ones at least what an earlier run of them took, and
it is ``provisional`` while any task is unfinished (drawn dashed).
"""

from __future__ import annotations

import itertools
import math
import shutil
from dataclasses import dataclass, field
from typing import NamedTuple

import graphviz

from ..core.snapshot import Snapshot, TaskView, run_seconds, topological_order
from ..core.trigger_rules import DEFAULT as DEFAULT_RULE
from ..core.trigger_rules import MEANING
from ..palette import EDGE, STATES, fill, font_colour, glyph
from . import map_node
from .grouping import Grouping, count_states, counts_line, dominant, group_tasks

DEFAULT_THRESHOLD = 200
INSTALL_HINT = ("graphviz's `dot` program is not installed, so the DAG cannot be drawn "
                "(the engine is unaffected): apt install graphviz | conda install graphviz | "
                "brew install graphviz")
EDGE_COLOUR = EDGE[0]
CRITICAL_COLOUR = "#1f3a93"
FIGURE_SPACE = "\u2007"  # as wide as a digit: reserves room for a run time
RESERVE = FIGURE_SPACE * 6
RETRY_MARK = "\u21bb"  # ↻
RESTORED_MARK = "\u2913"  # ⤓ its result came back from the run journal
RULE_MARK = "\u2691"  # ⚑ a trigger rule other than all_success, on a line under the name
BUNDLE_MIN = 10    # interchangeable tasks from which a rank is wrapped into a grid
BUNDLE_ROWS = 16   # at most this many rows in such a grid
MAX_LOCKS = 12     # lock nodes drawn at most (the most shared keys)
_MAX_NAME = 36


class DotMissing(RuntimeError):
    """The ``dot`` program is not on PATH."""


class Look(NamedTuple):
    """What a node shows; everything a recolour may change."""

    fill: str
    font: str
    glyph: str
    line2: str               # the suffix after the name: run time, retries
    critical: bool = False
    state: str = "pending"
    tip: str = ""            # the hover text (the node's SVG <title>)
    bar: tuple[str, ...] = ()  # a mapped task's bar: the state of each cell (``map_node``)


@dataclass(frozen=True, slots=True)
class Drawing:
    graph: graphviz.Digraph
    nodes: dict[str, str]               # node id -> task id (or group key when grouped)
    edges: dict[str, tuple[tuple[str, str], ...]]  # edge id -> the (upstream, downstream) pairs
    grouping: Grouping | None
    structure_version: int
    locks: dict[str, tuple[str, str]] = field(default_factory=dict)  # edge id -> (key, task id)
    lock_nodes: dict[str, str] = field(default_factory=dict)         # node id -> resource key
    bundles: tuple[tuple[str, ...], ...] = ()                        # task ids wrapped in grids
    titles: dict[str, str] = field(default_factory=dict)  # hover text of edges, locks, grids
    rules: dict[str, str] = field(default_factory=dict)  # task id -> trigger rule, if not default
    maps: dict[str, int] = field(default_factory=dict)  # mapped task id -> items known at layout


def runtime_text(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``3m05s``; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 600:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def suffix_text(state: str, runtime: float | None = None, retries: int = 0,
                restored: bool = False) -> str:
    """What follows a task's name: ``↻2`` after retries, its run time once it ended,
    ``⤓ restored`` when its result came back from the journal."""
    if restored and state == "completed":
        return f"{RESTORED_MARK} restored"
    done = state in ("completed", "failed")
    parts = [f"{RETRY_MARK}{retries}" if retries else "", runtime_text(runtime) if done else ""]
    return " ".join(p for p in parts if p)


def task_look(state: str, runtime: float | None = None, critical: bool = False,
              retries: int = 0, tip: str = "", restored: bool = False) -> Look:
    return Look(fill(state), font_colour(state), glyph(state),
                suffix_text(state, runtime, retries, restored), critical, state, tip)


def group_look(counts: dict[str, int], tip: str = "", critical: bool = False) -> Look:
    """A group's node; ``critical`` when one of its tasks is on the critical path."""
    state = dominant(counts)
    return Look(fill(state), font_colour(state), glyph(state), counts_line(counts), critical,
                state, tip)


def short(name: str) -> str:
    """A name as a node's label shows it: at most ``_MAX_NAME`` characters, its backslashes
    doubled (in a DOT label ``\\r``, ``\\n``, ``\\N`` are graphviz's own escapes: a task
    named ``C:\\new\\table`` drew as ``C:`` and a line break)."""
    text = name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 1] + "\u2026"
    return text.replace("\\", "\\\\")


def runtime_of(task: TaskView) -> float | None:
    return task.execution_time if task.attempts and task.state in ("completed", "failed") else None


def tip_text(name: str, state: str, *, error: str | None = None, retries: int = 0,
             waiting: str | None = None, holders: tuple[str, ...] = (),
             restored: bool = False, rule: str | None = None) -> str:
    """The hover text of a task: name, state, retries, what it waits for, its trigger rule
    (when not the default), its error."""
    lines = [name, f"{glyph(state)} {STATES.get(state, STATES['pending'])[2]}"
             + (f" \u00b7 {RETRY_MARK}{retries} retr{'y' if retries == 1 else 'ies'}"
                if retries else "")]
    if waiting:
        held = f" (held by {', '.join(holders)})" if holders else ""
        lines.append(f"waiting for {waiting}{held}")
    if restored and state == "completed":
        lines.append(f"{RESTORED_MARK} restored from the run journal (not run again)")
    if rule:
        lines.append(f"{RULE_MARK} trigger rule {rule}: runs when {MEANING.get(rule, rule)}")
    if error:
        lines.append(error if len(error) <= 300 else error[:299] + "\u2026")
    return "\n".join(lines)


# -- the critical path -------------------------------------------------------------------------
def last_duration(task: TaskView) -> float | None:
    """How long the task's last successful attempt took (an earlier run's, for an estimate)."""
    for attempt in reversed(task.attempts):
        if attempt.outcome == "completed" and attempt.ended_at and attempt.started_at:
            return max(0.0, attempt.ended_at - attempt.started_at)
    return None


def critical_estimate(snapshot: Snapshot) -> tuple[list[str], bool]:
    """The longest chain by estimated run time, and whether it is still provisional.

    Finished tasks weigh what they took; a running one at least what an
    earlier run of it took (else what it has run so far); one not started its
    earlier run's time (else a millisecond, so the longest chain by count shows
    before a run); tasks that ended without running weigh nothing. While any
    task is unfinished the answer is provisional: a task still running may
    outgrow the chain drawn now.
    """
    tasks = snapshot.by_id()
    now = snapshot.time
    best: dict[str, tuple[float, str | None]] = {}
    provisional = False
    for tid in topological_order(tasks):
        view = tasks[tid]
        if view.status.is_terminal and not view.waiting_retry:
            own = run_seconds(view, now)
        else:
            provisional = True
            before = last_duration(view)
            so_far = run_seconds(view, now)
            own = max(so_far, before) if before is not None else (so_far or 1e-3)
        prev = max(((best[d][0], d) for d in view.dependencies if d in best), default=(0.0, None))
        best[tid] = (prev[0] + own, prev[1])
    if not best or max(seconds for seconds, _ in best.values()) <= 0:
        return [], provisional
    node: str | None = max(best, key=lambda k: best[k][0])
    path = []
    while node is not None:
        path.append(node)
        node = best[node][1]
    return path[::-1], provisional


# -- building the graph ------------------------------------------------------------------------
def _new_graph() -> graphviz.Digraph:
    graph = graphviz.Digraph(name="codomyrmex", format="svg")
    graph.attr(rankdir="LR", nodesep="0.12", ranksep="0.3", bgcolor="transparent",
               compound="true")
    graph.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10",
               margin="0.08,0.03", height="0.3", color="#505050")
    graph.attr("edge", color=EDGE_COLOUR, arrowsize="0.6")
    return graph


def build_drawing(snapshot: Snapshot, *, threshold: int = DEFAULT_THRESHOLD, prefix: str = "cv",
                  max_groups: int = 40) -> Drawing:
    """Lay out nothing: describe the graph of ``snapshot`` for ``dot``, with stable ids."""
    graph = _new_graph()
    if len(snapshot.tasks) > threshold:
        return _grouped(graph, snapshot, prefix, max_groups)
    tasks = snapshot.tasks
    by_id = {t.id: t for t in tasks}
    ids = {t.id: f"{prefix}n{i}" for i, t in enumerate(tasks)}
    on_path = set(critical_estimate(snapshot)[0])
    names = {t.id: t.name for t in tasks}
    titles: dict[str, str] = {}
    downs: dict[str, list[str]] = {}
    for t in tasks:
        for dep in t.dependencies:
            if dep in by_id:
                downs.setdefault(dep, []).append(t.id)
    bundles = _bundles(tasks, by_id, downs)
    bundle_of = {m: b for b in bundles for m in b}
    cluster = {b: f"cluster_{prefix}b{i}" for i, b in enumerate(bundles)}

    def declare(g: graphviz.Digraph, t: TaskView) -> None:
        look = task_look(t.state, runtime_of(t), t.id in on_path, t.retry_count,
                         restored=t.restored is not None)
        label = f"{look.glyph} {short(t.name)} {RESERVE}"
        if t.map_tally is not None:  # one node per map: counts in the suffix, a bar below
            label = (f"{look.glyph} {short(t.name)} "
                     f"{FIGURE_SPACE * map_node.reserve(map_node.total(t.map_tally))}"
                     f"\n{map_node.BAR_TEXT}")
        if t.trigger_rule != DEFAULT_RULE:  # marked: this one may run after a failure
            label += f"\n{RULE_MARK} {t.trigger_rule}"
        g.node(ids[t.id], label=label, id=ids[t.id], fillcolor=look.fill, fontcolor=look.font)

    # Components bottom-up in dot's packing: declare them in reverse submission order (a lock
    # node joins its claimants into one component, laid out top-down in declaration order).
    shared = _shared_keys(tasks)
    for component in reversed(_components(tasks, by_id, shared)):
        for tid in component:
            bundle = bundle_of.get(tid)
            if bundle is None:
                declare(graph, by_id[tid])
            elif bundle[0] == tid:
                _declare_bundle(graph, bundle, cluster[bundle], ids, by_id, declare)
    _keep_rank_order(graph, tasks, by_id, bundle_of, ids)
    edges: dict[str, tuple[tuple[str, str], ...]] = {}

    def add_edge(up_node: str, down_node: str, pairs: tuple[tuple[str, str], ...],
                 **extra: str) -> None:
        eid = f"{prefix}e{len(edges)}"
        edges[eid] = pairs
        titles[eid] = f"{names[pairs[0][0]]} \u2192 {names[pairs[0][1]]}" if len(pairs) == 1 else (
            f"{len(pairs)} dependencies")
        graph.edge(up_node, down_node, id=eid, **extra)

    done_bundles: set[tuple[str, ...]] = set()
    for t in tasks:
        bundle = bundle_of.get(t.id)
        if bundle is not None:
            if bundle in done_bundles:
                continue
            done_bundles.add(bundle)
            head, tail = _grid_ends(bundle)
            for dep in by_id[bundle[0]].dependencies:
                if dep in by_id:
                    add_edge(ids[dep], ids[head], tuple((dep, m) for m in bundle),
                             lhead=cluster[bundle])
            continue
        for dep in t.dependencies:
            if dep not in by_id:
                continue
            up_bundle = bundle_of.get(dep)
            if up_bundle is None:
                add_edge(ids[dep], ids[t.id], ((dep, t.id),))
            elif up_bundle[0] == dep:  # one edge from the whole grid
                add_edge(ids[_grid_ends(up_bundle)[1]], ids[t.id],
                         tuple((m, t.id) for m in up_bundle), ltail=cluster[up_bundle])
    for bundle in bundles:
        titles[cluster[bundle]] = (f"{len(bundle)} tasks with the same upstream and downstream "
                                   f"tasks: {names[bundle[0]]} \u2026 {names[bundle[-1]]}")
    locks, lock_nodes = _locks(graph, tasks, ids, prefix, titles)
    rules = {t.id: t.trigger_rule for t in tasks if t.trigger_rule != DEFAULT_RULE}
    maps = {t.id: map_node.total(t.map_tally) for t in tasks if t.map_tally is not None}
    return Drawing(graph, {v: k for k, v in ids.items()}, edges, None, snapshot.structure_version,
                   locks, lock_nodes, tuple(bundles), titles, rules, maps)


def _ranks(tasks: tuple[TaskView, ...], by_id: dict[str, TaskView],
           bundle_of: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Each task's layer: one past its furthest upstream (a grid spans as many layers as it
    has columns)."""
    rank: dict[str, int] = {}
    for tid in topological_order(by_id):
        rank[tid] = max((rank[d] + _span(bundle_of.get(d)) for d in by_id[tid].dependencies
                         if d in rank), default=0)
    return rank


def _span(bundle: tuple[str, ...] | None) -> int:
    return 1 if bundle is None else _grid_shape(len(bundle))[1]


def _keep_rank_order(graph: graphviz.Digraph, tasks: tuple[TaskView, ...],
                     by_id: dict[str, TaskView], bundle_of: dict[str, tuple[str, ...]],
                     ids: dict[str, str]) -> None:
    """Pin each layer's tasks top to bottom in definition order.

    ``dot`` orders a rank by its crossing minimisation, which shuffles look-alike tasks
    (``load_4`` ... ``load_15``, ``load_0``, ...). A ``rank=same`` group per layer chained
    by invisible edges (no SVG element) fixes the order; grids keep their own.
    """
    rank = _ranks(tasks, by_id, bundle_of)
    layers: dict[int, list[str]] = {}
    for t in tasks:
        if t.id not in bundle_of:
            layers.setdefault(rank[t.id], []).append(ids[t.id])
    for members in layers.values():
        if len(members) < 2:
            continue
        with graph.subgraph() as layer:
            layer.attr(rank="same")
            for up, down in itertools.pairwise(members):
                layer.edge(up, down, style="invis")


def _components(tasks: tuple[TaskView, ...], by_id: dict[str, TaskView],
                shared: dict[str, list[tuple[str, str]]] | None = None) -> list[list[str]]:
    """Connected parts of the graph (ignoring direction; tasks that share a drawn lock are
    connected through it), each in submission order."""
    parent = {t.id: t.id for t in tasks}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for t in tasks:
        for dep in t.dependencies:
            if dep in by_id:
                a, b = find(t.id), find(dep)
                if a != b:
                    parent[a] = b
    for claimants in (shared or {}).values():
        first = find(claimants[0][0])
        for tid, _ in claimants[1:]:
            other = find(tid)
            if other != first:
                parent[other] = first
    parts: dict[str, list[str]] = {}
    for t in tasks:
        parts.setdefault(find(t.id), []).append(t.id)
    return list(parts.values())


def _bundles(tasks: tuple[TaskView, ...], by_id: dict[str, TaskView],
             downs: dict[str, list[str]]) -> list[tuple[str, ...]]:
    """Runs of interchangeable tasks (same upstream and downstream) wide enough to wrap."""
    classes: dict[tuple[frozenset[str], frozenset[str]], list[str]] = {}
    for t in tasks:
        key = (frozenset(d for d in t.dependencies if d in by_id), frozenset(downs.get(t.id, ())))
        classes.setdefault(key, []).append(t.id)
    return [tuple(members) for members in classes.values() if len(members) >= BUNDLE_MIN]


def _grid_shape(n: int) -> tuple[int, int]:
    # A node is about four times as wide (with its run time) as it is tall: four rows per
    # column make a roughly square grid (60 tasks: 4 columns of 15).
    rows = max(4, min(BUNDLE_ROWS, math.ceil(math.sqrt(4 * n))))
    rows = math.ceil(n / math.ceil(n / rows))  # even columns
    return rows, math.ceil(n / rows)


def _grid_ends(bundle: tuple[str, ...]) -> tuple[str, str]:
    """The members an edge into / out of the grid attaches to: mid first and mid last column."""
    rows, cols = _grid_shape(len(bundle))
    head = bundle[min(len(bundle) - 1, rows // 2)]
    last_col = bundle[(cols - 1) * rows:]
    return head, last_col[len(last_col) // 2]


def _declare_bundle(graph: graphviz.Digraph, bundle: tuple[str, ...], name: str,
                    ids: dict[str, str], by_id: dict[str, TaskView], declare) -> None:  # noqa: ANN001
    rows, _ = _grid_shape(len(bundle))
    with graph.subgraph(name=name) as sub:
        sub.attr(label=f"{len(bundle)} tasks", style="rounded,dashed", color=EDGE_COLOUR,
                 fontname="Helvetica", fontsize="9", labeljust="l", margin="6")
        for tid in bundle:
            declare(sub, by_id[tid])
        for i in range(len(bundle) - rows):  # column after column: invisible, no SVG element
            sub.edge(ids[bundle[i]], ids[bundle[i + rows]], style="invis")


def _shared_keys(tasks: tuple[TaskView, ...]) -> dict[str, list[tuple[str, str]]]:
    """Resource keys claimed by two or more tasks (the most shared, at most ``MAX_LOCKS``),
    in order of first claim: key -> [(task id, mode)]."""
    claims: dict[str, list[tuple[str, str]]] = {}
    for t in tasks:
        for key, mode in t.resources:
            claims.setdefault(key, []).append((t.id, mode))
    shared = set(sorted((k for k, who in claims.items() if len(who) >= 2),
                        key=lambda k: -len(claims[k]))[:MAX_LOCKS])
    return {k: who for k, who in claims.items() if k in shared}


def _locks(graph: graphviz.Digraph, tasks: tuple[TaskView, ...], ids: dict[str, str],
           prefix: str, titles: dict[str, str]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """A dashed ``lock`` node per resource key shared by two or more tasks, joined to each."""
    claims = _shared_keys(tasks)
    locks: dict[str, tuple[str, str]] = {}
    lock_nodes: dict[str, str] = {}
    names = {t.id: t.name for t in tasks}
    for i, key in enumerate(claims):
        nid = f"{prefix}k{i}"
        lock_nodes[nid] = key
        who = ", ".join(f"{names[tid]} ({mode})" for tid, mode in claims[key])
        titles[nid] = f"resource lock {key}, claimed by {who}"
        graph.node(nid, label=f"lock {short(key)}", id=nid, shape="box", style="rounded,dashed",
                   fontsize="9", height="0.25", color=EDGE_COLOUR, fontcolor="#222222",
                   **{"class": "lock"})
        for tid, mode in claims[key]:
            eid = f"{prefix}l{len(locks)}"
            locks[eid] = (key, tid)
            titles[eid] = f"{names[tid]} claims {key} ({mode})"
            graph.edge(nid, ids[tid], id=eid, style="dashed", dir="none", weight="0",
                       color=EDGE_COLOUR)
    return locks, lock_nodes


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
        edges[eid] = ((up, down),)
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
