"""Why was it slow, and what would help? The guide's "Slow Execution" checklist as one tidy frame.

One row per finding, grouped by ``kind``; ``cure`` says what to change:

- ``critical_path``: every task on the longest dependency chain, in order, with
  its run time and its ``share`` of the path's length. Only speeding these up
  (or breaking the chain: "verify dependencies are optimal") shortens the run.
- ``gil_contention``: tasks on threads that ran at the same time, each busy
  the whole while, whose CPU/wall ratios add up to about one core (four
  pure-Python loops on four threads get about 0.25 each): only one thread runs
  Python at a time. ``seconds`` is the time each spent runnable but not
  running (wall minus CPU). Cure: ``executor="processes"``. On a machine busy
  with other work they get less than one core between them; on Linux each
  attempt's run-queue wait (``Attempt.run_delay``) still tells the GIL (the
  threads slept) from a lack of cores (they queued for one).
- ``waiting``: tasks that used little CPU for their run time (CPU/wall under
  0.2) and waited at least 5 % of the makespan: they waited on I/O, a sleep, a lock or a subprocess (or for a core,
  on a machine busy with other work). ``seconds`` is
  that waiting time. A waiting task holds a worker but no core, so more
  workers help when other tasks queued for one; otherwise the wait is inside
  the task.
- ``resource_wait``: the tasks that waited longest for a resource held by
  another task, naming the ``resource`` and its holders ("review resource
  allocation").
- ``worker_wait``: the tasks that waited longest, ready and with their resources,
  for a free worker: time lost to a full pool (add workers, or "adjust
  priorities"). The first row's ``detail`` gives the total over all tasks.
- ``retries``: tasks that needed more than one attempt, with the wall-clock
  time from their first attempt's start to their last one's.

Outside the critical path, ``share`` is ``seconds`` over the run's makespan.
The CPU figures are each attempt's own ``cpu_time`` (its thread's on threads
and Dask, its worker process's on processes); attempts without one (a
cancelled Dask attempt, say) are left out of the CPU findings. GIL contention
is looked for only on the ``threads`` executor: the orchestrator says which one
it uses; for a bare snapshot pass ``executor=``, else threads is assumed unless
attempts measured their memory, which only processes do.

Mapped tasks: a map on the critical path weighs its whole span (expansion to its
last item's end) and its row names its item count, failures and longest item;
items that took more than one attempt are ``retries`` rows of their own
(``square[7]``). The CPU findings (GIL contention, waiting) read the items' attempts
too, each item a row of its own (``square[7]``), from an orchestrator (a bare snapshot
does not hold items); the resource and worker findings read tasks only.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..core.engine import TINY
from ..core.model import Attempt
from ..core.snapshot import Snapshot, TaskView
from ._common import (
    as_snapshot,
    attempt_end,
    critical_steps,
    item_views,
    wait_windows,
    waited_on,
    waiting_now,
)

KINDS = ("critical_path", "gil_contention", "waiting", "resource_wait", "worker_wait", "retries")
COLUMNS = ("kind", "task", "resource", "seconds", "share", "detail", "cure")
# pandas 3 has a real string dtype (missing values are NaN); pandas 2 keeps objects.
STR = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
WAITING_RATIO = 0.2  # CPU/wall below this: the task mostly waited
ONE_CORE = (0.6, 1.35)  # busy tasks that together used this many cores shared about one
MIN_RUN = 0.02  # attempts shorter than this (seconds) say too little about their CPU use
BUSY_SHARE = 0.3  # a run is busy with this share of an equal split of one core (0.5 would
# be the natural cut; lower, so that a busy machine lending the process half a core still counts)


def bottlenecks(orch: Any, top: int = 5, min_seconds: float = 0.01,
                executor: str | None = None) -> pd.DataFrame:
    """The slow-execution report: kind / task / resource / seconds / share / detail / cure.

    ``top`` caps the rows per kind (the critical path is always whole); waits
    shorter than ``min_seconds`` are scheduling noise and left out.
    ``executor`` ("threads", "processes", "dask", "sync") is the orchestrator's
    when not given.
    """
    snap = as_snapshot(orch)
    if executor is None:
        executor = getattr(orch, "executor_name", None) or snap.stats.get("executor") \
            or _guess_executor(snap)
    makespan = float(snap.stats.get("makespan") or 0.0)
    items = item_views(orch)
    cpu = _CpuFindings.of(snap, executor, min_seconds, items)
    rows = (_critical_rows(snap, items) + cpu.gil_rows(top) + cpu.waiting_rows(snap, top)
            + _resource_rows(snap, top, min_seconds)
            + _worker_rows(snap, top, min_seconds, executor, bool(cpu.gil))
            + _retry_rows(snap, top, items))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(KINDS)))
    for col in ("task", "resource", "detail", "cure"):
        frame[col] = frame[col].astype(STR)
    frame["seconds"] = frame["seconds"].astype("float64")
    frame["share"] = frame["share"].astype("float64")
    off_path = frame["kind"] != "critical_path"
    frame.loc[off_path, "share"] = ((frame.loc[off_path, "seconds"] / makespan).clip(0.0, 1.0)
                                    if makespan > 0 else np.nan)
    return frame


def _row(kind: str, view: TaskView | None, seconds: float, detail: str,
         resource: str | None = None, share: float = np.nan, cure: str = "") -> dict[str, Any]:
    return {"kind": kind, "task": None if view is None else view.name, "resource": resource,
            "seconds": float(seconds), "share": share, "detail": detail, "cure": cure}


def _guess_executor(snap: Snapshot) -> str:
    """Only the processes executor measures memory per attempt."""
    if any(a.peak_memory is not None for v in snap.tasks for a in v.attempts):
        return "processes"
    return "threads"


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# -- CPU: GIL contention and waiting tasks ---------------------------------------------------------
@dataclass(slots=True)
class _Run:
    """One attempt that ran on a worker, with its CPU seconds."""

    view: TaskView
    attempt: Attempt
    start: float
    end: float
    cpu: float
    delay: float | None = None  # seconds its thread waited for a core (``core.run_queue``)

    @property
    def wall(self) -> float:
        return self.end - self.start

    @property
    def ratio(self) -> float:
        return self.cpu / self.wall if self.wall > 0 else 0.0


@dataclass(slots=True)
class _Group:
    """Busy thread attempts that overlapped in time and got ``cores`` cores between them."""

    runs: list[_Run]
    span: float
    cores: float


class _Load:
    """How many of ``runs`` ran at each moment, integrated over time: one sweep over their
    starts and ends (O(n log n)), then O(log n) a question. Asking every run how much it
    overlapped every other was O(n²): 1,000 busy tasks took seconds, 10,000 minutes.
    """

    def __init__(self, runs: list[_Run]) -> None:
        steps = sorted([(r.start, 1) for r in runs] + [(r.end, -1) for r in runs])
        self.times: list[float] = []
        self.running: list[int] = []  # how many run just after each time
        self.total: list[float] = []  # run-seconds of all of them up to each time
        self.crowded: list[float] = []  # seconds with two or more running, up to each time
        running, total, crowded, last = 0, 0.0, 0.0, None
        for t, step in steps:
            if last is not None:
                total += running * (t - last)
                crowded += (t - last) if running >= 2 else 0.0
            running += step
            last = t
            self.times.append(t)
            self.running.append(running)
            self.total.append(total)
            self.crowded.append(crowded)

    def _upto(self, t: float) -> tuple[float, float]:
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            return 0.0, 0.0
        dt, running = t - self.times[i], self.running[i]
        return self.total[i] + running * dt, self.crowded[i] + (dt if running >= 2 else 0.0)

    def overlap(self, run: _Run) -> float:
        """Run-seconds of all the runs within ``run`` (its own included)."""
        return self._upto(run.end)[0] - self._upto(run.start)[0]

    def beside(self, run: _Run) -> float:
        """Seconds of ``run`` (one of the runs) during which at least one other ran too."""
        return self._upto(run.end)[1] - self._upto(run.start)[1]


def _chains(runs: list[_Run]) -> list[list[_Run]]:
    """Runs grouped by overlapping in time, directly or through each other (a sweep)."""
    groups: list[list[_Run]] = []
    end = float("-inf")
    for run in sorted(runs, key=lambda r: r.start):
        if groups and run.start < end:
            groups[-1].append(run)
            end = max(end, run.end)
        else:
            groups.append([run])
            end = run.end
    return groups


def _union(runs: list[_Run]) -> float:
    """Seconds during which at least one of ``runs`` ran."""
    total = 0.0
    start = end = None
    for run in sorted(runs, key=lambda r: r.start):
        if end is None or run.start > end:
            if end is not None:
                total += end - start
            start, end = run.start, run.end
        else:
            end = max(end, run.end)
    return total + (end - start if end is not None and start is not None else 0.0)


class _CpuFindings:
    """GIL contention and waiting tasks, from the attempts' CPU seconds."""

    def __init__(self, runs: list[_Run], gil: list[_Group], min_seconds: float) -> None:
        self.runs, self.gil, self.min_seconds = runs, gil, min_seconds
        self.flagged = {r.view.id for g in gil for r in g.runs}

    @classmethod
    def of(cls, snap: Snapshot, executor: str, min_seconds: float,
           items: Sequence[Any] = ()) -> _CpuFindings:
        """From the tasks' attempts and the items' (a map of CPU-bound items on threads is
        the commonest GIL contention of all)."""
        shortest = max(MIN_RUN, min_seconds)
        runs = [_Run(v, a, a.started_at, a.ended_at, a.cpu_time, a.run_delay)
                for v in (*snap.tasks, *items) for a in v.attempts if a.cpu_time is not None and a.worker is not None
                and a.started_at is not None and a.ended_at is not None
                and a.ended_at - a.started_at >= shortest]
        return cls(runs, contention(runs) if executor == "threads" else [], min_seconds)

    def gil_rows(self, top: int) -> list[dict[str, Any]]:
        cure = ('executor="processes": each task gets its own interpreter and core'
                if usable_cores() > 1 else
                "only one CPU core here: processes would share it too; run on more cores")
        rows: list[dict[str, Any]] = []
        lost = sum(r.wall - r.cpu for g in self.gil for r in g.runs)
        # the stretches that lost most first, and ``top`` rows in all (a long run of short
        # busy tasks is hundreds of stretches: one row per stretch buried the report)
        for n, group in enumerate(sorted(self.gil, key=lambda g: -sum(r.wall - r.cpu
                                                                       for r in g.runs))):
            per_task: dict[str, list[_Run]] = {}
            for run in group.runs:
                per_task.setdefault(run.view.id, []).append(run)
            ranked = sorted(per_task.values(), key=lambda rs: -sum(r.wall - r.cpu for r in rs))
            for i, runs in enumerate(ranked[:top - len(rows)]):
                wall, cpu = sum(r.wall for r in runs), sum(r.cpu for r in runs)
                detail = f"CPU/wall {cpu / wall:.2f} while it ran ({wall:.2f} s)"
                if i == 0:
                    detail += (f"; {len(per_task)} thread tasks ran together for "
                               f"{group.span:.2f} s, busy throughout, and used "
                               f"{group.cores:.2f} cores between them: only one thread runs "
                               "Python at a time (the GIL)")
                if i == 0 and n == 0 and len(self.gil) > 1:
                    tasks = len({r.view.id for g in self.gil for r in g.runs})
                    detail += (f"; {len(self.gil)} such stretches, {tasks} tasks in all, "
                               f"{lost:.2f} s runnable but not running")
                rows.append(_row("gil_contention", runs[0].view, max(0.0, wall - cpu), detail,
                                 cure=cure))
            if len(rows) >= top:
                break
        return rows

    def waiting_rows(self, snap: Snapshot, top: int) -> list[dict[str, Any]]:
        makespan = float(snap.stats.get("makespan") or 0.0)
        least = max(self.min_seconds, 0.05 * makespan)  # waits that matter to the run
        per_task: dict[str, list[_Run]] = {}
        for run in self.runs:
            if run.view.id not in self.flagged:
                per_task.setdefault(run.view.id, []).append(run)
        waiting = []
        for runs in per_task.values():
            wall, cpu = sum(r.wall for r in runs), sum(r.cpu for r in runs)
            if cpu < WAITING_RATIO * wall and wall - cpu >= least:
                waiting.append((wall - cpu, wall, cpu, runs[0].view))
        waiting.sort(key=lambda item: item[0], reverse=True)
        pool = FullPool(snap)  # only a wait for a full pool is one more workers would cure
        queued = sum(pool.seconds(v) for v in snap.tasks if v.wait_worker >= self.min_seconds)
        if queued >= max(10 * self.min_seconds, 0.05 * makespan):
            cure = (f"more workers (max_workers > {snap.max_workers}): a waiting task holds a "
                    f"worker but no core, and tasks queued {queued:.2f} s for a worker")
        else:
            cure = ("the wait is inside the task (I/O, sleep, a lock); no task queued for a "
                    "worker, so more workers would not help")
        return [_row("waiting", view, waited,
                     f"CPU {cpu:.2f} s of {wall:.2f} s running ({cpu / wall:.0%}): it mostly "
                     "waited (I/O, a sleep, a lock, or a machine too busy to run it)", cure=cure)
                for waited, wall, cpu, view in waiting[:top]]


