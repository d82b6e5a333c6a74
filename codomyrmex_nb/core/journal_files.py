"""Opening the journal's file: where it lives, who may read it, whether it is ours.

The path a journal takes by default (named after the script or notebook), the
folder and file modes (owner only, ignored by git), the checks a file must pass
to be used (integrity, schema, not another program's tables), WAL where the file
system allows it, and a corrupt or foreign file moved aside rather than
overwritten. A mixin of ``Journal`` (``journal``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .git_ignore import ignore_in_git
from .journal_tables import (
    SCHEMA,
    SCHEMA_VERSION,
    SIGNED_SINCE,
    add_process_columns,
    migrate_unsigned,
    migrate_v1,
)
from .signing import KEY_ENV, KeyUnavailable, Signer, key_path, load_key, process_key

FOLDER = ".codomyrmex"
BUSY_TIMEOUT = 10.0        # seconds SQLite itself waits on a lock held by another connection
RETRY_BUDGET = 60.0        # seconds the writer keeps retrying a locked database, then drops a batch
FULL_CHECK_BYTES = 32 * 2**20  # files up to this size get a full quick_check when opened

_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
# columns every version of our tables has (a file of user_version 0 with tables of these
# names but not these columns belongs to another program)
_OWN_COLUMNS = {"runs": {"run_id", "started", "ended", "status"},
                "results": {"run_id", "task_id", "fingerprint", "blob"},
                "packed": {"run_id", "kind", "rows"}}


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


def _full_check_bytes() -> int:
    return FULL_CHECK_BYTES  # read at each open (tests lower it)


class JournalFiles:
    """Mixed into ``Journal``: opening and checking its file."""

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
