"""A chore a thread may do while it waits for tasks (``Engine.wait``).

Why: in a notebook, ``%codo_wait`` blocks the kernel's main shell, and where the
front end has no kernel subshells the live view's clicks queue behind it. The
notebook layer installs one chore here (answer those clicks) and pokes the
waiting threads when it has work for them. Core knows nothing of notebooks:
a chore is any callable.

Each wait registers a waker (it notifies the condition the wait sleeps on), so
a poke wakes it like any other change: no polling. The wait then runs the
chore outside its own lock and waits on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

_lock = threading.Lock()
_chore: Callable[[], None] | None = None
_pokes = 0  # how many pokes so far; a wait runs the chore when it has not seen them all
_waits: dict[int, tuple[threading.Thread, Callable[[], None]]] = {}


def set_chore(chore: Callable[[], None] | None) -> None:
    """Install the chore waits run when poked (None: none)."""
    global _chore
    with _lock:
        _chore = chore


def poke() -> None:
    """Wake every wait in progress to run the chore (from any thread)."""
    global _pokes
    with _lock:
        _pokes += 1
        wakers = [wake for _, wake in _waits.values()]
    for wake in wakers:
        wake()


def waiting(thread: threading.Thread) -> bool:
    """True while ``thread`` is inside a wait that runs chores."""
    with _lock:
        return any(t is thread for t, _ in _waits.values())


class Chores:
    """One wait's view of the chores: ``due()`` under the wait's own lock, ``run()`` outside it."""

    def __init__(self) -> None:
        self._seen = _pokes

    def due(self) -> bool:
        return _chore is not None and self._seen != _pokes

    def run(self, holding: threading.Lock | None = None) -> None:
        """Run the chore once for the pokes seen so far, with the wait's lock ``holding``
        released meanwhile; a failing chore never ends the wait."""
        with _lock:
            self._seen, chore = _pokes, _chore
        if chore is None:
            return
        if holding is not None:
            holding.release()
        try:
            chore()
        except Exception:
            log.exception("a chore run while waiting failed")
        finally:
            if holding is not None:
                holding.acquire()


@contextlib.contextmanager
def watch(wake: Callable[[], None]) -> Iterator[Chores]:
    """Register the calling thread's wait (``wake`` wakes it) for its duration."""
    chores = Chores()
    key = id(chores)
    with _lock:
        _waits[key] = (threading.current_thread(), wake)
    try:
        yield chores
    finally:
        with _lock:
            del _waits[key]
