"""Clicks on the live view are answered while the kernel's main shell is busy.

During Run All the main shell sits in a waiting cell (``%codo_wait``, a
``time.sleep``), exactly when Cancel is wanted. Two ways through, both for the
view's own messages only:

- **Subshells.** JupyterLab >= 4.4 sends widget messages to a kernel subshell
  (its ``commsOverSubshells`` setting, on by default) and ipykernel >= 7 runs
  that subshell on its own thread. But ipykernel 7.4 routes each message of a
  comm to the shell that last *sent* on it, and the view sends its frames from
  its drawing thread under the parent of the cell that created it: every click
  would go to the busy main shell. ``route`` makes the view's comm deliver each
  message to the shell the front end addressed, so the first click is answered
  on the subshell at once.
- **No subshell** (the setting off, older front ends): the message is addressed
  to the main shell and queues behind the running cell. ipykernel's shell-channel
  thread still asks the comm where it goes (``route``, on that thread); when the
  kernel's main thread is inside one of our waits (``core.waiting``: the wait of
  ``%codo_wait``, ``%codo_results``, ``wait_for_completion``), a copy of the
  click is handed to that wait, which answers it at once (the chore installed
  here). The main shell still receives the message after the cell; each click
  carries a token (``token``, set by the front end), and the copy that comes
  second is dropped (``claim``). A queued ``execute_request`` is never touched:
  the next cell runs after the wait, as always.

Elsewhere (ipykernel < 7.4 without subshells, a kernel busy in anything but our
wait) a click is answered when the cell ends, as before.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..core import waiting

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], None]

_lock = threading.Lock()
# Clicks handed to a wait, not answered yet: token -> (handler, content), in arrival order.
_early: OrderedDict[str, tuple[weakref.WeakMethod[Handler], dict[str, Any]]] = OrderedDict()
_answered: set[str] = set()  # answered by a wait; the main shell's copy is still to come


def route(comm: Any, handler: Handler) -> None:
    """Make ``comm`` (a widget's) deliver front-end messages as described above;
    ``handler(content)`` (a bound method) answers a click inside a wait."""
    ref = weakref.WeakMethod(handler)

    def reply_subshell_for(data: Any, default: str | None) -> str | None:
        # ipykernel's shell-channel thread asks this for every comm message; it must not raise.
        try:
            if default is None:
                _hand_to_wait(ref, data)
        except Exception:
            log.debug("live view: routing a click failed", exc_info=True)
        return default

    # ipykernel >= 7.4 asks this; earlier ones route by the message's header, as we do.
    comm._reply_subshell_for = reply_subshell_for
    waiting.set_chore(_answer_early)


def _hand_to_wait(ref: weakref.WeakMethod[Handler], data: Any) -> None:
    """Shell-channel thread: a click addressed to the busy main shell goes to our wait."""
    content = data.get("content") if isinstance(data, dict) else None
    token = content.get("token") if isinstance(content, dict) else None
    if not isinstance(token, str) or not token or data.get("method") != "custom":
        return
    if not waiting.waiting(threading.main_thread()):
        return
    with _lock:
        if token in _early or token in _answered:
            return
        _early[token] = (ref, content)
    waiting.poke()


def _answer_early() -> None:
    """The chore: on the main thread, inside a wait, answer the clicks handed to it."""
    if threading.current_thread() is not threading.main_thread():
        return
    while True:
        with _lock:
            if not _early:
                return
            token, (ref, content) = _early.popitem(last=False)
            _answered.add(token)
        handler = ref()
        if handler is not None:
            handler(content)


def claim(content: Any) -> bool:
    """True if the shell that received this message should answer it; False for the copy of
    a click a wait has already answered."""
    token = content.get("token") if isinstance(content, dict) else None
    if not isinstance(token, str):
        return True
    with _lock:
        if token in _answered:
            _answered.discard(token)
            return False
        _early.pop(token, None)  # handed to a wait that ended first: answered here instead
        return True
