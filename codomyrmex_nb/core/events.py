"""Engine events: the only bridge from the engine to views and frames.

The engine publishes under its lock, so publishing only appends to a deque
under a small lock (a wake-up only when the queue was empty); a dispatcher
thread drains the deque in batches and delivers events to subscribers in order. A callback
that raises is logged and the rest still get the event; a slow callback
delays other callbacks, never the engine. With no subscribers, nothing is
queued.

Kinds:
- ``"added"``    a task was added (``status`` is its state)
- ``"status"``   a task changed state (``previous`` -> ``status``); ``detail``
                 is ``"retry"`` while it waits to retry, ``"requeued"`` when it
                 was queued again; terminal events carry ``execution_time``
- ``"removed"``  a task was forgotten (``reset``)
- ``"output"``   an abandoned (cancelled, timed-out) attempt's captured output has
                 arrived, after its status event (no ``seq``: no state changed)
- ``"engine"``   the engine started or stopped (``detail``)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from time import time as _now

from .model import TaskStatus

log = logging.getLogger(__name__)


class Event:
    """One change, as the scheduler recorded it; treat it as read-only.

    ``seq`` is the scheduler's sequence number for task events (a snapshot
    taken at ``seq`` N already includes every event numbered N or less).
    A plain slotted class rather than a frozen dataclass: the engine builds
    one per transition under its lock, and this is about three times cheaper.
    """

    __slots__ = ("kind", "task_id", "name", "status", "previous", "detail", "time",
                 "execution_time", "seq")

    def __init__(self, kind: str, task_id: str | None = None, name: str | None = None,
                 status: TaskStatus | None = None, previous: TaskStatus | None = None,
                 detail: str | None = None, time: float | None = None,
                 execution_time: float | None = None, seq: int | None = None) -> None:
        self.kind, self.task_id, self.name = kind, task_id, name
        self.status, self.previous, self.detail = status, previous, detail
        self.time = _now() if time is None else time
        self.execution_time = execution_time
        self.seq = seq

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__
                           if getattr(self, k) is not None)
        return f"Event({fields})"


Callback = Callable[[Event], object]


class EventBus:
    """Ordered, asynchronous delivery of events to subscriber callbacks.

    One dispatcher thread at a time, for the life of the bus: ``close`` asks
    it to leave once the queue is empty and waits only while it is not inside
    a callback (a slow subscriber never holds up ``stop_execution``); if
    events arrive before it left, the same thread carries on, so two
    dispatchers never deliver concurrently or out of order. A callback that
    raises anything, ``SystemExit`` included, is logged and the others still
    get the event.
    """

    def __init__(self) -> None:
        self._subscribers: tuple[Callback, ...] = ()
        self._pending: deque[Event] = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # the dispatcher and flush() wait here
        self._thread: threading.Thread | None = None
        self._closing = False
        self._in_callback = False
        self._callback_since = 0.0
        self._published = 0
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
        with self._lock:
            self._pending.append(event)
            self._published += 1
            self._closing = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="codo-events", daemon=True)
                self._thread.start()
            elif len(self._pending) == 1:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event published so far was delivered; False on timeout."""
        if timeout is not None:
            timeout = min(max(0.0, timeout), threading.TIMEOUT_MAX)
        with self._cond:
            target = self._published
            return self._cond.wait_for(lambda: self._delivered >= target, timeout)

    def close(self, grace: float = 0.25) -> None:
        """Let the dispatcher leave once the queue is drained.

        Waits while delivery makes progress, but gives up on a callback that
        has run longer than ``grace`` seconds: a slow subscriber never holds
        up ``stop_execution`` (its thread then ends by itself after it).
        """
        me = threading.current_thread()
        with self._cond:
            thread = self._thread
            if thread is None:
                return
            self._closing = True
            self._cond.notify_all()
            while self._thread is thread and thread is not me:
                if self._in_callback and time.monotonic() - self._callback_since > grace:
                    return
                self._cond.wait(grace)
        thread.join(grace)

    def _run(self) -> None:
        pending, cond = self._pending, self._cond
        while True:
            with cond:
                while not pending:
                    if self._closing:
                        self._thread = None
                        cond.notify_all()
                        return
                    cond.wait()
                batch = list(pending)
                pending.clear()
                self._in_callback = True
            try:
                for event in batch:
                    self._deliver(event)
            finally:
                with cond:
                    self._in_callback = False
                    self._delivered += len(batch)
                    cond.notify_all()

    def _deliver(self, event: Event) -> None:
        for callback in self._subscribers:
            self._callback_since = time.monotonic()
            try:
                callback(event)
            except BaseException:  # noqa: BLE001 - SystemExit from a callback must not kill delivery
                log.exception("event subscriber %r raised; the engine carries on", callback)
