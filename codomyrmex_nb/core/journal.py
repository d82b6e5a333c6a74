"""The run journal: an embedded SQLite file of definitions, transitions and results.

One ``Journal`` per file. Recording calls (``define``, ``transition``, ``result``,
``end_run``) only append a tuple to a deque (no lock; the writer is woken only when it
sits idle, by the first record of a burst: ``_rouse``); one writer thread (a daemon, its own connection) sleeps through a burst,
then drains the deques and commits them in one transaction, at most
``commit_interval`` seconds after a record was queued: ten thousand transitions are
a handful of commits. The engine's moves take another way: a reference to the moved
record onto ``_touched``, which ``collect`` (the recorder's, under the engine's lock)
turns into one transition row per record as a commit begins, its latest move (and the
small result it completed with). A map's items go their own way: a moved item's index
onto its map's list and the map onto ``_mapped``, read as one group of columns per map
(``item_journal.py``). A commit stores one transition per task (its latest,
from the state the last commit left it in: ``latest_per_task``). Readers (``last_run``, ``restorable``, ``history``,
``transitions``, ``definitions``; ``journal_reads.py``) use a second connection under a
lock and see committed rows only: a result still queued is not restorable.

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
``pinned`` result) and the free pages are given back to the file system now and then
(at most every ``vacuum_interval`` seconds). ``info``, ``prune`` and ``clear_cache``
(``%codo_journal``, planned by ``journal_upkeep.py``) remove the same way, on the writer
thread (``journal_removal.py``).
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
import operator
import os
import re
import sqlite3
import stat
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from .git_ignore import ignore_in_git
from .item_journal import fold_group, pack_group, refold_group
from .journal_reads import SMALL, Reads, RunInfo
from .journal_removal import Removals
from .journal_tables import (
    INSERT_PACKED,
    INSERT_RESULT,
    INSERT_RUN,
    SCHEMA,
    SCHEMA_VERSION,
    SIGNED_SINCE,
    TASKS,
    UPDATE_END,
    UPDATE_SUMMARY,
    Moves,
    RunSummary,
    add_process_columns,
    by_run,
    insert_result,
    insert_results,
    latest_per_task,
    migrate_unsigned,
    migrate_v1,
    pack,
    pack_columns,
    pack_tasks,
    plain_statuses,
    status_code,
    unpack,
)
from .journal_upkeep import (
    JournalInfo,
    Removal,
    parse_age,
    read_info,
)
from .sessions import current as this_process
from .signing import KEY_ENV, KeyUnavailable, Signer, key_path, load_key, process_key

__all__ = ["SMALL", "Journal", "JournalWarning", "RunInfo", "default_path"]

FOLDER = ".codomyrmex"
BUSY_TIMEOUT = 10.0        # seconds SQLite itself waits on a lock held by another connection
RETRY_BUDGET = 60.0        # seconds the writer keeps retrying a locked database, then drops a batch
MAX_BLOB = 900 * 2**20     # SQLite refuses blobs over ~1 GB; larger results are recorded as errors
MAX_BATCH = 50_000         # records held before a commit is forced, whatever the interval
FULL_CHECK_BYTES = 32 * 2**20  # files up to this size get a full quick_check when opened

_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
# columns every version of our tables has (a file of user_version 0 with tables of these
# names but not these columns belongs to another program)
_OWN_COLUMNS = {"runs": {"run_id", "started", "ended", "status"},
                "results": {"run_id", "task_id", "fingerprint", "blob"},
                "packed": {"run_id", "kind", "rows"}}
_TIME_OF_SMALL = operator.itemgetter(5)  # a queued small result's time


class JournalWarning(UserWarning):
    """The journal could not do something and fell back (always one line)."""


def _warn(message: str) -> None:
    warnings.warn(" ".join(message.split()), JournalWarning, stacklevel=3)


def _sanitise(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return name[:100]


def default_path(cwd: str | os.PathLike | None = None,
                 environ: Mapping[str, str] = os.environ, main: Any = None) -> Path:
    """``<cwd>/.codomyrmex/<name>.sqlite``, named after what runs: a script
    (``python train.py``: ``train``; ``python -m pkg.tool``: ``pkg.tool``), else the
    notebook when the kernel knows it (``JPY_SESSION_NAME``, a path: its file stem),
    else ``folder`` (``python -c``, a plain REPL, a kernel that does not know its
    notebook). The script comes first: a script started from a notebook
    (``!python train.py``) inherits its variable. ``main``: the ``__main__`` module."""
    folder = Path(os.getcwd() if cwd is None else cwd) / FOLDER
    name = _sanitise(_script_name(sys.modules.get("__main__") if main is None else main))
    if not name:
        session = (environ.get("JPY_SESSION_NAME") or "").strip()
        name = _sanitise(Path(session.replace("\\", "/")).stem) if session else ""
    return folder / f"{name or 'folder'}.sqlite"


_NOT_SCRIPTS = {"ipykernel_launcher", "ipykernel", "__main__"}


def _script_name(main: Any) -> str:
    """The running script's name from ``__main__`` ("" in a REPL, ``-c`` or a kernel,
    whose ``__main__`` has neither a file nor a module spec)."""
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name:  # python -m pkg.tool (pkg/__main__.py: pkg)
        name = name.removesuffix(".__main__")
    else:
        file = getattr(main, "__file__", None)
        name = Path(file).stem if isinstance(file, str) and not file.startswith("<") else ""
    return "" if name in _NOT_SCRIPTS else name


def _is_corruption(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code is None or (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB) \
        or type(exc) is sqlite3.DatabaseError


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class _Unusable(Exception):
    """The file exists but is not a journal we can use (corrupt, truncated, foreign)."""


def _enable_wal(conn: sqlite3.Connection) -> str:
    """Ask for WAL mode; returns the journal mode SQLite settled on (a seam for tests)."""
    return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), timeout=BUSY_TIMEOUT, isolation_level=None,
                           check_same_thread=False)


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


class Journal(Reads, Removals):
    """The run journal in one SQLite file; see the module docstring."""

    enabled: bool
    path: Path

    def __init__(self, path: str | os.PathLike, *, max_bytes: int = 256 * 2**20,
                 commit_interval: float = 0.1, vacuum_interval: float = 300.0,
                 key: bytes | None = None) -> None:
        self.path = Path(path).absolute()
        self.enabled = False
        self.mode: str | None = None  # "wal" or the fallback journal mode
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
        # back: their rows and runs are never removed (see journal_upkeep)
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

        try:
            self._prepare_files()
        except OSError as exc:
            _warn(f"run journal off: cannot write {self.path.parent} "
                  f"({exc.strerror or exc}); results will not survive a restart")
            return
        self._load_signer(key)
        try:
            self._wconn = self._open_writer()
            self._rconn = _connect(self.path)
            self._rconn.execute("PRAGMA query_only = ON")
        except (sqlite3.Error, OSError) as exc:
            self._close_connections()
            _warn(f"run journal off: cannot use {self.path} ({exc}); "
                  "results will not survive a restart")
            return
        self.enabled = True
        self._thread = threading.Thread(target=self._writer, name="codo-journal-writer",
                                        daemon=True)
        self._thread.start()
        _open_journals.add(self)

    # -- opening ---------------------------------------------------------------------

    def _prepare_files(self) -> None:
        folder = self.path.parent
        created = False
        if not folder.exists():
            try:
                folder.mkdir(mode=0o700, parents=True)
                created = True
            except FileExistsError:  # another process made it just now: use it
                if not folder.is_dir():
                    raise
            if created:
                os.chmod(folder, 0o700)
        elif folder.name == FOLDER:
            self._owner_only(folder, 0o700)
        if created or folder.name == FOLDER:
            ignore = folder / ".gitignore"
            if not ignore.exists():
                ignore.write_text("*\n")
        else:  # a custom path: its own rule if it lies in a git work tree
            message = ignore_in_git(self.path)
            if message:
                self._warn_once("git", message)
        existed = self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        if not existed:
            os.chmod(self.path, 0o600)
        for side in ("", "-wal", "-shm", "-journal"):  # made wider by hand, or by an old version
            self._owner_only(Path(f"{self.path}{side}"), 0o600)
        probe = folder / f".{self.path.name}.probe-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)  # WAL needs new files
        os.close(fd)
        os.unlink(probe)

    def _owner_only(self, path: Path, mode: int) -> None:
        """Tighten a file or folder of the journal's that others could read."""
        try:
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                os.chmod(path, mode)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._warn_once(f"mode-{path}", f"run journal {self.path.name}: could not make "
                            f"{path} owner-only ({exc.strerror or exc})")

    def _load_signer(self, key: bytes | None) -> None:
        """The user's key (made on first use); this process's own if it cannot be kept."""
        if key is None:
            try:
                self.key_file = key_path()
                key = load_key(self.key_file)
            except KeyUnavailable as exc:
                _warn(f"run journal {self.path.name}: {exc}; signing with a key of this "
                      f"process only, so no other process can restore its results (set "
                      f"{KEY_ENV} to a file you can write)")
                key, self.key_file = process_key(), None
        self.signer = Signer(key)

    def _open_writer(self) -> sqlite3.Connection:
        deadline = time.monotonic() + RETRY_BUDGET
        moved = 0
        while True:
            conn = None
            try:
                conn = _connect(self.path)
                self._check(conn)
                self._setup(conn)
                return conn
            except (_Unusable, sqlite3.DatabaseError) as exc:
                if conn is not None:
                    conn.close()
                if (isinstance(exc, _Unusable) or _is_corruption(exc)) and moved < 3:
                    self._move_aside(str(exc))
                    moved += 1
                    continue
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)  # ok-sleep: another process holds the file; SQLite has no event
                    continue
                raise

    @staticmethod
    def _check(conn: sqlite3.Connection) -> None:
        """Is this a usable journal? A full ``quick_check`` reads the whole file, so it
        runs only on files up to ``FULL_CHECK_BYTES``; a larger one is checked for
        truncation (its pages must all be there) and its schema, and deeper damage
        shows when it is used."""
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        if page_size * pages <= _full_check_bytes():
            rows = conn.execute("PRAGMA quick_check").fetchall()
            if not rows or rows[0][0] != "ok":
                raise _Unusable(f"integrity check: {rows[0][0] if rows else 'no answer'}")
        else:
            path = conn.execute("PRAGMA database_list").fetchone()[2]
            wal = f"{path}-wal"
            pending = os.path.exists(wal) and os.path.getsize(wal) > 0  # pages still there
            if path and not pending and os.path.getsize(path) < page_size * pages:
                raise _Unusable("truncated: the file is shorter than its pages")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _Unusable(f"written by a newer version (schema {version})")
        if version == 0:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables - {"runs", "packed", "results", "sqlite_sequence"}:
                raise _Unusable("not a codomyrmex journal")
            for table, needed in _OWN_COLUMNS.items():  # a table of the same name, not ours
                if table in tables and not needed <= {
                        r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
                    raise _Unusable(f"not a codomyrmex journal (its {table} table is another's)")

    def _setup(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:  # new: before any table
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # a prune shrinks the file
        try:
            mode = _enable_wal(conn).lower()
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise
            mode = f"refused: {exc}"
        if mode != "wal":
            self._warn_once("wal", f"run journal {self.path.name}: this file system does not "
                            f"support WAL ({mode}); using the rollback journal instead")
            mode = str(conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower()
        else:
            conn.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process
            conn.execute(f"PRAGMA journal_size_limit = {16 * 2**20}")  # after a big result
        self.mode = mode
        conn.execute("BEGIN IMMEDIATE")
        unsigned = 0
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # in the transaction
            if version == 1:
                migrate_v1(conn)
            if version < SIGNED_SINCE:  # written before signing: never read back
                unsigned = migrate_unsigned(conn)
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            add_process_columns(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if unsigned:
            self._untrusted("unsigned")

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, target)
        except FileNotFoundError:  # another process moved it first
            pass
        for suffix in ("-wal", "-shm", "-journal"):
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                try:
                    os.replace(side, f"{target}{suffix}")
                except FileNotFoundError:
                    pass
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        _warn(f"run journal {self.path.name} was unreadable ({reason}); moved aside to "
              f"{target.name}, starting a fresh journal")

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
        return (f"result of {size} bytes is larger than the journal's size bound "
                f"({self._max_bytes} bytes)")

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

    def clear(self) -> None:
        """Drop every run (``%codo_reset --journal``) but those holding results this
        process may still read back (``pinned``); synchronous."""
        if self.enabled:
            self._call(self._do_clear)
            with self._rlock:  # row ids start again: index the small results afresh
                self._forget_small()
                self._small_untrusted.clear()

    # -- upkeep (journal_upkeep.py; ``%codo_journal``) ---------------------------------

    def info(self) -> JournalInfo:
        """The file, its size on disk (db + wal), its runs and the space each takes, as
        committed (``flush`` first for what is still queued)."""
        off = JournalInfo(str(self.path), False)
        if not self.enabled:
            return off
        return self._read(lambda conn: read_info(conn, self.path, small=self._small_space(conn)),
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

    # -- the writer thread --------------------------------------------------------------------

    def _call(self, action: Callable[[], Any] | None,
              timeout: float | None = None) -> tuple[bool, Any]:
        """Run ``action`` on the writer thread after committing everything queued before."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False, None
        event = threading.Event()
        box: list[Any] = []
        self._sync_q.append((action, event, box))
        self._wake.set()
        if not event.wait(timeout):
            return False, None
        return box[0], box[1]

    def _writer(self) -> None:
        interval = self._interval
        wake, sync = self._wake, self._sync_q
        sources = (self._ends_q, self._defs_q, self._trans_q, self._moves_q, self._results_q,
                   self._small_q,
                   self._touched, self._mapped, self._groups_q)
        pending = 0
        last_commit = -math.inf
        while True:
            try:
                if sync:  # flush, begin_run, clear, close: after what was queued before
                    action, event, box = sync.popleft()
                    pending += self._drain()
                    # a flush (no action): what the engine recorded before it, committed,
                    # read under the engine's lock; never for a begin_run, whose caller
                    # holds that lock while it waits for this
                    flush = action is None and self.collect is not None
                    flushing, pending = pending or flush, 0
                    ok, result = False, None
                    try:
                        ok = self._commit(sync=flush) if flushing else True
                        last_commit = time.monotonic()
                        if action is not None:
                            result = action()
                    except Exception as exc:  # reported, and the caller gets ok=False
                        ok = False
                        self._warn_once(f"sync-{type(exc).__name__}",
                                        f"run journal {self.path.name}: {exc}")
                    finally:
                        box[:] = [ok, result]
                        event.set()
                    if action == self._stop:
                        return
                    continue
                pending += self._drain()
                if pending:
                    wait = last_commit + interval - time.monotonic()
                    if wait <= 0 or pending >= MAX_BATCH or self._soon:
                        pending, self._soon = 0, False
                        self._commit()
                        last_commit = time.monotonic()
                    else:  # let the burst pile up; only a sync request wakes us early
                        wake.wait(wait)
                        wake.clear()
                    continue
                self._idle = True
                if not (sync or any(sources)):  # checked after raising the flag: no lost wake
                    wake.wait()
                self._idle = False
                wake.clear()
            except Exception as exc:  # never let the writer die: warn and carry on
                self._warn_once(f"writer-{type(exc).__name__}",
                                f"run journal {self.path.name}: writer error ({exc})")

    def _drain(self) -> int:
        """Move every queued row into the batch lists; returns how many."""
        moved = _move_rows(((self._ends_q, self._ends), (self._defs_q, self._defs),
                            (self._trans_q, self._trans), (self._moves_q, self._moved),
                            (self._results_q, self._results),
                            (self._small_q, self._small), (self._groups_q, self._groups)))
        if self._ends:
            self._open_runs.difference_update(row[2] for row in self._ends)
        if self._touched or self._mapped:  # collected as the commit begins, once (_commit)
            moved += 1
        return moved

    def _drain_results(self) -> None:
        """``_drain`` for definitions and results only (not transitions: a move queued
        after ``collect`` read the records is older than what it read)."""
        _move_rows(((self._defs_q, self._defs), (self._results_q, self._results),
                    (self._small_q, self._small), (self._groups_q, self._groups)))

    def _stop(self) -> None:
        """The writer's last action (everything queued before it is committed)."""

    def _write(self, work: Callable[[sqlite3.Connection], Any], what: str,
               warn: bool = True) -> tuple[bool, Any]:
        """One write transaction on the writer connection, retried while the file is locked."""
        conn = self._wconn
        if conn is None:
            return False, None
        deadline = time.monotonic() + RETRY_BUDGET
        delay = 0.01
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                    return True, result
                except BaseException:
                    if conn.in_transaction:
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    raise
            except Exception as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(delay)  # ok-sleep: another process holds the file past the busy timeout
                    delay = min(delay * 2, 0.5)
                    continue
                if warn:
                    self._warn_once(f"write-{what}", f"run journal {self.path.name}: "
                                    f"could not write {what} ({exc})")
                return False, exc

    def _commit(self, sync: bool = False) -> bool:
        """Write every buffered record in one transaction; if that fails for a reason other
        than a lock, write them one by one and drop only the ones that fail. ``sync`` (a
        flush): the engine's moved records are read even if none is queued yet, so a
        result a worker was recording as the flush began is in it."""
        collect = self.collect
        if collect is not None and (self._touched or self._mapped or sync):
            moved, groups = collect(sync)  # under the engine's lock: none half seen
            if moved is not None:  # after the rows queued before: the latest wins
                self._moved.append(moved)
            self._groups.extend(groups)
            self._drain_results()  # rows a worker queued while collect waited for the lock
        packed, summaries = self._pack()
        batches = [(INSERT_PACKED, packed), (INSERT_RESULT, self._results),
                   (UPDATE_SUMMARY, summaries), (UPDATE_END, self._ends)]

        def together(conn: sqlite3.Connection) -> None:
            for sql, rows in batches:
                if not rows:
                    continue
                if rows is self._results:
                    insert_results(conn, rows)
                else:
                    conn.executemany(sql, rows)

        def one_by_one(conn: sqlite3.Connection) -> list[str]:
            failed = []
            for sql, rows in batches:
                for row in rows:
                    try:
                        if rows is self._results:
                            insert_result(conn, row)
                        else:
                            conn.execute(sql, row)
                    except (sqlite3.InterfaceError, sqlite3.ProgrammingError,
                            sqlite3.IntegrityError, OverflowError, TypeError, ValueError) as exc:
                        failed.append(str(exc))
            return failed

        bad = self._bad
        try:
            ok, error = self._write(together, "records", warn=False)
            if not ok and not _is_busy(error):
                ok, failed = self._write(one_by_one, "records", warn=False)
                if ok:
                    bad = bad + failed
                else:
                    error = failed
            if not ok:
                self.dropped += sum(len(rows) for _, rows in batches) + len(bad)
                self._warn_once("write-records", f"run journal {self.path.name}: could not "
                                f"write records ({error}); they are lost")
                return False
            if bad:
                self.dropped += len(bad)
                self._warn_once("bad-record", f"run journal {self.path.name}: dropped "
                                f"{len(bad)} record(s) it could not store ({bad[0]})")
                return False
            hook = self.on_commit
            if hook is not None and self._results:
                try:
                    hook(self._results)
                except Exception as exc:  # noqa: BLE001 - never stops the journal
                    self._warn_once("on-commit", f"run journal {self.path.name}: {exc}")
        finally:
            for _, _, run_id in self._ends:
                self._summaries.pop(run_id, None)
            for rows in (self._defs, self._trans, self._results, self._small, self._ends,
                         self._groups, self._moved):
                rows.clear()
            self._bad = []
        try:
            self._bound_size()
        except sqlite3.Error as exc:
            self._warn_once("bound", f"run journal {self.path.name}: size check failed ({exc})")
        return True

    def _pack(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The batch's transitions, definitions and small results as one ``"tasks"`` row
        per run (``pack_tasks``), and the summaries of the runs they touch. A run's rows
        that do not fit the columns are packed the version-3 way, one row per kind (rows
        that cannot be packed at all go to ``_bad``). The engine's moves as columns
        (``Moves``: collected, or queued as a run ended) are packed as they are, unless
        rows of the same run were queued too (the move that opened it): then as rows."""
        packed: list[tuple[Any, ...]] = []
        touched: dict[int, RunSummary] = {}
        signer = self.signer
        assert signer is not None
        trans, defs, small = by_run(self._trans), by_run(self._defs), by_run(self._small)
        groups = by_run(self._groups)
        moved: dict[Any, list[Moves]] = {}
        for batch in self._moved:
            moved.setdefault(batch.run_id, []).append(batch)
        for run_id in {**trans, **defs, **small, **groups, **moved}:
            summary = touched[run_id] = touched.get(run_id) or self._summary(run_id)
            run_trans, run_small = trans.get(run_id, []), small.get(run_id, [])
            batches = moved.get(run_id, ())
            moves = batches[0] if len(batches) == 1 and not run_trans and not run_small \
                else None
            run_defs = defs.get(run_id, [])
            if moves is None:  # mixed with queued rows (a run's opening move), which are
                for batch in batches:  # older: as rows after them
                    run_trans = run_trans + batch.transition_rows()
                    run_small = run_small + batch.small_rows()
                    run_defs = run_defs + batch.definition_rows()
                run_trans, _ = latest_per_task(run_trans)
            run_groups = [pack_group(group, fold_group(summary, group))
                          for group in groups.get(run_id, ())]
            try:  # each task's previous state: where the last commit left it
                if moves is not None:
                    previous = summary.previous_of(moves.ids) if moves.ids else None
                    blob, (ids, statuses, last), defined = pack_columns(
                        moves, run_defs, moves.small, previous, run_groups)
                else:
                    previous = summary.previous(run_trans) if run_trans else None
                    blob, (ids, statuses, last), defined = pack_tasks(
                        run_trans, run_defs, run_small, previous, run_groups)
            except (TypeError, ValueError, KeyError, OverflowError):
                blob = None
            if blob is None:
                if moves is not None:  # the columns as rows, the version-3 way
                    run_trans, run_small = moves.transition_rows(), moves.small_rows()
                    run_defs = run_defs + moves.definition_rows()
                self._pack_rows(run_id, run_trans, run_defs, run_small, packed, summary)
                self._pack_groups(run_id, run_groups, packed)
            else:  # one MAC per run per commit
                packed.append((run_id, TASKS, blob, signer.packed(run_id, TASKS, blob)))
                summary.define_columns(defined)
                summary.follow_columns(ids, statuses, last)
            if run_small:
                summary.saw(max(map(_TIME_OF_SMALL, run_small)))
            elif moves is not None and moves.small:
                summary.saw(max(moves.small[4]))
        for row in self._results:
            summary = touched[row[0]] = touched.get(row[0]) or self._summary(row[0])
            summary.saw(row[6])
        return packed, [(*s.row(), run_id) for run_id, s in touched.items()]

    def _pack_rows(self, run_id: int, transitions: list[tuple[Any, ...]],
                   definitions: list[tuple[Any, ...]], small: list[tuple[Any, ...]],
                   packed: list[tuple[Any, ...]], summary: RunSummary) -> None:
        """The version-3 way, for rows the columns cannot hold: a row per kind."""
        signer = self.signer
        assert signer is not None
        for kind, rows in (("definitions", definitions),
                           ("transitions", plain_statuses(transitions))):
            blob, rows, dropped = pack(rows)
            self._bad.extend(dropped)
            if rows:
                packed.append((run_id, kind, blob, signer.packed(run_id, kind, blob)))
                summary.define(rows) if kind == "definitions" else summary.follow(rows)
        if small:
            try:
                blob = pack_tasks([], [], small)[0]
            except (TypeError, ValueError, KeyError, OverflowError) as exc:
                self._bad.append(f"{exc}: {small[0]!r}"[:200])
                return
            packed.append((run_id, TASKS, blob, signer.packed(run_id, TASKS, blob)))

    def _pack_groups(self, run_id: int, groups: list[tuple[Any, ...]],
                     packed: list[tuple[Any, ...]]) -> None:
        """Map items of a batch whose tasks' rows did not fit the columns: a blob of
        their own (already folded into the summary)."""
        if not groups:
            return
        signer = self.signer
        assert signer is not None
        try:
            blob = pack_tasks([], [], [], None, groups)[0]
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            self._bad.append(f"{exc}: the items of {groups[0][1]!r}"[:200])
            return
        packed.append((run_id, TASKS, blob, signer.packed(run_id, TASKS, blob)))

    def _summary(self, run_id: Any) -> RunSummary:
        """The run's summary; for a run this writer has not seen yet, rebuilt from the file
        (a run resumed across an engine stop and start, or begun by another process)."""
        summary = self._summaries.get(run_id)
        if summary is None:
            summary = self._summaries[run_id] = RunSummary()
            conn = self._wconn
            if conn is not None and isinstance(run_id, int):
                row = conn.execute("SELECT last_time FROM runs WHERE run_id = ?",
                                   (run_id,)).fetchone()
                if row is not None:
                    groups: list[tuple[Any, ...]] = []  # map items: folded as groups
                    summary.define(unpack(conn, run_id, "definitions", self.signer, [])[0])
                    summary.follow(unpack(conn, run_id, "transitions", self.signer, groups)[0])
                    for group in groups:
                        refold_group(summary, group)
                    summary.saw(row[0])
        return summary

    def _do_begin(self) -> int:
        pid, started = this_process()
        key_id = self.signer.key_id  # type: ignore[union-attr]
        ok, run_id = self._write(lambda conn: conn.execute(
            INSERT_RUN, (_now(), pid, started, key_id)).lastrowid, "a new run")
        if not ok:
            raise RuntimeError("could not record a new run")
        self._open_runs.add(run_id)
        return int(run_id)

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


def _full_check_bytes() -> int:
    return FULL_CHECK_BYTES  # read at each open (tests lower it)


def _now() -> float:
    return time.time()


def _move_rows(pairs: Iterable[tuple[deque[tuple[Any, ...]], list[tuple[Any, ...]]]]) -> int:
    """Move what each queue holds now onto its list (popleft called from C, no Python frame
    per row; rows queued meanwhile wait for the next drain); returns how many."""
    moved = 0
    for source, target in pairs:
        count = len(source)
        if count:
            target.extend(islice(iter(source.popleft, None), count))
            moved += count
    return moved
