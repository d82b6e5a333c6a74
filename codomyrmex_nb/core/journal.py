"""The run journal: an embedded SQLite file of definitions, transitions and results.

One ``Journal`` per file. Recording calls (``define``, ``transition``, ``result``,
``end_run``) only append a tuple to a deque (no lock; the writer is woken only when it
sits idle, by the first record of a burst: ``_rouse``); one writer thread (a daemon, its
own connection) sleeps through a burst, then drains the deques and commits them in one
transaction, at most ``commit_interval`` seconds after a record was queued: ten thousand
transitions are a handful of commits. The engine's moves take another way: a reference
to the moved record onto ``_touched``, which ``collect`` (the recorder's, under the
engine's lock) turns into one transition row per record as a commit begins, its latest
move (and the small result it completed with). A map's items go their own way: a moved
item's index onto its map's list and the map onto ``_mapped``, read as one group of
columns per map (``item_journal.py``). A commit stores one transition per task (its
latest, from the state the last commit left it in: ``latest_per_task``). Readers
(``last_run``, ``restorable``, ``history``, ``transitions``, ``definitions``;
``journal_reads.py``) use a second connection under a lock and see committed rows only:
a result still queued is not restorable.

**Parts.** This module is the facade the engine and readers call: its recording
calls, upkeep and closing. ``journal_files.py`` opens the file (path, modes,
checks, WAL, moving a bad file aside), ``journal_writer.py`` is the writer
thread (drain, pack, commit, size bound), ``journal_reads.py`` and
``journal_removal.py`` read and remove.

**Layout.** How a run sits in the file (results a row each, but a small one packed
with its run's transitions and definitions, as columns, one row per run and commit;
each run's summary in its ``runs`` row kept by the writer, the conversion of a
version-1 file) is ``journal_tables.py``.

The file lives in an owner-only folder (0700, with a ``.gitignore`` of ``*`` so
pickled results never reach git) and is itself 0600; an existing folder or file
(``-wal``/``-shm`` too) that others could read is tightened when opened. A journal at
a custom path inside a git work tree gets its own rule in ``.git/info/exclude``
(``git_ignore.py``), or one line says it is not ignored. WAL mode where the file system
allows it, else the rollback journal and a one-line warning. An unwritable folder
turns the journal off (``enabled`` is False, every method a cheap no-op) with a
one-line warning; a corrupted or truncated file is moved aside to
``<name>.corrupt-<timestamp>`` (never deleted) and a fresh journal started. Nothing
here raises into the caller. Two processes may write one journal at once (busy
timeout, retries on ``database is locked``). When the file outgrows ``max_bytes``
the oldest runs are pruned (never the newest run, nor one ``journal_upkeep`` keeps: an
open run, a run of another process that still runs (``sessions.py``), a run holding a
``pinned`` result, of any orchestrator of this process on this file; a file that must
stay over its bound says so once per process, not once per run) and the free pages are
given back to the file system now and then (at most every ``vacuum_interval`` seconds).
``info``, ``prune``, ``clear_cache`` (``%codo_journal``) and ``clear``
(``%codo_reset --journal``), planned by ``journal_upkeep.py``, remove the same way, on
the writer thread (``journal_removal.py``).
Each run records the process that wrote it (pid and start time).

``result`` rows are for completed tasks only: ``restorable`` returns the newest
committed blob recorded for a fingerprint (in one run, or in any) whose MAC verifies,
a ``small_result`` too (pickled for the caller; found through an index of verified
packed rows whose hits are re-checked against the file, so one removed or rewritten
since, by a cache clear or a prune in any process, is never served).
A result over ``blob_limit`` is recorded as an error (the recorder refuses it before
pickling when it can tell its size).

**Signed.** Result blobs are cloudpickle bytes, and unpickling can run arbitrary
code; packed rows are ``marshal`` bytes, unsafe on crafted data. So every blob carries
a MAC under the user's key (``signing.py``: keyed BLAKE2b, HMAC-SHA256 on blobs of
4 KB or more; the key in the user's config folder or ``$CODOMYRMEX_JOURNAL_KEY_FILE``), bound to its fingerprint (a
result) or its run and kind (a packed row), and each run records its key's id.
Nothing is read back before its MAC verifies; what does not verify is skipped (its
task runs again) with one line per file and reason: written before signing (a
version-1 or 2 file, converted: its history stays, nothing of it is restored),
signed with another key (the key file was replaced, or the file comes from
elsewhere), or damaged (bit rot, or altered).
"""