def contention(runs: list[_Run]) -> list[_Group]:
    """Groups of busy thread attempts that overlapped and shared about one core.

    Idle runs (CPU/wall under 2 %) are ignored. A run is busy when it got a
    fair part of an equal share of one core among the runs it overlapped
    (CPU/wall x concurrency >= ``BUSY_SHARE``, concurrency >= 1.5): it was
    runnable the whole time. Busy runs that spent at least half their time
    beside another busy run, and overlap, form a group; a group of two or more
    that ran mostly together (summed wall over span >= 1.5) and used about one
    core between them (``ONE_CORE``) fought over the GIL. Less than that and
    the process was short of CPU itself (a busy machine): processes would not
    help, and the runs are reported as waiting, unless the threads' run-queue
    figures show they mostly slept rather than waited for a core
    (``off_the_run_queue``): then it is the GIL on a busy machine. (Four CPU loops on
    four threads: CPU/wall about 0.25 each, concurrency 4, one core in all.
    Four sleeps: idle. One loop beside three sleeps: only one busy run.)
    """
    active = [r for r in runs if r.ratio >= 0.02]
    busy = []
    load = _Load(active)
    for run in active:
        concurrency = load.overlap(run) / run.wall
        if concurrency >= 1.5 and run.ratio * concurrency >= BUSY_SHARE:
            busy.append(run)
    while True:  # keep the runs that spent most of their time beside another busy one
        load = _Load(busy)
        kept = [r for r in busy if load.beside(r) >= 0.5 * r.wall]
        if len(kept) == len(busy):
            break
        busy = kept
    found = []
    for group in _chains(busy):
        span = _union(group)
        if len(group) < 2 or span <= 0:
            continue
        cores = sum(r.cpu for r in group) / span
        if sum(r.wall for r in group) / span >= 1.5 and cores <= ONE_CORE[1] and (
                cores >= ONE_CORE[0] or off_the_run_queue(group)):
            found.append(_Group(group, span, cores))
    return found


