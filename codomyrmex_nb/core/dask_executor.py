"""The ``dask`` executor: attempts run as Dask futures; the engine keeps all scheduling.

Which cluster: the ``client`` given, else a ``Client(address)``, else a
``LocalCluster`` started at ``start()`` and closed at ``shutdown()``. The local
one has one in-process worker (``processes=False``) with ``max_workers``
threads: it starts in about half a second, costs no extra processes on a small
box, and lets an interrupt reach the attempt's thread (below). Pass
``processes=True`` (or any ``LocalCluster`` option) to ``DaskExecutor`` to
change it; for real isolation use the ``processes`` executor or a cluster.

Each attempt is submitted as cloudpickle bytes (``pure=False``, a readable
key) to a small wrapper that runs it and returns ``(ok, value | packed error,
started, ended)``: errors come back the same way as from the ``processes``
executor (their type kept), and Dask's view of a failed task is "finished".
Remote workers need ``codomyrmex_nb`` installed, as for any Dask library.

``interrupt`` wakes ``run`` at once (it waits on an event set by the future's
done-callback or by the interrupt), and ``run`` then cancels the future. Dask
cannot stop code that is already running: on an in-process worker the wrapper
interrupts the attempt's thread as the ``threads`` executor does; elsewhere it
finishes in the background and its result is dropped. Dask keeps two idle
helper threads per process (``Dask-Offload``, ``Dask-Callback-Thread``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from .exceptions import TaskCancelledError, WorkerCrashedError
from .invoke import Outcome, Run
from .process_executor import cancelled, dumps_call, error_outcome, failed, pack_error

_local_lock = threading.Lock()
_local_runs: dict[str, Run] = {}  # key -> attempt running on an in-process worker
_local_cancelled: dict[str, None] = {}  # interrupted before its wrapper started (ordered set)
_CANCELLED_KEPT = 4096  # keys of attempts that never start on this process are forgotten in time


def _remote_call(blob: bytes, key: str) -> tuple[Any, ...]:
    """Runs on a Dask worker: the attempt, with its errors packed rather than raised."""
    import cloudpickle

    local = Run(None)  # type: ignore[arg-type] - only its running/interrupting machinery is used
    local.call = lambda: cloudpickle.loads(blob)()
    with _local_lock:
        if _local_cancelled.pop(key, False) is None:
            return False, pack_error(TaskCancelledError("cancelled before it started")), 0.0, 0.0
        _local_runs[key] = local
    try:
        outcome = local.execute()
    finally:
        with _local_lock:
            _local_runs.pop(key, None)
    if outcome.ok:
        return True, outcome.value, outcome.started, outcome.ended
    return False, pack_error(outcome.error), outcome.started, outcome.ended


def _stop_local(key: str, reason: str) -> None:
    """Interrupt the attempt if it runs on this process's worker, or stop it from starting here."""
    with _local_lock:
        local = _local_runs.get(key)
        if local is None:
            _local_cancelled[key] = None
            if len(_local_cancelled) > _CANCELLED_KEPT:
                del _local_cancelled[next(iter(_local_cancelled))]
    if local is not None:
        local.abandoned = reason
        local.interrupt(reason)


class _Pending:
    __slots__ = ("future", "key", "done")

    def __init__(self, future: Any, key: str) -> None:
        self.future, self.key, self.done = future, key, threading.Event()


class DaskExecutor:
    """Submits each attempt to a Dask cluster and waits for it in the engine's worker thread."""

    name = "dask"

    def __init__(self, client: Any = None, address: str | None = None,
                 **cluster_options: Any) -> None:
        self._given, self._address, self._options = client, address, cluster_options
        self._client: Any = None
        self._owned: list[Any] = []  # what start() created, closed by shutdown()
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` in use (None before ``start``)."""
        return self._client

    def start(self, max_workers: int) -> None:
        if self._client is not None:
            return
        if self._given is not None:
            self._client = self._given
            return
        from distributed import Client, LocalCluster

        if self._address is not None:
            self._client = Client(self._address, set_as_default=False)
        else:
            options = {"n_workers": 1, "threads_per_worker": max_workers, "processes": False,
                       "dashboard_address": ":0", "silence_logs": logging.ERROR}
            cluster = LocalCluster(**{**options, **self._options})
            self._owned.append(cluster)
            self._client = Client(cluster, set_as_default=False)
        self._owned.insert(0, self._client)

    def run(self, run: Run) -> Outcome:
        client = self._client
        if client is None:
            raise RuntimeError("the dask executor is not started: call start_execution() first")
        blob = dumps_call(run, "a Dask worker")
        if run.abandoned:
            return cancelled(run)
        key = f"{run.task.name}-{uuid.uuid4().hex[:12]}"
        pending = _Pending(client.submit(_remote_call, blob, key, key=key, pure=False), key)
        with self._lock:
            run.handle = pending
            abandoned = run.abandoned
        if abandoned:  # interrupted before it had a handle
            _stop_local(key, abandoned)
            pending.done.set()
        pending.future.add_done_callback(lambda _future: pending.done.set())
        pending.done.wait()
        with self._lock:
            run.handle = None
        if run.abandoned:
            pending.future.cancel(reason=f"codomyrmex-nb: attempt {run.abandoned}")
            return cancelled(run)
        return self._collect(pending.future)

    @staticmethod
    def _collect(future: Any) -> Outcome:
        from distributed.scheduler import KilledWorker

        try:
            ok, payload, started, ended = future.result()
        except KilledWorker as exc:
            crashed = WorkerCrashedError(f"the Dask workers running it died: {exc}")
            crashed.__cause__ = exc
            return failed(crashed)
        finally:
            future.release()
        return Outcome(True, payload, started=started, ended=ended) if ok \
            else error_outcome(payload, started, ended)

    def interrupt(self, run: Run, reason: str) -> bool:
        """Wake ``run`` (which cancels the future) and stop the attempt's thread if it is local."""
        with self._lock:
            pending = run.handle
        if not isinstance(pending, _Pending):
            return False
        _stop_local(pending.key, reason)
        pending.done.set()
        return True

    def shutdown(self) -> None:
        """Close the client and cluster that ``start`` created; a given client stays open."""
        owned, self._owned = self._owned, []
        for thing in owned:
            thing.close()
        self._client = None
