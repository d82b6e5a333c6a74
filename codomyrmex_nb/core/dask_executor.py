"""The ``dask`` executor: attempts run as Dask futures; the engine keeps all scheduling.

Which cluster: the ``client`` given, else a ``Client(address)``, else a
``LocalCluster`` started at ``start()`` and closed at ``shutdown()``. The local
one is what Dask itself would start: a worker process per engine worker
(``n_workers=max_workers``, one thread each), because the point of asking for
Dask on one machine is Python code running in parallel, which threads sharing
one GIL cannot do. Its dashboard listens on a random local port; its logs are
kept to errors. Pass any ``LocalCluster`` option to ``DaskExecutor`` to change
it (``processes=False`` gives one in-process worker with threads: quicker to
start, no extra processes, and interruptible, see below). The default workers are
spawned processes, which run the script's body again before they serve: so a
script needs the usual ``if __name__ == "__main__":`` guard (``processes`` does
not), and ``start()`` says so in one line, before starting anything, when it is
called from a script's unguarded body (``script_guard``).

Start-up happens in ``start()``, never in an attempt, so it is never counted
against a task's timeout; ``run`` passes ``Run.begin`` (which arms the timeout)
right before submitting. ``start()`` either succeeds or raises a
``RuntimeError`` that says what failed (the address, the cluster) and leaves
nothing open, so it can simply be called again.

Each attempt is submitted as cloudpickle bytes (``pure=False``, a readable
key) to a small wrapper that runs it and returns ``(ok, value | packed error,
started, ended, logs, cpu, pickled)``: errors come back the same way as from the
``processes`` executor (their type kept), and Dask's view of a failed task is
"finished". On a worker in another process than the client (``processes=False``
hands values over as they are) the wrapper pickles the return value itself, as
``processes`` does, and the client unpickles it: one that does not pickle fails
the attempt there with the pickling error and the note ``processes`` adds, and
Dask's serializer, which logged its tracebacks on the worker and here, never
sees it. (Should Dask's serializer fail anyway, its ``TypeError`` is shortened
to one line with that note.) The wrapper runs the attempt through
``Run.execute``, so what it prints, warns and logs is captured on the worker
per thread (a Dask worker runs several tasks at once) and shipped back with the
reply, with the CPU seconds of the worker thread that ran it; peak memory is
not separable per task there (None). Output written below Python (``os.write``,
C) goes to the worker's own stdout. An attempt whose worker dies or that is
cancelled brings nothing back. A worker that dies mid-attempt fails that attempt
at once (``WorkerCrashedError``, naming the task, an item as ``name[index]``, as
``processes`` does; ``max_retries`` decides whether it runs again): the local
cluster's scheduler gets ``allowed_failures=0``, where Dask's default would run it
on up to three more workers first, each killed in turn. A cluster given by
``client`` or ``address`` keeps its own ``distributed.scheduler.allowed-failures``.
Remote workers need ``codomyrmex_nb`` installed, as for any Dask
library.

A given-up attempt (timeout, cancel, stop) is stopped as on ``threads``: the
engine marks the task failed or cancelled at once (``interrupt`` never blocks),
and ``run`` (woken by the interrupt) tells every worker (``Client.run``): the
one running the attempt interrupts its thread with an asynchronous exception,
in-process or in a worker process alike, and the others will not start it.
``run`` returns once the body has returned (at once if no worker had started
it), so the task's resources stay held until then and no other holder overlaps
it, and its worker is free for the next task rather than busy with a body whose
result is dropped. Code blocked inside C returns first (a ``time.sleep``); a
shutdown ends the wait. Use the ``processes`` executor when a timeout must
really kill the code.

A stop does not wait for such a body (the engine calls ``stopping()`` before
it joins its workers): on the local cluster this executor started, the worker
process that holds it is closed at once (killed after a fraction of a second,
not restarted: the cluster closes next), so ``stop_execution()`` takes about the
cluster's own close; on a cluster given by ``client`` or ``address`` nothing of
it is killed: the stop only stops waiting, and a ``RuntimeWarning`` says that
the body still runs on that worker.

Worker processes of the local cluster do not outlive the process that started
them, even when it is killed outright: each one blocks a thread on a pipe held
by its parent and exits when that pipe closes (Dask's own ``AsyncProcess``
does this; ``test_children`` checks it). Dask keeps two idle helper threads
per process (``Dask-Offload``, ``Dask-Callback-Thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import threading
import time
import uuid
import warnings
from typing import Any

from . import capture, script_guard
from .exceptions import TaskCancelledError, WorkerCrashedError
from .invoke import Outcome, Run, format_traceback
from .process_executor import (
    cancelled,
    dumps_call,
    error_outcome,
    failed,
    pack_error,
    return_value_note,
)

_local_lock = threading.Lock()
_local_runs: dict[str, Run] = {}  # key -> attempt running on an in-process worker
_local_cancelled: dict[str, None] = {}  # interrupted before its wrapper started (ordered set)
_CANCELLED_KEPT = 4096  # keys of attempts that never start on this process are forgotten in time
_KILL_AFTER = 0.5  # s: a worker process closed at a stop for a stuck body, then killed
_GRACE = 0.5  # s after its interrupt: a stop waits this long for a given-up body to return
_TOKEN = uuid.uuid4().hex  # see ``_process``


def _process() -> str:
    """This process, told apart from a forked child (the pid) and from a process with the
    same pid on another machine (a token drawn at import)."""
    return f"{os.getpid()}-{_TOKEN}"


def _remote_call(blob: bytes, key: str, level: int | None = None,
                 client: str | None = None) -> tuple[Any, ...]:
    """Runs on a Dask worker: the attempt, with its errors packed rather than raised.

    Returns ``(ok, value | packed error, started, ended, logs, cpu seconds, pickled)``.
    On a worker in another process than the client (``client``: its ``_process()``), the
    value comes back pickled here (``pickled``: the pickle and its out-of-band buffers):
    one that will not pickle fails the attempt as on ``processes``, rather than in Dask's
    serializer, which logs tracebacks on both sides.
    """
    import cloudpickle

    local = Run(None)  # type: ignore[arg-type] - only its running/interrupting machinery is used
    local.call = lambda: cloudpickle.loads(blob)()
    with _local_lock:
        if _local_cancelled.pop(key, False) is None:
            return (False, pack_error(TaskCancelledError("cancelled before it started")), 0.0, 0.0,
                    None, None)
        _local_runs[key] = local
    try:
        outcome = local.execute(level=level)  # captures this worker thread's output
    finally:
        with _local_lock:
            _local_runs.pop(key, None)
    ok, payload = outcome.ok, outcome.value if outcome.ok else pack_error(outcome.error)
    pickled = ok and client is not None and client != _process()
    if pickled:
        buffers: list[Any] = []  # large buffers (NumPy arrays) kept apart: Dask sends them
        try:                     # as frames of their own, uncopied
            head = cloudpickle.dumps(payload, protocol=5, buffer_callback=buffers.append)
            payload = head, [buffer.raw() for buffer in buffers]
        except Exception as exc:  # noqa: BLE001 - the return value would not pickle
            exc.add_note(return_value_note("a Dask worker"))
            ok, payload, pickled = False, pack_error(exc), False
    return ok, payload, outcome.started, outcome.ended, outcome.logs, outcome.cpu_time, pickled


def _stop_local(key: str, reason: str) -> bool:
    """Interrupt the attempt if it runs on this process's worker (True), or stop it from
    starting here (False)."""
    with _local_lock:
        local = _local_runs.get(key)
        if local is None:
            _local_cancelled[key] = None
            if len(_local_cancelled) > _CANCELLED_KEPT:
                del _local_cancelled[next(iter(_local_cancelled))]
    if local is None:
        return False
    local.abandon(reason)  # so that its user code never starts, if it has not yet
    local.interrupt(reason)
    return True


def _close_after_failed_start(thing: Any) -> None:
    """Close a client or cluster whose start failed, including what it leaves running.

    A ``Client`` that could not connect is already "closed", yet its event-loop
    thread ("IO loop") runs on (distributed 2026.8); its loop runner is stopped
    here so that a failed ``start()`` leaves no thread behind.
    """
    with contextlib.suppress(Exception):
        thing.close()
    runner = getattr(thing, "_loop_runner", None)
    if runner is not None:
        with contextlib.suppress(Exception):
            runner.stop()


def _refuse_unguarded_script(options: dict[str, Any]) -> None:
    """Raise, naming the guard, if spawned Dask workers would re-run this script's body."""
    if not options.get("processes", True):
        return
    import dask

    if dask.config.get("distributed.worker.multiprocessing-method", "spawn") != "spawn":
        return
    where = script_guard.unguarded_line()
    if where is not None:
        raise RuntimeError(
            f"{where[0]}, line {where[1]}, starts a local Dask cluster from the script's body, "
            "which each Dask worker process runs again: put the code that runs tasks under "
            f"`{script_guard.GUARD}` (or use executor=\"processes\", which needs no guard, "
            "or DaskExecutor(processes=False))")