def off_the_run_queue(runs: list[_Run]) -> bool:
    """Did these threads spend most of the time they did not run asleep, not waiting for a
    core? A thread waiting for the GIL sleeps; one the machine has no core for waits on
    the run queue. So even on a busy machine (under ``ONE_CORE[0]`` cores between them)
    busy threads that mostly slept were held back by the GIL. Unknown (no run-queue
    figure: not Linux, or another executor): False."""
    if any(r.delay is None for r in runs):
        return False
    idle = sum(max(0.0, r.wall - r.cpu) for r in runs)
    return idle > 0 and sum(r.delay for r in runs) <= 0.5 * idle  # type: ignore[misc]


# -- waits, the critical path and retries ----------------------------------------------------------
def _critical_rows(snap: Snapshot, items: Sequence[Any] = ()) -> list[dict[str, Any]]:
    steps = critical_steps(snap)
    length = sum(seconds for _, seconds in steps)
    rows = []
    for i, (view, seconds) in enumerate(steps, 1):
        detail = f"step {i} of {len(steps)}"
        if view.map_tally is not None:  # a map: its time is its items'
            detail += ", " + _map_detail(view, [v for v in items if v.task_id == view.id])
        elif not view.attempts:
            detail += f", not run ({view.state})"
        elif len(view.attempts) > 1:
            detail += f", {len(view.attempts)} attempts"
        late = view.wait_resources + view.wait_worker  # over every attempt
        if late >= 0.01:
            detail += (f"; started {late:.2f} s after it was ready" if len(view.attempts) <= 1
                       else f"; its attempts waited {late:.2f} s in all for resources or a "
                       "worker")
        cure = ("the run cannot end sooner than this chain: speed up or split its longest "
                "steps, or drop dependencies it does not need") if i == 1 else ""
        rows.append(_row("critical_path", view, seconds, detail,
                         share=seconds / length if length > 0 else np.nan, cure=cure))
    return rows


