"""The live DAG view: a progress header over a graphviz drawing that recolours in place.

An anywidget (``frontend``): the browser draws what the kernel sends and
reports clicks; a click on a node opens its details beside the drawing
(``inspector``), with Cancel and Retry for that task. Clicks are answered while
a cell keeps the main shell busy (``busy_clicks``: on a kernel subshell, or by
our own waits).

One update path. The event callback (on the engine's event dispatcher thread)
only appends the event to a deque and, on the first event since the last
frame, notifies a condition: it never draws, never takes the engine lock.
One view thread wakes on that condition, waits out the throttle interval
(a deadline wait on the same condition, so ``close()`` cuts it short; no
sleep-polling), takes the batch and draws one frame:

- the structure changed (tasks added, re-queued, removed): snapshot, run
  ``dot`` once, send the whole SVG;
- otherwise: fold the batch into the ``Tracker`` mirror and send a small
  ``<style>`` block that repaints only the nodes changed since the last
  whole SVG (grouped drawings are small and are resent whole);
- ungrouped, when the run settles, the engine stops, or (at most every
  ``full_interval`` s) run times are due: one snapshot, the whole SVG again.
  (The drawing logic lives in ``painter``; this module is the threading.)

A frame that raises (a view bug, a transient error) loses nothing: its batch
may be half folded into the mirror, or its picture made (the baseline of later
patches) and never sent, so the next frame starts from a snapshot and is sent
whole, open panel included. That frame comes at once, not with the next event
(the failed one may have been the run's last); after a second failure in a row
it waits for the next event, so a persistent bug never spins.

While the inspector of a running task is open, the same thread also wakes at
most every ``PEEK_EVERY`` (0.5) s (a deadline on the same condition, only
while such a panel is open) to read that task's output so far without the
engine lock (``core.peek``) and resend the panel if the output grew. A read
that failed keeps the output shown and is tried again at the next tick; after
``READ_TRIES`` failures in a row the panel adds "output unavailable: <reason>"
under it and reads no more until the task's next event (or a click) redraws it
whole. Only the attempt's end (no running attempt, its status event) ends
following it. Running
times tick in the browser from the start times in ``ticks`` (no kernel
traffic); each reply to a click bumps ``answer`` so the panel always redraws.

Thread lifetime: the thread starts with the first event (or when such a panel
opens); after the engine's "stopped" event it draws a final frame and exits
(the next event starts it again); ``close()`` unsubscribes, wakes and joins it. So no view thread
outlives ``close()`` or ``stop_execution()``. Widget traits are set from the
view thread: with ipykernel >= 7.0.1 comm messages from any thread reach
the front end (tests/test_live_view_kernel.py checks it in a real kernel).

What outlives the widget. Displaying the view (``display(view)``, a cell's
value, ``%codo_run``) shows the widget and, as outputs with display ids, the
cell's static copy and its PNG picture (``static_copy``: what a saved, an
untrusted or a GitHub-rendered notebook shows). The widget hides them while it
is on the page. A copy shows the tasks that existed when its cell ran and is
updated in place (``update_display``) once they have all ended: by the view
thread and, so that ``nbconvert --execute`` records it too, at the end of the
cell (an IPython ``post_execute`` hook). Then it is closed: runs started from
other cells leave it as it was, a Cancel or Retry clicked in its own widget
(the front end names the copy beside it) opens it again. It is closed only once
drawn whole and sent: an update that failed (graphviz, a transient error) keeps
it open, and the next frame (which comes at once) draws it again; after a second
failure in a row it waits for its tasks to change.

``live_view(side=True)`` asks the front end to show the view in a side panel
beside its notebook (``frontend``: the widget's own code, no extension), so
that it stays in sight while Run All scrolls the notebook. The cell then says
"in the side panel" only once the panel is there; a front end without one
shows the view inline, live, with one line saying why, and tells the kernel
(``side`` is True only once the front end has confirmed the panel). Where no
front end can have one (nbconvert, a terminal, VS Code) the kernel prints that
line itself and shows the view inline.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

from ..core.events import Event
from ..core.peek import OutputSoFar
from ..core.snapshot import Snapshot
from ..orchestrator import TaskOrchestrator
from . import busy_clicks, map_panel
from . import drawing as drawing_mod
from .failures import name_cells
from .frontend import CSS, ESM
from .inspector import detail_html
from .painter import Painter
from .static_copy import (
    PICTURE_META,
    Copy,
    all_ended,
    copy_bundles,
    fingerprint,
    paint,
    problem,
    subset,
)
from .tracker import UNFINISHED as UNFINISHED_STATES
from .tracker import is_structural

log = logging.getLogger(__name__)
_views: weakref.WeakKeyDictionary[TaskOrchestrator, LiveView] = weakref.WeakKeyDictionary()
_shown: weakref.WeakSet[LiveView] = weakref.WeakSet()  # views with static copies to keep current
_hooked: set[int] = set()  # shells with our post_execute hook
PEEK_EVERY = 0.5  # seconds: how often an open inspector reads its running task's output
READ_TRIES = 3  # reads of that output that failed in a row before the panel says so
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def has_widget_frontend() -> bool:
    """True inside a Jupyter kernel (a front end may render widgets); False in a script or terminal."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def has_side_panels() -> bool:
    """True where a side panel can show: a kernel a Jupyter server started for a notebook.

    JupyterLab (and Notebook 7, both on ``jupyter_server``) tell the kernel its
    notebook in ``JPY_SESSION_NAME``; nbconvert, nbclient, the classic tools and a
    terminal do not, and VS Code (``__vsc_ipynb_file__``) has no JupyterLab panels.
    So there the view says it shows inline rather than claim a panel nobody sees.
    """
    if not has_widget_frontend() or not os.environ.get("JPY_SESSION_NAME", "").strip():
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return "__vsc_ipynb_file__" not in (getattr(shell, "user_ns", None) or {})


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


