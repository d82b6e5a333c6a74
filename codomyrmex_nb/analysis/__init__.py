"""DataFrames and pictures of a run: what ran, what it returned, and why it was slow.

Everything here works from one ``orchestrator.snapshot()`` per call, so a
frame or a chart never mixes two moments of a running engine. pandas and
matplotlib are imported only when this package is (the orchestrator's
``tasks_frame()`` / ``timeline()`` import it on first use).

- ``frames``: ``tasks_frame``, ``results_frame``, ``stats_frame`` (with each
  task's CPU seconds, peak memory where measured, and last printed line)
- ``bottlenecks``: the "Slow Execution" checklist as a short tidy frame that
  names the cure (GIL contention, waiting tasks, resource and worker waits)
- ``timeline``: a Gantt chart of attempts by worker lane, CPU share shaded
"""

from __future__ import annotations

from typing import Any

__all__ = ["bottlenecks", "results_frame", "stats_frame", "tasks_frame", "timeline"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the timeline must not import pandas, nor the frames matplotlib.
    if name in ("tasks_frame", "results_frame", "stats_frame", "bottlenecks"):
        from . import frames

        return getattr(frames, name)
    if name == "timeline":
        from .timeline import timeline

        return timeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
