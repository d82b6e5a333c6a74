"""The view's copy of task states, kept current from events between snapshots.

A snapshot copies every task under the engine lock (about 30 ms at 5,000
tasks), so the view takes one only when it must: the structure changed, the
run settled, or run times are due for a refresh. In between, status events
update this mirror in O(changes). Events numbered at or below the last
snapshot's sequence number are ignored: the snapshot already includes them,
so no change is missed or applied twice.

Besides states the mirror keeps what a node and its hover text show: retries
(``↻2``), the resource a ready task waits for (from the engine's ``waiting
for KEY`` events) and who holds it, error messages. It also counts runs: a
run opens when work appears after everything had ended (``%codo_run``, a
``rerun``, tasks added), or as the engine starts again after a stop in the middle
of one (that stop ended the journal's run: the restart runs in a new one), and
settles when every task has ended again; the header's start, elapsed time and
throughput are those of the current run only (never the time the engine sat stopped).

A mapped task's items are not tasks here (the header counts tasks): their
``item`` events move the task's counts by state (``tallies``), which its node
shows as a bar and counts. An item event whose task is unknown or was not
expanded at the last snapshot changes nothing but asks for a snapshot
(``stale_maps``), which brings the new counts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from ..core.events import Event
from ..core.model import TaskStatus
from ..core.snapshot import Snapshot
from ..palette import STATES, fill, fill_var, font_var, glyph
from .drawing import critical_estimate, runtime_of
from .grouping import SHOWN, Grouping

UNFINISHED = ("pending", "ready", "running", "up_for_retry")
STRUCTURAL = ("added", "removed")
ERRORED = ("failed", "upstream_failed", "cancelled", "skipped")
WAITING_FOR = "waiting for "
NOT_NEEDED = "not needed"  # how the detail of a task skipped as not needed starts
# Statuses whose display state needs no look at the event's detail.
_SHOWN_AS = {s: s.value for s in TaskStatus if s not in (TaskStatus.PENDING, TaskStatus.SKIPPED)}


def display_state(event: Event) -> str:
    """The display state an event announces (see ``TaskView.state``)."""
    status = event.status
    if status is TaskStatus.PENDING and event.detail == "retry":
        return "up_for_retry"
    if status is TaskStatus.SKIPPED:  # the detail says why: a failure above, or not needed
        detail = event.detail
        return "skipped" if detail and detail.startswith(NOT_NEEDED) else "upstream_failed"
    return status.value if status is not None else "pending"


def is_structural(event: Event) -> bool:
    return event.kind in STRUCTURAL or (event.kind == "status" and event.detail == "requeued")


def clock(seconds: float) -> str:
    """``12:03:04`` in local time."""
    return time.strftime("%H:%M:%S", time.localtime(seconds))


class Tracker:
    """States, counts (per state and per group), timings and runs; touched by the view thread."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.runtimes: dict[str, float | None] = {}
        self.retries: dict[str, int] = {}
        self.waiting: dict[str, str] = {}          # task id -> resource key it waits for
        self.claims: dict[str, tuple[str, ...]] = {}  # task id -> resource keys it claims
        self.errors: dict[str, str] = {}
        self.critical: set[str] = set()
        self.critical_pairs: set[tuple[str, str]] = set()
        self.provisional = False
        self.counts: Counter[str] = Counter()
        self.group_of: dict[str, str] | None = None
        self.group_counts: dict[str, Counter[str]] = {}
        self.changed: set[str] = set()  # task ids (or group keys) repainted since the last frame
        self.finished_since_snapshot = False
        self.since = 0.0
        self.since_seq = 0  # the snapshot's sequence number: later events only
        # runs
        self.run = 0
        self.opened: float | None = None   # when the current run's work appeared
        self.started: float | None = None  # its first attempt's start
        self.ended: float | None = None    # its last task's end, once settled
        self.finished = 0                  # tasks that ended (completed or failed) in this run
        self._open = False
        #: looks up a task's error message (the view asks the orchestrator); events carry none
        self.error_lookup: Callable[[str], str | None] | None = None
        #: the journal's number of the current run (as %codo_history numbers runs), if any
        self.run_number: Callable[[], int | None] | None = None
        self.restored: set[str] = set()  # tasks whose result came back from the journal
        self.running_since: dict[str, float] = {}  # running task id -> its attempt's start
        #: mapped task id -> its items by state (``map_tally``), kept current by item events
        self.tallies: dict[str, Counter[str]] = {}
        self.stale_maps = False  # an item event came for a map this mirror has no counts of
        self.stale_run = False  # the engine started (again) since the last snapshot, which
        # tells when (``Snapshot.engine_started``): the current run may have ended with a stop

    def reset(self, snap: Snapshot, grouping: Grouping | None) -> None:
        """Take every state, run time and timing from ``snap``."""
        self.states = {t.id: t.state for t in snap.tasks}
        self.names = {t.id: t.name for t in snap.tasks}
        self.runtimes = {t.id: runtime_of(t) for t in snap.tasks}
        self.retries = {t.id: t.retry_count for t in snap.tasks if t.retry_count}
        self.restored = {t.id for t in snap.tasks if t.restored is not None}
        self.running_since = {t.id: t.attempts[-1].started_at or snap.time for t in snap.tasks
                              if t.state == "running" and t.attempts}
        self.waiting = {t.id: t.blocked_on for t in snap.tasks
                        if t.blocked_on and t.state == "ready"}
        self.claims = {t.id: tuple(k for k, _ in t.resources) for t in snap.tasks if t.resources}
        self.errors = {t.id: t.error_message for t in snap.tasks
                       if t.error_message and t.state in ERRORED}
        self.tallies = {t.id: Counter(t.map_tally) for t in snap.tasks if t.map_tally is not None}
        self.stale_maps = self.stale_run = False
        path, self.provisional = critical_estimate(snap)  # grouped too: groups show it
        self.critical, self.critical_pairs = set(path), set(zip(path, path[1:], strict=False))
        self.counts = Counter(self.states.values())
        self.group_of = None if grouping is None else grouping.of
        self.group_counts = {} if grouping is None else {
            g: Counter(self.states[m] for m in members) for g, members in grouping.members.items()}
        self.changed = set(self.group_counts or self.states)
        self.finished_since_snapshot = False
        self.since = snap.time
        self.since_seq = snap.seq
        self._runs_from(snap)

    def _runs_from(self, snap: Snapshot) -> None:
        """Open, keep or settle the current run from a snapshot.

        A run is new when work is unfinished or attempts started after the last
        run ended (a quick run can start and end between two snapshots), and when the
        engine started again after a stop in the middle of the open run: that stop ended
        it (as the journal's run), so the new one counts from the start
        (``Snapshot.engine_started``), not from the first attempt before the stop.
        """
        unfinished = self.unfinished
        starts_all = [a.started_at for t in snap.tasks for a in t.attempts
                      if a.worker is not None and a.started_at is not None]
        starts_all += [t.started_at for t in snap.tasks  # a map's items run again (rerun
                       if t.map_tally is not None and t.state == "running"  # only="failed"):
                       and t.started_at is not None]  # no attempt of its own marks that
        restart = snap.engine_started
        if self.run == 0:
            if unfinished or starts_all:  # the first run this view sees, from its beginning
                # (which is the engine's last start if attempts began before it: a stop
                # in between ended the run they were in)
                before = restart is not None and any(s < restart for s in starts_all)
                self._open_run(restart if before else 0.0)
        elif not self._open:
            ended = self.ended if self.ended is not None else self.opened or 0.0
            newer = [s for s in starts_all if s > ended]
            if unfinished or newer:
                self._open_run(min(newer) if newer else snap.time)
        since = self.opened or 0.0
        if restart is not None and since < restart and (
                unfinished or any(s >= restart for s in starts_all)) and any(
                since <= s < restart for s in starts_all):
            # the current run had attempts before the engine's last start and goes on after
            # it: it was stopped mid-run (events since may have settled it), and the work
            # since that start is a new run (never so for the first run a view sees: it
            # opened from that start already)
            self._open_run(restart)
            since = restart
        starts = [s for s in starts_all if s >= since]
        if starts:
            self.started = min(starts) if self.started is None else min(self.started, min(starts))
        ends = [t.completed_at for t in snap.tasks
                if t.completed_at is not None and t.completed_at >= since]
        self.finished = sum(1 for t in snap.tasks if t.completed_at is not None
                            and t.completed_at >= since and t.state in ("completed", "failed"))
        if unfinished:
            self.ended = None
        else:
            self._open = False
            self.ended = max(ends, default=self.ended)

    def _open_run(self, at: float | None) -> None:
        self.run += 1
        self._open = True
        self.opened = at if at is not None else time.time()
        self.started = self.ended = None
        self.finished = 0

    def apply(self, events: Iterable[Event]) -> None:
        """Fold status events newer than the last snapshot into the mirror (hot: ~1 us each)."""
        states, counts, group_of, since = self.states, self.counts, self.group_of, self.since_seq
        changed, last = self.changed, None
        for ev in events:
            if ev.kind != "status" or (ev.seq is not None and ev.seq <= since):
                if ev.kind == "item" and (ev.seq is None or ev.seq > since):
                    self._item(ev)
                elif ev.kind == "engine" and ev.detail == "started" and self.started:
                    # started again after attempts of this view's run: a snapshot tells
                    # when, and whether that run ended with a stop (``_runs_from``)
                    self.stale_run = True
                continue
            tid = ev.task_id
            old = states.get(tid)  # type: ignore[arg-type]
            new = _SHOWN_AS.get(ev.status) or display_state(ev)
            if old is None:
                continue
            detail = ev.detail
            if old == new:
                if detail and detail.startswith(WAITING_FOR):
                    self.waiting[tid] = detail[len(WAITING_FOR):]  # type: ignore[index]
                    changed.add(tid if group_of is None else group_of[tid])  # type: ignore[index]
                continue
            if not self._open and new in UNFINISHED:
                self._open_run(ev.time)
            self.waiting.pop(tid, None)  # type: ignore[arg-type]
            self.restored.discard(tid)  # type: ignore[arg-type]
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
            if old == "running":
                self.running_since.pop(tid, None)  # type: ignore[arg-type]
            if new == "running":
                self.running_since[tid] = ev.time  # type: ignore[index]
                if self.started is None:
                    self.started = ev.time
            elif new == "up_for_retry":
                self.retries[tid] = self.retries.get(tid, 0) + 1  # type: ignore[index]
            elif new == "completed" or new == "failed":
                self.finished_since_snapshot = True
                self.finished += 1
                if detail == "restored":
                    self.restored.add(tid)  # type: ignore[arg-type]
                if ev.execution_time is not None:
                    self.runtimes[tid] = ev.execution_time  # type: ignore[index]
            if new in ERRORED and self.error_lookup is not None and group_of is None:
                message = self.error_lookup(tid)  # type: ignore[arg-type]
                if message:
                    self.errors[tid] = message  # type: ignore[index]
            last = ev.time
        if self.unfinished:
            self.ended = None
        elif self._open:
            self._open = False
            self.ended = last or time.time()

    def _item(self, ev: Event) -> None:
        """An item changed state: move its map's counts (never raises on an unknown id)."""
        tid = ev.task_id or ""
        cut = tid.rfind("[")
        if cut <= 0:
            return
        parent = tid[:cut]
        tally = self.tallies.get(parent)
        if not tally:  # a task this mirror does not know (or not a map), or not expanded
            self.stale_maps = self.stale_maps or tally is not None
            return
        old = ev.previous.value if ev.previous is not None else "pending"
        new = ev.status.value if ev.status is not None else "removed"
        if tally[old] <= 0:  # counts from before this event's map was re-expanded
            self.stale_maps = True
            return
        tally[old] -= 1
        tally[new] += 1
        self.changed.add(parent if self.group_of is None else self.group_of.get(parent, parent))

    # -- who holds what ------------------------------------------------------------------
    def holders(self, key: str) -> tuple[str, ...]:
        """Names of the running tasks that claim ``key`` (they hold it while they run)."""
        return tuple(self.names.get(tid, tid) for tid, keys in self.claims.items()
                     if key in keys and self.states.get(tid) == "running")

    def lock_state(self, key: str, tid: str) -> str:
        """How a lock edge looks: the task ``waiting`` for it, ``holding`` it, or neither."""
        if self.waiting.get(tid) == key:
            return "waiting"
        if self.states.get(tid) == "running":
            return "holding"
        return ""

    # -- the header ---------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.states)

    @property
    def unfinished(self) -> int:
        return sum(self.counts[s] for s in UNFINISHED)

    @property
    def done(self) -> int:
        """Tasks that ended well: completed, or not needed (failures are counted apart)."""
        return self.counts["completed"] + self.counts["skipped"]

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    def failed_text(self) -> str:
        """`` · 1 failed`` after "done" in the header, or nothing."""
        return f" \u00b7 {self.failed} failed" if self.failed else ""

    def elapsed(self, now: float | None = None) -> float:
        """Seconds of the current run: its first start to its end (or now); idle time excluded."""
        if self.started is None:
            return 0.0
        return max(0.0, (self.ended or now or time.time()) - self.started)

    def throughput(self) -> float:
        elapsed = self.elapsed()
        return self.finished / elapsed if elapsed > 0 else 0.0

    def run_label(self) -> str:
        """``run 2 · started 12:03:04``: which run the view shows, numbered as the journal
        (``%codo_history``) numbers it; without a journal, counted by this view."""
        if not self.run:
            return "no run yet"
        number = self.run_number() if self.run_number is not None else None
        number = number or self.run
        if self.started is None:
            return f"run {number} \u00b7 not started"
        return f"run {number} \u00b7 started {clock(self.started)}"

    def summary(self) -> str:
        """One line: done / total, counts by state, run, elapsed, throughput."""
        parts = [f"{glyph(s)} {STATES[s][2]} {self.counts[s]}" for s in SHOWN if self.counts[s]]
        return (f"{self.done}/{self.total} done{self.failed_text()} "
                f"({', '.join(parts) or 'no tasks'}) · "
                f"{self.run_label()} · elapsed {self.elapsed():.1f} s · "
                f"{self.throughput():.1f} tasks/s")

    def header_html(self, note: str = "") -> str:
        total = max(1, self.total)
        bar_colour = (fill("failed") if self.counts["failed"] else
                      fill("completed") if self.total and not self.unfinished else "#2196f3")
        bar = (f'<span class="codo-bar" style="display:inline-block;width:160px;height:8px;'
               f"border-radius:4px;background:var(--jp-layout-color3,#ddd);vertical-align:middle;"
               f'margin-right:8px;overflow:hidden"><span style="display:block;height:100%;'
               f'width:{100 * (self.total - self.unfinished) / total:.1f}%;'
               f'background:{bar_colour}"></span></span>')
        chips = "".join(
            f'<span style="background:{fill_var(s)};color:{font_var(s)};border-radius:3px;'
            f'padding:0 5px;margin-right:4px" title="{STATES[s][2]}">{glyph(s)} {self.counts[s]}'
            "</span>" for s in SHOWN if self.counts[s])
        muted = "color:var(--jp-ui-font-color2,#666)"
        extra = f' <span style="{muted}">· {note}</span>' if note else ""
        return (f'<div class="codo-head" style="font-family:sans-serif;font-size:12px;'
                f'line-height:1.8">{bar}<b>{self.done}/{self.total}</b> done{self.failed_text()} '
                f'&nbsp;{chips}'
                f'<span style="{muted}">{self.run_label()}</span> · elapsed '
                f'<span class="codo-elapsed">{self.elapsed():.1f} s</span> · '
                f"{self.throughput():.1f} tasks/s{extra}</div>")