_NOT_SERIALIZED = "Could not serialize"  # how Dask's error starts when a result would not pickle


def _unpicklable_result(exc: TypeError) -> TypeError:
    """Dask's error for a return value that would not pickle, in one line with the note the
    ``processes`` executor adds: its message holds a whole traceback, kept as the cause."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    reason = f" ({lines[-1].strip()})" if len(lines) > 1 else ""
    error = TypeError(f"{lines[0] if lines else exc}{reason}")
    error.__cause__ = exc
    error.add_note(return_value_note("a Dask worker"))
    return error


def _worker_died(exc: Exception, label: str) -> WorkerCrashedError:
    """Dask's ``KilledWorker`` as the ``processes`` executor says a crash: naming the task
    (an item as ``name[index]``), not Dask's key; Dask's own message is kept as the cause."""
    tried = getattr(exc, "allowed_failures", 0) + 1
    address = getattr(getattr(exc, "last_worker", None), "address", None)
    where = f" ({address})" if address else ""
    which = "the Dask worker" if tried == 1 else f"each of the {tried} Dask workers"
    crashed = WorkerCrashedError(
        f"{which} running task {label!r} died{where}; its log may say why "
        "(https://distributed.dask.org/en/stable/killed.html)")
    crashed.__cause__ = exc
    return crashed


class _Pending:
    """An attempt submitted to Dask: ``done`` wakes ``run`` (the future ended, or the engine
    gave up on it); ``ended``: its future ended (its body returned) or the executor stopped
    waiting for it. ``worker``: the address of the worker that still runs its given-up body."""

    __slots__ = ("future", "key", "done", "ended", "task", "worker", "why", "since", "let_go")

    def __init__(self, future: Any, key: str, task: str = "") -> None:
        self.future, self.key, self.task = future, key, task
        self.done, self.ended = threading.Event(), threading.Event()
        self.worker: str | None = None
        self.why, self.since = "", 0.0  # why it was given up, and when (``time.monotonic``)
        self.let_go = False  # a stop ended the wait (under the executor's lock)

    def finished(self, _future: Any = None) -> None:
        self.ended.set()
        self.done.set()


class DaskExecutor:
    """Submits each attempt to a Dask cluster and waits for it in the engine's worker thread."""

    name = "dask"

    def __init__(self, client: Any = None, address: str | None = None,
                 **cluster_options: Any) -> None:
        if cluster_options and (client is not None or address is not None):
            raise ValueError(f"cluster options {sorted(cluster_options)} apply only to the local "
                             "cluster this executor starts: pass them without client or address")
        self._given, self._address, self._options = client, address, cluster_options
        self._client: Any = None
        self._owned: list[Any] = []  # what start() created, closed by shutdown()
        self._cluster: Any = None  # the LocalCluster start() created, if it did
        self._stopping = False  # the engine stops: no given-up body is waited for
        self._lock = threading.Lock()
        self._starting = threading.Lock()  # one start() at a time; never held by run()
        self._pending: set[_Pending] = set()  # submitted, not yet returned from run()

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` in use (None before ``start``)."""
        return self._client

    def local_cluster_options(self, max_workers: int) -> dict[str, Any]:
        """The ``LocalCluster`` options ``start`` uses: Dask's process-per-worker layout."""
        defaults = {"n_workers": max_workers, "threads_per_worker": 1, "processes": True,
                    "dashboard_address": "127.0.0.1:0", "silence_logs": logging.ERROR}
        options = {**defaults, **self._options}
        # A worker that dies mid-attempt fails that attempt once: the engine decides about
        # retries (max_retries). Dask's own default re-runs it on up to 3 more workers first
        # (``allowed-failures``), so its side effects happened 4 times and killed 4 workers.
        options["scheduler_kwargs"] = {"allowed_failures": 0,
                                       **(self._options.get("scheduler_kwargs") or {})}
        return options

    def start(self, max_workers: int) -> None:
        """Connect or start the cluster; on failure raise and keep nothing half-open."""
        with self._starting:
            if self._client is not None:
                return
            with self._lock:
                self._stopping = False
            if self._given is not None:
                self._client = self._given
                return
            try:
                from distributed import Client, LocalCluster
            except ImportError as exc:
                raise ImportError("the dask executor needs dask.distributed: "
                                  "pip install 'codomyrmex-nb[dask]'") from exc
            if self._address is None:
                _refuse_unguarded_script(self.local_cluster_options(max_workers))
            owned: list[Any] = []
            what = "start"
            try:
                if self._address is not None:
                    what = f"connect to the Dask scheduler at {self._address!r}"
                    # Made in two steps so that a failed connection can still be closed:
                    # otherwise the client's event-loop thread outlives the error.
                    owned.insert(0, Client.__new__(Client))
                    owned[0].__init__(self._address, set_as_default=False)
                else:
                    options = self.local_cluster_options(max_workers)
                    what = f"start a local Dask cluster with {options}"
                    owned.insert(0, LocalCluster(**options))
                    owned.insert(0, Client(owned[0], set_as_default=False))
            except Exception as exc:
                for thing in owned:
                    _close_after_failed_start(thing)
                raise RuntimeError(f"the dask executor could not {what}: "
                                   f"{type(exc).__name__}: {exc}") from exc
            self._owned, self._client = owned, owned[0]
            self._cluster = owned[1] if len(owned) > 1 else None

    def run(self, run: Run) -> Outcome:
        client = self._client
        if client is None:
            raise RuntimeError("the dask executor is not started: call start_execution() first")
        blob = dumps_call(run, "a Dask worker")
        key = f"{run.task.name}-{uuid.uuid4().hex[:12]}"
        if not run.begin():  # abandoned before it reached Dask: submit nothing
            return cancelled(run)
        sent = time.perf_counter()
        pending = _Pending(client.submit(_remote_call, blob, key, capture.LOG_LEVEL, _process(),
                                         key=key, pure=False), key, run.task.name)
        with self._lock:
            run.handle = pending
            abandoned = run.abandoned
            self._pending.add(pending)
        try:
            if abandoned:  # interrupted before it had a handle
                _stop_local(key, abandoned)
                pending.done.set()
            pending.future.add_done_callback(pending.finished)
            pending.done.wait()
            with self._lock:
                run.handle = None
            if run.abandoned:
                return self._give_up(client, run, pending)
            return self._collect(pending.future, run.label, sent)
        finally:
            with self._lock:
                self._pending.discard(pending)

    def _give_up(self, client: Any, run: Run, pending: _Pending) -> Outcome:
        """The engine gave up on the attempt (a timeout, a cancel, a stop): stop its body
        wherever it runs and return once it has, as the ``threads`` executor does, so that
        its resources stay held (and its task is not run again) until its code has returned.

        Every worker is told (``Client.run``): the one running it interrupts the attempt's
        thread (code blocked inside C returns first), the others will not start it; when
        none runs it, it is over at once. A stop of the engine ends the wait
        (``stopping``), as does a shutdown.
        """
        if not pending.ended.is_set():
            pending.why, pending.since = run.abandoned or "stopped", time.monotonic()
            try:
                running = client.run(_stop_local, pending.key, run.abandoned, on_error="ignore")
            except Exception:  # noqa: BLE001 - the cluster is going: nothing more to stop
                running = {}
            holders = [worker for worker, found in running.items() if found is True]
            if holders:
                with self._lock:
                    pending.worker = holders[0]
                    stopping = self._stopping
                if stopping:  # the stop came while the workers were asked
                    self._let_go([pending])
                pending.ended.wait()
        with contextlib.suppress(Exception):
            pending.future.cancel(reason=f"codomyrmex-nb: attempt {run.abandoned}")
            pending.future.release()
        return cancelled(run)

    @staticmethod
    def _collect(future: Any, label: str, sent: float | None = None) -> Outcome:
        """The attempt's outcome from its ended future; ``label``: what messages call it."""
        from distributed.scheduler import KilledWorker

        try:
            ok, payload, started, ended, logs, cpu, pickled = future.result()
        except KilledWorker as exc:
            return failed(_worker_died(exc, label), started=sent)  # it ran from when it was sent
        except TypeError as exc:
            if not str(exc).startswith(_NOT_SERIALIZED):
                raise
            outcome = failed(_unpicklable_result(exc), started=sent)
            outcome.traceback = format_traceback(outcome.error)  # Dask's, as the cause
            return outcome
        finally:
            future.release()
        try:
            if ok and pickled:
                head, buffers = payload  # a read-only frame is copied: values stay writable
                payload = pickle.loads(head, buffers=[
                    bytearray(b) if memoryview(b).readonly else b for b in buffers])
        except Exception as exc:  # noqa: BLE001 - e.g. its class exists only there
            exc.add_note("a task's return value must unpickle here to come back from a "
                         "Dask worker: its class must be importable in this process")
            outcome = Outcome(False, None, exc, format_traceback(exc), started, ended)
        else:
            outcome = Outcome(True, payload, started=started, ended=ended) if ok \
                else error_outcome(payload, started, ended)
        outcome.logs, outcome.cpu_time = logs, cpu
        return outcome

    def interrupt(self, run: Run, reason: str) -> bool:
        """Wake ``run`` (which cancels the future) and stop the attempt's thread if it is local."""
        with self._lock:
            pending = run.handle
        if not isinstance(pending, _Pending):
            return False
        _stop_local(pending.key, reason)  # an in-process worker; ``run`` tells the others
        pending.done.set()
        return True

    def stopping(self) -> None:
        """The engine stops (called before it joins its workers): no given-up body is waited
        for. On the local cluster this executor started, the worker processes that hold
        such bodies (blocked in C: the interrupt did not end them) are closed now, killed
        after ``_KILL_AFTER`` s; elsewhere the wait just ends, with a warning that the body
        still runs there. Attempts given up from now on (this stop's) are treated alike."""
        with self._lock:
            self._stopping = True
            stuck = [p for p in self._pending if p.worker is not None and not p.ended.is_set()]
        self._let_go(stuck)

    def _let_go(self, stuck: list[_Pending]) -> None:
        """End the waits for given-up bodies still running on their workers (once each),
        each given ``_GRACE`` s from its interrupt to return first (pure Python does)."""
        for pending in stuck:
            pending.ended.wait(max(0.0, pending.since + _GRACE - time.monotonic()))
        with self._lock:
            stuck = [p for p in stuck if not p.let_go and not p.ended.is_set()]
            for pending in stuck:
                pending.let_go = True
        if not stuck:
            return
        if self._cluster is not None:
            for pending in stuck:  # first, or the scheduler reports it failed with its worker
                with contextlib.suppress(Exception):
                    pending.future.cancel(reason=f"codomyrmex-nb: attempt {pending.why}")
            self._close_workers(self._cluster, {p.worker for p in stuck})
        else:
            for pending in stuck:
                warnings.warn(
                    f"codomyrmex-nb: the body of task {pending.task!r} (given up: {pending.why}) "
                    f"still runs on the Dask worker {pending.worker} of your cluster: the "
                    "stop did not wait for it (code blocked inside C returns first)",
                    RuntimeWarning, stacklevel=2)
        for pending in stuck:
            pending.ended.set()

    @staticmethod
    def _close_workers(cluster: Any, addresses: set[str | None]) -> None:
        """Close the worker processes of our ``LocalCluster`` at ``addresses`` (killed after
        ``_KILL_AFTER`` s, not restarted); in-process workers (``processes=False``) are
        left alone: their threads end when the body returns, as on ``threads``."""
        nannies = [w for w in list(getattr(cluster, "workers", {}).values())
                   if getattr(w, "worker_address", None) in addresses
                   and getattr(w, "process", None) is not None]
        if not nannies:
            return

        async def close_them() -> None:
            await asyncio.gather(*(nanny.close(timeout=_KILL_AFTER / 0.8,
                                               reason="codomyrmex-nb: stop, body given up")
                                   for nanny in nannies), return_exceptions=True)
        try:
            cluster.sync(close_them)
        except Exception:  # noqa: BLE001 - the cluster's close (next) ends them anyway
            logging.getLogger(__name__).debug("closing stuck Dask workers failed",
                                              exc_info=True)

    def shutdown(self) -> None:
        """Close the client and cluster that ``start`` created; a given client stays open."""
        with self._starting:
            owned, self._owned = self._owned, []
            self._client = self._cluster = None
        with self._lock:
            given_up = list(self._pending)
        for pending in given_up:  # a body still running after a stop is waited for no more
            pending.ended.set()
            pending.done.set()
        for thing in owned:
            thing.close()
