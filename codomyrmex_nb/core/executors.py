"""Executors run attempts; the engine keeps dependencies, priorities and resources.

An executor has one blocking method, ``run(run) -> Outcome``, called from an
engine worker thread (at most ``max_workers`` at once), and ``interrupt(run,
reason)`` called from any thread to stop an attempt in flight. The engine
treats every executor alike. An executor may also offer ``peek(run, limit)``:
what a running attempt has printed so far (``core.peek``); Dask has none.

- ``threads`` runs the attempt in the worker thread itself (no hand-off); what
  it prints and logs is captured per attempt (``invoke.Run.execute``).
- ``sync`` has no worker threads: ``wait_for_completion`` runs the tasks one
  at a time in the caller's thread, so a debugger or a print works as in
  plain code and the order is deterministic (priority, then critical path,
  then submission). Deadlines still work (the clock thread interrupts).
- ``processes`` and ``dask`` live in their own modules and ship the call with
  cloudpickle; they are imported only when asked for.
"""

from __future__ import annotations

from typing import Any, Protocol

from .invoke import Outcome, Run

EXECUTORS = ("threads", "processes", "dask", "sync")


class Executor(Protocol):
    name: str

    def start(self, max_workers: int) -> None: ...

    def run(self, run: Run) -> Outcome: ...

    def interrupt(self, run: Run, reason: str) -> bool: ...

    def shutdown(self) -> None: ...


class ThreadExecutor:
    """Attempts run in the engine's worker threads; interrupts are asynchronous exceptions."""

    name = "threads"

    def start(self, max_workers: int) -> None:
        pass

    def run(self, run: Run) -> Outcome:
        return run.execute()

    def interrupt(self, run: Run, reason: str) -> bool:
        return run.interrupt(reason)

    def peek(self, run: Run, limit: int) -> str | None:
        """What the attempt has printed so far (its last ``limit`` characters)."""
        box = run.box
        return "" if box is None else box.peek(limit)

    def shutdown(self) -> None:
        pass


class SyncExecutor(ThreadExecutor):
    """Attempts run in the thread that calls ``wait_for_completion``, one at a time.

    Their output is captured as on threads and also shown as it comes (``live``):
    they run in the waiting cell, so a print or a debugger works as in plain code.
    """

    name = "sync"
    inline = True

    def run(self, run: Run) -> Outcome:
        return run.execute(live=True)


def make_executor(kind: str, **options: Any) -> Executor:
    """Build the executor named ``kind`` ("threads", "processes", "dask" or "sync")."""
    if kind == "threads":
        return ThreadExecutor()
    if kind == "sync":
        return SyncExecutor()
    if kind == "processes":
        from .process_executor import ProcessExecutor

        return ProcessExecutor()
    if kind == "dask":
        from .dask_executor import DaskExecutor

        return DaskExecutor(client=options.get("client"), address=options.get("address"))
    raise ValueError(f"unknown executor {kind!r}: use one of {', '.join(EXECUTORS)}")
