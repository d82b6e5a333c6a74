"""What a click on a node shows: one task's details as a small HTML panel.

Pure functions of a ``Snapshot`` and the task's ``TaskResult``: state,
attempts (worker, start, duration, outcome), waits (for dependencies, for a
resource and who holds it, for a worker), the result's short repr, its
captured output, the rich output it displayed (figures, tables: the first
``MAX_DISPLAYS``, scaled to the panel, see ``displays_html``) and its
traceback, user frames first (the engine's own frames from ``codomyrmex_nb``
that lead up to the user's code are folded away). The Cancel and Retry
buttons carry ``data-codo-action`` attributes that the view's front end turns
into messages back to the kernel.
"""

from __future__ import annotations

import base64
import os
import re
import time
from html import escape
from typing import Any

from ..core.peek import OutputSoFar
from ..core.preview import safe_preview
from ..core.sizes import size_text
from ..core.snapshot import Snapshot, TaskView
from ..core.trigger_rules import DEFAULT as DEFAULT_RULE
from ..core.trigger_rules import MEANING
from ..palette import STATES, fill, font_colour, glyph
from .drawing import RETRY_MARK, RULE_MARK, runtime_text
from .tracker import UNFINISHED, clock

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FRAME = re.compile(r'^  (?:File ")?((?<=")[^"]*|Cell In\[\d+\])"?, line \d+')  # or IPython's cells
MAX_OUTPUT = 6000
MAX_DISPLAYS = 3  # rich outputs shown in the panel (the rest stay on the result)
UNWINDING = ("cancelled", "timeout", "interrupted")  # attempts abandoned while they ran


PARKED = ("for the code of its attempt given up on to return (it cannot be stopped "
          "inside a C call; a task never runs twice at once)")


def user_frames_first(traceback: str, package_dir: str = PACKAGE_DIR) -> tuple[str, int]:
    """The traceback without the engine frames before the user's first frame; and how many.

    Each ``Traceback (most recent call last):`` block is handled on its own
    (chained exceptions keep their own frames). A block made only of engine
    frames is left whole: then the engine is the story.
    """
    out: list[str] = []
    hidden = 0
    lines = traceback.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if not line.startswith("Traceback (most recent call last):"):
            continue
        frames: list[list[str]] = []
        while i < len(lines) and lines[i].startswith("  "):
            if _FRAME.match(lines[i]) or not frames:
                frames.append([])
            frames[-1].append(lines[i])
            i += 1
        engine = 0
        for frame in frames:
            m = _FRAME.match(frame[0])
            if m is None or not _is_engine(m.group(1), package_dir):
                break
            engine += 1
        if engine == len(frames):
            engine = 0
        hidden += engine
        for frame in frames[engine:]:
            out.extend(frame)
    return "\n".join(out), hidden


def _is_engine(path: str, package_dir: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), package_dir]) == package_dir
    except ValueError:  # different drives, or a pseudo path like "<string>"
        return False


def short_repr(value: Any) -> str:
    """A one-line summary of a result: type and shape for arrays and frames, else a short repr.

    Bounded in time and size (``core.preview``): a ``__repr__`` that raises,
    hangs or returns megabytes shows a short note instead of stalling the panel.
    """
    return safe_preview(value, 200)


def _seconds(value: float | None) -> str:
    return "" if value is None else (runtime_text(value) or "0.00s")


def ticking(since: float, now: float | None = None) -> str:
    """Seconds since ``since`` (``time.time()``) as text the browser keeps counting up:
    the front end updates every ``data-codo-since`` element once a second, no kernel
    traffic (``frontend``)."""
    seconds = max(0.0, (time.time() if now is None else now) - since)
    return (f'<span class="codo-tick" data-codo-since="{since:.3f}">'
            f"{runtime_text(seconds) or '0.00s'}</span>")


