"""The live DAG view: a progress header over a graphviz drawing that recolours in place.

An anywidget (``frontend``): the browser draws what the kernel sends and
reports clicks; a click on a node opens its details beside the drawing, with
Cancel and Retry for that task (``live_inspector``). What a notebook keeps of the
view, its bundles and each cell's static copy, is in ``live_copies``; where the
view runs (a widget front end? side panels?) in ``view_context``. This module
holds ``LiveView`` itself: its traits, the one update path and the public API.

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
it waits for the next event, so a persistent bug never spins. While the
inspector of a running task is open, the same thread also reads that task's
output so far (``live_inspector``). Running times tick in the browser from the
start times in ``ticks`` (no kernel traffic).

Thread lifetime: the thread starts with the first event (or when such an
inspector opens); after the engine's "stopped" event it draws a final frame and exits
(the next event starts it again); ``close()`` unsubscribes, wakes and joins it. So no view thread
outlives ``close()`` or ``stop_execution()``. Widget traits are set from the
view thread: with ipykernel >= 7.0.1 comm messages from any thread reach
the front end (tests/test_live_view_kernel.py checks it in a real kernel).

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
from . import busy_clicks, map_panel, view_context
from . import drawing as drawing_mod
from .failures import name_cells
from .frontend import CSS, ESM
from .live_copies import KeptCopies, kept_views
from .live_inspector import PEEK_EVERY, READ_TRIES, InspectorPanel  # noqa: F401 - re-exported
from .painter import Painter
from .static_copy import Copy
from .tracker import is_structural
from .view_context import has_side_panels, has_widget_frontend  # noqa: F401 - re-exported

log = logging.getLogger(__name__)
_views: weakref.WeakKeyDictionary[TaskOrchestrator, LiveView] = weakref.WeakKeyDictionary()
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class LiveView(InspectorPanel, KeptCopies, anywidget.AnyWidget):
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
        if not view_context.has_widget_frontend():
            return "no widget front end here"
        if not view_context.has_side_panels():
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
            kept_views.discard(self)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        super().close()

    def __repr__(self) -> str:
        t = self._painter.tracker
        return (f"<LiveView {t.done}/{t.total} done, {t.counts['running']} running, "
                f"{t.counts['failed']} failed{', closed' if self._closed else ''}>")


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
        cell = view_context.running_cell()
        if cell is not None:
            view._ipython_display_()
            view._shown_in_cell = cell
    elif side is False:
        view.hide_side()
    return view
