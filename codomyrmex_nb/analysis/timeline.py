"""A Gantt chart of attempts: one lane per worker, one bar per attempt.

Bars are coloured by how the attempt ended, with the live view's palette
(success green, failed red, ...) and a glyph in the label, so colour is never
the only cue. Tasks on the critical path are outlined in black, retries are
hatched and labelled with their attempt number, and a thin line below a bar
runs from when the task was ready (or its previous attempt ended) to when it
started, coloured by what it mostly waited for: a resource (purple), a worker
(grey), or a retry delay (dashed).

Where an attempt's CPU seconds are known, a dark strip along the bottom of its
bar is as long as its CPU/wall ratio: a full strip is CPU-bound work, a short
one an attempt that mostly waited (I/O, a sleep, a lock, the GIL). It says how
much, not when. Every bar is at least ``MIN_WIDTH`` of the time axis wide, so a
10 ms failure beside minutes of work is still seen; a short failed, timed-out,
cancelled or retried attempt also gets a marker (▼) above it. The legend lists
what is drawn.

Every bar is a ``Rectangle`` with ``gid="attempt:<task id>:<n>"`` (see
``attempt_bars``), so tests and users can find them. Only
``matplotlib.figure.Figure`` is used, never pyplot: the figure does not join
pyplot's global state and displays inline through ``_repr_png_``.

Mapped tasks: each item's attempts are bars in the lanes of the workers that ran
them, labelled ``square[7]`` (``gid="attempt:<task id>[7]:<n>"``), outlined when
their task is on the critical path; the mapped task's own bar is its expansion.
Above ``MAX_ITEM_BARS`` item attempts only the longest are drawn and the title
says how many were left out (a figure of 100,000 bars says nothing more). So with
tasks: above ``MAX_TASK_BARS`` task attempts those on the critical path, then those
that did not complete or were retries, then the longest are drawn (a bar costs
milliseconds to draw: 50,000 tasks took minutes and gigabytes).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text

from ..core.model import Attempt
from ..core.snapshot import Snapshot, TaskView
from ..palette import fill, font_colour, glyph
from ._common import as_snapshot, attempt_end, critical_steps, item_attempts, item_views

BAR_GID = "attempt"
BAR_HEIGHT = 0.56
NO_WORKER = "no worker:\nresource wait\ntimed out"
FONT_SIZE = 8.5
# attempt outcome -> palette state
OUTCOME_STATE = {"completed": "completed", "failed": "failed", "timeout": "failed",
                 "resource-timeout": "failed", "cancelled": "cancelled",
                 "interrupted": "up_for_retry", None: "running"}
LEGEND = {"completed": "success", "failed": "failed / timed out", "cancelled": "cancelled",
          "up_for_retry": "interrupted, re-queued", "running": "running"}
CRITICAL_EDGE = "#111111"
WAIT_COLOUR = "#6b6b6b"
# the line from ready to start, by what the task mostly waited for: colour, style, legend
WAITS = {"worker": (WAIT_COLOUR, "-", "waiting for a worker"),
         "resource": ("#7b3294", "-", "waiting for a resource"),
         "retry": (WAIT_COLOUR, "--", "retry delay + wait")}
_HATCH_COLOUR = hasattr(Rectangle, "set_hatchcolor")  # matplotlib >= 3.10
MIN_WIDTH = 0.004  # of the time axis: the narrowest bar drawn
SHORT = 0.015  # of the time axis: a failed or retried attempt narrower than this gets a marker
CPU_GID = "cpu"
SHORT_GID = "short"
CPU_STRIP = (0.0, 0.0, 0.0, 0.38)  # the strip along a bar's bottom: CPU/wall
CPU_STRIP_HEIGHT = 0.22  # of the bar's height
MAX_ITEM_BARS = 2000  # item attempts drawn at most (the longest)
MAX_TASK_BARS = 2000  # task attempts drawn at most (``_kept``)


class TimelineFigure(Figure):
    """A Figure that renders itself as PNG in Jupyter, even if pyplot was never imported."""

    def _repr_png_(self) -> bytes:
        buf = BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def timeline(orch: Any, ax: Axes | None = None) -> Figure:
    """Draw the attempts so far (from one snapshot) and return the figure.

    With ``ax`` the chart is drawn there (its figure is returned); otherwise a
    new figure sized to the number of workers is made.
    """
    snap = as_snapshot(orch)
    steps = critical_steps(snap)
    critical = {v.id for v, _ in steps}
    bars, tasks_left_out = _kept([(v, a) for v in snap.tasks for a in v.attempts
                                  if a.started_at is not None], critical, snap.time)
    items, left_out = item_attempts(item_views(orch), MAX_ITEM_BARS)
    bars += items
    lanes = _lanes(bars)
    if ax is None:
        fig = TimelineFigure(figsize=(10, 1.9 + 0.62 * max(1, len(lanes))), layout="constrained")
        ax = fig.add_subplot()
    if not bars:
        ax.text(0.5, 0.5, "no attempts yet", ha="center", va="center", fontsize=12,
                color=WAIT_COLOUR, transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title("Timeline")
        return ax.figure
    t0 = min([a.started_at for _, a in bars] + [v.ready_at for v, _ in bars if v.ready_at])
    t1 = max(attempt_end(a, snap.time) for _, a in bars)
    span = max(t1 - t0, 1e-3) * 1.02
    ax.set_xlim(0, span)
    ax.set_ylim(len(lanes) - 0.4, -0.6)  # worker 1 at the top
    waits: dict[str, list[list[tuple[float, float]]]] = {kind: [] for kind in WAITS}
    drawn = {"cpu": False, "short": False}
    for view, attempt in bars:
        y = lanes[attempt.worker]
        on_path = getattr(view, "task_id", view.id) in critical  # an item: its task's
        for what in _draw_bar(ax, view, attempt, y, t0, snap.time, on_path, span):
            drawn[what] = True
        since = _ready_for(view, attempt)
        if since is not None and attempt.worker is not None \
                and attempt.started_at - since > 0.004 * (t1 - t0):
            yw = y + BAR_HEIGHT / 2 + 0.08
            x0, x1 = since - t0, attempt.started_at - t0
            kind = "retry" if attempt.number > 1 else \
                "resource" if view.wait_resources > view.wait_worker else "worker"
            waits[kind] += [[(x0, yw), (x1, yw)], [(x0, yw - 0.05), (x0, yw + 0.05)]]
    for kind, segments in waits.items():
        if segments:
            colour, style, _ = WAITS[kind]
            ax.add_collection(LineCollection(segments, colors=colour, linewidths=1.2,
                                             linestyles=style, gid=f"{kind}-waits", zorder=1))
    _style_axes(ax, snap, lanes, bars, t0, t1, sum(seconds for _, seconds in steps), left_out,
                tasks_left_out)
    _legend(ax, bars, waits, critical, drawn)
    return ax.figure


def _kept(bars: list[tuple[TaskView, Attempt]], critical: set[str],
          now: float) -> tuple[list[tuple[TaskView, Attempt]], int]:
    """At most ``MAX_TASK_BARS`` task attempts, in start order: those on the critical path,
    then those that did not complete or were retries (what a reader looks for), then the
    longest; and how many were left out."""
    if len(bars) <= MAX_TASK_BARS:
        return bars, 0

    def rank(bar: tuple[TaskView, Attempt]) -> tuple[int, float]:
        view, attempt = bar
        kind = 0 if view.id in critical else \
            1 if attempt.outcome != "completed" or attempt.number > 1 else 2
        return kind, attempt.started_at - attempt_end(attempt, now)

    kept = sorted(bars, key=rank)[:MAX_TASK_BARS]
    kept.sort(key=lambda bar: bar[1].started_at)
    return kept, len(bars) - len(kept)


def attempt_bars(fig_or_ax: Figure | Axes) -> list[Rectangle]:
    """The attempt bars drawn by ``timeline`` (one per attempt), in drawing order."""
    return _with_gid(fig_or_ax, BAR_GID)


def cpu_strips(fig_or_ax: Figure | Axes) -> list[Rectangle]:
    """The CPU strips (``gid="cpu:<task id>:<n>"``), one per attempt whose CPU time is known."""
    return _with_gid(fig_or_ax, CPU_GID)


def short_markers(fig_or_ax: Figure | Axes) -> list[Line2D]:
    """The markers above short failed or retried attempts (``gid="short:<task id>:<n>"``)."""
    axes = fig_or_ax.axes if isinstance(fig_or_ax, Figure) else [fig_or_ax]
    return [line for ax in axes for line in ax.lines
            if (line.get_gid() or "").startswith(SHORT_GID + ":")]


def _with_gid(fig_or_ax: Figure | Axes, prefix: str) -> list[Rectangle]:
    axes = fig_or_ax.axes if isinstance(fig_or_ax, Figure) else [fig_or_ax]
    return [p for ax in axes for p in ax.patches if (p.get_gid() or "").startswith(prefix + ":")]


def _worker_order(name: str | None) -> tuple[int, list[Any]]:
    if name is None:
        return (1, [])
    return (0, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)])


def _lanes(bars: list[tuple[TaskView, Attempt]]) -> dict[str | None, int]:
    workers = sorted({a.worker for _, a in bars}, key=_worker_order)
    return {w: i for i, w in enumerate(workers)}


def _ready_for(view: TaskView, attempt: Attempt) -> float | None:
    """When this attempt could have started: ready time, or the previous attempt's end."""
    if attempt.number == 1:
        return view.ready_at
    prev = view.attempts[attempt.number - 2] if attempt.number - 2 < len(view.attempts) else None
    return None if prev is None else prev.ended_at


