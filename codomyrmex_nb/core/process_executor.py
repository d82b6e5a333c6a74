"""The ``processes`` executor: persistent worker processes, one attempt at a time each.

Why processes: CPU-bound code escapes the GIL, a crash stays in its process, and
a running attempt can really be stopped (killed; the pool starts another). Why
``spawn``: ``fork`` could copy a lock held by another engine thread, and
``forkserver`` leaves a server process behind. Workers start lazily, at most
``max_workers`` stay idle, ``shutdown`` (or exit) stops them all. They are not
daemons (tasks may start processes) and ignore SIGINT (a notebook interrupt hits
the whole process group). Errors come back whole when they pickle both ways,
else as a ``RemoteError`` subclass named like the original, so ``error_type``
still reads e.g. ``ZeroDivisionError``. Scripts need no ``__main__`` guard: workers
start without running the parent's main module (``spawn_main``), since every
call reaches them by value.

What an attempt writes is kept with it, below Python too: a worker's file
descriptors 1 and 2 point at a file that only its parent reads (created by the
parent, unlinked once the worker has opened it, emptied at the start of each
attempt), and its ``sys.stdout`` / ``sys.stderr`` write through to them
unbuffered, as do C's ``stdout`` and the attempt's log records
(``capture.Forward``). So ``print``, ``os.write(1, ...)``, a C library's
``printf``, warnings and logging land there in the order they happened, and
when the worker dies mid-attempt (a segfault, a kill) the parent still reads
every line written before it, plus ``faulthandler``'s dump of the Python stack.
Threads the task starts write to the same file while it runs (their Python-level
writes and log records; see ``capture``); a thread that outlives its task writes
to the worker's own stdout / stderr from then on (the ones it inherited from the
parent: a terminal, or in Jupyter the notebook, as ipykernel forwards them),
never into the next attempt's output. Only what such a thread writes below
Python (``os.write(1, ...)``, C's ``printf``) still lands in the file of
whichever attempt runs then: descriptors cannot be told apart by thread.
The parent tidies the text as ``capture`` does (redraws collapsed, head and
tail of ``capture.LIMIT`` kept). Each attempt also reports its CPU seconds (the
worker process's, including children it waited for: ``os.times``) and, on
Linux, its peak resident memory: the worker's high-water mark (``VmHWM``) is
reset at the start of each attempt (``/proc/self/clear_refs``), so a small
task after a big one in the same worker reports the small figure. The figure
includes the interpreter itself (some tens of MB). A crashed or killed
attempt's CPU seconds are read from the dead worker (``/proc/<pid>/stat``).

Start-up is not the task's time: a new worker says it is ready (once it has
imported this package, which can take a while on a busy machine) before the
attempt passes ``Run.begin``, which arms the task's timeout. An attempt
abandoned before then never reaches a worker.

Workers never outlive the process that started them, even when it dies without
cleaning up (a kernel killed with SIGKILL, out of memory): ``atexit`` and the
closed task pipe only help when it exits normally or the worker is idle. So each
worker also gets the read end of a pipe that nothing is ever written to and
whose write end only the parent holds (``spawn`` passes a child only the
descriptors it is given); a thread in the worker blocks on it and ends the
process the moment it reads end-of-file, however busy the task is. (Not
``PR_SET_PDEATHSIG``: it fires when the parent *thread* that started the worker
exits, and engine threads come and go.) A process the parent forks without
``exec`` inherits the write end and keeps such a worker alive until it exits
too; processes a task itself starts are the task's to manage.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import faulthandler
import functools
import inspect
import io
import multiprocessing
import os
import pickle
import re
import signal
import sys
import tempfile
import threading
import time
import weakref
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from . import capture, spawn_main
from .exceptions import TaskCancelledError, WorkerCrashedError
from .invoke import Outcome, Run, format_traceback
from .model import safe_str

_STOP, _EXIT_GRACE = b"", 2.0  # the message that ends a worker; seconds it gets to exit
_READY = b"ready"  # a new worker's first message: start-up is over
_ORPHANED = 70  # a worker's exit code when its parent died first (nobody is left to read it)
PackedError = tuple[bytes | None, str, str, str, str]


# Shipping calls and errors (shared with the dask executor).
class RemoteError(RuntimeError):
    """An error that could not be shipped back whole; subclasses are named like the original."""


@functools.lru_cache(maxsize=256)
def _remote_class(module: str, qualname: str) -> type[RemoteError]:
    return type(qualname.rsplit(".", 1)[-1], (RemoteError,),
                {"__module__": module, "__qualname__": qualname})


def pack_error(exc: BaseException) -> PackedError:
    """``exc`` as plain data: its pickle if it round-trips, its type, message and traceback."""
    try:
        blob: bytes | None = cloudpickle.dumps(exc)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - unpicklable errors are rebuilt by unpack_error
        blob = None
    kind = type(exc)
    return blob, kind.__module__, kind.__qualname__, safe_str(exc), format_traceback(exc)


def error_outcome(packed: PackedError, started: float, ended: float) -> Outcome:
    """A failed Outcome with the shipped error, or a ``RemoteError`` named like it."""
    blob, module, qualname, message, tb = packed
    try:
        exc: BaseException = pickle.loads(blob)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - None, or it does not unpickle here: rebuild it
        exc = _remote_class(module, qualname)(message)
    exc.add_note(f"raised in a worker:\n{tb}")  # shown when the user re-raises it
    return Outcome(False, None, exc, tb, started, ended)


def dumps_call(run: Run, where: str) -> bytes:
    """The attempt's call as cloudpickle bytes; a pickling error gets a note saying why."""
    try:
        return cloudpickle.dumps(run.call)
    except Exception as exc:
        exc.add_note(f"task {run.label!r} goes to {where} with cloudpickle: its function, "
                     "parameters and upstream results must be picklable")
        raise