class LiveView(anywidget.AnyWidget):
    """Progress header and DAG of one orchestrator, redrawn from its events."""

    _esm = ESM
    _css = CSS
    scope = traitlets.Unicode("").tag(sync=True)
    head = traitlets.Unicode("").tag(sync=True)
    picture = traitlets.Unicode("").tag(sync=True)
    patch = traitlets.Dict().tag(sync=True)
    detail = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    ticks = traitlets.Dict().tag(sync=True)  # start times the browser counts from (Painter.ticks)
    answer = traitlets.Int(0).tag(sync=True)  # one more per reply to a click: the panel redraws
    panel = traitlets.Bool(False).tag(sync=True)  # asked for: the view in a side panel

    def __init__(self, orchestrator: TaskOrchestrator, *, threshold: int = drawing_mod.DEFAULT_THRESHOLD,
                 interval: float = 0.25, full_interval: float = 5.0, max_groups: int = 40) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ValueError(f"threshold must be a whole number >= 1 (tasks), got {threshold!r}")
        if not interval >= 0 or not full_interval >= 0 or max_groups < 2:
            raise ValueError("interval and full_interval must be >= 0 seconds and max_groups >= 2, "
                             f"got {interval!r}, {full_interval!r}, {max_groups!r}")
        scope = "c" + uuid.uuid4().hex[:6]
        super().__init__(scope=scope)
        self.orchestrator = orchestrator
        self.interval = interval
        self._scope = scope
        self._mutex = threading.Lock()
        self._wake = threading.Condition(self._mutex)   # the view thread waits here
        self._drawn = threading.Condition(self._mutex)  # flush() waits here
        self._log: deque[Event] = deque()
        self._dirty = self._stopping = self._closed = False
        self._resync = False  # a frame failed: the next draws whole, from a snapshot
        self._seen = self._done = 0
        self._thread: threading.Thread | None = None
        self._next_at = 0.0
        self._state = threading.RLock()  # guards the painter against ``svg`` readers
        self._sync = threading.Lock()    # one thread at a time sends trait updates
        self._painter = Painter(scope, threshold, max_groups, full_interval)
        self._painter.tracker.error_lookup = self._error_of
        self._painter.tracker.run_number = lambda: orchestrator.journal_run
        self._svg_cache: tuple[int, str] | None = None
        self._copies: list[Copy] = []
        self._copy_lock = threading.Lock()
        self._copy_retry = False  # the last update of the copies failed one: try again now
        self._threshold, self._max_groups = threshold, max_groups
        self._selected_task: str | None = None
        # The open inspector of a running task or item: (its id, a function that draws its
        # panel with newer output, the output shown (its last good read), reads that failed
        # since); the view thread reads that output again at most every PEEK_EVERY seconds.
        self._inspected: tuple[str, Callable[[Any], str], OutputSoFar | None, int] | None = None
        self._peeked_at = 0.0
        self._sides = 0  # views the front end says are in a side panel now
        self._shown_in_cell: int | None = None
        self.on_msg(self._on_front_end_message)
        if self.comm is not None:  # clicks answered while the main shell is busy
            busy_clicks.route(self.comm, self._act)
        self._unsubscribe = orchestrator.subscribe(self._on_event)
        self._frame([], snapshot=orchestrator.snapshot())

    # -- the one update path ----------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        """Event callback: record, and wake the view thread if it is not already due to draw.

        The common case takes no lock: ``deque.append`` is atomic and only this
        (dispatcher) thread writes ``_seen``. The view thread clears ``_dirty``
        under the mutex *before* draining, so an event that sees ``_dirty`` set
        is drained by the frame to come: no wake-up is lost.
        """
        self._log.append(event)
        self._seen += 1
        if self._dirty and event.kind != "engine":
            return
        with self._mutex:
            if self._closed:
                return
            stop = event.kind == "engine" and event.detail == "stopped"
            self._stopping = self._stopping or stop
            self._start_thread()
            if not self._dirty or stop:
                self._dirty = True
                self._wake.notify()

    def _start_thread(self) -> None:
        """Under the mutex: the view thread, if none runs (and the view is open)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name=f"codo-view-{self._scope}",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            peek = False
            with self._mutex:
                while not (self._dirty or self._closed):
                    due = self._peek_due()  # an open inspector of a running task: its output
                    if due is not None and due <= 0:
                        peek = True
                        break
                    self._wake.wait(due)  # a deadline (or none), cut short by a notify
            if peek:
                self._refresh_inspector()
                continue
            with self._mutex:
                delay = self._next_at - time.monotonic()
                if delay > 0 and not self._closed:  # throttle: a deadline, cut short by stop/close
                    self._wake.wait_for(lambda: self._closed or self._stopping, delay)
                if self._closed:
                    self._thread = None
                    return
                final, self._stopping, self._dirty = self._stopping, False, False
                seen = self._seen
            events = _drain(self._log)
            began = time.monotonic()
            failed = again = False
            try:
                self._frame(events, final=final)
                self._resync = False
                if self._copies_due():
                    self._update_copies()
                    again = self._copy_retry
            except Exception:  # a broken frame must not kill the view; the engine never notices
                log.exception("live view: drawing a frame failed")
                failed = True
            # Drawing competes with the tasks for the GIL: keep it under ~20% of the time
            # (a big re-layout every frame while tasks stream in would otherwise slow them).
            ended = time.monotonic()
            self._next_at = ended + max(self.interval, 4 * (ended - began))
            with self._mutex:
                if failed and not self._resync:  # its events may be half folded in, its
                    # picture made and never sent: the next frame starts from a snapshot,
                    # and comes now (once; after that, with the next event)
                    self._resync = self._dirty = True
                    self._stopping = self._stopping or final
                elif again:  # a static copy failed to update (for the first time with these
                    # states): the next frame tries it again, and comes now, not with the next
                    # event (there may be none: the run has ended)
                    self._dirty = True
                    self._stopping = self._stopping or final
                else:
                    self._done = seen
                    self._drawn.notify_all()
                if final and not self._dirty:
                    self._thread = None  # parked until the next event starts a new thread
                    return

    def _frame(self, events: list[Event], final: bool = False,
               snapshot: Snapshot | None = None) -> None:
        """Draw one frame from a batch of events (see the module docstring)."""
        painter, take = self._painter, self.orchestrator.snapshot
        resync = self._resync
        if snapshot is None and (resync or painter.needs_snapshot(events, final)):
            snapshot = take()
        with self._state:
            frame = painter.paint(events, snapshot, take)
            ticks = painter.ticks(self.orchestrator.is_running)
        selected = self._selected_task
        detail = node = None
        grouping = painter.grouping
        group = grouping is not None and selected in grouping.members  # its members' events
        if selected is not None and (resync or events and (group or any(
                e.task_id == selected or is_structural(e) for e in events))):
            detail = self._detail(selected)
        if selected is not None and frame.picture is not None:  # laid out anew: node ids are
            node = painter.node_of(map_panel.task_of(self.orchestrator, selected)) or ""
            # positions, so the selected task's may have changed (a task removed before it)
        with self._sync, self.hold_sync():
            self.ticks = ticks
            self.head = frame.head
            if frame.patch is not None:
                self.patch = frame.patch
            if frame.picture is not None:
                self.picture = frame.picture
                if node is not None:
                    self.selected = node
            if detail is not None:
                self.detail = detail

    @property
    def layouts(self) -> int:
        """How many times ``dot`` ran: once per structure change."""
        return self._painter.layouts

    @property
    def frames(self) -> int:
        return self._painter.frames

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

    def _error_of(self, task_id: str) -> str | None:
        result = self.orchestrator.get_task_result(task_id)
        return None if result is None else result.error_message

    # -- public -----------------------------------------------------------------------------
    @property
    def svg(self) -> str:
        """The current drawing as a standalone SVG (colours and glyphs included); '' without dot."""
        with self._state:
            if self._svg_cache is None or self._svg_cache[0] != self.frames:
                self._svg_cache = (self.frames, self._painter.standalone())
            return self._svg_cache[1]

    def summary(self) -> str:
        """One line of text: done / total, counts by state, run, elapsed, throughput."""
        with self._state:
            return self._painter.tracker.summary()

    def static_html(self) -> str:
        """The summary and the drawing as plain HTML: what a saved notebook shows."""
        with self._state:
            return self._painter.static_html()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every event published so far is drawn; False if ``timeout`` passed first."""
        if not self.orchestrator.flush_events(timeout):
            return False
        with self._mutex:
            target = self._seen
            return self._drawn.wait_for(lambda: self._done >= target or self._closed, timeout)

    def _hurry(self) -> None:
        """Draw the pending frame now, as a final one (a snapshot), cutting the throttle short."""
        with self._mutex:
            if self._thread is not None and self._dirty:
                self._stopping = True
                self._wake.notify()

    @property
    def thread(self) -> threading.Thread | None:
        """The view thread, while one runs."""
        return self._thread

    @property
    def side(self) -> bool:
        """True once the front end has said the view shows in its side panel."""
        return self.panel and self._sides > 0

    def show_side(self) -> str | None:
        """Ask the front end to show the view in a side panel beside its notebook; None if
        it may (it confirms, or falls back inline and says why), else why it cannot."""
        if not has_widget_frontend():
            return "no widget front end here"
        if not has_side_panels():
            return "this front end has none; JupyterLab and Notebook 7 have them"
        self.panel = True
        return None

    def hide_side(self) -> None:
        """Back inline (the view itself stays open)."""
        self.panel = False
        self._sides = 0

    def close(self, timeout: float = 5.0) -> None:
        """Unsubscribe, stop the view thread (joined) and close the widget; idempotent."""
        with self._mutex:
            already, self._closed = self._closed, True
            thread = self._thread
            self._wake.notify_all()
            self._drawn.notify_all()
        if not already:
            self._unsubscribe()
            if _views.get(self.orchestrator) is self:
                del _views[self.orchestrator]
            _shown.discard(self)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        super().close()

    def __repr__(self) -> str:
        t = self._painter.tracker
        return (f"<LiveView {t.done}/{t.total} done, {t.counts['running']} running, "
                f"{t.counts['failed']} failed{', closed' if self._closed else ''}>")

    # -- what a notebook keeps --------------------------------------------------------------
    def _widget_bundle(self) -> dict[str, Any]:
        data = super()._repr_mimebundle_()
        data = dict(data[0] if isinstance(data, tuple) else data or {})
        data["text/plain"] = "codomyrmex live view (the static copy below keeps its last frame)"
        return data

    def _static_bundle(self) -> dict[str, Any]:
        """The drawing as HTML, SVG and text (``_repr_mimebundle_``: no widget, no kernel)."""
        with self._state:
            html = self._painter.static_html()
            note = self._painter.note
            summary = self._painter.tracker.summary()
        bundle: dict[str, Any] = {"text/html": html,
                                  "text/plain": f"{note}\n{summary}" if note else summary}
        svg = self.svg
        if svg:
            bundle["image/svg+xml"] = svg
        return bundle

    def _copy_bundles(self, snapshot: Snapshot, display_id: str
                      ) -> tuple[dict[str, Any], dict[str, Any], str | None]:
        """A copy's two bundles (``static_copy``), drawn by a painter of its own, and why
        they are not whole (graphviz failed: ``static_copy.problem``), None if they are."""
        painter = Painter(self._scope, self._threshold, self._max_groups, 0.0)
        painter.tracker.run_number = self._painter.tracker.run_number
        painter.tracker.error_lookup = self._error_of
        html, picture = copy_bundles(paint(snapshot, painter), display_id)
        return html, picture, problem(painter, picture)

    def _ipython_display_(self) -> None:
        """The widget and the cell's static copy and picture, kept current."""
        from IPython.display import display

        if self._shown_in_cell is not None and self._shown_in_cell == _cell():
            return  # ``live_view(side=...)`` showed it in this cell already
        if not self._closed and has_widget_frontend():
            display(self._widget_bundle(), raw=True)
        ids = frozenset(t.id for t in self.orchestrator.snapshot().tasks)
        copy = Copy(f"codo-{self._scope}-{uuid.uuid4().hex[:8]}", ids or None)
        # The cell's first frame from the view's own drawing: no ``dot`` while the cell runs.
        # Its PNG comes with the copy's first update (when its tasks have ended, at the
        # latest at the end of this cell if they already have).
        with self._state:
            html, picture = copy_bundles(self._painter, copy.display_id, png=False)
        display(html, raw=True, display_id=copy.display_id)
        if has_widget_frontend():  # only a kernel can update it in place later
            display(picture, raw=True, metadata=PICTURE_META,
                    display_id=copy.picture_id)
            with self._copy_lock:
                self._copies = self._copies[-49:] + [copy]
            _shown.add(self)
            _hook_post_execute()

    def _copies_due(self) -> bool:
        """View thread, cheap: might an open copy's tasks all have ended by now?"""
        copies = [c for c in self._copies if c.open]
        if not copies:
            return False
        states = self._painter.tracker.states
        return any(self._painter.settled if c.tasks is None else
                   not any(states.get(t) in UNFINISHED_STATES for t in c.tasks) for c in copies)

    def _reopen(self, display_id: Any) -> None:
        """A Cancel or Retry clicked in a widget: its copy follows the run it starts (the
        newest copy when the front end did not say which)."""
        with self._copy_lock:
            mine = [c for c in self._copies if c.display_id == display_id] or self._copies[-1:]
            for copy in mine:
                copy.open, copy.failed = True, 0

    def _update_copies(self) -> int:
        """Bring each open copy whose tasks have all ended up to date, then close it.

        Returns how many copies were redrawn. Called by the view thread after a frame
        and by the ``post_execute`` hook (main thread). Copies are kept only in a
        kernel: a terminal cannot update an output in place.

        A copy is closed (and its states counted as shown) only once it was drawn whole
        and sent. One that failed (an exception; graphviz could not lay it out or make
        its PNG: then what could be drawn is sent meanwhile) stays open and sets
        ``_copy_retry``, so that the view thread draws it again at once; after a second
        failure in a row it waits for its tasks to change (no ``dot`` run every frame).
        """
        if not any(c.open for c in self._copies):
            self._copy_retry = False
            return 0
        from IPython.display import update_display

        snapshot = self.orchestrator.snapshot()
        redrawn, retry = 0, False
        with self._copy_lock:
            for copy in [c for c in self._copies if c.open]:
                if copy.tasks is None:  # shown before any task: it takes the first run's
                    if not snapshot.tasks or not all_ended(snapshot):
                        continue
                    copy.tasks = frozenset(t.id for t in snapshot.tasks)
                part = subset(snapshot, copy.tasks)
                if not all_ended(part):
                    continue
                mark = fingerprint(part)
                if mark == copy.shown:
                    copy.open = False
                    continue
                if copy.failed >= 2 and copy.failed_on == mark:
                    continue  # failed twice on these states: wait for them to change
                why: str | None = None
                try:
                    html, picture, why = self._copy_bundles(part, copy.display_id)
                    update_display(html, raw=True, display_id=copy.display_id)
                    update_display(picture, raw=True, metadata=PICTURE_META,
                                   display_id=copy.picture_id)
                    redrawn += 1
                except Exception as exc:  # a transient error, or no shell any more
                    log.debug("live view: updating a static copy failed", exc_info=True)
                    why = f"{type(exc).__name__}: {exc}"
                if why is None:
                    copy.shown, copy.open, copy.failed = mark, False, 0
                    continue
                log.debug("live view: static copy %s not drawn whole (%s)", copy.display_id, why)
                copy.failed = copy.failed + 1 if copy.failed_on == mark else 1
                copy.failed_on = mark
                retry = retry or copy.failed == 1
            self._copy_retry = retry
        return redrawn

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Widget where a front end can show one; always the static HTML, SVG (if dot) and text."""
        bundle: dict[str, Any] = {}
        if not self._closed and has_widget_frontend():
            bundle.update(self._widget_bundle())
        static = self._static_bundle()
        if self._painter.template is None:
            static.pop("text/html", None)
        bundle.update(static)
        return bundle


def _settle_copies() -> None:
    """``post_execute``: a run that ended during this cell has its static copies updated now,
    while the cell's messages are still recorded (nbconvert stops listening after the last)."""
    for view in list(_shown):
        with view._copy_lock:  # a copy the view thread is redrawing now (no longer open):
            # its update is sent before the lock is free, so before this cell ends; unseen,
            # it went out after the cell and a headless run (nbconvert) never recorded it
            waiting = not view._closed and any(c.open for c in view._copies)
        if not waiting:
            continue
        try:
            stats = view.orchestrator.get_execution_stats()
            if stats.get("pending", 0) or stats.get("running", 0):
                if view._copies_due():  # a copy whose tasks ended while others still run
                    view._update_copies()
                continue
            view.orchestrator.flush_events(5.0)  # the run's last events reach the view ...
            view._hurry()                         # ... which draws its final frame now
            view.flush(5.0)
            view._update_copies()
        except Exception:
            log.debug("live view: post_execute update failed", exc_info=True)


