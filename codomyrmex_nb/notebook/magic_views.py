"""The views a magic shows, each from a module that may be missing: the live view (and its
side panel) and the logs view. Without its module a magic falls back to text, so the
magics work wherever the notebook layer is only partly installed."""

from __future__ import annotations

import inspect
from typing import Any

from ..orchestrator import TaskOrchestrator


def live_view_or_none(orch: TaskOrchestrator) -> Any:
    """The live view, or None while that module is missing (a text status instead)."""
    try:
        from .live_view import live_view
    except ImportError:
        return None
    return live_view(orch)


def side_panel(orch: TaskOrchestrator) -> bool | None:
    """Show the live view in the side panel: True if the front end has said it is there
    already, False if the live view showed itself (it moves into the panel or says why it
    stays inline), None if the caller must show it inline.

    ``live_view(side=True)`` shows the view (in the panel, or inline with a note).
    A live view without that keyword gets a one-line note here.
    """
    try:
        from .live_view import live_view
    except ImportError:
        return None
    try:
        params = inspect.signature(live_view).parameters
    except (TypeError, ValueError):
        params = {}
    side = params.get("side")
    if side is None or side.kind not in (side.POSITIONAL_OR_KEYWORD, side.KEYWORD_ONLY):
        print("codo_run: no side panel in this version of the live view; showing it here")
        return None
    view = live_view(orch, side=True)  # shows the cell's part itself, or says why not
    return bool(getattr(view, "side", False))


def task_logs_text(orch: TaskOrchestrator, name: str, task: Any) -> str:
    """``logs_view.logs_text(orch, name)``; without that module, the result's captured output."""
    try:
        from .logs_view import logs_text
    except ImportError:
        result = orch.get_task_result(task.id)
        logs = getattr(result, "logs", None) if result is not None else None
        if logs:
            return logs.rstrip("\n")
        return f"codo_logs: {task.name!r}: no output captured"
    return logs_text(orch, name) or f"codo_logs: {task.name!r}: no output captured"