def _map_detail(view: TaskView, items: list[Any]) -> str:
    """``100 items (2 failed), longest square[7] 1.20 s``: a mapped task on the path."""
    tally = view.map_tally or {}
    bad = tally.get("failed", 0) + tally.get("cancelled", 0)
    text = f"{sum(tally.values())} items" + (f" ({bad} failed or cancelled)" if bad else "")
    ran = [(v.execution_time, v) for v in items if v.execution_time is not None]
    if ran:
        seconds, longest = max(ran, key=lambda pair: pair[0])
        text += f", longest {longest.name} {seconds:.2f} s"
    return text


def _resource_rows(snap: Snapshot, top: int, min_seconds: float) -> list[dict[str, Any]]:
    waited = sorted((v for v in snap.tasks if v.wait_resources >= min_seconds or waiting_now(v)),
                    key=lambda v: v.wait_resources, reverse=True)
    rows = []
    for view in waited[:top]:
        key, holders = waited_on(view, snap)
        what = key or "its resources"
        detail = f"waiting for {what} now" if waiting_now(view) else f"waited for {what}"
        if holders:
            detail += f" (held by {', '.join(holders[:3])}{', ...' if len(holders) > 3 else ''})"
        who = f"{holders[0]}'s" if holders else "its holders'"
        cure = (f"shorten {who} hold on it, use mode='read' where a task only reads it, "
                "or give it a capacity (a pool)")
        rows.append(_row("resource_wait", view, view.wait_resources, detail, resource=key,
                         cure=cure))
    return rows


