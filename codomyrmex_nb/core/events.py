"""Engine events: the only bridge from the engine to views and frames.

The engine publishes under its lock, so publishing only appends to a queue; a
dispatcher thread delivers events to subscribers in order. A callback that
raises is logged and the rest still get the event; a slow callback delays
other callbacks, never the engine. With no subscribers, nothing is queued.

Kinds:
- ``"added"``    a task was added or re-queued (``status`` is its new state)
- ``"status"``   a task changed state (``previous`` -> ``status``); ``detail``
                 is ``"retry"`` while it waits to retry
- ``"removed"``  a task was forgotten (``reset``)
- ``"engine"``   the engine started or stopped (``detail``)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .model import TaskStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    task_id: str | None = None
    name: str | None = None
    status: TaskStatus | None = None
    previous: TaskStatus | None = None
    detail: str | None = None
    time: float = field(default_factory=time.time)


Callback = Callable[[Event], object]
_STOP = object()


class EventBus:
    """Ordered, asynchronous delivery of events to subscriber callbacks."""

    def __init__(self) -> None:
        self._subscribers: tuple[Callback, ...] = ()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Deliver every later event to ``callback``; returns a function that unsubscribes."""
        if not callable(callback):
            raise TypeError(f"subscribe() needs a callable taking one Event, got {callback!r}")
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(c for c in self._subscribers if c is not callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        if not self._subscribers:
            return
        with self._lock:
            self._outstanding += 1
            if self._thread is None:
                # Each dispatcher drains its own queue, so a restart never interleaves.
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="codo-events", daemon=True)
                self._thread.start()
            self._queue.put(event)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event published so far was delivered."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Deliver what is queued, then stop the dispatcher thread."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._thread = None
            self._queue.put(_STOP)
        if thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self, events: queue.SimpleQueue[object]) -> None:
        while True:
            event = events.get()
            if event is _STOP:
                return
            for callback in self._subscribers:
                try:
                    callback(event)
                except Exception:
                    log.exception("event subscriber %r raised; the engine carries on", callback)
            with self._idle:
                self._outstanding -= 1
                if self._outstanding == 0:
                    self._idle.notify_all()
