"""A journal on a full disk: off for recording, yet its upkeep can still free the space.

Once the disk holding the journal is full, SQLite cannot open it as usual: a
WAL-mode file needs its ``-shm`` (``SQLITE_IOERR_SHMSIZE`` when it cannot grow) and
every write needs new ``-wal`` frames (``SQLITE_FULL``). The journal then turns off,
and its message names the fix: the upkeep commands. They would be off too, and the
user left to delete the file by hand, so a journal turned off for a full disk keeps
``full_disk`` (why) and runs ``prune``, ``clear_cache``, ``clear`` and ``info`` on a
connection of their own that needs no new space: the exclusive locking mode, taken
before the file is read, keeps the WAL index in memory (no ``-shm``; it also waits
for no other process: while one has the file open, the upkeep says the file is
busy), and the rollback journal is kept in memory, so a removal rewrites pages in
place and the vacuum after it truncates the file. Nothing is written beside the
file. The price: a process killed in the middle of that one transaction may leave
the file damaged, and the next open then moves it aside (never deletes it), as it
does any damaged file. Once space is freed the journal turns back on the next time
it is opened (WAL again: ``journal_files._setup``).
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .journal_files import _connect
from .journal_upkeep import Removal
from .sizes import MB

__all__ = ["FIX", "FullDiskUpkeep", "disk_full", "full_reason"]

_SQLITE_IOERR, _SQLITE_FULL = 10, 13
# an I/O error with less than this free on the journal's disk is taken for a full disk
# (SQLite says SQLITE_IOERR_SHMSIZE, not SQLITE_FULL, when it cannot grow the -shm file)
NEARLY_FULL = MB

# the upkeep commands that free space in the journal (how the user gets out of a full disk)
FIX = ("remove old runs or cached results with %codo_journal --prune --keep-runs N or --clear-cache "
       "(orchestrator.prune_journal(keep_runs=N), clear_journal_cache()) or "
       "%codo_reset --journal")


def disk_full(exc: BaseException, folder: Path) -> bool:
    """Did opening or writing the journal in ``folder`` fail for want of disk space?"""
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None:
        return False
    if code & 0xFF == _SQLITE_FULL:
        return True
    if code & 0xFF != _SQLITE_IOERR:
        return False
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL
    except OSError:
        return False


def full_reason(exc: BaseException) -> str:
    """What the system or SQLite said, for a message on a full disk."""
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        return exc.strerror or str(exc)
    return f"no space left on device; SQLite: {exc}"


class FullDiskUpkeep:
    """Mixed into ``Journal``: its upkeep while it is off for a full disk."""

    path: Path
    mode: str | None
    full_disk: str | None
    room_made: bool  # an upkeep on the full disk freed space: open it again to turn it on
    _wconn: sqlite3.Connection | None
    _closed: bool
    _close_lock: threading.Lock

    def _on_own_connection(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """``work(conn)`` on a connection that needs no new space on disk (see the
        module docstring), closed after it, one at a time; raises what SQLite raises."""
        with self._close_lock:
            if self._closed:
                raise sqlite3.OperationalError("the journal is closed")
            conn = _connect(self.path)
            try:
                conn.execute("PRAGMA locking_mode = EXCLUSIVE")  # before any read: no -shm
                mode = str(conn.execute("PRAGMA journal_mode = MEMORY").fetchone()[0]).lower()
                if mode != "memory":  # still WAL: its frames could not be checkpointed
                    raise sqlite3.OperationalError(
                        "its -wal holds data the disk has no room to write back; free "
                        "some space on it first")
                self._wconn, self.mode = conn, mode
                return work(conn)
            finally:
                self._wconn = None
                conn.close()

    def _upkeep_on_full_disk(self, what: str, dry_run: bool,
                             action: Callable[[], Removal]) -> Removal:
        """A prune, cache clear or clear of a journal off for a full disk (``action``,
        as the writer thread runs it), on its own connection."""
        try:
            removal = self._on_own_connection(lambda conn: action())
        except sqlite3.Error as exc:
            return Removal(what, dry_run, error=f"the disk is full and the journal could "
                                                f"not be opened to free space ({exc})")
        if removal.error is None and not dry_run and removal.went_text() is not None:
            room = "there is room again: it turns back on the next time it is opened"
            removal.note = "the journal is off; " + room if removal.note is None else \
                f"{removal.note}; the journal is off; {room}"
            self.full_disk = f"its disk was full; {room}"
            self.room_made = True
        return removal
