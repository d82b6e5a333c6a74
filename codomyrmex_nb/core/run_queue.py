"""Seconds a thread spent runnable but waiting for a CPU core (Linux ``schedstat``).

This tells the GIL apart from a busy machine: a thread waiting for the GIL
sleeps (it is off the run queue), a thread the machine has no core for waits
on the run queue. ``/proc/thread-self/schedstat`` holds the thread's
cumulative run-queue wait since it was created; each thread keeps its file
open (``os.pread`` costs a few microseconds). ``since_last()`` is the wait
since this thread's previous call (since the thread began, the first time):
an attempt pays for it only when it ran long enough to matter (``WORTH``), and
the short engine work between two attempts counts with the next one, which
errs toward "busy machine", never toward the GIL. None where not available.
"""

from __future__ import annotations

import os
import threading

WORTH = 0.02  # seconds: shorter attempts say too little about their CPU use to measure
_PATH = "/proc/thread-self/schedstat"
_local = threading.local()
_available = os.path.exists(_PATH)


class _Reader:
    __slots__ = ("fd", "last")

    def __init__(self) -> None:
        self.fd = os.open(_PATH, os.O_RDONLY)
        self.last = 0

    def __del__(self) -> None:  # the thread ended: its thread-local reader goes
        try:
            os.close(self.fd)
        except OSError:
            pass


def since_last() -> float | None:
    """This thread's run-queue wait (seconds) since its last call; None if unknown."""
    if not _available:
        return None
    try:
        reader = _local.__dict__.get("reader") or _new_reader()
        now = int(os.pread(reader.fd, 96, 0).split()[1])
    except (OSError, ValueError, IndexError):
        return None
    waited, reader.last = now - reader.last, now
    return max(0, waited) / 1e9


def _new_reader() -> _Reader:
    reader = _local.reader = _Reader()
    return reader