from __future__ import annotations

import atexit
import math
import os
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .journal_files import JournalFiles, JournalWarning, _connect, _warn, default_path
from .journal_full_disk import FIX, FullDiskUpkeep, disk_full, full_reason
from .journal_reads import SMALL, Reads, RunInfo
from .journal_removal import Removals
from .journal_tables import Moves, RunSummary, status_code
from .journal_upkeep import JournalInfo, Removal, hold_pins, parse_age, read_info
from .journal_writer import JournalWriter, _now
from .signing import Signer
from .sizes import MB, size_text
from .spill_files import spill_folder, spill_space, sweep

__all__ = ["SMALL", "Journal", "JournalWarning", "RunInfo", "default_path"]

MAX_BLOB = 900 * MB        # SQLite refuses blobs over ~1 GB; larger results are recorded as errors

_open_journals: weakref.WeakSet[Journal] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # a script that ends normally loses nothing still queued
    for journal in list(_open_journals):
        journal.close()


def _forget_in_child() -> None:
    """A forked child has no writer thread and must not touch the parent's connections:
    its copies of the journals go quiet (the parent's keep working)."""
    for journal in list(_open_journals):
        journal.enabled, journal._closed, journal._thread = False, True, None
        _inherited.extend((journal._wconn, journal._rconn))  # never closed: the parent's
        journal._wconn = journal._rconn = None
    _open_journals.clear()