def _draw_bar(ax: Axes, view: TaskView, attempt: Attempt, y: int, t0: float, now: float,
              critical: bool, span: float) -> list[str]:
    """One attempt's bar, its CPU strip and its marker; returns which extras it drew."""
    state = OUTCOME_STATE.get(attempt.outcome, "failed")
    start, end = attempt.started_at - t0, attempt_end(attempt, now) - t0
    wall = max(end - start, 0.0)
    width = max(wall, MIN_WIDTH * span)
    retry = attempt.number > 1
    extra: dict[str, Any] = {}
    if retry and _HATCH_COLOUR:
        extra["hatchcolor"] = (1, 1, 1, 0.4) if font_colour(state) == "#ffffff" else (0, 0, 0, 0.3)
    gid = f"{view.id}:{attempt.number}"
    rect = Rectangle((start, y - BAR_HEIGHT / 2), width, BAR_HEIGHT,
                     facecolor=fill(state), hatch="///" if retry else None,
                     edgecolor=CRITICAL_EDGE if critical else "white",
                     linewidth=2.2 if critical else 0.8, zorder=3 if critical else 2,
                     gid=f"{BAR_GID}:{gid}", **extra)
    ax.add_artist(rect)  # not add_patch: the limits are set, and its update of them is most of the cost
    drew = []
    if attempt.cpu_time is not None and attempt.ended_at is not None and wall > 0:
        share = min(1.0, attempt.cpu_time / wall)
        strip = CPU_STRIP_HEIGHT * BAR_HEIGHT
        ax.add_artist(Rectangle((start, y + BAR_HEIGHT / 2 - strip), width * share, strip,
                               facecolor=CPU_STRIP, linewidth=0, zorder=3.5,
                               gid=f"{CPU_GID}:{gid}"))
        drew.append("cpu")
    if wall < SHORT * span and (retry or state not in ("completed", "running")):
        ax.plot([start + width / 2], [y - BAR_HEIGHT / 2 - 0.06], marker="v", markersize=7,
                markerfacecolor=fill(state), markeredgecolor=CRITICAL_EDGE, linestyle="none",
                zorder=5, gid=f"{SHORT_GID}:{gid}")
        drew.append("short")
    mark = glyph(state)
    number = f" #{attempt.number}" if retry or len(view.attempts) > 1 else ""
    timeout = " (timeout)" if attempt.outcome in ("timeout", "resource-timeout") else ""
    _label(ax, rect, [f"{mark} {view.name}{number}{timeout}", f"{mark} {view.name}{number}",
                      f"{mark} {view.name}", f"{mark}{number}", mark], font_colour(state))
    return drew


