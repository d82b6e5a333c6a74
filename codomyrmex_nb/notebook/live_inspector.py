"""What a click on the live view does, and the inspector panel it opens beside the drawing
(a mixin of ``LiveView``): a node's details (``inspector``; a group's members, a mapped
task's items from ``map_panel``), Cancel and Retry for that task, and the front end's word
on where the view is (``placed``: a side panel). Clicks are answered while a cell keeps
the main shell busy (``busy_clicks``: on a kernel subshell, or by our own waits).

While the inspector of a running task is open, the view thread (``live_view``) also
wakes at most every ``PEEK_EVERY`` (0.5) s (a deadline on the same condition, only
while such a panel is open) to read that task's output so far without the
engine lock (``core.peek``) and resend the panel if the output grew. A read
that failed keeps the output shown and is tried again at the next tick; after
``READ_TRIES`` failures in a row the panel adds "output unavailable: <reason>"
under it and reads no more until the task's next event (or a click) redraws it
whole. Only the attempt's end (no running attempt, its status event) ends
following it. Each reply to a click bumps ``answer`` so the panel always redraws.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..core.peek import OutputSoFar
from ..orchestrator import TaskOrchestrator
from . import busy_clicks, map_panel
from .inspector import detail_html

log = logging.getLogger(__name__)
PEEK_EVERY = 0.5  # seconds: how often an open inspector reads its running task's output
READ_TRIES = 3  # reads of that output that failed in a row before the panel says so


def _task_panel(orch: TaskOrchestrator, task: str) -> Callable[[Any], str]:
    """Draws ``task``'s inspector panel with the output so far it is given; its result,
    snapshot and item list are read once, now (its status events redraw it whole)."""
    result = orch.get_task_result(task)
    snapshot = orch.snapshot()
    items = map_panel.task_items(orch, task)
    return lambda so_far: detail_html(snapshot, task, result, so_far) + items


def _stopped_note(orch: TaskOrchestrator, task: str) -> str:
    """Under a stopped engine's inspector: what waits for it to start again."""
    start = "<code>%codo_run</code> (or <code>start_execution()</code>)"
    ref = orch.get_task(task)
    status = getattr(ref, "status", None)
    if status is not None and not status.is_terminal:
        attempts = getattr(ref, "attempts", None) or ()
        why = (" Its attempt was interrupted when the engine stopped."
               if attempts and attempts[-1].outcome == "interrupted" else "")
        return (f'<p class="codo-muted">The engine is stopped: this task runs when it starts '
                f"again, at {start}.{why}</p>")
    return f'<p class="codo-muted">The engine is stopped: a retried task waits for {start}.</p>'


