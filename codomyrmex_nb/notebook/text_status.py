"""Plain-text views of a snapshot: the status table and the DAG as text.

Used by ``%codo_status``, by ``%codo_run`` when the live view is not available,
and by ``%codo_dag`` when graphviz cannot draw. Pure functions of a
``Snapshot``, with the palette's glyphs so that state never depends on colour.
"""

from __future__ import annotations

from ..core.capture import DROPPED
from ..core.snapshot import Snapshot, TaskView
from ..palette import glyph

_ORDER = ("running", "up_for_retry", "ready", "pending", "completed", "failed",
          "upstream_failed", "skipped", "cancelled")


def summary_line(snap: Snapshot) -> str:
    """``3/5 done · 1 failed · 1 running · 2.1s · engine running``: done counts the tasks that
    ended well (completed, or not needed), failed ones are counted apart."""
    counts: dict[str, int] = {}
    for view in snap.tasks:
        counts[view.state] = counts.get(view.state, 0) + 1
    done = counts.get("completed", 0) + counts.get("skipped", 0)  # ended well
    failed = f" · {counts['failed']} failed" if counts.get("failed") else ""
    parts = [f"{counts[s]} {s.replace('_', ' ')}" for s in _ORDER
             if counts.get(s) and not (failed and s == "failed")]
    elapsed = snap.stats.get("makespan", 0.0)
    engine = "engine running" if snap.running else "engine stopped"
    return (f"{done}/{len(snap.tasks)} done{failed} · {', '.join(parts) or 'no tasks'} · "
            f"{elapsed:.1f}s · {engine}")


def status_table(snap: Snapshot) -> str:
    """The summary line, then one line per task: glyph, name, state, attempts, time, error."""
    lines = [summary_line(snap)]
    if not snap.tasks:
        return lines[0]
    width = max(len(v.name) for v in snap.tasks)
    for view in snap.tasks:
        lines.append(_task_line(view, width))
    return "\n".join(lines)


def _task_line(view: TaskView, width: int) -> str:
    took = "" if view.execution_time is None or not view.attempts else f"{view.execution_time:.2f}s"
    line = (f"  {glyph(view.state)} {view.name:<{width}}  {view.state:<15} "
            f"{len(view.attempts):>2} att  {took:>8}")
    if view.parked and view.state == "ready":
        line += "  waits for its attempt given up on to return"
    if view.map_tally is not None:  # a mapped task: its items' counts, as its node shows them
        from .map_node import suffix

        line += "  " + suffix(view.map_tally or (None if not view.status.is_terminal else {}))
    if view.error_message and view.status.is_terminal and not view.success:
        message = view.error_message.splitlines()[0] if view.error_message else ""
        line += f"  {view.error_type}: {message[:80]}"
    return line.rstrip()


def task_detail(snap: Snapshot, task_id: str, traceback: str | None = None,
                logs: str | None = None, tail: int = 20) -> str:
    """One task's status line, the last ``tail`` lines it printed, then its failure's traceback.

    The traceback has the cell's line numbers.
    """
    view = snap.by_id()[task_id]
    lines = [_task_line(view, len(view.name))]
    if view.dependencies:
        names = {v.id: v.name for v in snap.tasks}
        lines.append("    after: " + ", ".join(names.get(d, d) for d in view.dependencies))
    if logs and logs.strip():
        printed = logs.rstrip("\n").split("\n")
        shown = printed[-tail:]
        cut = any(line.startswith(DROPPED) for line in printed)  # the cap dropped a middle part
        kept = f"the {len(printed) - cut:,} lines kept (its middle was dropped)" if cut \
            else f"{len(printed):,} lines"
        more = f" (last {len(shown)} of {kept}; %codo_logs {view.name} for all)" \
            if len(printed) > len(shown) else ""
        lines.append(f"    output{more}:")
        lines.extend("    | " + line for line in shown)
    if traceback and view.success is False:
        from .inspector import user_frames_first  # the engine's own frames say nothing here

        text, hidden = user_frames_first(traceback)
        if hidden:
            lines.append(f"({hidden} engine frame{'s' * (hidden != 1)} before the task's code "
                         "left out)")
        lines.append(text.rstrip())
    return "\n".join(lines)


def dag_text(snap: Snapshot) -> str:
    """Each task with its state and what it waits for, in the order they were added."""
    names = {v.id: v.name for v in snap.tasks}
    if not snap.tasks:
        return "no tasks"
    lines = []
    for view in snap.tasks:
        after = ", ".join(names.get(d, d) for d in view.dependencies)
        lines.append(f"{glyph(view.state)} {view.name} [{view.state}]" + (f" <- {after}" if after else ""))
    return "\n".join(lines)
