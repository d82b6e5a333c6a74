"""Engine events: the only bridge from the engine to views and frames.

The engine publishes under its lock, so publishing only appends to a deque
(no lock, no wake-up while the dispatcher is busy); a dispatcher thread drains
the deque in batches and delivers events to subscribers in order. A callback
that raises is logged and the rest still get the event; a slow callback
delays other callbacks, never the engine. With no subscribers, nothing is
queued.

Kinds:
- ``"added"``    a task was added (``status`` is its state)
- ``"status"``   a task changed state (``previous`` -> ``status``); ``detail``
                 is ``"retry"`` while it waits to retry, ``"requeued"`` when it
                 was queued again; terminal events carry ``execution_time``
- ``"removed"``  a task was forgotten (``reset``)
- ``"engine"``   the engine started or stopped (``detail``)
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from time import time as _now

from .model import TaskStatus

log = logging.getLogger(__name__)


class Event:
    """One change, as the engine saw it; treat it as read-only.

    A plain slotted class rather than a frozen dataclass: the engine builds
    three per task under its lock, and this is about three times cheaper.
    """

    __slots__ = ("kind", "task_id", "name", "status", "previous", "detail", "time",
                 "execution_time")

    def __init__(self, kind: str, task_id: str | None = None, name: str | None = None,
                 status: TaskStatus | None = None, previous: TaskStatus | None = None,
                 detail: str | None = None, time: float | None = None,
                 execution_time: float | None = None) -> None:
        self.kind, self.task_id, self.name = kind, task_id, name
        self.status, self.previous, self.detail = status, previous, detail
        self.time = _now() if time is None else time
        self.execution_time = execution_time

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__
                           if getattr(self, k) is not None)
        return f"Event({fields})"


Callback = Callable[[Event], object]


class EventBus:
    """Ordered, asynchronous delivery of events to subscriber callbacks."""

    def __init__(self) -> None:
        self._subscribers: tuple[Callback, ...] = ()
        self._pending: deque[Event] = deque()
        self._wakeup = threading.Event()
        self._awake = False  # the dispatcher is draining: no need to wake it
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._delivered_cond = threading.Condition(self._lock)
        self._published = itertools.count(1)  # next() is atomic in CPython
        self._last_published = 0
        self._delivered = 0

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
        self._pending.append(event)
        self._last_published = next(self._published)
        if self._thread is None:
            self._start()
        if not self._awake:
            self._wakeup.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="codo-events", daemon=True)
                self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event published so far was delivered; False on timeout."""
        target = self._last_published
        with self._delivered_cond:
            return self._delivered_cond.wait_for(lambda: self._delivered >= target, timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Deliver what is queued, then stop the dispatcher thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._wakeup.set()
        if thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        pending, me = self._pending, threading.current_thread()
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            self._awake = True
            while pending:
                delivered = 0
                while pending:
                    self._deliver(pending.popleft())
                    delivered += 1
                with self._delivered_cond:
                    self._delivered += delivered
                    self._delivered_cond.notify_all()
            self._awake = False
            if pending:  # published after the drain but before _awake was cleared
                self._wakeup.set()
            elif self._thread is not me:  # closed (or replaced after a restart)
                return

    def _deliver(self, event: Event) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber %r raised; the engine carries on", callback)