def return_value_note(where: str) -> str:
    """The note on an error because the attempt's return value would not pickle."""
    return f"a task's return value must be picklable to come back from {where}"


def failed(error: BaseException, started: float | None = None) -> Outcome:
    """A failed attempt's outcome; ``started``: when its call was sent (a worker that died
    ran it until then: its run time is not 0)."""
    now = time.perf_counter()
    return Outcome(False, None, error, None, now if started is None else started, now)


def cancelled(run: Run) -> Outcome:  # the engine has recorded the failure already
    return failed(TaskCancelledError(f"attempt {run.abandoned or 'stopped: executor shut down'}"))


class _Output:
    """In a worker: where its output goes (a file the parent reads) and what an attempt costs.

    The capture hooks stay installed for the worker's life (``capture.acquire``): an
    attempt's thread, and the threads it starts while it runs, write to the file
    through ``capture.Forward``; once the attempt has ended, those threads write to
    the worker's own stdout / stderr, the ones it inherited (``capture.send_leftovers``),
    never into the file of the next attempt.
    """

    def __init__(self, path: str) -> None:
        inherited = [_dup(1), _dup(2)]  # before fds 1 and 2 point at the file
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = _unbuffered(1)
        sys.stderr = _unbuffered(2)
        self.sink = sys.stderr  # the attempt's file: fds 1 and 2 are one open file
        _unbuffer_c_stdout()
        faulthandler.enable(sys.stderr)  # a crash's Python stack is part of the output
        capture.send_leftovers(*(open(os.devnull, "w") if fd is None
                                 else _unbuffered(fd) for fd in inherited))
        capture.acquire()  # never released: the routers stay while leftover threads may write
        self.measures_peak = _reset_peak()

    def begin(self) -> tuple[float, ...]:
        """A new attempt: empty the file, reset the memory peak; returns the CPU clock."""
        with contextlib.suppress(OSError):
            os.ftruncate(1, 0)  # O_APPEND: the next write goes to the new end
        if self.measures_peak:
            self.measures_peak = _reset_peak()
        return os.times()

    def end(self, before: tuple[float, ...]) -> tuple[float, int | None]:
        """The attempt is over: flush C's buffers; its CPU seconds and peak bytes."""
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).fflush(None)
        now = os.times()
        cpu = sum(now[i] - before[i] for i in range(4))  # user, system, and children's
        return cpu, (_peak_memory() if self.measures_peak else None)


