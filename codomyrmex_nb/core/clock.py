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

log = logging.getLogger(__name__)


class TimerHandle:
    __slots__ = ("deadline", "callback", "args", "cancelled")

    def __init__(self, deadline: float, callback: Callable[..., Any], args: tuple[Any, ...]):
        self.deadline, self.callback, self.args = deadline, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """A heap of deadlines (``time.monotonic()``) served by one thread."""

    def __init__(self, name: str = "codo-clock") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._running = False

    def call_at(self, deadline: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(deadline, callback, args)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), handle))
            if self._heap[0][2] is handle:
                self._cond.notify()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_at(time.monotonic() + max(0.0, delay), callback, *args)

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
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        handle = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(delay)
            try:
                handle.callback(*handle.args)
            except Exception:  # a deadline's callback must never kill the clock
                log.exception("timer callback %r failed", handle.callback)
