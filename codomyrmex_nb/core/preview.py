"""Bounded text previews of any value: a result's ``__repr__`` never hangs or breaks a view.

The inspector, the result tables and the frames show each task's result as a
short text. A result is the user's object: its ``__repr__`` (or a ``shape``
property, or ``__getattr__``) may raise, loop for ever or return 50 MB. So:

- values that run no user code (``None``, numbers, strings, bytes and small
  lists, tuples, dicts and sets of those) are shown directly;
- everything else is rendered on a helper thread (one per call, taking the
  values one after another) while the caller waits at most ``timeout`` seconds
  for each value and ``total`` seconds for all of them. A value that raises
  shows ``<repr of X failed: ValueError: ...>``; one that takes too long shows
  ``<repr of X took too long>`` and the values after it get a fresh thread;
- every text is cut to ``limit`` characters, and to one line.

A hung render cannot be killed from outside. The helper thread is a daemon,
and it is sent an exception (``PyThreadState_SetAsyncExc``), which ends a
Python-level loop at once; a call blocked in C (``time.sleep(60)``, a lock)
ends when that call returns. Until then the thread is left behind: better than
a hung kernel. While it lives, other values of the same class are not tried
again (``<repr of X not tried: an earlier one still hangs>``, at once), so a
broken class neither piles threads up nor costs 0.2 s a display; and while
``MAX_STUCK`` classes have such a thread, no value that needs a thread is
rendered at all (``<X: not shown ...>``).
"""

from __future__ import annotations

import builtins
import ctypes
import itertools
import math
import queue
import reprlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

LIMIT = 200  # characters of a preview
TIMEOUT = 0.2  # seconds one value may take
TOTAL = 1.0  # seconds all the values of one call may take
MAX_STUCK = 8  # classes with an abandoned helper thread still alive before no new one starts
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})
_CHECKED = 200  # items looked at to call a container safe to show directly
_stuck: dict[type, threading.Thread] = {}  # the class whose render hung -> the thread it hangs on
_names = itertools.count(1)


class _Abandoned(BaseException):
    """Sent to a helper thread whose render took too long (not an ``Exception``: not caught)."""


