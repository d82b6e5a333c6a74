"""Reading the journal: runs, their transitions and definitions, and the results a
fingerprint finds (``restorable_hit``), from committed rows only.

Readers use their own connection (``_rconn``, under ``_rlock``), never the writer's:
a result still queued is not restorable. Nothing is unpickled or unmarshalled before
its MAC verifies under the user's key; what does not verify is skipped with one line
per file and reason (``_untrusted``). Small results are found through an index of
verified packed rows, re-checked against the file on each hit, so a row removed or
rewritten since (by a cache clear or a prune, in any process) is never served.

A mixin of ``Journal`` (``journal.py``).
"""

from __future__ import annotations

import marshal
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .journal_removal import in_chunks
from .journal_tables import NUMBER, RUN_COLUMNS, TASKS, of_kind, small_space, task_rows, unpack
from .signing import Signer

SMALL = "small"  # restorable_hit's third item for a small result (the value, not bytes)


@dataclass(frozen=True)
class RunInfo:
    """One run as committed: when, its status and how its tasks ended.

    ``status`` is ``"running"`` (also a run whose kernel died), ``"finished"`` or
    ``"stopped"``; ``tasks`` counts tasks defined or seen, ``completed`` / ``failed``
    those whose latest transition is to that state; ``last_time`` is the latest
    transition or result time recorded (the run's last sign of life); ``pid`` and
    ``process_started`` name the process that wrote it (None in older journals).
    """

    run_id: int
    started: float
    ended: float | None
    status: str
    tasks: int
    completed: int
    failed: int
    last_time: float | None = None
    pid: int | None = None
    process_started: float | None = None


