"""What one attempt printed and logged: a per-thread capture that leaves everyone else alone.

A task running on an engine worker thread writes through the same
``sys.stdout`` / ``sys.stderr`` as the notebook. Redirecting those streams for
the whole process would swallow the notebook's own output and mix tasks
together; leaving them alone lets ipykernel put a task's lines in whichever
cell it picks. So ``Capture`` works per *thread*:

- **Streams.** While any capture is active, ``sys.stdout`` and ``sys.stderr``
  are thread-aware proxies (``StreamRouter``). A write from a thread that has an
  active capture (its own, or the one of the task that started it) goes into
  that capture; every other write goes to the stream that was there before
  (ipykernel's ``OutStream``, a terminal, pytest's capture), unchanged. Every other attribute (``flush``, ``fileno``,
  ``set_parent``, ``encoding``, ...) is the wrapped stream's. When the last
  capture ends, the streams are put back (unless someone has replaced them in
  the meantime: then the proxy stays and passes everything through; see
  "Nothing installed is ever freed" below).
  ``warnings`` arrive here too: ``showwarning`` writes to ``sys.stderr``.
- **Log records.** A record made in a capturing thread at the capture's level
  (``LOG_LEVEL``, INFO, by default) or above is formatted into the capture,
  whatever the logger's or the root logger's level (Jupyter's root logger is
  at WARNING) and whether or not any handler exists. Two hooks, both
  installed only while a capture is active and both pass-through for every
  other thread: ``Logger.isEnabledFor`` answers yes for such a record in a
  capturing thread, and the log-record factory copies the record into the
  capture. A record that exists only because of the capture (below the level
  the logger would emit), or that no handler would take (Python's last-resort
  handler would print it to stderr, into the capture a second time), is then
  made invisible to handlers (its ``levelno`` is set to -1). Other records go
  on to the handlers you configured, as before (a ``StreamHandler`` made
  before the run writes where it was pointed). No handler is added to the
  root logger, so ``logging.basicConfig()`` and the last-resort handler behave
  as before, in every thread.
- **Tidy text.** Carriage-return redraws (tqdm, progress counters) collapse to
  their last state, as a terminal shows them. Each capture keeps at most
  ``limit`` characters (``LIMIT``, one million, by default): the first and
  the last half, with a line saying how much was dropped in between.
- **A task's own threads.** A ``threading.Thread`` started (``start()``,
  also in a subclass or a ``Timer``) by a capturing thread, or by a thread it
  started, belongs to that capture: its writes and log records go into it for
  as long as the capture is active. Once the capture has ended (the attempt
  returned), they belong to no capture: they go to the stream that was there
  before (the notebook, a terminal), or where ``send_leftovers`` says (a
  process worker: its own inherited stdout/stderr, never the next attempt's
  output). The hook is ``Thread.start``, replaced only while the other hooks
  are in place; it costs a dictionary lookup per thread started. Threads
  started otherwise (``_thread.start_new_thread``) or before (a pool's
  workers made by another task) are not attributed: a thread belongs to the
  task that started it, whatever later runs on it.

- **Reading while it runs.** ``Capture.peek(limit)`` returns the last ``limit``
  characters kept so far, from any thread, under the capture's own lock (held
  only to copy that much): the node inspector and ``%codo_logs`` show a running
  attempt's output with it (``core.peek``), never under the engine lock.

Output written below Python (``os.write(1, ...)``, C libraries) cannot be
told apart by thread; the ``processes`` executor catches that too (it
redirects a worker's file descriptors, see ``process_executor``), so there
such output from a thread that outlived its task lands in whichever attempt
the worker runs then. ``live=True`` is the opt-in to also pass the output on
as it is written (to the enclosing capture, or to the stream that was there
before); by default nothing a task writes reaches any cell.

**Nothing installed is ever freed.** CPython 3.11's ``print()`` (and
``input()``, ``PySys_WriteStdout``, the thread excepthook) *borrows*
``sys.stdout``: a thread inside ``print()`` while another replaces the stream
uses freed memory if the replaced object is gone (a segfault; fixed only in
3.12.10 / 3.13.3, gh-130163). So every router stays alive for the life of the
process (``_routers``: one per stream it wraps, reused at each install, so
there are as many as streams were ever wrapped, usually two), and each holds
the stream it wraps, so neither side of a swap is ever freed by us. The
routers still come out of ``sys.stdout`` / ``sys.stderr`` when no capture and
no holder is left: the notebook's writes then cost nothing extra, and code
that compares ``sys.stdout`` with what it set finds it unchanged. (One router
installed for good would cost every write of the notebook a Python call, and
would still have to be put back in front of a stream set after it.)
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, BinaryIO, TextIO

LOG_LEVEL = logging.INFO  # records at this level and above are kept, whatever the loggers say
LIMIT = 1_000_000  # characters kept per attempt: the first and the last half
MAX_DISPLAYS = 20  # rich outputs (display(), figures shown) kept per attempt
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"

_get_ident = threading.get_ident
_active: dict[int, Capture] = {}  # thread ident -> its innermost active capture
_owners: dict[int, weakref.ref[Capture]] = {}  # a task's own thread -> the capture it started in
# the same dict, for the engine's batches: while it is empty no capture has a thread of its
# own still writing, and a batch's shared capture goes on to the next item unchecked
THREADS_STARTED = _owners
_leftovers: dict[str, TextIO | None] = {"stdout": None, "stderr": None}  # see send_leftovers
_lock = threading.Lock()  # guards installing and removing the hooks
_users = 0  # holders (``acquire``); the hooks stay while there is one or a capture is active
_installed = False  # the hooks are in place and no one is deciding to remove them (see _settle)
_first_write = threading.Lock()  # makes a capture's buffers, once, on its first write
_formatter = logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT)


class Capture:
    """The text of one attempt, written by its thread; ``start`` / ``stop`` (or ``with``).

    ``write`` may also be called directly (the process executor tidies a
    worker's output file through it). ``level`` is the lowest log level kept,
    ``limit`` the characters kept (head and tail), ``live`` also passes the
    output on as it comes.
    """

    __slots__ = ("level", "limit", "live", "_kept", "_thread", "_outer", "displays",
                 "__weakref__")

    def __init__(self, *, level: int = LOG_LEVEL, limit: int = LIMIT, live: bool = False) -> None:
        if limit < 2:
            raise ValueError(f"limit must be at least 2 characters, got {limit!r}")
        self.level, self.limit, self.live = level, limit, live
        self._kept: _Kept | None = None  # the text, made on the first write (most attempts: never)
        self._thread: int | None = None
        self._outer: Capture | None = None  # the capture this one interrupts in its thread
        self.displays: list[tuple[dict[str, Any], dict[str, Any]]] | None = None  # rich output

    def add_display(self, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        """Keep one rich output (a ``display()`` mime bundle: a figure, a table) of the
        attempt; at most ``MAX_DISPLAYS``, the later ones counted in a line of text."""
        if self.displays is None:
            self.displays = []
        if len(self.displays) < MAX_DISPLAYS:
            self.displays.append((dict(data), dict(metadata or {})))
        else:
            self.write(f"[{type(self).__name__}: display output beyond {MAX_DISPLAYS} left out]\n")

    # -- lifetime ---------------------------------------------------------------------------
    # Neither start nor stop takes _lock while the hooks are in place (an engine holds
    # them while it runs), so an attempt that prints nothing costs a few dict operations.
    # Each relies on the order of two steps against _settle, which runs under _lock
    # (from release, or from a stop that saw no holder). Under the GIL the steps of
    # different threads interleave but each thread's happen in program order; a dict
    # set or pop is one step:
    # - start registers in _active, *then* reads _installed. _settle sets _installed to
    #   False, *then* reads _active. So either start reads False (and takes _lock and
    #   installs, after _settle is done), or _settle sees the new capture and keeps the
    #   hooks. It cannot happen that start trusts hooks that _settle then removes.
    # - stop unregisters, *then* reads _users. release lowers _users, *then* (in
    #   _settle) reads _active. So either stop sees no holder (and settles itself,
    #   under _lock), or release sees the capture gone and removes the hooks if it was
    #   the last. Neither path can leave the hooks behind with no capture and no holder.
    # Both may settle: the second finds _installed False and does nothing. Nested
    # captures are one thread's own business (its _active entry), which no other
    # thread writes.
    def start(self) -> Capture:
        """Capture what this thread writes and logs from now on."""
        me = _get_ident()
        self._outer = _active.get(me)
        self._thread = me
        _active[me] = self
        if not (_installed and type(sys.stdout) is StreamRouter
                and type(sys.stderr) is StreamRouter
                and logging.Logger.isEnabledFor is _is_enabled_for
                and logging.getLogRecordFactory() is _record_factory):
            with _lock:  # the first capture, or someone replaced a stream or a hook since
                _install()
        return self

    def stop(self) -> str:
        """Stop capturing (the hooks go when the last capture stops); returns the text."""
        me = self._thread
        if me is not None:
            self._thread = None
            outer = self._outer
            if outer is not None and outer._thread is not None:
                _active[me] = outer
            else:
                _active.pop(me, None)
            if not _users:  # no holder: this may have been the last capture
                with _lock:
                    _settle()
        kept = self._kept
        return "" if kept is None else kept.text()  # "": the common case, nothing printed

    def cut(self) -> tuple[str, list[tuple[dict[str, Any], dict[str, Any]]] | None]:
        """The text and displays kept since the start or the last cut, and start afresh: a
        worker's batch of tiny items shares one capture (started once, not per item), each
        item taking its own output. Only while no thread started by this capture's thread
        still writes (the engine checks ``owns_threads``)."""
        kept, displays = self._kept, self.displays
        self._kept = self.displays = None
        return ("" if kept is None else kept.text()), displays

    def owns_threads(self) -> bool:
        """Does a thread started while this capture was active still write into it?"""
        return bool(_owners) and any(ref() is self for ref in list(_owners.values()))

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- writing --------------------------------------------------------------------------------
    def write(self, text: str, stream: TextIO | None = None) -> int:
        """Add ``text`` (``stream``: where it was headed, for ``live``); returns its length."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            kept = self._kept
            if kept is None:
                with _first_write:  # another thread may write the first text at the same time
                    kept = self._kept
                    if kept is None:
                        kept = self._kept = _Kept(self.limit)
            with kept.mutex:
                kept.add(text)
            if self.live:
                self._pass_on(text, stream)
        return len(text)

    def _pass_on(self, text: str, stream: TextIO | None) -> None:
        if self._outer is not None:
            self._outer.write(text, stream)
        elif stream is not None:
            stream.write(text)

    # -- reading ----------------------------------------------------------------------------------
    def text(self) -> str:
        """Everything kept so far, in order; the unfinished last line included."""
        kept = self._kept
        return "" if kept is None else kept.text()

    def peek(self, limit: int | None = None) -> str:
        """What the attempt has written so far, while it runs: at most the last ``limit``
        characters (all with None). Safe from any thread and cheap: it copies only what
        it returns, under the capture's own small lock (never an engine lock)."""
        kept = self._kept
        if kept is None:
            return ""
        return kept.text() if limit is None else kept.last(limit)

    @property
    def dropped(self) -> int:
        """Characters dropped between the kept head and tail."""
        kept = self._kept
        return 0 if kept is None else kept.dropped


class _Kept:
    """What one capture keeps of its text, tidied as it comes; made on the capture's first write.

    ``mutex`` guards everything (a capture may be written from another thread).
    """

    __slots__ = ("limit", "mutex", "head", "head_size", "tail", "tail_size", "line",
                 "line_size", "cr", "dropped", "dropped_lines")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.mutex = threading.Lock()
        self.head: list[str] = []  # finished pieces (lines), the first limit/2 characters
        self.head_size = 0
        self.tail: collections.deque[str] = collections.deque()  # the last limit/2 characters
        self.tail_size = 0
        self.line: list[str] = []  # the line being written (no newline yet)
        self.line_size = 0
        self.cr = False  # the last write ended in "\r": a "\n" next means "\r\n"
        self.dropped = 0  # characters dropped between head and tail
        self.dropped_lines = 0

    def add(self, text: str) -> None:
        if self.cr:
            self.cr = False
            if text[0] == "\n":  # "\r" + "\n" split over two writes: a plain newline
                self.end_line("")
                text = text[1:]
            else:
                self.clear_line()
        if "\r" in text:
            self.add_with_returns(text)
            return
        if "\n" not in text:
            self.extend_line(text)
            return
        first, *middle, last = text.split("\n")
        self.end_line(first)
        for line in middle:
            self.commit(line + "\n")
        if last:
            self.extend_line(last)

    def add_with_returns(self, text: str) -> None:
        text = text.replace("\r\n", "\n")
        if text.endswith("\r"):
            self.cr = True
            text = text[:-1]
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if "\r" in line:  # a redraw: only what follows the last return stays
                self.clear_line()
                line = line.rsplit("\r", 1)[1]
            if i < len(lines) - 1:
                self.end_line(line)
            elif line:
                self.extend_line(line)

    def extend_line(self, text: str) -> None:
        self.line.append(text)
        self.line_size += len(text)
        if self.line_size > self.limit // 4:  # a huge line without a newline: keep it in pieces
            self.commit("".join(self.line))
            self.line.clear()
            self.line_size = 0

    def end_line(self, text: str) -> None:
        if self.line:
            self.line.append(text + "\n")
            self.commit("".join(self.line))
            self.line.clear()
            self.line_size = 0
        else:
            self.commit(text + "\n")

    def clear_line(self) -> None:
        self.line.clear()
        self.line_size = 0

    def commit(self, piece: str) -> None:
        """Keep ``piece`` (a line, or a part of a huge one): in the head while it has room,
        else in the tail, which drops from its front. Both keep whole lines where the
        lines are short, so the dropped-part note never splits one."""
        half = self.limit // 2
        short = half // 8  # a line this long or shorter is kept or dropped whole
        if self.head_size < half and not self.tail:
            room = half - self.head_size
            if len(piece) <= room:
                self.head.append(piece)
                self.head_size += len(piece)
                return
            if len(piece) > short:  # a long line: its start fills the head
                self.head.append(piece[:room])
                piece = piece[room:]
            self.head_size = half  # full: the next piece goes to the tail
        self.tail.append(piece)
        self.tail_size += len(piece)
        while self.tail_size > half:
            first = self.tail[0]
            extra = self.tail_size - half
            if len(first) <= extra or (len(first) <= short and len(self.tail) > 1):
                self.tail.popleft()
                self.tail_size -= len(first)
                self.dropped += len(first)
                self.dropped_lines += first.count("\n")
            else:  # keep the end of a long piece
                self.tail[0] = first[extra:]
                self.tail_size -= extra
                self.dropped += extra
                self.dropped_lines += first[:extra].count("\n")

    def last(self, limit: int) -> str:
        """The last ``limit`` characters of ``text()``, copying no more than that."""
        parts: list[str] = []
        size = 0
        with self.mutex:
            note = [self._note()] if self.dropped else []
            for piece in _backwards(self.line, self.tail, note, self.head):
                parts.append(piece)
                size += len(piece)
                if size >= limit:
                    break
        text = "".join(reversed(parts))
        return text[-limit:] if limit > 0 else ""

    def _note(self) -> str:
        """The dropped-part note on a line of its own, as ``text`` and ``last`` show it
        (under ``mutex``)."""
        cut = "\n" if self.head and not self.head[-1].endswith("\n") else ""
        return cut + dropped_note(self.dropped, self.dropped_lines, self.limit)

    def text(self) -> str:
        with self.mutex:
            parts = list(self.head)
            if self.dropped:
                parts.append(self._note())
            parts.extend(self.tail)
            parts.extend(self.line)
        return "".join(parts)


def _backwards(*runs: Any) -> Any:
    """The pieces of several sequences, last sequence piece first (``last``'s walk)."""
    for run in runs:
        yield from reversed(run)


class Forward(Capture):
    """A capture that keeps nothing: every write goes straight on to ``sink``.

    A process worker uses it for what an attempt (and the threads it starts)
    prints and logs, so that it lands in the worker's output file in order with
    what is written below Python, and survives a crash.
    """

    __slots__ = ("sink",)

    def __init__(self, sink: TextIO, *, level: int = LOG_LEVEL) -> None:
        super().__init__(level=level)
        self.sink = sink

    def write(self, text: str, stream: TextIO | None = None) -> int:
        return self.sink.write(text)


DROPPED = "[... "  # how the dropped-part note starts (its line is told from output by it)


def dropped_note(chars: int, lines: int, limit: int) -> str:
    """The line that stands for what the cap dropped (it starts a line)."""
    what = f"{chars:,} characters" + (f" ({lines:,} lines)" if lines else "")
    return (f"{DROPPED}{what} dropped here: about the first and the last {limit // 2:,} "
            "characters of this attempt's output are kept, in whole lines ...]\n")


def tidy(text: str, limit: int = LIMIT) -> str:
    """``text`` as a capture keeps it: redraws collapsed, at most ``limit`` characters."""
    capture = Capture(limit=limit)
    capture.write(text)
    return capture.text()


def read_tidy(f: BinaryIO, limit: int = LIMIT) -> str:
    """A binary file of raw output (from a worker), decoded and tidied; only head and tail are read.

    A file larger than ``limit`` bytes is not read whole: its first and last
    ``limit // 2`` bytes are, with the dropped-part note between them.
    """
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    if size <= limit:
        return tidy(f.read(size).decode("utf-8", "replace"), limit)
    half = limit // 2
    head = f.read(half).decode("utf-8", "replace")
    f.seek(size - half)
    tail = f.read(half).decode("utf-8", "replace")
    middle = size - 2 * half
    head = tidy(head, limit)
    return head + ("" if head.endswith("\n") else "\n") + dropped_note(middle, 0, limit) \
        + tidy(tail, limit)


def acquire() -> None:
    """Keep the hooks installed until the matching ``release`` (an engine, while it runs).

    Each capture installs the hooks when it is the only one and removes them
    when it ends; a holder saves that work per attempt for as long as it holds
    them (a capture then starts and stops without taking a lock: about 0.5 us
    instead of 4). Nothing is captured by holding alone.
    """
    global _users
    with _lock:
        _users += 1
        _install()


def release() -> None:
    """Undo one ``acquire``; the hooks go when no capture and no holder is left."""
    global _users
    with _lock:
        if _users > 0:
            _users -= 1
            _settle()


def active(thread_id: int | None = None) -> Capture | None:
    """The capture active in a thread (this one by default), if any."""
    return _active.get(_get_ident() if thread_id is None else thread_id)


def current() -> Capture | None:
    """The capture this thread's writes go to: its own, or the active one of the task
    whose thread started it (see "A task's own threads" above)."""
    ident = _get_ident()
    box = _active.get(ident)
    if box is None and _owners:
        box = _inherited(_owners.get(ident))
    return box


def send_leftovers(stdout: TextIO | None, stderr: TextIO | None) -> None:
    """Where a task's own threads write once their task has ended (None: the stream that
    was there before, as for any other thread).

    A process worker sends them to its own inherited stdout / stderr, so that they
    never land in the output file of the attempt it runs next. The streams are kept
    for the life of the process (a thread may be writing to one).
    """
    _kept_alive.extend(s for s in (stdout, stderr) if s is not None)
    _leftovers.update(stdout=stdout, stderr=stderr)


def _inherited(ref: weakref.ref[Capture] | None) -> Capture | None:
    """The active capture a task's thread belongs to (``ref``: the one it started in), if any.

    When that capture has ended, the one it interrupted in the starting thread, if that
    one is still on (a capture nested in the attempt's); at most a few levels."""
    box = None if ref is None else ref()
    for _ in range(8):
        if box is None or box._thread is not None:
            return box
        box = box._outer
    return None


# -- the stream proxies -------------------------------------------------------------------------
class StreamRouter:
    """Stands in for ``sys.stdout`` / ``sys.stderr``: capturing threads write to their capture.

    Everything else is the wrapped stream's, so the notebook (and ipykernel's
    per-cell routing of the main thread's output) works as before. Assigning
    ``write`` (IPython 9 does so around every cell, to keep a history of its
    output) hooks only the writes that are not captured: a task's output never
    reaches the hook, and the hook's own call of the write it replaced goes to
    the wrapped stream.
    """

    def __init__(self, stream: TextIO | None, name: str) -> None:
        self.__dict__.update(_stream=stream, _name=name, _hook=None, _inside=threading.local())

    @property
    def wrapped(self) -> TextIO | None:
        """The stream this one passes other threads' writes to."""
        return self._stream

    @property
    def write(self) -> Any:
        return self._route

    def _route(self, text: str) -> int:
        ident = _get_ident()
        capture = _active.get(ident)
        if capture is None and _owners:
            ref = _owners.get(ident)
            if ref is not None:  # a thread a task started
                capture = _inherited(ref)
                if capture is None:  # its task has ended: the leftovers' stream, if set
                    leftover = _leftovers[self._name]
                    if leftover is not None:
                        return leftover.write(text)
        if capture is not None:
            return capture.write(text, self._stream)
        hook, inside = self._hook, self._inside
        if hook is not None and not getattr(inside, "busy", False):
            inside.busy = True
            try:
                return hook(text)
            finally:
                inside.busy = False
        if self._stream is None:  # no stream at all (pythonw): writes vanish, as with None
            return len(text)
        return self._stream.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self._route(line)

    def flush(self) -> None:
        if self._stream is not None and current() is None:
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "write":  # a hook on what is not captured; our own write back: no hook
            mine = getattr(value, "__self__", None) is self
            self.__dict__["_hook"] = None if mine else value
        else:
            setattr(self._stream, name, value)

    def __repr__(self) -> str:
        return f"<thread-aware {self._name} around {self._stream!r}>"


# -- a task's own threads ------------------------------------------------------------------------
_original_thread_start: Any = threading.Thread.start  # the one replaced at install


# Threads in ``Thread.start`` now (ident -> None, or the exception to raise in it as it
# leaves: ``raise_in``), under ``_start_lock``. CPython 3.11 makes a new thread's state in
# the thread starting it, with that thread's ident, until the new thread runs: an exception
# sent to the ident meanwhile lands in the new thread (the newest state with that ident),
# which dies before it says it started, and the starting thread waits for that for ever.
_starting: dict[int, type[BaseException] | None] = {}
_start_lock = threading.Lock()


def raise_in(ident: int, exc: type[BaseException], send: Callable[[int, Any], int]) -> bool:
    """Raise ``exc`` in thread ``ident`` with ``send`` (``PyThreadState_SetAsyncExc``), or,
    while that thread starts a thread, as soon as ``Thread.start`` returns in it; True if it
    was sent or will be raised."""
    with _start_lock:  # the thread cannot enter ``Thread.start`` until it is sent
        if ident in _starting:
            _starting[ident] = exc
            return True
        return send(ident, exc) == 1


def _thread_start(self: threading.Thread) -> None:
    """``Thread.start`` while the hooks are in place: a thread started by a task's thread
    belongs to that task's capture (``_owners``), from its first instruction on; an
    exception ``raise_in`` held back while it started is raised as it returns."""
    me = _get_ident()
    with _start_lock:
        nested = me in _starting  # (a subclass's start calling start again)
        if not nested:
            _starting[me] = None
    try:
        return _start_owned(self)
    finally:
        if not nested:
            with _start_lock:
                held = _starting.pop(me, None)
            if held is not None:
                raise held  # noqa: B012 - the interrupt it was sent meanwhile, delivered now


def _start_owned(self: threading.Thread) -> None:
    box = current()
    if box is None:
        return _original_thread_start(self)
    ref = weakref.ref(box)  # weak: a thread that outlives its task does not keep the text
    run = self.run

    def run_owned() -> None:
        ident = _get_ident()
        _owners[ident] = ref
        try:
            run()
        finally:
            _owners.pop(ident, None)
            if self.__dict__.get("run") is run_owned:
                del self.__dict__["run"]  # the thread object no longer refers to itself

    try:
        self.run = run_owned  # type: ignore[method-assign]  # the instance's, looked up once
    except (AttributeError, TypeError):  # a read-only run: the thread is not attributed
        return _original_thread_start(self)
    try:
        return _original_thread_start(self)
    except BaseException:
        if self.__dict__.get("run") is run_owned:  # started twice, or no thread to be had
            del self.__dict__["run"]
        raise


# -- installing and removing the hooks (under _lock) ------------------------------------------
_original_is_enabled_for: Any = logging.Logger.isEnabledFor  # the one replaced at install
_previous_factory: Any = None
_routers: dict[tuple[str, int], StreamRouter] = {}  # every router made, never freed (see above)
_kept_alive: list[Any] = []  # streams given to send_leftovers, never freed either


def _router_for(stream: TextIO | None, name: str) -> StreamRouter:
    """The router around ``stream``: made once, then kept (and reused) for the process's life.

    The router holds ``stream``, so its ``id`` cannot be reused while the entry exists."""
    key = (name, id(stream))
    router = _routers.get(key)
    if router is None:
        router = _routers[key] = StreamRouter(stream, name)
    return router


def _is_enabled_for(self: logging.Logger, level: int) -> bool:
    ident = _get_ident()
    capture = _active.get(ident)
    if capture is None and _owners:
        capture = _inherited(_owners.get(ident))
    if capture is not None and level >= capture.level and self.manager.disable < level:
        return True
    return _original_is_enabled_for(self, level)


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = (_previous_factory or logging.LogRecord)(*args, **kwargs)
    capture = current()
    level = record.levelno
    if capture is None or not isinstance(level, int) or level < capture.level or record.name is None:
        return record
    logger = logging.root if record.name == "root" else \
        logging.root.manager.loggerDict.get(record.name)
    if not isinstance(logger, logging.Logger):
        logger = None  # not made by a registered logger: let it through as it is
    elif logger.disabled:
        return record
    try:
        text = _formatter.format(record)
    except Exception as exc:  # noqa: BLE001 - a bad format string must not fail the task
        text = f"{record.levelname} {record.name}: {record.msg!r} % {record.args!r} ({exc})"
    capture.write(text + "\n")
    if logger is not None and (not _original_is_enabled_for(logger, level)
                               or not logger.hasHandlers()):
        record.levelno = -1  # made only for the capture, or bound for the last-resort
        # handler (stderr, which is this capture): no handler emits it
    return record


def _install() -> None:
    global _previous_factory, _original_is_enabled_for, _original_thread_start, _installed
    if not (type(sys.stdout) is StreamRouter and type(sys.stderr) is StreamRouter
            and logging.Logger.__dict__.get("isEnabledFor") is _is_enabled_for
            and logging.getLogRecordFactory() is _record_factory
            and threading.Thread.__dict__.get("start") is _thread_start):  # else in place already
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, StreamRouter):
                setattr(sys, name, _router_for(stream, name))  # ``stream``: kept by its router
        if threading.Thread.__dict__.get("start") is not _thread_start:
            _original_thread_start = threading.Thread.__dict__.get("start",
                                                                   _original_thread_start)
            threading.Thread.start = _thread_start  # type: ignore[method-assign]
        if logging.Logger.__dict__.get("isEnabledFor") is not _is_enabled_for:
            _original_is_enabled_for = logging.Logger.__dict__.get("isEnabledFor",
                                                                   _original_is_enabled_for)
            logging.Logger.isEnabledFor = _is_enabled_for  # type: ignore[method-assign]
        current_factory = logging.getLogRecordFactory()
        if current_factory is not _record_factory:
            _previous_factory = current_factory
            logging.setLogRecordFactory(_record_factory)
    _installed = True  # last: a start that reads it without _lock finds the hooks in place


def _settle() -> None:
    """Remove the hooks if no holder and no capture needs them (see Capture.start)."""
    global _installed
    if _users or not _installed:
        return
    _installed = False  # from now on a starting capture takes _lock; it reads this after
    if _active:  # registering, so one registered before this line is seen here: it keeps them
        _installed = True
        return
    _uninstall()


def _uninstall() -> None:
    global _previous_factory
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, StreamRouter):  # else replaced since: leave the new one alone
            setattr(sys, name, stream.wrapped)  # the router lives on in _routers
    if threading.Thread.__dict__.get("start") is _thread_start:
        threading.Thread.start = _original_thread_start  # type: ignore[method-assign]
    if logging.Logger.__dict__.get("isEnabledFor") is _is_enabled_for:
        logging.Logger.isEnabledFor = _original_is_enabled_for  # type: ignore[method-assign]
    if logging.getLogRecordFactory() is _record_factory:
        logging.setLogRecordFactory(_previous_factory or logging.LogRecord)
        _previous_factory = None