def _label(ax: Axes, rect: Rectangle, labels: list[str], colour: str) -> None:
    ax.add_artist(_BarLabel(rect, labels, color=colour, fontsize=FONT_SIZE, zorder=4))


class _BarLabel(Text):
    """A bar's label: at draw time, the longest of ``labels`` that fits inside the bar, or none.

    Measured with the real renderer, so it stays right whatever the figure's size or zoom.
    """

    def __init__(self, rect: Rectangle, labels: list[str], **kwargs: Any) -> None:
        x, y = rect.get_x() + rect.get_width() / 2, rect.get_y() + rect.get_height() / 2
        super().__init__(x, y, labels[0], ha="center", va="center", clip_on=True, **kwargs)
        self._rect, self._labels = rect, labels

    def draw(self, renderer: Any) -> None:
        room = self._rect.get_window_extent(renderer).width - 6 * renderer.points_to_pixels(1)
        narrowest = 0.25 * renderer.points_to_pixels(self.get_fontsize())  # per character
        for text in self._labels:
            if len(text) * narrowest > room:  # cannot fit: not measured (thousands of bars)
                continue
            self.set_text(text)
            if self.get_window_extent(renderer).width <= room:
                super().draw(renderer)
                return


def _style_axes(ax: Axes, snap: Snapshot, lanes: dict[str | None, int],
                bars: list[tuple[TaskView, Attempt]], t0: float, t1: float,
                critical_seconds: float, left_out: int = 0, tasks_left_out: int = 0) -> None:
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([NO_WORKER if w is None else w.removeprefix("codo-").replace("-", " ")
                        for w in lanes])
    ax.tick_params(axis="y", length=0)
    clock = datetime.fromtimestamp(t0, UTC).strftime("%H:%M:%S")
    ax.set_xlabel(f"seconds since {clock} UTC")
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    tasks = len({getattr(v, "task_id", v.id) for v, _ in bars})
    title = (f"{len(bars)} attempt{'s' * (len(bars) != 1)} of {tasks} task{'s' * (tasks != 1)} "
             f"on {snap.max_workers} worker{'s' * (snap.max_workers != 1)}, "
             f"makespan {snap.stats.get('makespan', t1 - t0):.2f} s")
    if critical_seconds > 0:
        title += f"; critical path {critical_seconds:.2f} s"
    if tasks_left_out:
        title += f"\n{tasks_left_out:,} shorter task attempts not drawn (tasks_frame())"
    if left_out:
        title += f"\n{left_out:,} shorter item attempts not drawn (tasks_frame(items=True))"
    ax.set_title(title, loc="left", fontsize=10.5)