class FullPool:
    """When every worker was busy, from the attempts that ran on workers.

    ``seconds(view)`` is how much of the task's waits (ready, not running) fell
    in such times: only then would more workers have started it sooner; a wait
    beside a free worker is the engine's own dispatch. A cumulative sum over
    the attempts' starts and ends answers each window in O(log n).
    """

    def __init__(self, snap: Snapshot, need: int | None = None) -> None:
        """``need``: how many busy workers make the pool full (all of them by default)."""
        need = snap.max_workers if need is None else need
        steps = sorted((t, step) for view in snap.tasks for a in view.attempts
                       if a.worker is not None and a.started_at is not None
                       for t, step in ((a.started_at, 1), (attempt_end(a, snap.time), -1)))
        self.snap, self.times, self.full_from, self.total = snap, [], [], []
        running, total, last, full = 0, 0.0, None, False
        for t, step in steps:
            if last is not None and full:
                total += t - last
            running += step
            last, full = t, running >= need
            self.times.append(t)
            self.full_from.append(full)
            self.total.append(total)

    def _upto(self, t: float) -> float:
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            return 0.0
        return self.total[i] + (t - self.times[i] if self.full_from[i] else 0.0)

    def seconds(self, view: TaskView) -> float:
        return sum(max(0.0, self._upto(w1) - self._upto(w0))
                   for w0, w1 in wait_windows(view, self.snap.time))


