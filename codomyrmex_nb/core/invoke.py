"""Running one attempt: build the call, run it (sync or async), keep errors whole, interrupt it.

Interrupting a thread uses CPython's asynchronous exceptions
(``PyThreadState_SetAsyncExc``): the exception is raised in the task's thread
at its next Python instruction. Code blocked inside C (``time.sleep``, a
socket read) returns first. An exception is only ever injected while the
thread is inside the task's own code, and a pending one is cleared when the
task returns first, so engine code is never hit. ``async def`` actions run on
an event loop of their own in the worker thread; they are interrupted by
cancelling their asyncio task, which also wakes an ``await asyncio.sleep``, and
end as under ``asyncio.run``: tasks left pending (the body's background tasks,
the body itself when the interrupt landed in the loop) are cancelled and their
clean-up run before the loop closes (``_wind_down``).

``Run.execute`` also records what the attempt cost and said: everything its
thread (and the threads it starts, while it runs) prints, warns or logs goes
into ``Outcome.logs`` (``capture.Capture``, per thread, so the notebook's own
output and other tasks are untouched), and the thread's CPU seconds into
``Outcome.cpu_time``: from its worker's ``cpu_clock.CpuClock`` (read at most once a
millisecond; an attempt shorter than that gets an estimate), else by reading
``time.thread_time`` around it.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import inspect
import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FunctionType
from typing import Any

from . import capture, run_queue
from .capture import Capture
from .cpu_clock import SPAN, CpuClock
from .mapping import MapResult
from .model import OutputRef, TaskStatus, output_refs
from .trigger_rules import NoResult

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
# Clearing needs a NULL exception: through ``py_object`` None would be set as the
# "exception" and raise SystemError in the thread at its next instruction.
_clear_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))


class Interrupted(BaseException):
    """Raised inside a task's thread when the engine abandons the attempt.

    A BaseException so that a task's ``except Exception`` does not swallow it.
    """


@dataclass(slots=True)
class Outcome:
    ok: bool
    value: Any = None
    error: BaseException | None = None
    traceback: str | None = None
    started: float = 0.0  # time.perf_counter() at the start of the user's code
    ended: float = 0.0
    logs: str | None = None  # what the attempt printed and logged, where captured
    cpu_time: float | None = None  # CPU seconds of the attempt (its thread, or its process)
    peak_memory: int | None = None  # bytes, where the executor can measure one attempt
    displays: list[Any] | None = None  # (mime bundle, metadata) the attempt displayed
    unbound: bool = False  # a TypeError binding the call: a definition error, never retried
    run_delay: float | None = None  # seconds its thread waited for a core (``run_queue``)
    restored: Any = None  # (when, source): an item's result came back from the journal


_PLAIN = frozenset({int, float, str, bytes, bool, list, dict, tuple, set})  # never awaitable


class Run:
    """An attempt in flight: what to call, where it runs, and how to stop it.

    The engine gives up on an attempt with ``abandon``. Before the user's
    code starts, the executor passes a gate that takes the run's own lock:
    ``execute`` (in this thread) or ``begin`` (before shipping the call to a
    process or a Dask worker). So exactly one of two things happens: the gate
    sees the attempt abandoned and user code never starts, or user code
    starts first and the interrupt reaches it. The deadline is armed when the
    attempt is dispatched (so a hung import times out); an executor that must
    start a worker first calls ``hold_deadline`` and ``begin`` re-arms it from
    then (through ``on_begin``), so a cold process pool never counts against
    the task's timeout.
    """

    __slots__ = ("task", "attempt", "call", "thread_id", "claims", "timer", "resource_timer",
                 "abandoned", "_lock", "_in_user", "_injected", "_loop", "_main", "handle",
                 "wait_since", "on_begin", "begun", "rec", "deadline_gen", "held", "taken_at",
                 "box", "clock", "timed_from")

    def __init__(self, task: Any, rec: Any = None) -> None:
        self.task = task
        self.rec = rec  # the scheduler's record (the engine's tickets carry it)
        self.attempt: Any = None
        self.call: Callable[[], Any] | None = None
        self.thread_id: int | None = None
        self.claims: tuple[tuple[str, str], ...] = ()
        self.timer: Any = None
        self.resource_timer: Any = None
        self.abandoned: str | None = None  # why the engine gave up on it
        self._lock = threading.Lock()
        self._in_user = False
        self._injected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Future[Any] | None = None
        self.handle: Any = None  # executor-specific (a process, a dask future)
        self.wait_since = 0.0
        self.on_begin: Callable[[Run], Any] | None = None  # the engine re-arms the deadline here
        self.begun = False
        self.deadline_gen = 0  # which armed deadline is current (a re-armed one supersedes)
        self.held = False
        self.taken_at = 0.0  # time.perf_counter() when a worker took it (set by the engine)
        self.box: Capture | None = None  # the attempt's capture while it runs here (``peek``)
        self.clock: CpuClock | None = None  # its worker's CPU clock (set by the engine)
        self.timed_from: float | None = None  # time.time() its deadline was (re-)armed at

    @property
    def label(self) -> str:
        """What messages call the attempt: its task's name, or an item's ``name[index]``."""
        name = getattr(self.rec, "name", None)
        return name if type(name) is str else self.task.name

    # -- the gate ------------------------------------------------------------------
    @property
    def in_user_code(self) -> bool:
        """Is its user code running in its thread now (begun, not returned)?"""
        return self._in_user

    def begin(self) -> bool:
        """User code is about to start: False (start nothing) if the attempt was abandoned."""
        with self._lock:
            if self.abandoned:
                return False
            self.begun = True
            if self.held and self.on_begin is not None:
                self.held = False
                self.timer = self.on_begin(self)
        return True

    def hold_deadline(self) -> None:
        """Stop the clock while the executor starts a worker; ``begin`` starts it afresh."""
        with self._lock:
            if self.timer is not None and not self.abandoned:
                self.timer.cancel()
                self.timer = None
                self.deadline_gen += 1  # a deadline already firing is stale now
                self.held = True

    def abandon(self, reason: str) -> bool:
        """Give up on the attempt; True if its user code had begun (so it needs interrupting)."""
        with self._lock:
            self.abandoned = reason
            if self.timer is not None:
                self.timer.cancel()
            return self.begun

    # -- running --------------------------------------------------------------------------------
    def execute(self, live: bool = False, level: int | None = None,
                limit: int | None = None) -> Outcome:
        """Run ``self.call`` in this thread; never raises.

        What the attempt prints, warns and logs (from this thread, and from the
        threads it starts until it returns) is captured into ``Outcome.logs``
        (see ``capture``: ``level`` and ``limit`` default to ``capture.LOG_LEVEL``
        and ``capture.LIMIT``; ``live`` also passes it on as it comes), and the
        CPU seconds of this thread into ``Outcome.cpu_time``.
        Memory is one heap shared by every thread: ``peak_memory`` stays None.
        """
        self.thread_id = me = threading.get_ident()
        box, clock = self.box, self.clock
        shared = box is not None  # a batch's capture, started once (``engine._SharedCapture``)
        if not shared:
            box = Capture(level=capture.LOG_LEVEL if level is None else level,
                          limit=capture.LIMIT if limit is None else limit, live=live)
            box.start()
            self.box = box  # an inspector may read it while the attempt runs (Capture.peek)
        if clock is None or clock.thread != me:  # not its worker's thread: read around it
            clock, cpu = None, time.thread_time()
        elif self.taken_at - clock.wall >= SPAN:  # its last reading is old: read it now,
            clock.catch_up(self.taken_at)  # so what its thread waited for meanwhile (the
            # GIL, a busy machine) is not taken for CPU the worker used before the attempt
        try:
            outcome = self._execute()
        finally:
            if clock is None:
                cpu = time.thread_time() - cpu
            if shared:
                logs, displays = box.cut()
            else:
                logs, displays = box.stop(), box.displays
        outcome.logs = logs
        if clock is not None:  # CpuClock.spent's estimate, written out for the usual tiny one
            started, ended = outcome.started, outcome.ended
            cpu = (ended - started) * clock.share if ended - clock.wall < SPAN \
                else clock.spent(started, ended)
        outcome.cpu_time = cpu
        outcome.displays = displays
        if outcome.ended - outcome.started >= run_queue.WORTH:
            outcome.run_delay = run_queue.since_last()  # the GIL, or a busy machine?
        return outcome

    def _execute(self) -> Outcome:
        started = time.perf_counter()
        try:
            try:
                with self._lock:
                    if self.abandoned:
                        return Outcome(False, None, Interrupted(self.abandoned), None, started, started)
                    self.begun = True
                    self._in_user = True
                value = self.call()
                if value is not None and type(value) not in _PLAIN and inspect.isawaitable(value):
                    value = self._run_coroutine(value)
                return Outcome(True, value, None, None, started, time.perf_counter())
            finally:
                with self._lock:  # _leave_user, written out for the usual attempt (no
                    if self._injected:  # interrupt): once per attempt
                        self._after_interrupt()
                    self._in_user = False
        except BaseException as exc:  # noqa: BLE001 - stored whole, re-raised for the user later
            self._leave_user()
            return Outcome(False, None, exc, format_traceback(exc), started, time.perf_counter())

    def _leave_user(self) -> None:
        with self._lock:
            if self._injected:
                self._after_interrupt()
            self._in_user = False

    def _after_interrupt(self) -> None:
        """Under the run's lock, its user code returning after an interrupt was sent: drop
        the exception if it was not raised yet, and free the logging locks it held."""
        if self._in_user:
            _clear_async_exc(self.thread_id, None)  # drop an exception not yet raised
        self._in_user = False
        release_logging_locks()

    def _run_coroutine(self, awaitable: Any) -> Any:
        loop = asyncio.new_event_loop()
        try:
            main = loop.create_task(_as_coroutine(awaitable))
            with self._lock:
                self._loop, self._main = loop, main
                if self._injected:  # interrupted between the call and now
                    main.cancel()
            try:
                return loop.run_until_complete(main)
            except asyncio.CancelledError:
                if self.abandoned:
                    raise Interrupted(self.abandoned) from None
                raise
            finally:
                _wind_down(loop, main)
        finally:
            try:
                with self._lock:
                    self._loop = self._main = None
            finally:  # an interrupt landing just above must not leave the loop unclosed
                loop.close()

    # -- stopping ---------------------------------------------------------------------
    def interrupt(self, reason: str) -> bool:
        """Ask the running task to stop; True if a signal was delivered.

        An ``async def`` body is cancelled (which wakes an ``await``) *and*
        gets the asynchronous exception, so a CPU-bound coroutine that never
        awaits stops too; the loop is private to this attempt.
        """
        with self._lock:
            if not self._in_user or self._injected or self.thread_id is None:
                return False
            self._injected = True
            if self._main is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._main.cancel)
            return capture.raise_in(self.thread_id, Interrupted, _set_async_exc)  # (not
            # into a thread it is starting)


def release_logging_locks() -> int:
    """After an interrupt, in the interrupted thread: release the locks of ``logging`` it
    still holds, and say how many. The exception may land in a handler between its
    ``acquire()`` and the ``try`` that releases it (``Handler.handle``); the lock then
    stayed held by a thread that was about to go, and every later log call in the process
    blocked for ever. Its body has returned, so any such lock it holds is a leak."""
    locks = [getattr(logging, "_lock", None)]
    for ref in list(getattr(logging, "_handlerList", ())):
        handler = ref()
        if handler is not None:
            locks.append(handler.lock)
    released = 0
    for lock in locks:
        owned = getattr(lock, "_is_owned", None)  # an RLock's: held by this thread?
        if owned is None:
            continue
        try:
            while owned():
                lock.release()
                released += 1
        except RuntimeError:  # released meanwhile
            pass
    return released


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


#: seconds an ending async body's loop gives the tasks it cancels to run their clean-up
WIND_DOWN = 5.0


def _wind_down(loop: asyncio.AbstractEventLoop, main: asyncio.Task[Any]) -> None:
    """End an async body's loop as ``asyncio.run`` ends its own: cancel every task still
    pending and let them run their ``except CancelledError`` / ``finally`` blocks, then
    close the async generators. Pending are the tasks the body started and left running,
    and the body itself when an interrupt (timeout, cancel, stop) landed in the loop rather
    than in its code: without this its clean-up never ran, and each such task was
    destroyed pending (``Task was destroyed but it is pending!``, logged later wherever the
    garbage collector ran). An exception a background task ended with is logged (into the
    attempt's output) as ``asyncio.run`` does. Bounded by ``WIND_DOWN`` seconds: a task that
    ignores its cancellation is left, as before."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if pending:
        for t in pending:
            t.cancel()
        loop.run_until_complete(asyncio.wait(pending, timeout=WIND_DOWN))
        for t in pending:
            if not t.done() or t.cancelled():
                continue
            error = t.exception()  # retrieved: never "exception was never retrieved"
            if error is not None and t is not main:
                loop.call_exception_handler({
                    "message": "unhandled exception in a task an async task body left running",
                    "exception": error, "task": t})
    loop.run_until_complete(loop.shutdown_asyncgens())


def format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


_wants_upstream: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_partials: weakref.WeakKeyDictionary[Any, dict[Any, bool]] = weakref.WeakKeyDictionary()


def wants_upstream(fn: Callable[..., Any]) -> bool:
    """Does ``fn`` take an ``upstream`` keyword (it then gets its dependencies' results)?

    A plain function answers from its code object (no ``inspect``: tasks are often
    made from a lambda or a ``functools.partial`` each, so a cache per object always
    missed, at about 0.1 ms a task). A partial is asked once per function and shape;
    other callables are cached per object without keeping them alive.
    """
    kind = type(fn)
    if kind is FunctionType and "__wrapped__" not in fn.__dict__ \
            and "__signature__" not in fn.__dict__:
        code = fn.__code__
        return "upstream" in code.co_varnames[code.co_posonlyargcount:
                                              code.co_argcount + code.co_kwonlyargcount]
    if kind is functools.partial:
        try:
            shape = (len(fn.args), tuple(sorted(fn.keywords)))
            by_shape = _partials.setdefault(fn.func, {})
        except TypeError:  # an unhashable wrapped callable
            return _inspect_upstream(fn)
        answer = by_shape.get(shape)
        if answer is None:
            answer = by_shape[shape] = _inspect_upstream(fn)
        return answer
    try:
        return _wants_upstream[fn]
    except (KeyError, TypeError):
        pass
    answer = _inspect_upstream(fn)
    try:
        _wants_upstream[fn] = answer
    except TypeError:
        pass
    return answer


def _inspect_upstream(fn: Callable[..., Any], name: str = "upstream") -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get(name)
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def takes_map_index(fn: Callable[..., Any]) -> bool:
    """Does ``fn`` name a ``map_index`` parameter (an item then gets its index)?"""
    if type(fn) is FunctionType and "__wrapped__" not in fn.__dict__:
        code = fn.__code__
        return "map_index" in code.co_varnames[code.co_posonlyargcount:
                                                 code.co_argcount + code.co_kwonlyargcount]
    return _inspect_upstream(fn, "map_index")


_COMPLETED, _SKIPPED, _FAILED = TaskStatus.COMPLETED, TaskStatus.SKIPPED, TaskStatus.FAILED
_CANCELLED = TaskStatus.CANCELLED


def upstream_value(up: Any) -> Any:
    """What a task sees of upstream record ``up``: its result data once it completed, else a
    ``NoResult`` saying why there is none (only a task with a trigger rule runs then). A
    map that failed (too many failed items), was cancelled, or stopped as its source failed
    (a chained map, skipped) still has its partial ``MapResult``: that is what it sees
    (``.failed`` says which items failed or were cancelled)."""
    status = up.status
    result = up.result
    if status is _COMPLETED and result is not None:
        return result.read_data()  # read back if the memory budget dropped it
    if (status is _FAILED or status is _CANCELLED or status is _SKIPPED) \
            and up.mapping is not None and result is not None:
        data = result.read_data()
        if isinstance(data, MapResult):
            return data
    if status is _SKIPPED:
        state = "skipped" if result is not None and result.error_type == "NotNeededError" \
            else "upstream_failed"
    elif status is TaskStatus.PENDING and up.retry_token is not None:
        state = "up_for_retry"
    else:
        state = "removed" if status is None else status.value
    error = result.error_message if result is not None and status is not None \
        and status.is_terminal else None
    return NoResult(up.name, state, error)


def resolve_value(value: Any, records: Mapping[str, Any]) -> Any:
    """Replace ``task.output`` placeholders by that task's result data (or a ``NoResult``)."""
    if isinstance(value, OutputRef):
        upstream = records.get(value.task_id)
        if upstream is None:
            return NoResult(value.task_name, "removed", None)
        return upstream_value(upstream)
    if isinstance(value, list | tuple | set):
        return type(value)(resolve_value(v, records) for v in value)
    if isinstance(value, dict):
        return {k: resolve_value(v, records) for k, v in value.items()}
    return value


def build_kwargs(rec: Any, fn: Callable[..., Any], records: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of one attempt: parameters with outputs resolved, plus ``upstream``.

    ``rec`` is the scheduler's record (its ``parameters`` and ``ups``); upstream
    results are read without the engine lock: a completed upstream task cannot
    change while this one runs (re-running it abandons this attempt first). An
    upstream task without a result (a trigger rule let this one run after a
    failure, or before the others ended) is passed as a ``NoResult``.
    """
    params = rec.parameters
    if params and any(True for v in params.values() for _ in output_refs(v)):
        params = {k: resolve_value(v, records) for k, v in params.items()}
    else:
        params = dict(params)
    if "upstream" not in params and wants_upstream(fn):
        upstream: dict[str, Any] = {}
        for up in rec.ups:
            key = up.name if up.name not in upstream else up.id
            upstream[key] = upstream_value(up)
        params["upstream"] = upstream
    return params


def binding_failed(error: BaseException | None, fn: Callable[..., Any],
                   kwargs: Mapping[str, Any]) -> bool:
    """Was ``error`` raised binding ``fn(**kwargs)`` (wrong or missing arguments), not by its body?

    Asked only of a failed attempt whose error is exactly a ``TypeError``, so it
    costs nothing on the way to a result. The answer comes from the signature,
    not from where the error was raised, so it holds for an attempt that ran in
    another process (its traceback stays there) and for decorated functions
    (``inspect.signature`` follows ``__wrapped__``). A callable without a
    signature (some builtins) keeps the normal rule.
    """
    if type(error) is not TypeError:
        return False
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError:
        return True
    except ValueError:  # no signature to bind against
        return False
    return False