class Reads:
    """``Journal``'s readers (see the module docstring)."""

    # what they use of the journal (set by ``Journal.__init__``)
    path: Path
    enabled: bool
    signer: Signer | None
    key_file: Path | None
    _rconn: sqlite3.Connection | None
    _rlock: threading.Lock
    _small_index: dict[str, list[tuple[Any, ...]]]  # fingerprint -> verified packed rows
    _small_seen: int  # the last packed rowid indexed
    _small_expansions: dict[tuple[int, str], Any]
    _small_version: int | None  # PRAGMA data_version when last indexed
    _small_untrusted: dict[str, int]  # why packed rows were skipped -> a run
    _warn_once: Callable[[str, str], None]

    def last_run(self) -> RunInfo | None:
        """The most recent run, as committed; None when there is none (or the journal is off)."""
        runs = self._runs(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY run_id DESC LIMIT 1", ())
        return runs[0] if runs else None

    def run(self, run_id: int) -> RunInfo | None:
        """One run by id, as committed."""
        runs = self._runs(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return runs[0] if runs else None

    def history(self) -> list[RunInfo]:
        """Every run, newest first."""
        return self._runs(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY run_id DESC", ())

    def transitions(self, run_id: int) -> list[tuple[Any, ...]]:
        """The run's committed transitions in order:
        ``(seq, time, task_id, name, previous, status, detail)``."""
        return [row[1:] for row in self._unpacked(run_id, "transitions")]

    def definitions(self, run_id: int) -> list[tuple[Any, ...]]:
        """The run's committed definitions in order: ``(task_id, name, fingerprint)``."""
        return [row[1:] for row in self._unpacked(run_id, "definitions")]

    def _unpacked(self, run_id: int, kind: str) -> list[tuple[Any, ...]]:
        """A run's packed rows of one kind whose MACs verify (one line if some do not)."""
        def query(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], str | None]:
            run = conn.execute("SELECT key_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if run is None:
                return [], None
            why = self._distrust(run[0])
            if why is not None:
                held = conn.execute("SELECT 1 FROM packed WHERE run_id = ? AND kind = ? LIMIT 1",
                                    (run_id, kind)).fetchone()
                return [], why if held else None
            rows, skipped = unpack(conn, run_id, kind, self.signer)  # type: ignore[arg-type]
            return rows, "damaged" if skipped else None

        rows, why = self._read(query, ([], None))
        if why is not None:
            self._untrusted(why, f"a packed row of run {run_id}'s {kind}")
        return rows

    def restorable(self, run_id: int | Sequence[int] | None,
                   fingerprint: str) -> tuple[bytes, float] | None:
        """The committed result blob, and when it was recorded, of a task with this
        fingerprint that completed in run ``run_id`` (several: in any of them, newest
        first; None: in any run, newest first); only a blob whose MAC verifies (see
        ``restorable_hit``)."""
        hit = self.restorable_signed(run_id, fingerprint)
        return None if hit is None else (hit[0], hit[1])

    def restorable_signed(self, run_id: int | Sequence[int] | None,
                          fingerprint: str) -> tuple[bytes, float, bytes | None] | None:
        """``restorable`` with the blob's MAC (to record it again without hashing it
        twice): pickled bytes whatever the kind, as before small results were packed
        (a small one is pickled here, its MAC None: its packed row's covers it)."""
        hit = self.restorable_hit(run_id, fingerprint)
        if hit is not None and hit[2] is SMALL:  # stored as itself: its bytes, as for the rest
            return pickle.dumps(hit[0], protocol=5), hit[1], None
        return hit

    def restorable_hit(self, run_id: int | Sequence[int] | None,
                       fingerprint: str) -> tuple[Any, float, Any] | None:
        """``restorable_signed``, but a small result (stored as itself in a packed row
        whose MAC verified) comes back as ``(value, time, SMALL)``, neither pickled nor
        unpickled. A blob that does not verify is never returned: the next older one may
        serve; one line per file and reason says why it was skipped. The newer of the
        two kinds wins (by run, then time)."""
        columns = ("SELECT r.blob, r.time, r.mac, r.name, (SELECT key_id FROM runs WHERE "
                   "runs.run_id = r.run_id), r.run_id FROM results AS r WHERE ")
        newest = " AND r.blob IS NOT NULL ORDER BY r.run_id DESC, r.rowid DESC"
        if run_id is None:  # index searches, run by run
            statements = [(columns + "r.run_id IN (SELECT run_id FROM runs) AND "
                           "r.fingerprint = ?" + newest, (fingerprint,))]
        elif isinstance(run_id, int):
            statements = [(columns + "r.run_id = ? AND r.fingerprint = ?" + newest,
                           (run_id, fingerprint))]
        else:  # a session's runs, newest first, a bounded number per query
            ids = sorted({int(r) for r in run_id}, reverse=True)
            statements = [(columns + f"r.run_id IN ({marks}) AND r.fingerprint = ?" + newest,
                           (*chunk, fingerprint)) for chunk, marks in in_chunks(ids)]
        skipped: dict[str, Any] = {}  # why -> the task named in the first such row

        def query(conn: sqlite3.Connection) -> tuple[Any, float, Any] | None:
            signer = self.signer
            assert signer is not None
            small = self._small_hit(conn, run_id, fingerprint)
            for sql, args in statements:
                cursor = conn.execute(sql, args)
                try:
                    for blob, when, mac, name, key_id, run in cursor:
                        if small is not None and (small[0], small[2]) >= (run, when):
                            return small[1], small[2], SMALL
                        why = self._distrust(key_id)
                        if why is None and signer.result_ok(fingerprint, blob, mac):
                            return bytes(blob), when, bytes(mac)
                        skipped.setdefault(why or "damaged", name)
                finally:
                    cursor.close()
            return None if small is None else (small[1], small[2], SMALL)

        hit = self._read(query, None)
        if hit is None:  # a skipped packed row may have held it
            for why, run in self._small_untrusted.items():
                skipped.setdefault(why, f"packed in run {run}")
        for why, name in skipped.items():
            shown = repr(str(name))[:60]
            self._untrusted(why, f"the stored result of task {shown}")
        return hit
    def _small_hit(self, conn: sqlite3.Connection, run_id: int | Sequence[int] | None,
                   fingerprint: str, fresh: bool = False) -> tuple[int, Any, float] | None:
        """The newest small result (run, value, time) of this fingerprint in the runs asked
        for, from the committed ``"tasks"`` rows. They are read once each, as a lookup
        first needs them (only a resume or a ``cache=True`` task looks), and only once
        their run's key and the row's MAC verify; they stay indexed by fingerprint while
        the journal is open (``_small_index``; rows committed since are read as the file
        changes; a row pruned or rewritten since, by any process, is never returned: its
        MAC is checked again, and the index read anew if it changed)."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._small_version:
            self._small_version = version
            self._index_small(conn)
        entries = self._small_index.get(fingerprint)
        if not entries:
            return None
        if run_id is None:
            wanted = None
        else:
            wanted = {run_id} if isinstance(run_id, int) else {int(r) for r in run_id}
        best = None
        for entry in entries:  # (run, rowid, value, time, mac); newest: highest run, then rowid
            if (wanted is None or entry[0] in wanted) and (best is None or entry[:2] > best[:2]):
                if conn.execute("SELECT 1 FROM packed WHERE rowid = ? AND mac = ?",
                                (entry[1], entry[4])).fetchone():
                    best = entry
                elif not fresh:  # its row is gone or was rewritten (a cache clear): read anew
                    self._forget_small()
                    self._index_small(conn)
                    return self._small_hit(conn, run_id, fingerprint, fresh=True)
        return None if best is None else (best[0], best[2], best[3])

    def _forget_small(self) -> None:
        """Index the small results afresh at the next lookup (rows went or were rewritten)."""
        self._small_index, self._small_seen, self._small_expansions = {}, 0, {}

    def _index_small(self, conn: sqlite3.Connection) -> None:
        """Index the small results of ``"tasks"`` rows committed since the last look."""
        top = conn.execute("SELECT max(rowid) FROM packed").fetchone()[0] or 0
        if top < self._small_seen:  # rows were removed and their ids may come again
            self._forget_small()
            self._small_untrusted.clear()
        index = self._small_index
        for rowid, run, _, mac, columns in self._verified_tasks(conn, self._small_seen):
            self._small_seen = rowid
            if columns is None:
                continue
            for _, _, _, fp, value, when in task_rows(run, columns, "results",
                                                      expansions=self._small_expansions):
                if fp is not None:
                    index.setdefault(fp, []).append((run, rowid, value, when, mac))

    def _verified_tasks(self, conn: sqlite3.Connection, after: int = 0
                        ) -> Iterator[tuple[int, int, bytes, bytes, tuple[Any, ...] | None]]:
        """(rowid, run, blob, mac, columns) of the ``"tasks"`` rows after ``after``, in
        order; columns None for a row whose run's key or MAC does not verify (then never
        unmarshalled), with why in ``_small_untrusted``."""
        signer = self.signer
        assert signer is not None
        keys = dict(conn.execute("SELECT run_id, key_id FROM runs"))
        for rowid, run, blob, mac in conn.execute(
                "SELECT rowid, run_id, rows, mac FROM packed WHERE rowid > ? AND kind = ? "
                "ORDER BY rowid", (after, TASKS)).fetchall():
            why = self._distrust(keys.get(run))
            if why is None and not signer.packed_ok(run, TASKS, blob, mac):
                why = "damaged"
            if why is not None:
                self._small_untrusted.setdefault(why, run)  # said when a lookup then misses
                yield rowid, run, blob, mac, None
            else:
                yield rowid, run, blob, mac, marshal.loads(blob)

    def _small_space(self, conn: sqlite3.Connection) -> dict[int, tuple[int, int]]:
        """Run id -> (small results held in its verified packed rows, their bytes)."""
        space: dict[int, tuple[int, int]] = {}
        for _, run, _, _, columns in self._verified_tasks(conn):
            count, size = small_space(columns) if columns is not None else (0, 0)
            if count:
                before = space.get(run, (0, 0))
                space[run] = (before[0] + count, before[1] + size)
        return space

    def _distrust(self, key_id: str | None) -> str | None:
        """Why the rows of a run written under ``key_id`` are never read back (or None)."""
        if key_id is None:
            return "unsigned"
        signer = self.signer
        return None if signer is not None and key_id == signer.key_id else "foreign"

    def _untrusted(self, why: str, what: str = "a stored blob") -> None:
        """One line per file and reason: blobs skipped unread, and why."""
        if why == "unsigned":
            text = (f"run journal {self.path} was written before journals were signed: "
                    "nothing is restored from its earlier runs (their history is kept)")
        elif why == "foreign":
            key = self.key_file or "this process's own key"
            text = (f"run journal {self.path} was signed with another key than {key} (that "
                    "key file is new, or the journal comes from elsewhere): nothing is "
                    "restored from those runs; a task found in no other run runs again")
        else:
            text = (f"run journal {self.path}: {what} does not verify (damaged on disk, or "
                    "altered): it is not read back" +
                    (", the task runs again" if "result" in what else ""))
        self._warn_once(f"untrusted-{why}", text)

    def _runs(self, sql: str, args: tuple[Any, ...]) -> list[RunInfo]:
        """Runs with their summaries, kept by the writer in the runs rows themselves. A row
        whose fields are not of their kinds (edited by hand, or another program's table)
        is left out, with one line: the history and every view of it stay readable."""
        def query(conn: sqlite3.Connection) -> list[RunInfo]:
            runs, bad = [], []
            for row in conn.execute(sql, args):
                if _sound(row):
                    runs.append(RunInfo(*row))
                else:
                    bad.append(row[0])
            if bad:
                self._warn_once("bad-runs", f"run journal {self.path.name}: run(s) "
                                f"{', '.join(map(str, bad[:5]))} have damaged fields (edited "
                                "by hand?); left out of the history")
            return runs
        return self._read(query, [])

    def _read(self, query: Callable[[sqlite3.Connection], Any], default: Any) -> Any:
        if not self.enabled or self._rconn is None:
            return default
        with self._rlock:
            try:
                return query(self._rconn)
            except sqlite3.Error as exc:
                self._warn_once("read", f"run journal {self.path.name}: could not read ({exc})")
                return default


_MAYBE = (*NUMBER, type(None))
_RUN_KINDS = (int, NUMBER, _MAYBE, str, int, int, int, _MAYBE, (int, type(None)),
              _MAYBE)  # RUN_COLUMNS, in order (``RunInfo``)


def _sound(row: tuple[Any, ...]) -> bool:
    """Each field of a runs row is of its kind."""
    return len(row) == len(_RUN_KINDS) and all(
        of_kind(value, kind) for value, kind in zip(row, _RUN_KINDS, strict=True))
