"""What a notebook keeps of the live view (a mixin of ``LiveView``): its MIME bundles (the
widget, and the drawing as HTML, SVG and text) and, for each cell that displayed it, a static
copy and its PNG picture kept current (``static_copy`` draws them).

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
"""

from __future__ import annotations

import logging
import sys
import uuid
import weakref
from typing import Any

from ..core.snapshot import Snapshot
from . import view_context
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

log = logging.getLogger(__name__)
kept_views: weakref.WeakSet[Any] = weakref.WeakSet()  # views with static copies to keep current
_hooked: set[int] = set()  # shells with our post_execute hook


class KeptCopies:
    """Mixed into ``LiveView``: its bundles and its cells' static copies (under ``_copy_lock``)."""

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

        if self._shown_in_cell is not None and self._shown_in_cell == view_context.running_cell():
            return  # ``live_view(side=...)`` showed it in this cell already
        if not self._closed and view_context.has_widget_frontend():
            display(self._widget_bundle(), raw=True)
        ids = frozenset(t.id for t in self.orchestrator.snapshot().tasks)
        copy = Copy(f"codo-{self._scope}-{uuid.uuid4().hex[:8]}", ids or None)
        # The cell's first frame from the view's own drawing: no ``dot`` while the cell runs.
        # Its PNG comes with the copy's first update (when its tasks have ended, at the
        # latest at the end of this cell if they already have).
        with self._state:
            html, picture = copy_bundles(self._painter, copy.display_id, png=False)
        display(html, raw=True, display_id=copy.display_id)
        if view_context.has_widget_frontend():  # only a kernel can update it in place later
            display(picture, raw=True, metadata=PICTURE_META,
                    display_id=copy.picture_id)
            with self._copy_lock:
                self._copies = self._copies[-49:] + [copy]
            kept_views.add(self)
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
        if not self._closed and view_context.has_widget_frontend():
            bundle.update(self._widget_bundle())
        static = self._static_bundle()
        if self._painter.template is None:
            static.pop("text/html", None)
        bundle.update(static)
        return bundle


def _settle_copies() -> None:
    """``post_execute``: a run that ended during this cell has its static copies updated now,
    while the cell's messages are still recorded (nbconvert stops listening after the last)."""
    for view in list(kept_views):
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
