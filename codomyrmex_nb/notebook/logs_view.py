"""``%codo_logs NAME``: what a task printed and logged, attempt by attempt, and why it failed.

Plain text, from one snapshot: a header line (state, attempts, CPU seconds,
peak memory where measured), then each attempt's captured output under a rule
that says where it ran, how it ended, how long it took and its CPU seconds,
a line counting the rich output it kept, if any (``display()``, figures shown:
``notebook.display_capture``; the node inspector shows them), then the
failure's traceback with the user's frames first (the engine frames
that lead up to the user's code are folded away, as in the node inspector).

Output is kept with an attempt when it ends (``core.capture``); a running
attempt shows what it has printed so far (``core.peek``: read without the
engine lock; on Dask, where output comes back with the result, a line says so).
``square[7]`` names item 7 of the mapped task ``square`` (its attempts, output and
traceback, as for a task). ``logs_text`` raises ``KeyError`` for an unknown task (naming a
close match when there is one) and ``ValueError`` for a name two tasks share.
"""

from __future__ import annotations

import difflib
from typing import Any

from ..core import capture
from ..core.item_views import parse_item_ref
from ..core.model import Attempt
from ..core.sizes import size_text
from ..core.snapshot import Snapshot, TaskView
from .inspector import user_frames_first

RULE = "─"
WIDTH = 78
OUTCOMES = {"completed": "completed", "failed": "failed", "timeout": "timed out",
            "cancelled": "cancelled", "interrupted": "interrupted (re-queued)",
            "resource-timeout": "gave up waiting for its resources", None: "running"}


def logs_text(orch: Any, task_ref: str) -> str:
    """The text ``%codo_logs`` prints for ``task_ref`` (a task name or id).

    ``orch`` is a ``TaskOrchestrator`` (a bare ``Snapshot`` works too, without
    the traceback, which lives on the task's result).
    """
    snap = orch if isinstance(orch, Snapshot) else orch.snapshot()
    head, index = parse_item_ref(task_ref)
    if index is not None and hasattr(orch, "item_views") and \
            not any(v.name == task_ref or v.id == task_ref for v in snap.tasks):
        view, result = _item(orch, _find(orch, snap, head), index)
    else:
        view = _find(orch, snap, task_ref)
        result = None
        if not isinstance(orch, Snapshot) and hasattr(orch, "get_task_result"):
            result = orch.get_task_result(view.id)
    so_far = None
    if view.state == "running" and hasattr(orch, "output_so_far"):
        so_far = orch.output_so_far(view.id, capture.LIMIT)
    lines = [_header(view)]
    if not view.attempts:
        lines.append(f"(not run: {view.state.replace('_', ' ')})")
    for attempt in view.attempts:
        lines.append(_rule(_attempt_title(attempt, len(view.attempts))))
        if attempt.outcome is None and so_far is not None and so_far.attempt == attempt.number:
            lines.append(_so_far(so_far))
        elif attempt.displays:  # no "(no output)" above the line that counts rich output
            if attempt.logs:
                lines.append(_output(attempt))
            lines.append(_displays_line(attempt.displays))
        else:
            lines.append(_output(attempt))
    if view.error_type and not view.success:
        lines.append(_rule("why it failed"))
        lines.append(_failure(view, result))
    return "\n".join(lines)


def _item(orch: Any, task: TaskView, index: int) -> tuple[Any, Any]:
    """Item ``index`` of mapped task ``task`` (an ``ItemView``) and its result."""
    if task.map_tally is None:
        raise ValueError(f"task {task.name!r} is not mapped; drop [{index}]")
    (view,) = orch.item_views(task.id, index)  # ValueError: out of range, not expanded
    return view, orch.get_task_result(task.id, map_index=index)