def detail_html(snapshot: Snapshot, task_id: str, result: Any = None,
                so_far: OutputSoFar | None = None) -> str:
    """The panel for ``task_id`` (its ``TaskResult`` as ``result``, if any; ``so_far``: the
    running attempt's output so far, ``core.peek``)."""
    tasks = snapshot.by_id()
    task = tasks.get(task_id)
    if task is None:
        return _panel("", "<p>This task is no longer in the orchestrator.</p>", None)
    state = task.state
    label = STATES.get(state, STATES["pending"])[2]
    chip = (f'<span class="codo-chip" style="background:{fill(state)};color:{font_colour(state)}">'
            f"{glyph(state)} {escape(label)}</span>")
    retries = (f' <span class="codo-muted">{RETRY_MARK}{task.retry_count} '
               f"retr{'y' if task.retry_count == 1 else 'ies'}</span>" if task.retry_count else "")
    rows: list[tuple[str, str]] = []
    if task.module:
        rows.append(("action", escape(f"{task.module}.{task.action}")))
    ups = [tasks[d] for d in task.dependencies if d in tasks]
    if ups:
        rows.append(("after", ", ".join(f"{glyph(u.state)} {escape(u.name)}" for u in ups)))
    if task.trigger_rule != DEFAULT_RULE:
        rows.append(("trigger rule", f"{RULE_MARK} <b>{escape(task.trigger_rule)}</b>: runs when "
                     f"{escape(MEANING.get(task.trigger_rule, ''))}"))
    if task.resources:
        rows.append(("resources", ", ".join(escape(f"{k} ({m})") for k, m in task.resources)))
    if task.blocked_on and state == "ready":
        holders = [t.name for t in snapshot.tasks if t.state == "running"
                   and any(k == task.blocked_on for k, _ in t.resources)]
        held = f" (held by {escape(', '.join(holders))})" if holders else ""
        rows.append(("waiting", f"for lock <b>{escape(task.blocked_on)}</b>{held}"))
    elif state == "ready" and task.parked:
        rows.append(("waiting", PARKED))
    elif state == "pending" and ups:
        left = [u.name for u in ups if u.state in UNFINISHED]
        if left:
            rows.append(("waiting", "for " + escape(", ".join(left))))
    waits = [f"dependencies {_seconds(task.wait_dependencies)}" if task.wait_dependencies else "",
             f"resources {_seconds(task.wait_resources)}" if task.wait_resources else "",
             f"a worker {_seconds(task.wait_worker)}" if task.wait_worker else ""]
    by_key = ", ".join(f"{k} {_seconds(s)}" for k, s in task.wait_by_resource)
    if by_key:
        waits[1] += f" ({escape(by_key)})"
    if any(waits):
        rows.append(("waited for", "; ".join(w for w in waits if w)))
    current = task.attempts[-1] if task.attempts else None
    since = (so_far.started_at if so_far is not None and so_far.started_at is not None
             else current.started_at if current is not None else None)
    if state == "running" and since is not None:
        rows.append(("running", f"since {clock(since)} ({ticking(since, snapshot.time)})"))
    elif task.started_at is not None:  # not running: "now" only while an attempt runs
        ended = task.completed_at or (current.ended_at if current is not None else None)
        ran = f"{clock(task.started_at)}" + (f" \u2192 {clock(ended)}" if ended else "")
        rows.append(("ran", ran + (f" ({_seconds(task.execution_time)})"
                                   if task.execution_time is not None else "")))
    if task.cpu_time is not None:
        rows.append(("CPU", _seconds(task.cpu_time)))
    if task.peak_memory is not None:
        rows.append(("peak memory", size_text(task.peak_memory)))
    if task.worker:
        rows.append(("worker", escape(task.worker)))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    body = [f'<table class="codo-kv">{table}</table>']
    if task.attempts:
        body.append(_attempts(task))
    data = getattr(result, "data", None) if result is not None else task.data
    if state == "completed":
        body.append(f'<div class="codo-sec">result</div><code>{escape(short_repr(data))}</code>')
    message = task.error_message or (getattr(result, "error_message", None) if result else None)
    if message and state not in ("completed",):
        kind = task.error_type or getattr(result, "error_type", None) or "error"
        body.append(f'<div class="codo-sec">error</div><div class="codo-error">'
                    f"<b>{escape(kind)}</b>: {escape(_bounded(message))}</div>")
    logs = getattr(result, "logs", None) if result is not None else None
    if state == "running":
        body.append(_so_far(so_far))
    elif logs or (current is not None and current.logs):
        body.append(_output("output", logs or current.logs))  # a cancelled attempt's too
    elif current is not None and current.outcome in UNWINDING and current.logs is None \
            and current.cpu_time is None:
        body.append('<div class="codo-sec">output</div><p class="codo-muted">what it printed '
                    "shows here once its code has returned from the interrupt</p>")
    elif task.last_line:
        body.append(f'<div class="codo-sec">last output line</div>'
                    f'<pre class="codo-pre">{escape(task.last_line)}</pre>')
    shown = displays_html(getattr(result, "displays", None) if result is not None else None)
    if shown:
        body.append(shown)
    tb = getattr(result, "traceback", None) if result is not None else None
    if tb and state != "completed":
        text, hidden = user_frames_first(tb)
        note = (f' <span class="codo-muted">({hidden} engine frame{"s" if hidden != 1 else ""} '
                "hidden)</span>" if hidden else "")
        body.append(f'<div class="codo-sec">traceback{note}</div>'
                    f'<pre class="codo-pre">{escape(_bounded(text, tail=True))}</pre>')
    title = f"{chip} <b>{escape(task.name)}</b>{retries}"
    return _panel(title, "".join(body), task)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours and cursor moves of a terminal


def _output(title: str, text: str) -> str:
    """A section of output; long output keeps its tail and the panel opens it at its end.
    Terminal escapes (a coloured log line) are dropped: HTML shows them as ``[31m``."""
    text = _ANSI.sub("", text)
    tail = text if len(text) <= MAX_OUTPUT else "\u2026" + text[-MAX_OUTPUT:]
    return (f'<div class="codo-sec">{title}</div>'
            f'<pre class="codo-pre codo-tail">{escape(tail)}</pre>')