def _dup(fd: int) -> int | None:
    """A copy of ``fd`` (not inherited by the task's processes); None if it is not open."""
    try:
        return os.dup(fd)
    except OSError:
        return None


def _unbuffered(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True, write_through=True)


def _unbuffer_c_stdout() -> None:
    """C's ``stdout`` is fully buffered on a file: make it unbuffered, so a crash loses nothing."""
    with contextlib.suppress(Exception):  # not glibc / not POSIX: fflush after each attempt only
        libc = ctypes.CDLL(None)
        libc.setvbuf(ctypes.c_void_p.in_dll(libc, "stdout"), None, 2, 0)  # _IONBF


def _reset_peak() -> bool:
    """Reset this process's peak resident memory (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _peak_memory() is not None
    except OSError:
        return False


def _peak_memory() -> int | None:
    """This process's peak resident memory in bytes since the last reset (``VmHWM``)."""
    try:
        with open("/proc/self/status") as f:
            found = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def _process_cpu(pid: int) -> float | None:
    """CPU seconds a (possibly dead, not yet reaped) process used, children it reaped included."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _attempt(message: bytes, output: _Output | None) -> bytes:
    blob, level = pickle.loads(message)
    clock = output.begin() if output is not None else None
    # what this thread and the threads it starts print and log, into the same file
    tap = capture.Forward(output.sink if output is not None else sys.stderr, level=level).start()
    started = time.perf_counter()
    try:
        value = cloudpickle.loads(blob)()
        if inspect.isawaitable(value):
            value = asyncio.run(asyncio.wait_for(value, None))  # any awaitable
        reply: tuple[Any, ...] = (True, value, started, time.perf_counter())
    except BaseException as exc:  # noqa: BLE001 - shipped whole to the parent
        reply = (False, pack_error(exc), started, time.perf_counter())
    finally:
        tap.stop()
    cost = output.end(clock) if output is not None and clock is not None else (None, None)
    try:
        return cloudpickle.dumps((*reply, *cost))
    except Exception as exc:  # noqa: BLE001 - the return value would not pickle
        exc.add_note(return_value_note("its process"))
        return cloudpickle.dumps((False, pack_error(exc), started, time.perf_counter(), *cost))


def _exit_with_parent(parent_alive: Connection) -> None:
    """In a worker: block until the parent's end of ``parent_alive`` closes, then exit at once."""
    with contextlib.suppress(EOFError, OSError):
        parent_alive.recv_bytes()  # nothing is ever sent: this returns only at end-of-file
    os._exit(_ORPHANED)


