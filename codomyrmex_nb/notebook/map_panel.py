"""What a click on a mapped task's node shows: its items, failures first, each clickable.

The task's own panel (``inspector``) gets a list of its items under it, the failed
and cancelled first, then the rest by ``map_index`` (``orchestrator.map_items``);
at most ``MAX_ITEMS`` are listed (``tasks_frame(items=True)`` has them all). Each
item is a button (``data-codo-action="item"``, the item's id ``<task id>[i]``):
the view answers with that item's panel (``item_html``): state, attempts, result,
error, output and traceback, with Cancel (that item only) and a way back to its
task. Pure functions of what the orchestrator hands over; ``item_detail`` and
``cancel`` are what the live view calls with an item id.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

from ..core.item_views import ItemView
from ..core.mapping import is_item_id
from ..palette import STATES, fill, font_colour, glyph
from .drawing import RETRY_MARK, runtime_text
from .inspector import (
    _attempts,
    _output,
    _panel,
    _so_far,
    displays_html,
    short_repr,
    user_frames_first,
)
from .tracker import UNFINISHED

MAX_ITEMS = 200
BAD = ("failed", "cancelled")


def split_item_id(item_id: str) -> tuple[str, int]:
    """``"<task id>[7]"`` -> ``("<task id>", 7)``; raises ``ValueError`` for a task id."""
    head, sep, tail = item_id.rpartition("[")
    if not sep or not tail.endswith("]") or not tail[:-1].isdigit():
        raise ValueError(f"{item_id!r} is not an item id (<task id>[<map_index>])")
    return head, int(tail[:-1])


def items_html(task_id: str, rows: list[dict[str, Any]], limit: int = MAX_ITEMS) -> str:
    """The list under a mapped task's panel (``rows``: ``map_items``, failures first)."""
    if not rows:
        return ('<div class="codo-sec">items</div><p class="codo-muted">none yet: its items '
                "are known once its sources completed</p>")
    bad = sum(1 for r in rows if r["state"] in BAD)
    head = f"items ({len(rows)}" + (f", {bad} failed or cancelled first" if bad else "") + ")"
    lines = []
    for row in rows[:limit]:
        state = row["state"]
        took = runtime_text(row.get("execution_time"))
        tries = row.get("attempts") or 0
        extra = [took] if took else []
        if tries > 1:
            extra.append(f"{tries} attempts")
        error = (row.get("error") or "").strip().splitlines()
        note = f' <span class="codo-muted">{escape(" · ".join(extra))}</span>' if extra else ""
        err = (f' <span class="codo-error">{escape(error[0][:120])}</span>'
               if error and state in BAD else "")
        lines.append(
            f'<li><button class="codo-btn codo-item" data-codo-action="item" '
            f'data-codo-task="{escape(task_id)}[{row["map_index"]}]" '
            f'title="its details and output">{glyph(state)} {escape(row["name"])}</button>'
            f"{note}{err}</li>")
    more = (f'<li class="codo-muted">\u2026 and {len(rows) - limit} more '
            "(<code>tasks_frame(items=True)</code> lists them all)</li>"
            if len(rows) > limit else "")
    return (f'<div class="codo-sec">{escape(head)}</div>'
            f'<ul class="codo-items" style="list-style:none;padding-left:0;margin:2px 0">'
            f'{"".join(lines)}{more}</ul>')


