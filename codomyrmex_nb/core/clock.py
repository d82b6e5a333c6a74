"""One timer thread for every deadline the engine has: timeouts, retry delays, resource waits.

The thread sleeps on a condition until the earliest deadline or until a new,
earlier deadline arrives; it never polls. Callbacks run on the timer thread and
must be short (the engine's take its lock briefly). Entries survive ``stop()``
and fire after the next ``start()``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .model import MAX_DELAY

log = logging.getLogger(__name__)


class TimerHandle:
    __slots__ = ("deadline", "callback", "args", "cancelled", "_clock")

    def __init__(self, deadline: float, callback: Callable[..., Any], args: tuple[Any, ...],
                 clock: Clock) -> None:
        self.deadline, self.callback, self.args = deadline, callback, args
        self.cancelled = False
        self._clock = clock

    def cancel(self) -> None:
        """Never fire; drops the callback and its arguments at once (no task kept alive)."""
        if not self.cancelled:
            self.cancelled = True
            self.callback, self.args = None, ()
            self._clock._cancelled_one()


class Clock:
    """A heap of deadlines (``time.monotonic()``) served by one thread.

    Delays are clamped to ``MAX_DELAY`` (a year) and waits to the platform's
    ``threading.TIMEOUT_MAX``, so no value can overflow the thread; a callback
    that raises anything is logged and the clock goes on. Cancelled entries
    are dropped from the heap once they are the majority.
    """

    def __init__(self, name: str = "codo-clock") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._running = False
        self._cancelled = 0

    def call_at(self, deadline: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(deadline, callback, args, self)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), handle))
            if self._heap[0][2] is handle:
                self._cond.notify()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        delay = min(max(0.0, delay), MAX_DELAY) if delay == delay else MAX_DELAY  # nan: never
        return self.call_at(time.monotonic() + delay, callback, *args)

    def pending(self) -> int:
        """Entries still armed (for tests of leaks)."""
        with self._cond:
            return len(self._heap) - self._cancelled

    def _cancelled_one(self) -> None:
        with self._cond:
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                self._heap = [e for e in self._heap if not e[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._running:
                        return
                    heap = self._heap
                    while heap and heap[0][2].cancelled:
                        heapq.heappop(heap)
                        self._cancelled -= 1
                    if not heap:
                        self._cond.wait()
                        continue
                    delay = heap[0][0] - time.monotonic()
                    if delay <= 0:
                        handle = heapq.heappop(heap)[2]
                        handle.cancelled = True  # fired: a later cancel() is a no-op
                        break
                    self._cond.wait(min(delay, threading.TIMEOUT_MAX, MAX_DELAY))
            callback, args = handle.callback, handle.args
            handle.callback, handle.args = None, ()
            try:
                callback(*args)
            except BaseException:  # noqa: BLE001 - a deadline's callback must never kill the clock
                log.exception("timer callback %r failed", callback)