class BoundedRepr(reprlib.Repr):
    """``reprlib.Repr`` that also cuts bytes and bytearrays before rendering them: reprlib
    renders those whole and then cuts the text, which for a 300 MB result takes seconds and
    as much memory again."""

    def repr_bytes(self, x: bytes, level: int) -> str:
        return self._cut(x)

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return self._cut(x)

    def _cut(self, x: bytes | bytearray) -> str:
        limit = self.maxstring
        text = builtins.repr(x[:limit])
        if len(x) > limit or len(text) > limit:  # as reprlib cuts a str
            head = max(0, (limit - 3) // 2)
            tail = max(0, limit - 3 - head)
            text = builtins.repr(x[:head] + x[len(x) - tail:])
            text = text[:head] + "..." + text[len(text) - tail:]
        return text


def _short_repr() -> reprlib.Repr:
    short = BoundedRepr()
    short.maxstring = short.maxother = LIMIT
    short.maxlist = short.maxtuple = short.maxset = short.maxfrozenset = short.maxdict = 8
    short.maxlevel = 3
    return short


_REPR = _short_repr()


def kind_of(value: Any) -> str:
    """The value's type name, without running the value's code."""
    name = type.__dict__["__name__"].__get__(type(value))  # no metaclass can override this
    return name if isinstance(name, str) else "object"


def short_repr(value: Any) -> str:
    """The default render: type and shape for arrays and frames, else a short repr.

    Runs the value's own code (``shape``, ``__repr__``): call it through
    ``safe_preview``, not directly.
    """
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and shape and not isinstance(value, type):
        return f"{kind_of(value)} {chr(0xd7).join(str(s) for s in shape)}"
    if type(value) in _CONTAINERS or type(value) in _SCALARS or type(value) is bytearray:
        return _REPR.repr(value)  # sizes bounded; a broken item inside shows as <X instance>
    return builtins.repr(value)  # errors are the caller's to report


def runs_no_user_code(value: Any, budget: int = _CHECKED) -> bool:
    """True for builtin scalars and small builtin containers of them (looked at in full)."""
    todo = [value]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind in _SCALARS:
            if kind is int and item.bit_length() > 4000:  # str() of a huge int is quadratic
                return False
            continue
        if kind not in _CONTAINERS:
            return False
        budget -= len(item) + 1
        if budget < 0:
            return False
        todo.extend(item.items() if kind is dict else item)
    return True


def safe_preview(value: Any, limit: int = LIMIT, *, render: Callable[[Any], str] = short_repr,
                 timeout: float = TIMEOUT, deadline: float | None = None) -> str:
    """One value as at most ``limit`` characters of one line, within about ``timeout`` seconds
    (and before ``deadline``, a ``time.monotonic()`` shared by the values of one display)."""
    return safe_previews([value], limit, render=render, timeout=timeout, total=timeout,
                         deadline=deadline)[0]


def safe_previews(values: Sequence[Any], limit: int = LIMIT, *,
                  render: Callable[[Any], str] = short_repr, timeout: float = TIMEOUT,
                  total: float = TOTAL, deadline: float | None = None) -> list[str]:
    """Each value as ``safe_preview`` does, all of them within about ``total`` seconds."""
    out: list[str | None] = [None] * len(values)
    slow: list[int] = []
    for i, value in enumerate(values):
        if runs_no_user_code(value):
            out[i] = _one_line(_render_here(render, value), limit)
        else:
            slow.append(i)
    slow = _skip_stuck(values, slow, out)
    deadline = min(time.monotonic() + total, deadline or math.inf)
    while slow:
        if time.monotonic() >= deadline:
            for i in slow:
                out[i] = f"<{kind_of(values[i])}: not shown, previews ran out of time>"
            break
        if len(_stuck_alive()) >= MAX_STUCK:
            for i in slow:
                out[i] = f"<{kind_of(values[i])}: not shown, {MAX_STUCK} earlier previews still run>"
            break
        slow = _skip_stuck(values, _render_on_thread(values, slow, render, limit, out, timeout,
                                                     deadline), out)
    return [text if text is not None else "" for text in out]


def _skip_stuck(values: Sequence[Any], todo: list[int], out: list[str | None]) -> list[int]:
    """``todo`` without the values of a class whose render hangs now (noted at once)."""
    stuck = _stuck_alive()
    if not stuck:
        return todo
    left = []
    for i in todo:
        if type(values[i]) in stuck:
            out[i] = f"<repr of {kind_of(values[i])} not tried: an earlier one still hangs>"
        else:
            left.append(i)
    return left


def _render_here(render: Callable[[Any], str], value: Any) -> str:
    try:
        return render(value)
    except Exception as exc:  # noqa: BLE001 - builtins only: a huge int, say
        return f"<repr of {kind_of(value)} failed: {kind_of(exc)}: {exc}>"


def _render_guarded(render: Callable[[Any], str], value: Any, limit: int) -> str:
    """On the helper thread: the render (a plain ``str``, cut to a few times ``limit``: the
    caller never handles 50 MB), or what went wrong (the message is user code too)."""
    try:
        text = render(value)
        if not isinstance(text, str):
            return f"<repr of {kind_of(value)} failed: it returned {kind_of(text)}, not str>"
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break a view
        try:
            message = str(exc)
        except Exception:  # noqa: BLE001
            message = "(its message failed too)"
        text = f"<repr of {kind_of(value)} failed: {kind_of(exc)}: {message}>"
    return str.__getitem__(text, slice(0, 4 * limit))  # a plain str even from a str subclass


def _render_on_thread(values: Sequence[Any], todo: list[int], render: Callable[[Any], str],
                      limit: int, out: list[str | None], timeout: float,
                      deadline: float) -> list[int]:
    """Render ``todo`` in order on one helper thread; returns the indices still to do when
    one of them hung (that one is marked as too long and the thread abandoned)."""
    results: queue.SimpleQueue[tuple[int, str] | None] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        try:
            for i in todo:
                if stop.is_set():
                    return
                results.put((i, _render_guarded(render, values[i], limit)))
            results.put(None)
        except BaseException:  # noqa: BLE001 - _Abandoned, or anything the render leaked
            return

    thread = threading.Thread(target=work, name=f"codomyrmex-preview-{next(_names)}", daemon=True)
    thread.start()
    left = list(todo)
    last = time.monotonic()
    while left:
        wait = min(last + timeout, deadline) - time.monotonic()
        try:
            item = results.get(timeout=max(wait, 0.0)) if wait > 0 else results.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return []
        i, text = item
        out[i] = _one_line(text, limit)
        left.pop(0)  # the thread answers in order
        last = time.monotonic()
    if not left:
        return []
    stop.set()
    hung = left.pop(0)
    _interrupt(thread, type(values[hung]))
    out[hung] = f"<repr of {kind_of(values[hung])} took too long>"
    return left


def _interrupt(thread: threading.Thread, kind: type) -> None:
    """Raise ``_Abandoned`` in the helper thread (ends a Python loop); keep it if it lives on."""
    ident = thread.ident
    if ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                   ctypes.py_object(_Abandoned))
        _stuck[kind] = thread


def _stuck_alive() -> dict[type, threading.Thread]:
    """The classes whose abandoned render still runs (the ended ones are forgotten)."""
    for kind in [k for k, t in list(_stuck.items()) if not t.is_alive()]:
        _stuck.pop(kind, None)
    return _stuck


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str.__getitem__(text, slice(0, 4 * limit)).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