class InspectorPanel:
    """Mixed into ``LiveView``: its clicks and the open inspector (under its ``_mutex``, and
    ``_sync`` while sending traits)."""

    # -- clicks -------------------------------------------------------------------------------
    def _on_front_end_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and busy_clicks.claim(content):
            self._act(content)

    def _act(self, content: dict[str, Any]) -> None:
        """Answer one click (on whichever shell received it: see ``busy_clicks``)."""
        kind = content.get("kind")
        try:
            if kind == "select":
                self.select(self._task_of(str(content.get("node", ""))))
            elif kind == "close":
                self.select(None)
            elif kind == "item":  # a mapped task's item in its panel, or back to the task
                self.select(str(content.get("task", "")) or None)
            elif kind == "placed":  # a view is in a side panel, left it, or could not have one
                where = content.get("where")
                self._sides = max(0, self._sides + (where == "side") - (where == "left"))
            elif kind in ("cancel", "retry"):
                task = str(content.get("task", "")) or self._selected_task
                if task:
                    self._reopen(content.get("copy"))
                    if kind == "cancel":
                        map_panel.cancel(self.orchestrator, task)
                    else:
                        self.orchestrator.rerun(task)
                    self.select(task)
        except Exception:  # a click must never raise into the kernel's message loop
            log.exception("live view: handling %r failed", kind)

    def _task_of(self, node: str) -> str | None:
        drawing = self._painter.drawing
        return None if drawing is None else drawing.nodes.get(node)

    def select(self, task: str | None) -> None:
        """Open the details of ``task`` (an id, or a group key when grouped) beside the DAG;
        None closes them. What a click on a node does."""
        self._selected_task = task
        if task is None:
            self._inspected = None
        detail = self._detail(task) if task is not None else ""
        node = self._painter.node_of(map_panel.task_of(self.orchestrator, task)) \
            if task is not None else None
        with self._sync, self.hold_sync():
            self.detail = detail
            self.selected = node or ""
            self.answer += 1  # a click on the node already shown still redraws its panel

    def _detail(self, task: str) -> str:
        grouping = self._painter.grouping
        if grouping is not None and task in grouping.members:
            return self._group_detail(task)
        self._peeked_at = time.monotonic()
        failed = 0
        if map_panel.item_ref(self.orchestrator, task) is not None:
            html, so_far, render = map_panel.item_panel(self.orchestrator, task)
        else:
            render = _task_panel(self.orchestrator, task)
            try:
                so_far = self.orchestrator.output_so_far(task)
            except Exception:  # read again at the next tick (None there if it is not running)
                log.exception("live view: reading a task's output failed")
                so_far, failed = OutputSoFar(0, None, None), 1
            html = render(None if failed else so_far)
        if so_far is not None and render is not None:
            failed = failed or (so_far.error is not None)
            with self._mutex:
                self._inspected = (task, render, so_far, failed)
                self._start_thread()  # it reads the output again while the task runs
                self._wake.notify()
        elif self._inspected is not None and self._inspected[0] == task:
            self._inspected = None
        if not self.orchestrator.is_running:
            html += _stopped_note(self.orchestrator, task)
        return html

    def _peek_due(self) -> float | None:
        """Under the mutex: seconds until the open inspector's output is read again (None:
        no inspector of a running task is open)."""
        if self._inspected is None or self._inspected[0] != self._selected_task:
            return None
        return max(0.0, self._peeked_at + PEEK_EVERY - time.monotonic())

    def _refresh_inspector(self) -> None:
        """View thread: the open inspector's task (or map item) is running; show its new
        output, if any.

        Reads the output without the engine lock (``core.peek``) and redraws the panel
        from what its last full redraw read: its status events redraw it whole
        (``_frame``), so that is current in all but the output."""
        inspected = self._inspected
        self._peeked_at = time.monotonic()
        if inspected is None:
            return
        task, render, last, failed = inspected
        shown = None if last is None else last.text
        why = html = None
        try:
            so_far = self.orchestrator.output_so_far(task)
            if so_far is not None and so_far.error is not None:
                why = so_far.error  # the output shown stays; read again at the next tick
            elif so_far is not None and so_far.text != shown:
                html = render(so_far)
        except Exception as exc:  # the panel must never take the view thread down
            log.debug("live view: reading a running task's output failed", exc_info=True)
            so_far, why = last, f"{type(exc).__name__}: {exc}"
        with self._sync, self.hold_sync():
            if self._inspected is not inspected:
                return  # a newer redraw (a click, an event) came first
            if why is not None:
                self._failed_read(task, render, last or so_far, failed + 1, why)
            elif so_far is None:  # it ended: its status event redraws the panel
                self._inspected = None
            elif html is not None:
                self._inspected = (task, render, so_far, 0)
                self.detail = html
            elif failed:
                self._inspected = (task, render, last, 0)

    def _failed_read(self, task: str, render: Callable[[Any], str], last: OutputSoFar | None,
                     failed: int, why: str) -> None:
        """Under ``_sync``: the open inspector's output could not be read ``failed`` times in
        a row. Tried again at the next tick; after ``READ_TRIES`` the panel says so under
        the output it shows, and nothing is read until its next event or click redraws it."""
        if failed < READ_TRIES:
            self._inspected = (task, render, last, failed)
            return
        log.info("live view: the output of %s could not be read %d times in a row (%s)",
                    task, failed, why)
        self._inspected = None
        base = last if last is not None else OutputSoFar(0, None, None)
        try:
            self.detail = render(base._replace(note=f"output unavailable: {why}", error=why))
        except Exception:  # noqa: BLE001 - the panel as it is, then
            log.debug("live view: drawing the inspector failed", exc_info=True)

    def _group_detail(self, key: str) -> str:
        from html import escape

        from ..palette import glyph

        members = self._painter.grouping.members[key] if self._painter.grouping else ()
        states, names = self._painter.tracker.states, self._painter.tracker.names
        shown = "".join(f"<li>{glyph(states.get(m, 'pending'))} {escape(names.get(m, m))}</li>"
                        for m in members[:40])
        more = f"<li>\u2026 and {len(members) - 40} more</li>" if len(members) > 40 else ""
        return (f'<div class="codo-inspect-head"><b>group {escape(key)}</b> ({len(members)} '
                f'tasks)<span class="codo-grow"></span><button class="codo-btn codo-close" '
                f'data-codo-action="close">\u00d7</button></div><ul>{shown}{more}</ul>')