def _legend(ax: Axes, bars: list[tuple[TaskView, Attempt]],
            waits: dict[str, list[Any]], critical: set[str], drawn: dict[str, bool]) -> None:
    present = {OUTCOME_STATE.get(a.outcome, "failed") for _, a in bars}
    handles: list[Any] = [Patch(facecolor=fill(s), label=f"{glyph(s)} {label}")
                          for s, label in LEGEND.items() if s in present]
    if critical:
        handles.append(Patch(facecolor="white", edgecolor=CRITICAL_EDGE, linewidth=2.2,
                             label="critical path"))
    if any(a.number > 1 for _, a in bars):
        handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="///",
                             label="retry (attempt #n)"))
    if drawn["cpu"]:
        handles.append(Patch(facecolor=CPU_STRIP, linewidth=0,
                             label="CPU time (strip length: CPU/wall)"))
    if drawn["short"]:
        handles.append(Line2D([], [], marker="v", markersize=7, markerfacecolor="white",
                              markeredgecolor=CRITICAL_EDGE, linestyle="none",
                              label="short attempt (drawn wider)"))
    for kind, (colour, style, label) in WAITS.items():
        if waits[kind]:
            handles.append(Line2D([], [], color=colour, linewidth=1.2, linestyle=style,
                                  label=label))
    fig = ax.figure
    if isinstance(fig, TimelineFigure) and fig.axes == [ax]:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4),
                   frameon=False, fontsize=9)
    else:
        ax.legend(handles=handles, loc="best", fontsize=8)
