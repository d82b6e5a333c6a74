"""The view's copy of task states, kept current from events between snapshots.

A snapshot copies every task under the engine lock (about 30 ms at 5,000
tasks), so the view takes one only when it must: the structure changed, the
run settled, or run times are due for a refresh. In between, status events
update this mirror in O(changes). Events numbered at or below the last
snapshot's sequence number are ignored: the snapshot already includes them,
so no change is missed or applied twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from ..core.events import Event
from ..core.model import TaskStatus
from ..core.snapshot import Snapshot, critical_path
from ..palette import STATES, fill, font_colour, glyph
from .drawing import runtime_of
from .grouping import SHOWN, Grouping

UNFINISHED = ("pending", "ready", "running", "up_for_retry")
STRUCTURAL = ("added", "removed")
# Statuses whose display state needs no look at the event's detail.
_SHOWN_AS = {s: s.value for s in TaskStatus if s not in (TaskStatus.PENDING, TaskStatus.SKIPPED)}


def display_state(event: Event) -> str:
    """The display state an event announces (see ``TaskView.state``)."""
    status = event.status
    if status is TaskStatus.PENDING and event.detail == "retry":
        return "up_for_retry"
    if status is TaskStatus.SKIPPED:
        return "upstream_failed"  # the engine skips a task only when an upstream one ended badly
    return status.value if status is not None else "pending"


def is_structural(event: Event) -> bool:
    return event.kind in STRUCTURAL or (event.kind == "status" and event.detail == "requeued")


class Tracker:
    """States, counts (per state and per group) and timings; touched by the view thread only."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.runtimes: dict[str, float | None] = {}
        self.critical: set[str] = set()
        self.critical_pairs: set[tuple[str, str]] = set()
        self.counts: Counter[str] = Counter()
        self.group_of: dict[str, str] | None = None
        self.group_counts: dict[str, Counter[str]] = {}
        self.changed: set[str] = set()  # task ids (or group keys) repainted since the last frame
        self.finished_since_snapshot = False
        self.since = 0.0
        self.since_seq = 0  # the snapshot's sequence number: later events only
        self.started: float | None = None
        self.ended: float | None = None

    def reset(self, snap: Snapshot, grouping: Grouping | None) -> None:
        """Take every state, run time and timing from ``snap``."""
        self.states = {t.id: t.state for t in snap.tasks}
        self.runtimes = {t.id: runtime_of(t) for t in snap.tasks}
        path = [] if grouping is not None else critical_path(snap)
        self.critical, self.critical_pairs = set(path), set(zip(path, path[1:], strict=False))
        self.counts = Counter(self.states.values())
        self.group_of = None if grouping is None else grouping.of
        self.group_counts = {} if grouping is None else {
            g: Counter(self.states[m] for m in members) for g, members in grouping.members.items()}
        self.changed = set(self.group_counts or self.states)
        self.finished_since_snapshot = False
        self.since = snap.time
        self.since_seq = snap.seq
        starts = [a.started_at for t in snap.tasks for a in t.attempts if a.worker is not None]
        self.started = min(starts, default=None)
        ends = [t.completed_at for t in snap.tasks if t.completed_at is not None]
        self.ended = max(ends, default=None) if self.unfinished == 0 else None

    def apply(self, events: Iterable[Event]) -> None:
        """Fold status events newer than the last snapshot into the mirror (hot: ~1 us each)."""
        states, counts, group_of, since = self.states, self.counts, self.group_of, self.since_seq
        changed, last = self.changed, None
        for ev in events:
            if ev.kind != "status" or (ev.seq is not None and ev.seq <= since):
                continue
            tid = ev.task_id
            old = states.get(tid)  # type: ignore[arg-type]
            new = _SHOWN_AS.get(ev.status) or display_state(ev)
            if old is None or old == new:
                continue
            states[tid] = new  # type: ignore[index]
            counts[old] -= 1
            counts[new] += 1
            if group_of is None:
                changed.add(tid)  # type: ignore[arg-type]
            else:
                group = self.group_counts[group_of[tid]]  # type: ignore[index]
                group[old] -= 1
                group[new] += 1
                changed.add(group_of[tid])  # type: ignore[index]
            if new == "running" and self.started is None:
                self.started = ev.time
            elif new == "completed" or new == "failed":
                self.finished_since_snapshot = True
            last = ev.time
        if self.unfinished:
            self.ended = None
        elif self.ended is None or last is not None:
            self.ended = last or self.ended or time.time()

    # -- the header ---------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.states)

    @property
    def unfinished(self) -> int:
        return sum(self.counts[s] for s in UNFINISHED)

    @property
    def done(self) -> int:
        return self.total - self.unfinished

    def elapsed(self, now: float | None = None) -> float:
        if self.started is None:
            return 0.0
        return max(0.0, (self.ended or now or time.time()) - self.started)

    def throughput(self) -> float:
        elapsed = self.elapsed()
        return (self.counts["completed"] + self.counts["failed"]) / elapsed if elapsed > 0 else 0.0

    def summary(self) -> str:
        """One line: done / total, counts by state, elapsed, throughput."""
        parts = [f"{glyph(s)} {STATES[s][2]} {self.counts[s]}" for s in SHOWN if self.counts[s]]
        return (f"{self.done}/{self.total} done ({', '.join(parts) or 'no tasks'}) · "
                f"elapsed {self.elapsed():.1f} s · {self.throughput():.1f} tasks/s")

    def header_html(self, note: str = "") -> str:
        chips = "".join(
            f'<span style="background:{fill(s)};color:{font_colour(s)};border-radius:3px;'
            f'padding:0 5px;margin-right:4px" title="{STATES[s][2]}">{glyph(s)} {self.counts[s]}'
            "</span>" for s in SHOWN if self.counts[s])
        extra = f' <span style="color:#666">· {note}</span>' if note else ""
        return (f'<div style="font-family:sans-serif;font-size:12px;line-height:1.8">'
                f"<b>{self.done}/{self.total}</b> done &nbsp;{chips} elapsed "
                f"{self.elapsed():.1f} s · {self.throughput():.1f} tasks/s{extra}</div>")
