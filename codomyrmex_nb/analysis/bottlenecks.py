"""Why was it slow? The guide's "Slow Execution" checklist as one short, tidy DataFrame.

One row per finding, grouped by ``kind``:

- ``critical_path``: every task on the longest dependency chain, in order, with
  its run time and its ``share`` of the path's length. Only speeding these up
  (or breaking the chain: "verify dependencies are optimal") shortens the run.
- ``resource_wait``: the tasks that waited longest for a resource held by
  another task, naming the ``resource`` and its holders ("review resource
  allocation").
- ``worker_wait``: the tasks that waited longest, ready and with their resources,
  for a free worker: time lost to a full pool ("adjust priorities", or add
  workers). The first row's ``detail`` gives the total over all tasks.
- ``retries``: tasks that needed more than one attempt, with the wall-clock
  time from their first attempt's start to their last one's.

Outside the critical path, ``share`` is ``seconds`` over the run's makespan.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..core.snapshot import Snapshot, TaskView
from ._common import as_snapshot, critical_steps, waited_on, waiting_now

KINDS = ("critical_path", "resource_wait", "worker_wait", "retries")
COLUMNS = ("kind", "task", "resource", "seconds", "share", "detail")
# pandas 3 has a real string dtype (missing values are NaN); pandas 2 keeps objects.
STR = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


def bottlenecks(orch: Any, top: int = 5, min_seconds: float = 0.01) -> pd.DataFrame:
    """The slow-execution report: columns kind / task / resource / seconds / share / detail.

    ``top`` caps the rows per kind (the critical path is always whole); waits
    shorter than ``min_seconds`` are scheduling noise and left out.
    """
    snap = as_snapshot(orch)
    makespan = float(snap.stats.get("makespan") or 0.0)
    rows = (_critical_rows(snap) + _resource_rows(snap, top, min_seconds)
            + _worker_rows(snap, top, min_seconds) + _retry_rows(snap, top))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(KINDS)))
    for col in ("task", "resource", "detail"):
        frame[col] = frame[col].astype(STR)
    frame["seconds"] = frame["seconds"].astype("float64")
    frame["share"] = frame["share"].astype("float64")
    off_path = frame["kind"] != "critical_path"
    frame.loc[off_path, "share"] = (frame.loc[off_path, "seconds"] / makespan
                                    if makespan > 0 else np.nan)
    return frame


def _row(kind: str, view: TaskView | None, seconds: float, detail: str,
         resource: str | None = None, share: float = np.nan) -> dict[str, Any]:
    return {"kind": kind, "task": None if view is None else view.name, "resource": resource,
            "seconds": float(seconds), "share": share, "detail": detail}


def _critical_rows(snap: Snapshot) -> list[dict[str, Any]]:
    steps = critical_steps(snap)
    length = sum(seconds for _, seconds in steps)
    rows = []
    for i, (view, seconds) in enumerate(steps, 1):
        detail = f"step {i} of {len(steps)}"
        if not view.attempts:
            detail += f", not run ({view.state})"
        elif len(view.attempts) > 1:
            detail += f", {len(view.attempts)} attempts"
        late = view.wait_resources + view.wait_worker
        if late >= 0.01:
            detail += f"; started {late:.2f} s after it was ready"
        rows.append(_row("critical_path", view, seconds, detail,
                         share=seconds / length if length > 0 else np.nan))
    return rows


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
        rows.append(_row("resource_wait", view, view.wait_resources, detail, resource=key))
    return rows


def _worker_rows(snap: Snapshot, top: int, min_seconds: float) -> list[dict[str, Any]]:
    waited = sorted((v for v in snap.tasks if v.wait_worker >= min_seconds),
                    key=lambda v: v.wait_worker, reverse=True)
    total = sum(v.wait_worker for v in waited)
    rows = []
    for i, view in enumerate(waited[:top]):
        n = snap.max_workers
        detail = f"ready, but {'the only worker was' if n == 1 else f'all {n} workers were'} busy"
        if i == 0:
            detail += (f"; {len(waited)} task{'s' if len(waited) > 1 else ''} lost "
                       f"{total:.2f} s in total waiting for a worker")
        rows.append(_row("worker_wait", view, view.wait_worker, detail))
    return rows


def _retry_rows(snap: Snapshot, top: int) -> list[dict[str, Any]]:
    retried = []
    for view in snap.tasks:
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
        rows.append(_row("retries", view, seconds, detail))
    return rows