def _hook_post_execute() -> None:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or id(shell) in _hooked:
        return
    shell.events.register("post_execute", _settle_copies)
    _hooked.add(id(shell))


def _drain(log: deque[Event]) -> list[Event]:
    """Take what is queued now; appends racing with this land in the next frame."""
    events = []
    pop = log.popleft
    try:
        while True:
            events.append(pop())
    except IndexError:
        return events


def live_view(orchestrator: TaskOrchestrator | None = None, *, side: bool | None = None,
              **options: Any) -> LiveView:
    """The live view of ``orchestrator`` (default: the default orchestrator).

    Calls without options return the same open view, so ``%codo_run`` and
    ``%codo_dag`` show one widget rather than piling up subscriptions.
    ``side=True`` asks the front end to show it in a side panel beside the
    notebook, in sight while cells run (the cell says so once it is there; a
    front end without one shows it inline with a line saying why), and shows
    the cell's part at once: the widget, the static copy and its picture.
    Where no front end can have a panel it prints a one-line note and shows the
    view inline. ``side=False`` puts it back inline.
    Options: ``threshold`` (tasks above which the drawing groups them, 200),
    ``interval`` (seconds between frames, 0.25), ``full_interval`` (seconds
    between whole redraws that refresh run times, 5), ``max_groups`` (40).
    """
    if orchestrator is None:
        from ..default import current_orchestrator

        orchestrator = current_orchestrator()
    ipython = sys.modules.get("IPython")
    name_cells(ipython.get_ipython() if ipython is not None else None)  # "Cell In[5]"
    view = _views.get(orchestrator)
    if view is None or view._closed or options:
        if view is not None and not view._closed:
            view.hide_side()
        view = LiveView(orchestrator, **options)
        _views[orchestrator] = view
    if side:
        why = view.show_side()
        if why is not None:
            print(f"codomyrmex: no side panel ({why}); the live view shows inline.")
        # The cell's part right away (the widget, which moves itself into the panel and leaves
        # a pointer, and the static copy), whether or not the caller displays the view:
        # displaying it again in this same cell adds nothing.
        cell = _cell()
        if cell is not None:
            view._ipython_display_()
            view._shown_in_cell = cell
    elif side is False:
        view.hide_side()
    return view


def _cell() -> int | None:
    """The running cell's execution count (None outside IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return None if shell is None else shell.execution_count
