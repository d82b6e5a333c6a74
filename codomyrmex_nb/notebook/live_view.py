"""The live DAG view: a progress header over a graphviz drawing that recolours in place.

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

Thread lifetime: the thread starts with the first event; after the engine's
"stopped" event it draws a final frame and exits (the next event starts it
again); ``close()`` unsubscribes, wakes and joins it. So no view thread
outlives ``close()`` or ``stop_execution()``. Widget traits are set from the
view thread: with ipykernel >= 7.0.1 comm messages from any thread reach
the front end (tests/test_live_view_kernel.py checks it in a real kernel).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from typing import Any

import ipywidgets as widgets

from ..core.events import Event
from ..core.snapshot import Snapshot
from ..orchestrator import TaskOrchestrator
from . import drawing as drawing_mod
from .painter import Painter

log = logging.getLogger(__name__)
_views: weakref.WeakKeyDictionary[TaskOrchestrator, LiveView] = weakref.WeakKeyDictionary()


def has_widget_frontend() -> bool:
    """True inside a Jupyter kernel (a front end may render widgets); False in a script or terminal."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


class LiveView(widgets.VBox):
    """Progress header and DAG of one orchestrator, redrawn from its events."""

    def __init__(self, orchestrator: TaskOrchestrator, *, threshold: int = drawing_mod.DEFAULT_THRESHOLD,
                 interval: float = 0.25, full_interval: float = 5.0, max_groups: int = 40) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ValueError(f"threshold must be a whole number >= 1 (tasks), got {threshold!r}")
        if not interval >= 0 or not full_interval >= 0 or max_groups < 2:
            raise ValueError("interval and full_interval must be >= 0 seconds and max_groups >= 2, "
                             f"got {interval!r}, {full_interval!r}, {max_groups!r}")
        self._bar = widgets.IntProgress(value=0, min=0, max=1, bar_style="info",
                                        layout=widgets.Layout(width="220px"))
        self._head = widgets.HTML()
        self._picture = widgets.HTML()
        self._style = widgets.HTML(layout=widgets.Layout(display="none"))
        super().__init__([widgets.HBox([self._bar, self._head]), self._picture, self._style])
        self.orchestrator = orchestrator
        self.interval = interval
        self._scope = "c" + uuid.uuid4().hex[:6]
        self._mutex = threading.Lock()
        self._wake = threading.Condition(self._mutex)   # the view thread waits here
        self._drawn = threading.Condition(self._mutex)  # flush() waits here
        self._log: deque[Event] = deque()
        self._dirty = self._stopping = self._closed = False
        self._seen = self._done = 0
        self._thread: threading.Thread | None = None
        self._next_at = 0.0
        self._state = threading.RLock()  # guards the painter against ``svg`` readers
        self._painter = Painter(self._scope, threshold, max_groups, full_interval)
        self._svg_cache: tuple[int, str] | None = None
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
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"codo-view-{self._scope}",
                                                 daemon=True)
                self._thread.start()
            if not self._dirty or stop:
                self._dirty = True
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._mutex:
                self._wake.wait_for(lambda: self._dirty or self._closed)
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
            try:
                self._frame(events, final=final)
            except Exception:  # a broken frame must not kill the view; the engine never notices
                log.exception("live view: drawing a frame failed")
            # Drawing competes with the tasks for the GIL: keep it under ~20% of the time
            # (a big re-layout every frame while tasks stream in would otherwise slow them).
            ended = time.monotonic()
            self._next_at = ended + max(self.interval, 4 * (ended - began))
            with self._mutex:
                self._done = seen
                self._drawn.notify_all()
                if final and not self._dirty:
                    self._thread = None  # parked until the next event starts a new thread
                    return

    def _frame(self, events: list[Event], final: bool = False,
               snapshot: Snapshot | None = None) -> None:
        """Draw one frame from a batch of events (see the module docstring)."""
        painter, take = self._painter, self.orchestrator.snapshot
        if snapshot is None and painter.needs_snapshot(events, final):
            snapshot = take()
        with self._state:
            frame = painter.paint(events, snapshot, take)
        self._bar.max, self._bar.value = max(1, frame.total), frame.done
        self._bar.bar_style = frame.bar_style
        self._head.value = frame.head
        if frame.picture is not None:
            self._picture.value = frame.picture
        if frame.style is not None:
            self._style.value = f"<style>{frame.style}</style>" if frame.style else ""

    @property
    def layouts(self) -> int:
        """How many times ``dot`` ran: once per structure change."""
        return self._painter.layouts

    @property
    def frames(self) -> int:
        return self._painter.frames

    # -- public -----------------------------------------------------------------------------
    @property
    def svg(self) -> str:
        """The current drawing as a standalone SVG (colours and glyphs included); '' without dot."""
        with self._state:
            if self._svg_cache is None or self._svg_cache[0] != self.frames:
                self._svg_cache = (self.frames, self._painter.standalone())
            return self._svg_cache[1]

    def summary(self) -> str:
        """One line of text: done / total, counts by state, elapsed, throughput."""
        with self._state:
            return self._painter.tracker.summary()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every event published so far is drawn; False if ``timeout`` passed first."""
        if not self.orchestrator.flush_events(timeout):
            return False
        with self._mutex:
            target = self._seen
            return self._drawn.wait_for(lambda: self._done >= target or self._closed, timeout)

    @property
    def thread(self) -> threading.Thread | None:
        """The view thread, while one runs."""
        return self._thread

    def close(self, timeout: float = 5.0) -> None:
        """Unsubscribe, stop the view thread (joined) and close the widgets; idempotent."""
        with self._mutex:
            already, self._closed = self._closed, True
            thread = self._thread
            self._wake.notify_all()
            self._drawn.notify_all()
        if not already:
            self._unsubscribe()
            if _views.get(self.orchestrator) is self:
                del _views[self.orchestrator]
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        for child in (self._bar, self._head, self._picture, self._style, *self.children):
            child.close()
        super().close()

    def __repr__(self) -> str:
        t = self._painter.tracker
        return (f"<LiveView {t.done}/{t.total} done, {t.counts['running']} running, "
                f"{t.counts['failed']} failed{', closed' if self._closed else ''}>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Widget where a front end can show one; always a static SVG (if dot) and text."""
        bundle: dict[str, Any] = {}
        if not self._closed and has_widget_frontend():
            bundle.update(super()._repr_mimebundle_() or {})
        svg = self.svg
        if svg:
            bundle["image/svg+xml"] = svg
        summary = self.summary()
        note = self._painter.note
        bundle["text/plain"] = f"{note}\n{summary}" if note else summary
        return bundle


def _drain(log: deque[Event]) -> list[Event]:
    """Take what is queued now; appends racing with this land in the next frame."""
    events = []
    pop = log.popleft
    try:
        while True:
            events.append(pop())
    except IndexError:
        return events


def live_view(orchestrator: TaskOrchestrator | None = None, **options: Any) -> LiveView:
    """The live view of ``orchestrator`` (default: the default orchestrator).

    Calls without options return the same open view, so ``%codo_run`` and
    ``%codo_dag`` show one widget rather than piling up subscriptions.
    Options: ``threshold`` (tasks above which the drawing groups them, 200),
    ``interval`` (seconds between frames, 0.25), ``full_interval`` (seconds
    between whole redraws that refresh run times, 5), ``max_groups`` (40).
    """
    if orchestrator is None:
        from ..default import current_orchestrator

        orchestrator = current_orchestrator()
    view = _views.get(orchestrator)
    if view is None or view._closed or options:
        view = LiveView(orchestrator, **options)
        _views[orchestrator] = view
    return view