def _serve(conn: Connection, parent_alive: Connection, output_path: str | None = None) -> None:
    """A worker's main loop: one shipped call at a time until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_alive,), name="codo-parent-watch",
                     daemon=True).start()
    output = _Output(output_path) if output_path else None
    try:
        conn.send_bytes(_READY)
        while message := conn.recv_bytes():  # _STOP (empty) ends the loop
            conn.send_bytes(_attempt(message, output))
    except (EOFError, OSError):  # the parent is gone
        return


class _Worker:
    """One worker process, the parent's end of its task pipe, its keep-alive pipe and its output."""

    __slots__ = ("process", "conn", "alive", "ready", "killed", "death", "output", "_path")

    def __init__(self, ctx: Any, number: int) -> None:
        parent, child = ctx.Pipe()
        watch, alive = ctx.Pipe(duplex=False)  # the worker reads ``watch``; only we hold ``alive``
        fd, self._path = tempfile.mkstemp(prefix=f"codo-process-{number}-", suffix=".out")
        self.output = os.fdopen(fd, "rb")  # the worker writes, only we read (owner-only file)
        self.process = ctx.Process(target=_serve, args=(child, watch, self._path),
                                   name=f"{spawn_main.WORKER_PREFIX}{number}")
        try:
            self.process.start()
        except BaseException:
            self.output.close()
            self._unlink()
            for end in (parent, child, watch, alive):
                end.close()
            raise
        child.close()  # so that the parent sees EOF when the child dies
        watch.close()
        self.conn: Connection = parent
        self.alive: Connection = alive  # closing it (or dying) ends the worker
        self.ready = False  # it has said so: start-up is over
        self.killed = False
        self.death = "still running"

    def wait_ready(self) -> bool:
        """Wait until the worker has started up; False if it died first."""
        with contextlib.suppress(EOFError, OSError):
            if not self.ready and self.conn in wait([self.conn, self.process.sentinel]):
                self.ready = self.conn.recv_bytes() == _READY
        if self.ready:
            self._unlink()  # the worker has it open: nothing is left behind, whatever happens
        return self.ready

    def _unlink(self) -> None:
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            self._path = None

    def read_output(self) -> str | None:
        """What the current (or just ended) attempt wrote, tidied; None if it cannot be read."""
        try:
            return capture.read_tidy(self.output, capture.LIMIT)
        except (OSError, ValueError):
            return None

    def clear_output(self) -> None:
        """Empty the output file (our descriptor is mkstemp's, opened for writing too)."""
        with contextlib.suppress(OSError, ValueError):
            os.ftruncate(self.output.fileno(), 0)

    def peek(self, limit: int) -> str | None:
        """The last ``limit`` characters the current attempt has written so far, tidied.

        ``os.pread``: the file's offset, which ``read_output`` moves, is left alone, so
        this may run in any thread while the attempt runs. None if it cannot be read."""
        try:
            fd = self.output.fileno()
            size = os.fstat(fd).st_size
            start = max(0, size - 4 * limit)  # UTF-8: up to 4 bytes a character
            raw = os.pread(fd, size - start, start)
        except (OSError, ValueError):
            return None
        text = capture.tidy(raw.decode("utf-8", "replace"), max(2, 8 * limit))
        if start and "\n" in text:
            text = text.split("\n", 1)[1]  # a line cut by the window is left out
        return text[-limit:]

    def cpu(self) -> float | None:
        """CPU seconds the process has used so far (readable until it is reaped)."""
        return _process_cpu(self.process.pid) if self.process.pid is not None else None

    def request(self, blob: bytes) -> bytes | None:
        """Send one call and wait for its reply; None if the process died first."""
        with contextlib.suppress(EOFError, OSError):
            self.conn.send_bytes(blob)
            if self.conn in wait([self.conn, self.process.sentinel]):
                return self.conn.recv_bytes()
        return None

    def close(self, graceful: bool) -> None:
        """Reap the process (asked to stop, or killed unless it exits in time); note how it ended."""
        if graceful:
            with contextlib.suppress(OSError):
                self.conn.send_bytes(_STOP)
        self.process.join(_EXIT_GRACE if graceful else 0.1)  # a dying one: read its own code
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
        code = self.process.exitcode
        self.death = f"exit code {code}" if code >= 0 else \
            f"killed by signal {-code}: {signal.strsignal(-code)}"
        self.conn.close()
        self.alive.close()
        if not _EXITING:  # at exit multiprocessing joins its children: a Process closed
            self.process.close()  # meanwhile by an engine thread made it print an error
        self.output.close()
        self._unlink()