def _worker_rows(snap: Snapshot, top: int, min_seconds: float, executor: str,
                 gil: bool) -> list[dict[str, Any]]:
    """Tasks that waited for a worker while every worker was busy (only those: a wait
    beside a free worker is not cured by more workers). Tasks of microseconds are the
    exception: the engine runs them one at a time, so a wait while any other task ran
    was a queue behind them, and the row says so (with its own cure)."""
    tiny = _tiny(snap)
    pool = FullPool(snap, 1 if tiny else None)  # tiny tasks: queued behind others at all
    waited = sorted((v for v in snap.tasks if v.wait_worker >= min_seconds and (
        pool.seconds(v) > 0 if tiny else pool.seconds(v) >= 0.5 * v.wait_worker)),
        key=lambda v: v.wait_worker, reverse=True)
    total = sum(v.wait_worker for v in waited)
    n = snap.max_workers
    cure = f"more workers (max_workers > {n})"
    if gil:
        cure += ', with executor="processes": on threads, CPU-bound tasks share one core'
    elif executor != "threads":
        cure += f" (up to the cores free for the {executor} executor)"
    busy = f"{'the only worker was' if n == 1 else f'all {n} workers were'} busy"
    if tiny:  # the engine runs them one worker at a time: its own cost is the queue
        cure = ("these tasks take microseconds each: they wait for the engine's own work "
                "per task (tens of µs), which more workers would not speed up; make fewer, "
                "larger tasks (or journal=False for swarms of micro-tasks)")
        busy = "queued behind other tasks of microseconds"
    rows = []
    for i, view in enumerate(waited[:top]):
        detail = f"ready, but {busy}"
        if i == 0:
            detail += (f"; {len(waited)} task{'s' if len(waited) > 1 else ''} lost "
                       f"{total:.2f} s in total waiting for a worker")
        rows.append(_row("worker_wait", view, view.wait_worker, detail,
                         cure=cure if i == 0 else ""))
    return rows


def _tiny(snap: Snapshot) -> bool:
    """Did the run's attempts take, as a rule, less than the engine's tiny-task bound?"""
    took = [a.ended_at - a.started_at for v in snap.tasks for a in v.attempts[-1:]
            if a.ended_at is not None and a.started_at is not None]
    return bool(took) and float(np.median(took)) < TINY


def _retry_rows(snap: Snapshot, top: int, items: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Tasks and items (``square[7]``) that took more than one attempt, longest first."""
    retried = []
    for view in (*snap.tasks, *items):
        starts = [a.started_at for a in view.attempts if a.started_at is not None]
        if len(view.attempts) > 1 and starts:
            retried.append((starts[-1] - starts[0], view))
    retried.sort(key=lambda pair: pair[0], reverse=True)
    rows = []
    for seconds, view in retried[:top]:
        outcomes = ", ".join(a.outcome or "running" for a in view.attempts)
        detail = f"{len(view.attempts)} attempts: {outcomes}"
        if view.error_type and not view.success:
            detail += f"; last error {view.error_type}"
        cure = ("its logs (%codo_logs) show what each attempt printed before it failed"
                if any(a.logs for a in view.attempts) else "see each attempt's error")
        rows.append(_row("retries", view, seconds, detail, cure=cure))
    return rows
