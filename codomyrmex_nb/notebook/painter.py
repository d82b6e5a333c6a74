"""What the live view shows, frame after frame: no threads, no widgets.

The ``Painter`` keeps the current drawing, its laid-out ``Template``, the
``Tracker`` mirror of states, and what the browser already has (the looks
baked into the last whole SVG). ``paint`` turns a batch of events into a
``Frame``: a whole picture only after a layout, a refresh or in grouped
mode; otherwise a ``<style>`` block for the nodes changed since then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from ..core.events import Event
from ..core.snapshot import Snapshot
from . import drawing as drawing_mod
from .drawing import INSTALL_HINT, DotMissing, Drawing, Look, group_look, task_look
from .grouping import Grouping
from .svg_patch import Template, base_style, style_frame
from .tracker import Tracker, is_structural

XML_PROLOG = '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'


class Frame(NamedTuple):
    total: int
    done: int
    bar_style: str
    head: str
    picture: str | None  # None: keep the picture the browser has
    style: str | None    # None: keep the style block


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
        self._repaint: dict[str, Look] = {}
        self._version = -1
        self._settled = False
        self._last_full = 0.0

    @property
    def grouping(self) -> Grouping | None:
        return None if self.drawing is None else self.drawing.grouping

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
        refresh = not grouped and ((not self._settled and tracker.unfinished == 0) or (
            tracker.finished_since_snapshot
            and time.monotonic() - self._last_full >= self.full_interval))
        if snapshot is None and refresh:
            snapshot = take_snapshot()
            tracker.reset(snapshot, self.grouping)
        if tracker.unfinished == 0:
            self._settled = True
        looks = self.looks()
        picture = style = None
        if self.template is None:
            picture = f'<div style="color:#a00;font-family:sans-serif">{self.note}</div>'
        elif snapshot is not None or grouped or self.frames == 0:
            picture, style = self.full_picture(looks), ""
        else:
            style = self.style_rules(looks)
        tracker.changed.clear()
        self.frames += 1
        bar_style = "danger" if tracker.counts["failed"] else (
            "success" if tracker.total and not tracker.unfinished else "info")
        return Frame(tracker.total, tracker.done, bar_style, tracker.header_html(self.group_note()),
                     picture, style)

    def relayout(self, snapshot: Snapshot) -> None:
        """The one place ``dot`` runs: a new structure (tasks added, re-queued, removed)."""
        drawing = drawing_mod.build_drawing(snapshot, threshold=self.threshold, prefix=self.scope,
                                            max_groups=self.max_groups)
        self.drawing, self._version = drawing, snapshot.structure_version
        self._key_to_node = {k: n for n, k in drawing.nodes.items()}
        self.tracker.reset(snapshot, drawing.grouping)
        try:
            self.template, self.note = Template.parse(drawing_mod.layout(drawing.graph)), ""
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
            counts = tracker.group_counts
            return {n: group_look(counts.get(k, {})) for n, k in drawing.nodes.items()}
        states, runtimes, crit = tracker.states, tracker.runtimes, tracker.critical
        pairs = tracker.critical_pairs
        self.hot = {e for e, pair in drawing.edges.items() if pair in pairs}
        return {n: task_look(states.get(k, "pending"), runtimes.get(k), k in crit)
                for n, k in drawing.nodes.items()}

    def full_picture(self, looks: dict[str, Look]) -> str:
        """The whole SVG for the browser; its looks become the baseline for style frames."""
        assert self.template is not None
        self._last_full = time.monotonic()
        self._baked, self._repaint = looks, {}
        svg = self.template.render(looks, self.hot, css=self.grouping is None)
        return (f"<style>{base_style(self.scope)}</style>"
                f'<div class="{self.scope}" style="overflow:auto;max-height:75vh">{svg}</div>')

    def style_rules(self, looks: dict[str, Look]) -> str:
        """CSS for every node whose look differs from the last whole SVG sent."""
        for key in self.tracker.changed:
            node = self._key_to_node.get(key)
            if node is None:
                continue
            look, baked = looks[node], self._baked.get(node)
            if baked is not None and look[:3] == baked[:3]:
                self._repaint.pop(node, None)
            else:
                self._repaint[node] = look
        return style_frame(self._repaint)

    def standalone(self) -> str:
        """The current drawing as a standalone SVG; '' without a layout."""
        if self.template is None:
            return ""
        return XML_PROLOG + self.template.render(self.looks(), self.hot)

    def group_note(self) -> str:
        grouping = self.grouping
        if grouping is None:
            return ""
        return f"{len(grouping.members)} groups of {len(grouping.of)} tasks (by tag, module or name)"