class ProcessExecutor:
    """Runs each attempt in a worker process; interrupting kills that process."""

    name = "processes"

    def __init__(self) -> None:
        spawn_main.install()  # workers never re-run a script's body
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._keep, self._closed, self._seq = 1, True, 0
        _LIVE.add(self)

    def start(self, max_workers: int) -> None:
        with self._lock:
            self._keep, self._closed = max_workers, False

    def run(self, run: Run) -> Outcome:
        message = pickle.dumps((dumps_call(run, "a worker process"), capture.LOG_LEVEL))
        worker = self._checkout(run)
        if worker is None:
            return cancelled(run)
        worker.clear_output()  # a peek (once begun) never shows the worker's last attempt
        if not run.begin():  # abandoned while a worker was found or started: run nothing
            self._checkin(run, worker, True)
            return cancelled(run)
        cpu_before = worker.cpu()
        sent = time.perf_counter()
        reply = worker.request(message)
        logs = worker.read_output()
        if reply is None:  # it died: read what it used before it is reaped
            cpu_after = worker.cpu()
            cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None \
                else None
        self._checkin(run, worker, reply is not None)
        if reply is None:
            outcome = cancelled(run) if run.abandoned else failed(WorkerCrashedError(
                f"the worker process running task {run.label!r} died ({worker.death}); "
                "the pool has replaced it"), started=sent)
            outcome.logs, outcome.cpu_time = logs, cpu
            return outcome
        ok, payload, started, ended, cpu, peak = pickle.loads(reply)
        outcome = Outcome(True, payload, started=started, ended=ended) if ok \
            else error_outcome(payload, started, ended)
        outcome.logs, outcome.cpu_time, outcome.peak_memory = logs, cpu, peak
        return outcome

    def _checkout(self, run: Run) -> _Worker | None:
        """An idle live worker, or a new one that has started up (outside the lock).

        None if the attempt was abandoned meanwhile. While a new worker starts it
        is already the run's handle, so ``interrupt`` and ``shutdown`` can kill it.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the process pool is shut down: call start_execution() first")
            if run.abandoned:
                return None
            worker = self._idle.pop() if self._idle else None
            self._seq += 1
            number = self._seq
        if worker is not None and not worker.process.is_alive():
            worker.close(graceful=False)
            worker = None
        if worker is None:
            run.hold_deadline()  # a cold start is the pool's time, not the task's
            worker = _Worker(self._ctx, number)
        with self._lock:
            claimed = not (run.abandoned or self._closed)
            if claimed:
                self._busy.add(worker)
                run.handle = worker
        if not claimed:
            self._checkin(run, worker, True)
            return None
        if not worker.wait_ready():  # a new one (or one started for an abandoned attempt)
            self._checkin(run, worker, False)
            if run.abandoned or worker.killed:
                return None
            raise WorkerCrashedError(
                f"a worker process for task {run.label!r} died while starting "
                f"({worker.death})")
        return worker

    def _checkin(self, run: Run, worker: _Worker, healthy: bool) -> None:
        """Back to the idle list if healthy and wanted, else stop and reap it."""
        with self._lock:
            run.handle = None
            self._busy.discard(worker)
            keep = healthy and not worker.killed and not self._closed \
                and len(self._idle) < self._keep
            if keep:
                self._idle.append(worker)
        if not keep:
            worker.close(graceful=healthy and not worker.killed)

    def peek(self, run: Run, limit: int) -> str | None:
        """What the attempt has written to its worker's output file so far (its tail)."""
        worker = run.handle
        if not isinstance(worker, _Worker) or not run.begun:
            return ""  # not yet shipped to a worker: nothing written
        text = worker.peek(limit)
        return text if run.handle is worker else None  # the worker moved on meanwhile

    def interrupt(self, run: Run, reason: str) -> bool:
        """Kill the attempt's process (does not block); ``run`` then returns at once."""
        with self._lock:
            worker = run.handle
            if not isinstance(worker, _Worker) or worker.killed:
                return False
            worker.killed = True
            worker.process.kill()
            return True

    def shutdown(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones are killed."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for worker in self._busy:  # their run() reaps them
                worker.killed = True
                worker.process.kill()
        for worker in idle:
            worker.close(graceful=True)


_LIVE: weakref.WeakSet[ProcessExecutor] = weakref.WeakSet()


_EXITING = False  # set as the interpreter exits (``_stop_all``)


@atexit.register
def _stop_all() -> None:  # before multiprocessing's own hook waits for non-daemon children
    global _EXITING
    _EXITING = True
    for executor in list(_LIVE):
        executor.shutdown()