def _find(orch: Any, snap: Snapshot, ref: str) -> TaskView:
    by_id = snap.by_id()
    if ref in by_id:
        return by_id[ref]
    get_task = getattr(orch, "get_task", None)
    task = get_task(ref) if get_task is not None else None
    if task is not None and task.id in by_id:
        return by_id[task.id]
    named = [v for v in snap.tasks if v.name == ref]
    if len(named) > 1:
        ids = ", ".join(v.id for v in named)
        raise ValueError(f"{len(named)} tasks are named {ref!r}: give one of their ids ({ids})")
    if named:
        return named[0]
    close = difflib.get_close_matches(ref, [v.name for v in snap.tasks], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"no task named {ref!r}{hint}")


def _header(view: TaskView) -> str:
    parts = [view.name, view.state.replace("_", " ")]
    n = len(view.attempts)
    parts.append(f"{n} attempt{'s' * (n != 1)}")
    if view.cpu_time is not None:
        parts.append(f"CPU {_seconds(view.cpu_time)}")
    if view.peak_memory is not None:
        parts.append(f"peak memory {size_text(view.peak_memory)}")
    return " · ".join(parts)


def _attempt_title(attempt: Attempt, total: int) -> str:
    parts = [f"attempt {attempt.number} of {total}"]
    if attempt.worker:
        parts.append(attempt.worker.removeprefix("codo-").replace("-", " "))
    how = OUTCOMES.get(attempt.outcome, attempt.outcome or "running")
    if attempt.started_at is not None and attempt.ended_at is not None:
        how += f" after {_seconds(attempt.ended_at - attempt.started_at)}"
    parts.append(how)
    if attempt.cpu_time is not None:
        parts.append(f"CPU {_seconds(attempt.cpu_time)}")
    if attempt.peak_memory is not None:
        parts.append(f"peak {size_text(attempt.peak_memory)}")
    return " · ".join(parts)


def _output(attempt: Attempt) -> str:
    if attempt.logs:
        return attempt.logs.rstrip("\n")
    if attempt.logs is not None:
        return "(no output)"
    if attempt.outcome is None:
        return "(running: its output is kept when the attempt ends)"
    if attempt.worker is None:
        return "(it never ran)"
    return "(its output was not captured)"


def _so_far(so_far: Any) -> str:
    """A running attempt's output so far (``core.peek.OutputSoFar``)."""
    if so_far.text is None:
        return f"(running: {so_far.note})"
    if not so_far.text:
        return "(running: nothing printed yet)"
    return so_far.text.rstrip("\n") + "\n(running: its output so far)"


def _displays_line(displays: list[Any]) -> str:
    """One line for the rich output an attempt kept: how many, and of which kinds."""
    kinds: dict[str, int] = {}
    for bundle in displays:
        data = bundle[0] if isinstance(bundle, tuple | list) else bundle
        kind = _kind(data) if isinstance(data, dict) else "?"
        kinds[kind] = kinds.get(kind, 0) + 1
    n = len(displays)
    what = ", ".join(f"{k} {v}" if v > 1 else k for k, v in kinds.items())
    return (f"[{n} rich output{'s' * (n != 1)} kept ({what}): "
            "see the node inspector or the task's result.displays]")


def _kind(data: dict[str, Any]) -> str:
    for mime in ("image/png", "image/jpeg", "image/svg+xml", "text/html", "text/markdown",
                 "text/latex", "application/json"):
        if mime in data:
            return mime
    return next(iter(data), "empty")


def _failure(view: TaskView, result: Any) -> str:
    tb = getattr(result, "traceback", None) if result is not None else None
    if not tb:
        return f"{view.error_type}: {view.error_message}"
    text, hidden = user_frames_first(tb.rstrip("\n"))
    if hidden:
        text += f"\n({hidden} frame{'s' * (hidden != 1)} of the engine before the task's code hidden)"
    return text


def _rule(title: str) -> str:
    head = f"{RULE * 2} {title} "
    return head + RULE * max(2, WIDTH - len(head))


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