_inherited: list[object] = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class Journal(JournalFiles, JournalWriter, Reads, Removals, FullDiskUpkeep):
    """The run journal in one SQLite file; see the module docstring."""

    enabled: bool
    path: Path

    def __init__(self, path: str | os.PathLike, *, max_bytes: int = 256 * MB,
                 commit_interval: float = 0.1, vacuum_interval: float = 300.0,
                 key: bytes | None = None) -> None:
        self.path = Path(path).absolute()
        self.enabled = False
        self.mode: str | None = None  # "wal" or the fallback journal mode
        self.full_disk: str | None = None  # off because its disk is full: why (upkeep works)
        self.room_made = False  # and an upkeep freed space since (journal_full_disk.py)
        self._max_bytes = int(max_bytes)
        self._interval = max(0.0, float(commit_interval))
        self._vacuum_interval = float(vacuum_interval)
        self._closed = False
        self._close_lock = threading.Lock()
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._rlock = threading.Lock()
        # Producers append rows here (deque.append is atomic); the writer drains them,
        # ends first so that a run is never marked ended before the rows queued before.
        self._ends_q: deque[tuple[Any, ...]] = deque()
        self._defs_q: deque[tuple[Any, ...]] = deque()
        self._trans_q: deque[tuple[Any, ...]] = deque()
        self._results_q: deque[tuple[Any, ...]] = deque()
        self._small_q: deque[tuple[Any, ...]] = deque()  # small results, packed (journal_tables)
        self._moves_q: deque[Moves] = deque()  # a run's last moves, as it ends (columns)
        self._sync_q: deque[tuple[Any, ...]] = deque()  # (action, event, box)
        # The engine's records that moved since the last commit (a reference per move): at
        # each commit ``collect`` (the recorder's, under the engine's lock) reads each one's
        # latest move, as columns (``Recorder.collect``)
        self._touched: deque[Any] = deque()
        # (mapped record, its MapState) once per commit window in which its items moved
        self._mapped: deque[tuple[Any, Any]] = deque()
        self._groups_q: deque[tuple[Any, ...]] = deque()  # item groups (item_journal.py)
        # (a flush: every task's latest move, those left waiting too)
        self.collect: Callable[[bool], tuple[list[tuple[Any, ...]], list[tuple[Any, ...]],
                                             list[tuple[Any, ...]]]] | None = None
        self._idle = False  # the writer waits for a first record: wake it
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        # writer-thread state
        self._defs: list[tuple[Any, ...]] = []
        self._trans: list[tuple[Any, ...]] = []
        self._results: list[tuple[Any, ...]] = []
        self._small: list[tuple[Any, ...]] = []
        self._ends: list[tuple[Any, ...]] = []
        self._groups: list[tuple[Any, ...]] = []
        self._moved: list[Moves] = []  # the engine's moved tasks as columns: collected
        # as a commit begins, or queued by a run's end
        self._open_runs: set[int] = set()
        self._summaries: dict[int, RunSummary] = {}  # run id -> its summary, while it is written
        self._bad: list[str] = []  # why rows of the batch being packed were dropped
        self._last_vacuum = -math.inf
        # fingerprint -> [(run, packed rowid, value, time)] of small results (reader side)
        self._small_index: dict[str, list[tuple[Any, ...]]] = {}
        self._small_seen = 0  # the last packed rowid indexed
        # (run, map id) -> item fingerprints of its expansion group, read with the index
        self._small_expansions: dict[tuple[int, str], Any] = {}
        self._small_version: int | None = None  # PRAGMA data_version when last indexed
        self._small_untrusted: dict[str, int] = {}  # why packed rows were skipped -> a run
        self.dropped = 0  # records that could not be written (each drop also warned once)
        # (run id, fingerprint) of results this process dropped from memory and will read
        # back: their rows and runs are never removed, by this journal nor by any other
        # open on this file in this process (journal_upkeep.hold_pins)
        self.pinned: set[tuple[int, str]] = set()
        self.signer: Signer | None = None  # MACs under the user's key (None while off)
        self.key_file: Path | None = None  # where that key lives (None: given, or this process's)
        # the largest result stored, in bytes (over it: recorded as an error)
        self.blob_limit = min(self._max_bytes, MAX_BLOB)
        # result rows just committed, as ``result`` queued them (run id, task id, name,
        # fingerprint, blob, ...), told from the writer before the size bound is checked
        # (the memory budget pins what it may read back)
        self.on_commit: Callable[[list[tuple[Any, ...]]], None] | None = None
        # asked before an explicit removal (prune, clear-cache, clear): the memory budget
        # gives up the pins of results it still holds in RAM (they will not be dropped
        # now), so that what the user removes goes; it returns those keys (dry run: would)
        self.on_upkeep: Callable[[bool], set[tuple[int, str]]] | None = None
        self._soon = False  # commit what is queued now (the memory budget waits for it)
        hold_pins(self.path, self)

        try:
            self._prepare_files()
        except OSError as exc:
            _warn(self._off_for_full_disk(exc, key) or
                  f"run journal off: cannot write {self.path.parent} "
                  f"({exc.strerror or exc}); results will not survive a restart")
            return
        self._load_signer(key)
        try:
            self._wconn = self._open_writer()
            self._rconn = _connect(self.path)
            self._rconn.execute("PRAGMA query_only = ON")
        except (sqlite3.Error, OSError) as exc:
            self._close_connections()
            _warn(self._off_for_full_disk(exc, key) or
                  f"run journal off: cannot use {self.path} ({exc}); "
                  "results will not survive a restart")
            return
        self.enabled = True
        sweep(spill_folder(self.path))  # spill files of killed processes (spill_files.py)
        self._thread = threading.Thread(target=self._writer, name="codo-journal-writer",
                                        daemon=True)
        self._thread.start()
        _open_journals.add(self)

    def _off_for_full_disk(self, exc: BaseException, key: bytes | None) -> str | None:
        """If opening failed for a full disk: off for recording, but its upkeep works (it
        frees the space: ``journal_full_disk.py``); the warning, naming the fix (None:
        another failure)."""
        if not disk_full(exc, self.path.parent):
            return None
        self.full_disk = (f"its disk is full ({full_reason(exc)}): --prune or --clear-cache "
                          "make room")
        if self.signer is None:
            self._load_signer(key)  # a cache clear signs the rows it rewrites
        return (f"run journal off: the disk holding {self.path} is full "
                f"({full_reason(exc)}); results will not survive a restart. To make room, "
                f"{FIX}; it turns back on the next time it is opened")

    # -- recording (any thread; O(1): one tuple onto a deque) ---------------------------

    def begin_run(self) -> int:
        """A new run (status ``"running"``), committed before this returns; 0 when off."""
        if not self.enabled:
            return 0
        ok, run_id = self._call(self._do_begin)
        return run_id if ok and isinstance(run_id, int) else 0

    def define(self, run_id: int, task_id: str, name: str, fingerprint: str | None) -> None:
        self.queue_definition((run_id, task_id, name, fingerprint))

    def transition(self, run_id: int, seq: int, time: float, task_id: str, name: str,
                   previous: str | None, status: str | None, detail: str | None) -> None:
        """Queue a transition; statuses are names or ``TaskStatus`` members (queued as
        their codes, as the recorder queues them; any other status goes as it is)."""
        self.queue_transition((run_id, seq, time, task_id, name, status_code(previous),
                               status_code(status), detail))

    def queue_definition(self, row: tuple[Any, ...]) -> None:
        """``define`` with its arguments as one tuple (the recorder's path)."""
        self._queue(self._defs_q, row)

    def queue_moves(self, moves: Moves) -> None:
        """A run's last moves as it ends, as ``collect`` reads them (columns)."""
        self._queue(self._moves_q, moves)

    def queue_item_groups(self, groups: list[tuple[Any, ...]]) -> None:
        """Groups of map items (``item_journal``): an expansion, a run's last moves."""
        self._queue_many(self._groups_q, groups)

    def _queue_many(self, queue: deque[tuple[Any, ...]], rows: list[tuple[Any, ...]]) -> None:
        if self.enabled and rows:
            queue.extend(rows)  # one C call: atomic for the writer's count-based drain
            if self._idle:
                self._rouse()

    def queue_transition(self, row: tuple[Any, ...]) -> None:
        """``transition`` with its arguments as one tuple (the engine's hot path: ``_queue``
        written out, one call less per transition)."""
        if self.enabled:
            self._trans_q.append(row)
            if self._idle:
                self._rouse()

    def _rouse(self) -> None:
        """Wake the idle writer for a first record: once per idle spell, by whichever
        producer finds it idle first (every producer setting the event until the writer
        ran cost a lock and a notify for most rows of a burst)."""
        self._idle = False
        self._wake.set()

    def _queue(self, queue: deque[tuple[Any, ...]], row: tuple[Any, ...]) -> None:
        if self.enabled:
            queue.append(row)
            if self._idle:
                self._rouse()

    def result(self, run_id: int, task_id: str, name: str, fingerprint: str | None,
               blob: bytes | None, error: str | None, time: float,
               mac: bytes | None = None) -> None:
        """A completed task's result: ``blob`` is cloudpickle bytes made by the caller, or
        None with ``error`` saying why it could not be serialised (never restorable).
        ``mac`` is ``signer.result(fingerprint, blob)``, made by the caller where the
        blob was made (the worker thread); made here when not given."""
        if not self.enabled:
            return
        if blob is not None:
            if len(blob) > self.blob_limit:
                blob, error, mac = None, self.too_large(len(blob)), None
            elif mac is None:
                mac = self.signer.result(fingerprint or "", blob)  # type: ignore[union-attr]
        self._queue(self._results_q,
                    (run_id, task_id, name, fingerprint, blob, error, time, mac))

    def small_result(self, run_id: int, task_id: str, name: str, fingerprint: str | None,
                     value: Any, time: float) -> None:
        """A completed task's small result (``journal_tables.is_small``: None, a number, a
        short string or bytes), stored as itself in its run's packed row of the commit,
        covered by that row's MAC: no pickle, no row and no MAC of its own."""
        if self.enabled:
            self._small_q.append((run_id, task_id, name, fingerprint, value, time))
            if self._idle:
                self._rouse()

    def too_large(self, size: int) -> str:
        """Why a result of ``size`` bytes is not stored."""
        return (f"result of {size_text(size)} is larger than the journal's size bound "
                f"({size_text(self.blob_limit)} a result)")

    def end_run(self, run_id: int, status: str = "finished", time: float | None = None) -> None:
        """Mark a run ended: ``"finished"`` (every task ended) or ``"stopped"``; queued."""
        self._queue(self._ends_q, (_now() if time is None else time, status, run_id))

    def commit_soon(self) -> None:
        """Commit what is queued without waiting for the commit interval (results over
        the memory budget can be dropped once their rows are committed)."""
        if self.enabled:
            self._soon = True
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is committed; False on timeout or when
        some of it could not be written. True at once when the journal is off."""
        if not self.enabled:
            return True
        ok, _ = self._call(None, timeout)
        return ok

    def clear(self) -> Removal:
        """Drop every run (``%codo_reset --journal``) but those a prune keeps: a run open
        here, of another process that still runs, or holding a result dropped from
        memory (``Removal.kept`` says which and why); synchronous."""
        removal = self._upkeep("clear", False, self._do_clear)
        if self.enabled:
            with self._rlock:  # index the small results afresh
                self._forget_small()
                self._small_untrusted.clear()
        return removal

    # -- upkeep (journal_upkeep.py; ``%codo_journal``) ---------------------------------

    def info(self) -> JournalInfo:
        """The file, its size on disk (db + wal), its runs and the space each takes, as
        committed (``flush`` first for what is still queued)."""
        off = JournalInfo(str(self.path), False)
        if not self.enabled:
            if self.full_disk is None:
                return off
            try:  # off for a full disk: what it holds, read without needing space
                return replace(self._on_own_connection(lambda conn: read_info(
                    conn, self.path, False, small=self._small_space(conn),
                    spill=spill_space(spill_folder(self.path)))), full_disk=self.full_disk)
            except sqlite3.Error:
                return replace(off, full_disk=self.full_disk)
        return self._read(lambda conn: read_info(conn, self.path, small=self._small_space(conn),
                                                 spill=spill_space(spill_folder(self.path))),
                          off)

    def prune(self, keep_runs: int | None = None, older_than: str | float | None = None,
              dry_run: bool = False) -> Removal:
        """Remove the runs outside the ``keep_runs`` newest and last heard of more than
        ``older_than`` ago (``"30d"``, ``"12h"``, seconds; each option given must let a run
        go), then shrink the file. Never a run open here, of another process that still
        runs, or holding a pinned result (``Removal.kept`` says which and why).
        ``dry_run``: what would go, nothing removed. Bad options: ``ValueError``."""
        if keep_runs is None and older_than is None:
            raise ValueError("prune needs keep_runs=N and/or older_than=AGE (e.g. '30d')")
        if keep_runs is not None and (isinstance(keep_runs, bool) or
                                      not isinstance(keep_runs, int) or keep_runs < 0):
            raise ValueError(f"keep_runs must be a whole number >= 0, got {keep_runs!r}")
        age = None if older_than is None else parse_age(older_than)
        return self._upkeep("prune", dry_run, lambda: self._do_prune(keep_runs, age, dry_run))

    def clear_cache(self, name: str | None = None, dry_run: bool = False) -> Removal:
        """Remove cached results (of the tasks named ``name``, else all), then shrink the
        file; the runs and their history stay. Never a pinned result nor one of a run open
        here or of another process that still runs. ``dry_run``: nothing removed."""
        return self._upkeep("clear-cache", dry_run, lambda: self._do_clear_cache(name, dry_run))

    def _upkeep(self, what: str, dry_run: bool, action: Callable[[], Removal]) -> Removal:
        """Run a removal on the writer thread, after what is queued is committed."""
        if not self.enabled:
            if self.full_disk is not None:
                return self._upkeep_on_full_disk(what, dry_run, action)
            return Removal(what, dry_run, error="the run journal is off")
        ok, removal = self._call(action)
        if not ok or not isinstance(removal, Removal):
            return Removal(what, dry_run, error="the journal's writer did not answer")
        return removal

    def close(self) -> None:
        """Flush, stop the writer thread and close the connections (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            was_enabled, self.enabled = self.enabled, False
        _open_journals.discard(self)
        thread = self._thread
        if was_enabled and thread is not None and thread.is_alive():
            self._sync_q.append((self._stop, threading.Event(), []))
            self._wake.set()
            thread.join()
        self._close_connections()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "on" if self.enabled else "off"
        return f"<Journal {self.path} ({state}, {self.mode or 'no mode'})>"

    # -- helpers ------------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _warn(message)

    def _close_connections(self) -> None:
        with self._rlock:
            connections, self._rconn, self._wconn = (self._rconn, self._wconn), None, None
        for conn in connections:
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
