"""What a notebook keeps of the live view: each cell's static copy, its picture and its line.

The live view displays, under the widget, two outputs with display ids that the
kernel updates in place:

- the copy: HTML (the header and the inline SVG, themed, for a trusted page and
  nbconvert) and a one-line text summary. The rich part sits in an element
  hidden twice (``hidden``, and an inline ``display:none``, which JupyterLab's
  sanitiser keeps) that only the copy's own ``<style>`` reveals, so where a sanitiser
  strips styles and SVG (an untrusted notebook in JupyterLab or Notebook 7, GitHub)
  what is left is the clean summary line, not a run-on line of node labels;
- the picture: a PNG drawn by graphviz, which every renderer shows, trusted or
  not. On a trusted page the copy's style hides it (the inline SVG is sharper
  and follows the theme).

A copy belongs to its cell: it shows the tasks that existed when the cell ran
(or, if none did yet, those of the first run to end after it), and it is
brought up to date once those tasks have all ended; then it is closed. Runs
started from other cells leave it as it is; a Cancel or Retry clicked in its
own widget opens it again (``LiveView`` does that).

A copy counts as shown only once it was drawn whole and sent: an update that
raised, or whose drawing or picture graphviz could not make (``problem``), leaves
it open, to be drawn again (``LiveView`` retries it at once, then with the next
change of its tasks).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any

from ..core.snapshot import Snapshot
from .drawing import INSTALL_HINT
from .painter import Painter
from .tracker import UNFINISHED, clock

log = logging.getLogger(__name__)
PICTURE_META = {"codomyrmex": {"picture": "the live view's DAG"}}  # tells it from task output


@dataclass
class Copy:
    """One static copy in a notebook: its display id, and the tasks it shows."""

    display_id: str
    tasks: frozenset[str] | None  # None: those of the first run to end after it was shown
    open: bool = True
    shown: tuple[Any, ...] = field(default=(), compare=False)  # the states it last showed
    failed: int = 0  # updates of the states in ``failed_on`` that failed in a row
    failed_on: tuple[Any, ...] = field(default=(), compare=False)

    @property
    def picture_id(self) -> str:
        return f"{self.display_id}-png"


def subset(snapshot: Snapshot, tasks: frozenset[str] | None) -> Snapshot:
    """``snapshot`` restricted to ``tasks`` (all of them for None)."""
    if tasks is None:
        return snapshot
    return dataclasses.replace(snapshot, tasks=tuple(t for t in snapshot.tasks if t.id in tasks))


def all_ended(snapshot: Snapshot) -> bool:
    """Every task of ``snapshot`` has ended (a copy of it is final for now)."""
    return not any(t.state in UNFINISHED for t in snapshot.tasks)


def fingerprint(snapshot: Snapshot) -> tuple[Any, ...]:
    """What a copy shows, in short: it is redrawn only when this changes."""
    return tuple((t.id, t.state, len(t.attempts)) for t in snapshot.tasks)


def paint(snapshot: Snapshot, painter: Painter) -> Painter:
    """``painter`` (fresh) after one frame of ``snapshot``."""
    painter.paint([], snapshot, lambda: snapshot)
    return painter


def copy_bundles(painter: Painter, display_id: str, png: bool = True
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The copy's bundle and the picture's bundle, from a painted ``painter`` (without the
    PNG when ``png`` is false: ``dot`` is not run)."""
    scope = painter.scope
    summary = painter.tracker.summary()
    # saved now (or its kernel gone before they end), it would look live: it says it is not
    stale = (f"a copy of {clock(time.time())}, before its tasks ended: redrawn once they do"
             if painter.tracker.unfinished else "")
    if stale:
        summary += f" \u00b7 {stale}"
    note = painter.note
    line = f"{note}\n{summary}" if note else summary
    # Trusted (and nbconvert): the rich part shows, the plain line and the PNG output after this
    # one step aside. Sanitised: the style is gone, and the rich part stays hidden.
    # The output of a widget that does not render (a reopened notebook: "Loading widget...",
    # "model not found") is hidden in favour of this copy.
    dead = (".jp-OutputArea-child:has(> .jp-OutputArea-output:not([data-mime-type]))"
            f":not(:has(.codo-live-{scope})):has(+ .jp-OutputArea-child .codo-static-{scope})"
            "{display:none}")
    style = (f".codo-static-{scope} .codo-rich{{display:block!important}}"
             f".codo-static-{scope} .codo-plain{{display:none}}"
             f".jp-OutputArea-child:has(.codo-static-{scope}) + .jp-OutputArea-child"
             f"{{display:none}}{dead}")
    html = (f'<div class="codo-static codo-static-{scope}" data-codo-copy="{display_id}">'
            f'<style>{style}</style><div class="codo-plain">{escape(summary)}</div>'
            f'<div class="codo-rich" hidden style="display:none">{painter.static_html()}'
            f'{f"<div class=codo-muted>{escape(stale)}</div>" if stale else ""}'
            "</div></div>")
    copy = {"text/html": html, "text/plain": line}
    shot: dict[str, Any] = {"text/plain": summary}
    picture = png_of(painter) if png else None
    if picture is not None:
        shot["image/png"] = picture
    return copy, shot


def problem(painter: Painter, picture: dict[str, Any]) -> str | None:
    """Why a copy drawn by ``painter`` (its picture bundle ``picture``) is not whole: graphviz
    failed to lay it out or to make its PNG (a transient error, worth another try); None
    when it is whole, or when no ``dot`` is installed (the copy says so: final as it is)."""
    if painter.template is None:
        return None if painter.note in ("", INSTALL_HINT) else painter.note
    if "image/png" not in picture:
        return "graphviz could not make the PNG picture"
    return None


def png_of(painter: Painter) -> str | None:
    """The drawing as PNG (graphviz), base64 as notebooks store it; None without ``dot``."""
    if painter.drawing is None or painter.template is None:
        return None
    try:
        png = painter.drawing.graph.pipe(format="png", engine="dot")
    except Exception:  # dot went away or crashed: the copy keeps its text
        log.debug("static copy: PNG failed", exc_info=True)
        return None
    return base64.b64encode(png).decode("ascii")
