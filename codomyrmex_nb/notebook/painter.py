"""What the live view shows, frame after frame: no threads, no widgets.

The ``Painter`` keeps the current drawing, its laid-out ``Template``, the
``Tracker`` mirror of states, and what the browser already has (the looks
baked into the last whole SVG). ``paint`` turns a batch of events into a
``Frame``: a whole picture only after a layout, a refresh or in grouped
mode; otherwise a patch: a ``<style>`` block for the nodes (and lock edges)
changed since then, plus their new suffixes and hover texts by id.

It also renders what outlives the widget: ``standalone()`` (an SVG file with
its theme CSS inside) and ``static_html()`` (summary line and drawing as
plain HTML, for a notebook's saved output, nbconvert and GitHub).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from ..core.events import Event
from ..core.snapshot import Snapshot
from . import drawing as drawing_mod
from . import map_node
from .drawing import INSTALL_HINT, DotMissing, Drawing, Look, group_look, task_look, tip_text
from .grouping import Grouping, counts_line
from .svg_patch import Template, base_style, lock_frame, style_frame, theme_css
from .tracker import ERRORED, Tracker, is_structural

ENDED = (*ERRORED, "completed")

XML_PROLOG = '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'


class Frame(NamedTuple):
    total: int
    done: int
    bar_style: str
    head: str
    picture: str | None  # None: keep the picture the browser has
    style: str | None    # None: keep the style block
    patch: dict[str, Any] | None = None  # css + suffix texts + hover texts; None: keep


class Painter:
    def __init__(self, scope: str, threshold: int, max_groups: int, full_interval: float) -> None:
        self.scope, self.threshold = scope, threshold
        self.max_groups, self.full_interval = max_groups, full_interval
        self.tracker = Tracker()
        self.drawing: Drawing | None = None
        self.template: Template | None = None
        self.note = ""
        self.layouts = 0
        self.frames = 0
        self.hot: set[str] = set()
        self._key_to_node: dict[str, str] = {}
        self._baked: dict[str, Look] = {}
        self._baked_locks: dict[str, str] = {}
        self._version = -1
        self._settled = False
        self._last_full = 0.0

    @property
    def grouping(self) -> Grouping | None:
        return None if self.drawing is None else self.drawing.grouping

    def node_of(self, task_id: str) -> str | None:
        """The node id that draws ``task_id`` (its group's when grouped)."""
        tracker = self.tracker
        key = task_id if tracker.group_of is None else tracker.group_of.get(task_id, task_id)
        return self._key_to_node.get(key)

    def needs_snapshot(self, events: list[Event], final: bool) -> bool:
        """A snapshot holds the engine lock (~30 ms at 5,000 tasks): only for a new structure,
        or at the end of an ungrouped run (run times, critical path)."""
        return any(is_structural(e) for e in events) or (final and self.grouping is None)

    def paint(self, events: list[Event], snapshot: Snapshot | None,
              take_snapshot: Callable[[], Snapshot]) -> Frame:
        tracker = self.tracker
        if snapshot is not None and snapshot.structure_version != self._version:
            self.relayout(snapshot)
        elif snapshot is not None:
            tracker.reset(snapshot, self.grouping)
        else:
            tracker.apply(events)
        grouped = self.grouping is not None
        if tracker.unfinished:
            self._settled = False
        # Grouped, one snapshot when the run settles (its final critical path), none between.
        refresh = tracker.stale_maps or tracker.stale_run or (not self._settled and tracker.unfinished == 0) or (
            not grouped and (
            tracker.finished_since_snapshot
            and time.monotonic() - self._last_full >= self.full_interval))
        if snapshot is None and refresh:
            snapshot = take_snapshot()
            tracker.reset(snapshot, self.grouping)
        if tracker.unfinished == 0:
            self._settled = True
        looks = self.looks()
        picture = style = patch = None
        if self.template is None:
            picture = f'<div style="color:#c00;font-family:sans-serif">{self.note}</div>'
        elif snapshot is not None or grouped or self.frames == 0:
            picture, style, patch = self.full_picture(looks), "", {}
        else:
            patch = self.patch(looks)
            style = patch["css"]
        tracker.changed.clear()
        self.frames += 1
        bar_style = "danger" if tracker.counts["failed"] else (
            "success" if tracker.total and not tracker.unfinished else "info")
        return Frame(tracker.total, tracker.done, bar_style, self.header(), picture, style, patch)

    @property
    def settled(self) -> bool:
        """Every task has ended (or there are none) as of the last frame."""
        return self._settled

    def header(self) -> str:
        return self.tracker.header_html(" · ".join(filter(None, (self.group_note(),
                                                                 self.critical_note()))))

    def ticks(self, engine_running: bool = True) -> dict[str, Any]:
        """What the browser keeps counting while tasks run, with no kernel traffic: the
        run's start (the header's elapsed time; None once it has ended, or while the engine
        is stopped with tasks left) and each running node's attempt start (its suffix and
        hover text), all ``time.time()``, with the kernel's clock now (``frontend`` corrects
        the browser's clock by it)."""
        tracker = self.tracker
        run = tracker.started if engine_running and tracker.unfinished \
            and tracker.ended is None else None
        nodes = {}
        if self.grouping is None:
            maps = self.drawing.maps if self.drawing is not None else {}
            for tid, since in tracker.running_since.items():
                node = None if tid in maps else self._key_to_node.get(tid)  # counts, no clock
                if node is not None:
                    nodes[node] = since
        return {"now": time.time(), "run": run, "nodes": nodes}

    def relayout(self, snapshot: Snapshot) -> None:
        """The one place ``dot`` runs: a new structure (tasks added, re-queued, removed)."""
        drawing = drawing_mod.build_drawing(snapshot, threshold=self.threshold, prefix=self.scope,
                                            max_groups=self.max_groups)
        self.drawing, self._version = drawing, snapshot.structure_version
        self._key_to_node = {k: n for n, k in drawing.nodes.items()}
        self.tracker.reset(snapshot, drawing.grouping)
        try:
            self.template = Template.parse(drawing_mod.layout(drawing.graph), drawing.titles)
            self.note = ""
        except DotMissing:
            self.template, self.note = None, INSTALL_HINT
        except Exception as exc:  # dot crashed or timed out: say so, keep the header alive
            self.template, self.note = None, f"graphviz could not lay out the DAG: {exc}"
        self.layouts += 1

    def looks(self) -> dict[str, Look]:
        """node id -> Look for every node, from the mirror."""
        tracker, drawing = self.tracker, self.drawing
        if drawing is None:
            return {}
        if drawing.grouping is not None:
            return self._group_looks()
        states, runtimes, crit = tracker.states, tracker.runtimes, tracker.critical
        retries, waiting, errors, names = (tracker.retries, tracker.waiting, tracker.errors,
                                           tracker.names)
        pairs = tracker.critical_pairs
        rules, maps = drawing.rules, drawing.maps
        self.hot = {e for e, ps in drawing.edges.items() if any(p in pairs for p in ps)}
        looks = {}
        for n, k in drawing.nodes.items():
            state = states.get(k, "pending")
            tries = retries.get(k, 0)
            wait = waiting.get(k)
            restored = k in tracker.restored
            tip = tip_text(names.get(k, k), state, error=errors.get(k), retries=tries,
                           waiting=wait, holders=tracker.holders(wait) if wait else (),
                           restored=restored, rule=rules.get(k))
            look = task_look(state, runtimes.get(k), k in crit, tries, tip, restored)
            if k in maps:
                look = self._map_look(k, look)
            looks[n] = look
        return looks

    def _map_look(self, task_id: str, look: Look) -> Look:
        """A mapped task's node: its items' counts as the suffix, their bar, and both in the
        hover text (``map_node``)."""
        tally = self.tracker.tallies.get(task_id)
        known = tally if tally or look.state in ENDED else None
        return look._replace(line2=map_node.suffix(known), bar=map_node.cells(known),
                             tip=f"{look.tip}\n{map_node.tip(known)}")

    def _group_looks(self) -> dict[str, Look]:
        """Grouped: a group holding a task of the critical path is outlined in blue, and so is
        an edge between two groups the path goes through; the hover names those tasks."""
        tracker, drawing = self.tracker, self.drawing
        assert drawing is not None and drawing.grouping is not None
        of, counts = drawing.grouping.of, tracker.group_counts
        on_path: dict[str, list[str]] = {}
        for tid in tracker.critical:
            if tid in of:
                on_path.setdefault(of[tid], []).append(tid)
        pairs = {(of[a], of[b]) for a, b in tracker.critical_pairs
                 if a in of and b in of and of[a] != of[b]}
        self.hot = {e for e, ps in drawing.edges.items() if any(p in pairs for p in ps)}
        return {n: group_look(counts.get(k, {}), self._group_tip(k, counts.get(k, {}),
                                                                 on_path.get(k, ())),
                              critical=k in on_path)
                for n, k in drawing.nodes.items()}

    def _group_tip(self, key: str, counts: Any, critical: Any = ()) -> str:
        grouping = self.grouping
        size = len(grouping.members.get(key, ())) if grouping else 0
        tip = f"group {key}: {size} tasks\n{counts_line(counts)}"
        if critical and grouping is not None:
            order = {tid: i for i, tid in enumerate(grouping.members.get(key, ()))}
            names = [self.tracker.names.get(t, t) for t in sorted(critical, key=order.get)]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            tip += f"\non the critical path: {shown}"
        return tip

    def lock_states(self) -> dict[str, str]:
        drawing, tracker = self.drawing, self.tracker
        if drawing is None or not drawing.locks:
            return {}
        return {eid: tracker.lock_state(key, tid) for eid, (key, tid) in drawing.locks.items()}

    def full_picture(self, looks: dict[str, Look]) -> str:
        """The whole SVG for the browser; its looks become the baseline for patches."""
        assert self.template is not None
        self._last_full = time.monotonic()
        locks = self.lock_states()
        self._baked, self._baked_locks = looks, locks
        svg = self.template.render(looks, self.hot, css=self.grouping is None,
                                   provisional=self.tracker.provisional, lock_states=locks)
        bars = map_node.bar_css({n: look.bar for n, look in looks.items() if look.bar})
        return (f"<style>{base_style(self.scope)}\n{bars}</style>"
                f'<div class="{self.scope}">{svg}</div>')

    def patch(self, looks: dict[str, Look]) -> dict[str, Any]:
        """What changed since the last whole SVG: CSS (colours, glyphs, lock edges) and texts."""
        baked = self._baked
        repaint: dict[str, Look] = {}
        tips: dict[str, str] = {}
        texts: dict[str, str] = {}
        for node, look in looks.items():
            old = baked.get(node)
            if old is None or old.state != look.state or old.glyph != look.glyph:
                repaint[node] = look
            if old is None or old.tip != look.tip:
                tips[node] = look.tip
            if old is None or old.line2 != look.line2:
                texts[node] = look.line2
        locks = {eid: state for eid, state in self.lock_states().items()
                 if self._baked_locks.get(eid, "") != state}
        bars = {node: look.bar for node, look in looks.items()
                if look.bar and (node not in baked or baked[node].bar != look.bar)}
        css = "\n".join(filter(None, (style_frame(repaint), lock_frame(locks),
                                       map_node.bar_css(bars))))
        return {"css": css, "tips": tips, "texts": texts}

    def style_rules(self, looks: dict[str, Look]) -> str:
        """CSS for every node whose look differs from the last whole SVG sent."""
        return self.patch(looks)["css"]

    def standalone(self) -> str:
        """The current drawing as a standalone SVG (theme CSS inside); '' without a layout."""
        if self.template is None:
            return ""
        svg = self._render_static()
        head, rest = svg.split(">", 1)
        style = f"<style>{theme_css(self.scope, standalone=True)}</style>"
        return f'{XML_PROLOG}{head} class="{self.scope}">{style}{rest}'

    def static_html(self) -> str:
        """Summary line and drawing as plain HTML (no widget, no script): what a saved notebook,
        nbconvert and GitHub show. The drawing is never in a scroll box of its own (its
        bottom rows, often the critical path, would hide there): only wide ones scroll
        sideways."""
        body = (self._render_static() if self.template is not None else
                f'<div style="color:#c00">{self.note}</div>')
        return (f"<style>{theme_css(self.scope)}</style>"
                f'<div class="{self.scope}">{self.header()}'
                f'<div style="overflow-x:auto;overflow-y:hidden">{body}</div></div>')

    def _render_static(self) -> str:
        assert self.template is not None
        return self.template.render(self.looks(), self.hot, provisional=self.tracker.provisional,
                                    lock_states=self.lock_states())

    def critical_note(self) -> str:
        """Says "blue" only when the drawing shows something in blue: a node outlined (task or
        group on the critical path) or an edge of the path."""
        tracker, drawing = self.tracker, self.drawing
        if self.template is None or drawing is None or not tracker.critical:
            return ""
        keys = set(drawing.nodes.values())
        if not any((tracker.group_of or {}).get(t, t) in keys for t in tracker.critical):
            return ""
        what = "groups on the critical path" if self.grouping is not None else "critical path"
        if self.tracker.provisional:
            return f"{what} (blue): provisional, dashed until the run ends"
        return f"{what} in blue"

    def group_note(self) -> str:
        grouping = self.grouping
        if grouping is None:
            return ""
        groups = len(grouping.members)
        return (f"{groups} group{'s' * (groups != 1)} of {len(grouping.of)} tasks "
                "(by tag, module or name)")