def _so_far(so_far: OutputSoFar | None) -> str:
    """The running attempt's output so far (its tail), or why there is none to show."""
    if so_far is None:
        return ""
    title = f"output so far (attempt {so_far.attempt})" if so_far.attempt > 1 else \
        "output so far"
    if so_far.text is None:
        return (f'<div class="codo-sec">{title}</div>'
                f'<p class="codo-muted">{escape(so_far.note)}</p>')
    note = f'<p class="codo-muted">{escape(so_far.note)}</p>' if so_far.note else ""
    if not so_far.text:
        return (f'<div class="codo-sec">{title}</div><p class="codo-muted">nothing printed yet'
                f"</p>{note}")
    return _output(title, so_far.text) + note  # the output read last, and why it is not newer


def displays_html(displays: list[Any] | None, limit: int = MAX_DISPLAYS) -> str:
    """The rich output a task kept (``TaskResult.displays``): its first ``limit``, scaled to fit.

    PNG and JPEG as ``<img>`` data URLs, SVG too (as an image it runs no
    script and its ids and styles cannot clash with the graph's SVG), HTML in
    a sandboxed ``<iframe>`` (no scripts; a DataFrame's styles stay inside),
    anything else as its escaped ``text/plain``.
    """
    if not displays:
        return ""
    parts = []
    for bundle in displays[:limit]:
        data = bundle[0] if isinstance(bundle, tuple | list) else bundle
        if isinstance(data, dict):
            parts.append(f'<div class="codo-display" style="margin:2px 0">{_display_one(data)}</div>')
    more = len(displays) - limit
    note = (f' <span class="codo-muted">(the first {limit} of {len(displays)}; '
            f"the others are in <code>result.displays</code>)</span>" if more > 0 else "")
    head = "display output" if len(displays) == 1 else f"display output ({len(displays)})"
    return f'<div class="codo-sec">{head}{note}</div>' + "".join(parts)


def _display_one(data: dict[str, Any]) -> str:
    for mime in ("image/png", "image/jpeg", "image/svg+xml"):
        value = data.get(mime)
        if value is None:
            continue
        if isinstance(value, str) and mime == "image/svg+xml":
            value = value.encode("utf-8")
        if isinstance(value, bytes | bytearray):
            value = base64.b64encode(bytes(value)).decode("ascii")
        if isinstance(value, str):
            src = f"data:{mime};base64,{''.join(value.split())}"
            return (f'<img src="{escape(src)}" alt="{escape(mime)}" '
                    'style="max-width:100%;height:auto;display:block">')
    html = data.get("text/html")
    if isinstance(html, list):  # nbformat splits multi-line strings
        html = "".join(html)
    if isinstance(html, str) and html:
        return (f'<iframe sandbox="" srcdoc="{escape(html)}" title="display output" '
                'style="width:100%;height:14em;border:1px solid #ddd;background:#fff"></iframe>')
    text = data.get("text/plain")
    if isinstance(text, list):
        text = "".join(text)
    if not isinstance(text, str):
        text = f"({', '.join(sorted(data)) or 'empty'}: nothing to show here)"
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT] + "\u2026"
    return f'<pre class="codo-pre">{escape(text)}</pre>'


def _bounded(text: str, tail: bool = False) -> str:
    """At most ``MAX_OUTPUT`` characters of an error or traceback (a 5 MB message was sent
    whole to the browser at every refresh): its start, or its end (a traceback's last lines
    say what failed), ``%codo_logs`` has all of it."""
    if len(text) <= MAX_OUTPUT:
        return text
    return "\u2026" + text[-MAX_OUTPUT:] if tail else text[:MAX_OUTPUT] + "\u2026"


def _attempts(task: TaskView) -> str:
    rows = []
    for a in task.attempts:
        took = (_seconds(a.ended_at - a.started_at)
                if a.ended_at is not None and a.started_at is not None else "")
        start = clock(a.started_at) if a.started_at else ""
        rows.append(f"<tr><td>{a.number}</td><td>{escape(a.worker or '')}</td><td>{start}</td>"
                    f"<td>{took}</td><td>{escape(a.outcome or 'running')}</td></tr>")
    return ('<div class="codo-sec">attempts</div><table class="codo-attempts"><tr><th>#</th>'
            "<th>worker</th><th>start</th><th>took</th><th>outcome</th></tr>"
            + "".join(rows) + "</table>")


def _panel(title: str, body: str, task: TaskView | None) -> str:
    buttons = ""
    if task is not None:
        unfinished = task.state in UNFINISHED
        buttons = (f'<button class="codo-btn" data-codo-action="cancel" data-codo-task="{escape(task.id)}"'
                   f'{"" if unfinished else " disabled"} title="cancel this task (its dependents '
                   f'are skipped)">Cancel</button>'
                   f'<button class="codo-btn" data-codo-action="retry" data-codo-task="{escape(task.id)}"'
                   f'{" disabled" if unfinished else ""} title="run it again, and everything '
                   f'downstream">Retry</button>')
    return (f'<div class="codo-inspect-head"><span class="codo-title">{title}</span>'
            f'<span class="codo-grow"></span>{buttons}'
            f'<button class="codo-btn codo-close" data-codo-action="close" title="close">'
            f"\u00d7</button></div>{body}")
