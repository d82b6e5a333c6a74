"""What a running attempt has printed so far: read while it runs, never under the engine lock.

An attempt's output is kept with it when it ends (``capture``); the node
inspector and ``%codo_logs`` also want it *while* it runs. The scheduler's
``running`` map (task id -> the attempt's ``Run``) is read without the lock (a
dict lookup is atomic under the GIL, and a ``Run`` never changes which attempt
it is), and the executor reads the attempt's text: on threads (and ``sync``)
its ``Capture`` (``Capture.peek``, under the capture's own small lock), on
processes the tail of the worker's output file. Dask ships output back only
with the result, so there the answer says it arrives when the attempt ends.
A caller that wants a refresh asks again (the live view at most twice a
second, while an inspector of a running task is open): nothing here polls.
A read that failed (the executor raised, or could not read it) says so in
``error``: it may well work the next time, and tells nothing about the attempt
having ended (only None says that).
"""

from __future__ import annotations

from typing import Any, NamedTuple

TAIL = 6000  # characters of a running attempt's output an inspector shows (its tail)
NOT_YET = "its output arrives when the attempt ends (the {executor} executor sends it then)"


class OutputSoFar(NamedTuple):
    """A running attempt's output so far (``text`` None: this executor cannot tell yet)."""

    attempt: int          # the attempt's number (1 for the first)
    started_at: float | None  # when it started, ``time.time()``
    text: str | None      # the last ``limit`` characters printed and logged so far
    note: str = ""        # why ``text`` is None
    error: str | None = None  # the read failed, and why (worth another try)


def output_so_far(engine: Any, task_id: str, limit: int = TAIL) -> OutputSoFar | None:
    """The running attempt of ``task_id`` and its output so far; None if it is not running.

    ``engine`` is a ``core.engine.Engine``. Never takes its lock.
    """
    run = engine.sched.running.get(task_id)
    if run is None:
        return None
    attempt = run.attempt
    number = getattr(attempt, "number", 0)
    started = getattr(attempt, "started_at", None)
    peek = getattr(engine.executor, "peek", None)
    if peek is None:
        return OutputSoFar(number, started, None,
                           NOT_YET.format(executor=engine.executor_name))
    try:
        text = peek(run, limit)
    except Exception as exc:  # noqa: BLE001 - a view asking must never fail on this
        why = f"{type(exc).__name__}: {exc}"
        return OutputSoFar(number, started, None, f"its output cannot be read now ({why})", why)
    if text is None:
        why = f"the {engine.executor_name} executor could not read it"
        return OutputSoFar(number, started, None, "its output cannot be read now", why)
    return OutputSoFar(number, started, text)
