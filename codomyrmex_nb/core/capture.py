"""What one attempt printed and logged: a per-thread capture that leaves everyone else alone.

A task running on an engine worker thread writes through the same
``sys.stdout`` / ``sys.stderr`` as the notebook. Redirecting those streams for
the whole process would swallow the notebook's own output and mix tasks
together; leaving them alone lets ipykernel put a task's lines in whichever
cell it picks. So ``Capture`` works per *thread*:

- **Streams.** While any capture is active, ``sys.stdout`` and ``sys.stderr``
  are thread-aware proxies (``StreamRouter``). A write from a thread that has an
  active capture goes into that capture; every other write goes to the stream
  that was there before (ipykernel's ``OutStream``, a terminal, pytest's
  capture), unchanged. Every other attribute (``flush``, ``fileno``,
  ``set_parent``, ``encoding``, ...) is the wrapped stream's. When the last
  capture ends, the streams are put back (unless someone has replaced them in
  the meantime: then the proxy stays and passes everything through).
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

Only the capturing thread is captured: threads a task starts itself write to
the notebook as before, and output written below Python (``os.write(1, ...)``,
C libraries) cannot be told apart by thread; the ``processes`` executor
catches that too (it redirects a worker's file descriptors, see
``process_executor``). ``live=True`` is the opt-in to also pass the output on
as it is written (to the enclosing capture, or to the stream that was there
before); by default nothing a task writes reaches any cell.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
from typing import Any, BinaryIO, TextIO

LOG_LEVEL = logging.INFO  # records at this level and above are kept, whatever the loggers say
LIMIT = 1_000_000  # characters kept per attempt: the first and the last half
MAX_DISPLAYS = 20  # rich outputs (display(), figures shown) kept per attempt
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"

_get_ident = threading.get_ident
_active: dict[int, Capture] = {}  # thread ident -> its innermost active capture
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

    __slots__ = ("level", "limit", "live", "_kept", "_thread", "_outer", "displays")

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
        half = self.limit // 2
        if self.head_size < half and not self.tail:
            room = half - self.head_size
            if len(piece) <= room:
                self.head.append(piece)
                self.head_size += len(piece)
                return
            self.head.append(piece[:room])
            self.head_size = half
            piece = piece[room:]
        self.tail.append(piece)
        self.tail_size += len(piece)
        while self.tail_size > half:
            first = self.tail[0]
            extra = self.tail_size - half
            if len(first) <= extra:
                self.tail.popleft()
                self.tail_size -= len(first)
                self.dropped += len(first)
                self.dropped_lines += first.count("\n")
            else:  # keep the end of a long piece
                self.tail[0] = first[extra:]
                self.tail_size -= extra
                self.dropped += extra
                self.dropped_lines += first[:extra].count("\n")

    def text(self) -> str:
        with self.mutex:
            parts = list(self.head)
            if self.dropped:
                if parts and not parts[-1].endswith("\n"):
                    parts.append("\n")
                parts.append(dropped_note(self.dropped, self.dropped_lines, self.limit))
            parts.extend(self.tail)
            parts.extend(self.line)
        return "".join(parts)


class Forward(Capture):
    """A capture that keeps nothing: every write goes straight on to ``sink``.

    A process worker uses it for the log records of an attempt, so that they
    land in its output file in order with everything else, and survive a crash.
    """

    __slots__ = ("sink",)

    def __init__(self, sink: TextIO, *, level: int = LOG_LEVEL) -> None:
        super().__init__(level=level)
        self.sink = sink

    def write(self, text: str, stream: TextIO | None = None) -> int:
        return self.sink.write(text)


def dropped_note(chars: int, lines: int, limit: int) -> str:
    """The line that stands for what the cap dropped (it starts a line)."""
    what = f"{chars:,} characters" + (f" ({lines:,} lines)" if lines else "")
    return (f"[... {what} dropped here: the first and the last {limit // 2:,} "
            "characters of this attempt's output are kept ...]\n")


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
        capture = _active.get(_get_ident())
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
        if self._stream is not None and _active.get(_get_ident()) is None:
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


# -- installing and removing the hooks (under _lock) ------------------------------------------
_original_is_enabled_for: Any = logging.Logger.isEnabledFor  # the one replaced at install
_previous_factory: Any = None


def _is_enabled_for(self: logging.Logger, level: int) -> bool:
    capture = _active.get(_get_ident())
    if capture is not None and level >= capture.level and self.manager.disable < level:
        return True
    return _original_is_enabled_for(self, level)


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = (_previous_factory or logging.LogRecord)(*args, **kwargs)
    capture = _active.get(_get_ident())
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
    global _previous_factory, _original_is_enabled_for, _installed
    if not (type(sys.stdout) is StreamRouter and type(sys.stderr) is StreamRouter
            and logging.Logger.__dict__.get("isEnabledFor") is _is_enabled_for
            and logging.getLogRecordFactory() is _record_factory):  # else in place already
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if not isinstance(current, StreamRouter):
                setattr(sys, name, StreamRouter(current, name))
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
        current = getattr(sys, name)
        if isinstance(current, StreamRouter):  # else replaced since: leave the new one alone
            setattr(sys, name, current.wrapped)
    if logging.Logger.__dict__.get("isEnabledFor") is _is_enabled_for:
        logging.Logger.isEnabledFor = _original_is_enabled_for  # type: ignore[method-assign]
    if logging.getLogRecordFactory() is _record_factory:
        logging.setLogRecordFactory(_previous_factory or logging.LogRecord)
        _previous_factory = None
