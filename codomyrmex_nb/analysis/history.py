"""Past runs from the journal as a DataFrame (``orchestrator.history()``, ``%codo_history``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

COLUMNS = ("run", "started", "ended", "status", "tasks", "completed", "failed", "makespan")


def history_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """One row per run, newest first; times are UTC, ``makespan`` in seconds.

    A run whose kernel died has ``status`` "running" and no ``ended``: its
    makespan runs to the last sign of life the journal recorded.
    """
    rows = []
    for run in runs:
        end = run.ended if run.ended is not None else run.last_time
        rows.append({"run": run.run_id, "started": run.started, "ended": run.ended,
                     "status": run.status, "tasks": run.tasks, "completed": run.completed,
                     "failed": run.failed,
                     "makespan": None if end is None else max(0.0, end - run.started)})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("started", "ended"):
        frame[column] = pd.to_datetime(frame[column].astype("float64"), unit="s", utc=True)
    frame["makespan"] = frame["makespan"].astype("float64")
    return frame
