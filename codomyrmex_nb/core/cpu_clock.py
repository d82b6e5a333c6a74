"""A worker thread's CPU clock, read at most once per ``SPAN`` of wall time.

``time.thread_time`` is a system call (half a microsecond here, made with the GIL held),
and reading it around every attempt was a tenth of a no-op map item's cost. A worker
keeps one ``CpuClock`` and asks it what each attempt it ran cost (``spent``):

- an attempt that ended within ``SPAN`` of the clock's last reading is given its wall
  time times the share of a CPU the thread had over its last span (an estimate, right
  on average; such an attempt took under a millisecond, too short for the CPU-or-waiting
  question the figure answers to hinge on it);
- any other attempt reads the clock as it ends and is measured from the CPU the thread
  used since the last reading, less the estimated CPU of the worker's own work between
  that reading and the attempt's start (microseconds): so a long attempt's CPU time is
  exact to within that, and a sleeping one still shows about none.

A worker that waited for work (or for the journal) reads its clock again as it wakes
(``rested``): the estimate of its own work before an attempt assumed it was busy since
the last reading, and a CPU-bound attempt after an idle second showed no CPU time. For
the same reason an attempt whose clock's last reading is ``SPAN`` old reads it as it begins
(``catch_up``): its thread may have waited for the GIL or a core since, unseen.
"""

from __future__ import annotations

import threading
import time

SPAN = 0.001  # seconds of wall time between two readings of the CPU clock, at least


class CpuClock:
    """One thread's CPU clock (made in that thread; ``thread`` says which)."""

    __slots__ = ("thread", "wall", "cpu", "share")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()
        self.share = 1.0  # CPU seconds per wall second over the last span

    def catch_up(self, now: float) -> None:
        """Read the clock at ``now`` (``time.perf_counter``, an attempt about to begin) when
        its last reading is ``SPAN`` or more old: an attempt is then measured from just
        before it began, not from an estimate of the span before it, in which its thread
        may have waited for the GIL or for a core as much as it worked."""
        cpu = time.thread_time()
        since = now - self.wall
        if since > 0:
            self.share = min(1.0, max(0.0, cpu - self.cpu) / since)
        self.wall, self.cpu = now, cpu

    def rested(self) -> None:
        """The thread waited (idle, using no CPU): measure from now."""
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()

    def spent(self, started: float, ended: float) -> float:
        """CPU seconds of an attempt that ran in this thread from ``started`` to ``ended``
        (``time.perf_counter``)."""
        elapsed = ended - started
        since = ended - self.wall
        if since < SPAN:
            return elapsed * self.share
        cpu = time.thread_time()
        used = cpu - self.cpu
        before = max(0.0, started - self.wall) * self.share  # the worker's own, estimated
        self.share = min(1.0, used / since) if since > 0 else 1.0
        self.wall, self.cpu = ended, cpu
        return min(elapsed, max(0.0, used - before))