def item_html(view: ItemView, result: Any = None, so_far: Any = None) -> str:
    """One item's panel: state, attempts, result or error, output, traceback."""
    state = view.state
    label = STATES.get(state, STATES["pending"])[2]
    chip = (f'<span class="codo-chip" style="background:{fill(state)};color:{font_colour(state)}">'
            f"{glyph(state)} {escape(label)}</span>")
    retries = (f' <span class="codo-muted">{RETRY_MARK}{view.retry_count}</span>'
               if view.retry_count else "")
    rows = [("item", f"{view.map_index} of {escape(view.task)}")]
    if view.execution_time is not None:
        rows.append(("ran", runtime_text(view.execution_time) or "0.00s"))
    if view.cpu_time is not None:
        rows.append(("CPU", runtime_text(view.cpu_time) or "0.00s"))
    if view.worker:
        rows.append(("worker", escape(view.worker)))
    if view.restored is not None:
        rows.append(("restored", "from the run journal (not run again)"))
    body = ['<table class="codo-kv">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>"
                                               for k, v in rows) + "</table>"]
    if view.attempts:
        body.append(_attempts(view))  # type: ignore[arg-type]
    elif state in UNFINISHED:
        body.append('<p class="codo-muted">not dispatched yet</p>')
    if state == "completed":
        data = getattr(result, "data", None) if result is not None else view.value
        body.append(f'<div class="codo-sec">result</div><code>{escape(short_repr(data))}</code>')
    message = view.error_message or getattr(result, "error_message", None)
    if message and state != "completed":
        kind = view.error_type or getattr(result, "error_type", None) or "error"
        body.append(f'<div class="codo-sec">error</div><div class="codo-error">'
                    f"<b>{escape(kind)}</b>: {escape(message)}</div>")
    current = view.attempts[-1] if view.attempts else None
    logs = getattr(result, "logs", None) if result is not None else None
    if state == "running" and so_far is not None:
        body.append(_so_far(so_far))
    elif logs or (current is not None and current.logs):
        body.append(_output("output", logs or current.logs))  # type: ignore[union-attr]
    shown = displays_html(getattr(result, "displays", None) if result is not None else None)
    if shown:
        body.append(shown)
    tb = getattr(result, "traceback", None) if result is not None else None
    if tb and state != "completed":
        text, _ = user_frames_first(tb)
        body.append(f'<div class="codo-sec">traceback</div><pre class="codo-pre">'
                    f"{escape(text)}</pre>")
    back = (f'<button class="codo-btn" data-codo-action="item" data-codo-task='
            f'"{escape(view.task_id)}" title="back to its task">\u2190 {escape(view.task)}'
            "</button>")
    title = f"{chip} <b>{escape(view.name)}</b>{retries} {back}"
    html = _panel(title, "".join(body), None)
    cancel = (f'<button class="codo-btn" data-codo-action="cancel" '
              f'data-codo-task="{escape(view.id)}"{"" if state in UNFINISHED else " disabled"} '
              'title="cancel this item only (it counts against tolerate)">Cancel</button>')
    return html.replace('<span class="codo-grow"></span>',
                        f'<span class="codo-grow"></span>{cancel}', 1)


def item_detail(orch: Any, item_id: str) -> str:
    """The panel for item ``item_id`` (``"<task id>[i]"``) of ``orch``."""
    return item_panel(orch, item_id)[0]


def item_panel(orch: Any, item_id: str) -> tuple[str, Any, Callable[[Any], str] | None]:
    """(the panel, the running item's output so far or None, a function that draws the
    panel again with newer output): what an open inspector needs to follow a running item."""
    task_id, index = split_item_id(item_id)
    try:
        views = orch.item_views(task_id, index)
    except (KeyError, ValueError) as exc:
        views, why = [], str(exc)
    else:
        why = "this item is no longer in the orchestrator"
    if not views:
        return _panel("", f"<p>{escape(why)}</p>", None), None, None
    result = orch.get_task_result(task_id, map_index=index)
    so_far = orch.output_so_far(item_id) if views[0].state == "running" else None
    view = views[0]
    return item_html(view, result, so_far), so_far, lambda newer: item_html(view, result, newer)


def task_items(orch: Any, task_id: str) -> str:
    """The item list of mapped task ``task_id`` ('' when it is not mapped or unknown)."""
    try:
        rows = orch.map_items(task_id)
    except (KeyError, ValueError):
        return ""
    return items_html(task_id, rows)


def item_ref(orch: Any, ref: str) -> tuple[str, int] | None:
    """(task id, map_index) when ``ref`` names an item (``"<task id>[7]"``), None when it
    names a task: a task may have an id of that shape itself (``id="step[1]"``)."""
    if not is_item_id(ref) or orch.get_task(ref) is not None:
        return None
    try:
        return split_item_id(ref)
    except ValueError:
        return None


def cancel(orch: Any, ref: str) -> bool:
    """Cancel a task, or one item when ``ref`` is an item id (the panel's Cancel button)."""
    item = item_ref(orch, ref)
    if item is not None:
        return orch.cancel_task(item[0], map_index=item[1])
    return orch.cancel_task(ref)


def task_of(orch: Any, ref: str) -> str:
    """The task an id names: an item's mapped task, else itself."""
    item = item_ref(orch, ref)
    return ref if item is None else item[0]
