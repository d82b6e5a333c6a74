"""The journal's tables: the schema, packed rows, run summaries and result inserts.

``journal.py`` owns the file, its writer thread and its readers; this module says
how a run is laid out in the file. Results are one row each, looked up by
(run, fingerprint). Transitions and definitions are read whole per run, never
searched, so each commit stores them *packed*: one ``packed`` row per run and kind
holding the commit's rows as a ``marshal`` blob (format version 4, readable by every
Python 3 since 3.4; plain ints, floats, strings and None only). A run's summary
(tasks seen, how many ended completed or failed by their latest transition, the
last time) is kept in its ``runs`` row as the writer folds its rows in
(``RunSummary``). ``migrate_v1`` converts a version-1 file (a row per transition).

**Signed (version 3).** Every result and packed row carries a MAC (``signing.py``) in
its ``mac`` column and each run the id of the key it was written with (``key_id``);
``unpack`` unmarshals only rows whose MAC verifies. ``migrate_unsigned`` brings a file
written before signing (version 1 or 2) to this layout: its old rows keep no MAC and
are never read back (their runs' summaries stay, for the history).
"""

from __future__ import annotations

import functools
import marshal
import sqlite3
from typing import Any

from .signing import Signer

SCHEMA_VERSION = 3         # 3: signed blobs (mac columns, runs.key_id)
MARSHAL_VERSION = 4        # packed rows: a format every Python 3 since 3.4 reads
CHUNK = 2**20              # a larger blob is written in chunks, letting other threads run

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs(
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, ended REAL, status TEXT,
    tasks INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0, last_time REAL,
    key_id TEXT);
CREATE TABLE IF NOT EXISTS packed(run_id INTEGER, kind TEXT, rows BLOB,
    mac BLOB);
CREATE TABLE IF NOT EXISTS results(
    run_id INTEGER, task_id TEXT, name TEXT, fingerprint TEXT, blob BLOB, error TEXT, time REAL,
    mac BLOB);
CREATE INDEX IF NOT EXISTS packed_run ON packed(run_id);
CREATE INDEX IF NOT EXISTS results_run_fingerprint ON results(run_id, fingerprint);
DROP INDEX IF EXISTS results_fingerprint;
"""
TABLES = ("packed", "results", "runs")  # what a run is made of (pruning, clearing)

INSERT_PACKED = "INSERT INTO packed VALUES (?, ?, ?, ?)"
UPDATE_SUMMARY = "UPDATE runs SET tasks = ?, completed = ?, failed = ?, last_time = ? " \
    "WHERE run_id = ?"
RUN_COLUMNS = "run_id, started, ended, status, tasks, completed, failed, last_time, pid, pstarted"
INSERT_RESULT = "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_RESULT_SPACE = "INSERT INTO results VALUES (?, ?, ?, ?, zeroblob(?), ?, ?, ?)"
UPDATE_END = "UPDATE runs SET ended = ?, status = ? WHERE run_id = ?"


class RunSummary:
    """A run's summary as the writer folds its rows in: each task's latest status."""

    __slots__ = ("status", "completed", "failed", "last")

    def __init__(self) -> None:
        self.status: dict[Any, Any] = {}
        self.completed = self.failed = 0
        self.last: float | None = None

    def define(self, rows: list[tuple[Any, ...]]) -> None:
        status = self.status
        for row in rows:
            status.setdefault(row[1], None)

    def follow(self, rows: list[tuple[Any, ...]]) -> None:
        """Transitions in order: (run_id, seq, time, task_id, name, previous, status, detail)."""
        status, last = self.status, self.last
        completed = failed = 0
        for row in rows:
            new = row[6]
            old = status.get(row[3])
            if old == "completed":
                completed -= 1
            elif old == "failed":
                failed -= 1
            if new == "completed":
                completed += 1
            elif new == "failed":
                failed += 1
            status[row[3]] = new
            when = row[2]
            if when is not None and (last is None or when > last):
                last = when
        self.completed += completed
        self.failed += failed
        self.last = last

    def saw(self, when: float | None) -> None:
        if when is not None and (self.last is None or when > self.last):
            self.last = when

    def row(self) -> tuple[int, int, int, float | None]:
        return len(self.status), self.completed, self.failed, self.last


# Which process wrote a run (``sessions.py``): its pid and start time. Added to a file
# made before these columns existed when it is opened (older rows: NULL, no process).
RUN_PROCESS_COLUMNS = ("pid INTEGER", "pstarted REAL")
INSERT_RUN = "INSERT INTO runs(started, ended, status, pid, pstarted, key_id) " \
    "VALUES (?, NULL, 'running', ?, ?, ?)"


def add_process_columns(conn: sqlite3.Connection) -> None:
    """Add the runs' process columns where they are missing (inside the caller's transaction)."""
    _add_columns(conn, "runs", RUN_PROCESS_COLUMNS)


def _add_columns(conn: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> None:
    """Add those of ``columns`` (``"name TYPE"``) that ``table`` lacks, inside the caller's
    transaction; none to a table not there (``SCHEMA`` makes it whole)."""
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for column in columns:
        if present and column.split()[0] not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def unpack(conn: sqlite3.Connection, run_id: int, kind: str,
           signer: Signer) -> tuple[list[tuple[Any, ...]], int]:
    """A run's packed rows of one kind, in the order they were written, and how many
    packed blobs were skipped because their MAC does not verify (never unmarshalled)."""
    rows: list[tuple[Any, ...]] = []
    skipped = 0
    for blob, mac in conn.execute("SELECT rows, mac FROM packed WHERE run_id = ? AND kind = ? "
                                  "ORDER BY rowid", (run_id, kind)):
        if signer.packed_ok(run_id, kind, blob, mac):
            rows.extend(marshal.loads(blob))
        else:
            skipped += 1
    return rows, skipped


def migrate_v1(conn: sqlite3.Connection) -> None:
    """Convert a version-1 journal (one row per transition and definition) in place, inside
    the caller's transaction: rows are packed per run, summaries computed once."""
    _add_columns(conn, "runs", ("tasks INTEGER NOT NULL DEFAULT 0",
                                "completed INTEGER NOT NULL DEFAULT 0",
                                "failed INTEGER NOT NULL DEFAULT 0", "last_time REAL"))
    conn.execute("CREATE TABLE IF NOT EXISTS packed(run_id INTEGER, kind TEXT, rows BLOB)")
    summaries: dict[int, RunSummary] = {}
    for kind, sql in (("definitions", "SELECT run_id, task_id, name, fingerprint FROM "
                                      "definitions ORDER BY run_id, rowid"),
                      ("transitions", "SELECT run_id, seq, time, task_id, name, previous, "
                                      "lower(status), detail FROM transitions "
                                      "ORDER BY run_id, seq, rowid")):
        for run_id, rows in by_run(conn.execute(sql).fetchall()).items():
            conn.execute("INSERT INTO packed(run_id, kind, rows) VALUES (?, ?, ?)",
                         (run_id, kind, marshal.dumps(rows, MARSHAL_VERSION)))
            summary = summaries.setdefault(run_id, RunSummary())
            summary.define(rows) if kind == "definitions" else summary.follow(rows)
    for run_id, last in conn.execute("SELECT run_id, max(time) FROM results GROUP BY run_id"
                                     ).fetchall():
        summaries.setdefault(run_id, RunSummary()).saw(last)
    conn.executemany(UPDATE_SUMMARY, [(*s.row(), run_id) for run_id, s in summaries.items()])
    conn.execute("DROP TABLE transitions")
    conn.execute("DROP TABLE definitions")
    conn.execute("DROP INDEX IF EXISTS results_run")  # lookups go by run and fingerprint


def migrate_unsigned(conn: sqlite3.Connection) -> int:
    """Bring a journal written before signing (version 1, converted first, or 2) to the
    signed layout, inside the caller's transaction; returns how many runs it holds. Its
    rows get no MAC: they were not written under this user's key, so nothing in them is
    ever unpickled or unmarshalled again (the runs' summaries stay, for the history)."""
    for table, column in (("runs", "key_id TEXT"), ("packed", "mac BLOB"),
                          ("results", "mac BLOB")):
        _add_columns(conn, table, (column,))
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
        return 0
    return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


RESULTS_PER_STATEMENT = 256  # rows bound to one multi-row INSERT (8 parameters each)


def insert_results(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Result rows, many per statement: ``executemany`` steps once per row and the sqlite3
    module lets go of the GIL at every step, so a commit of ten thousand small results
    handed the GIL back and forth ten thousand times while the workers wanted it."""
    small = [row for row in rows if row[4] is None or len(row[4]) <= CHUNK]
    if len(small) < len(rows):
        for row in rows:
            if row[4] is not None and len(row[4]) > CHUNK:
                insert_result(conn, row)
    for start in range(0, len(small), RESULTS_PER_STATEMENT):
        chunk = small[start:start + RESULTS_PER_STATEMENT]
        conn.execute(_insert_many(len(chunk)), [value for row in chunk for value in row])


@functools.lru_cache(maxsize=8)
def _insert_many(count: int) -> str:
    return "INSERT INTO results VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * count)


def insert_result(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """One result row; a large blob goes in by chunks, each copied without the GIL (binding
    a 100 MB blob at once would hold every other thread for tens of milliseconds)."""
    blob = row[4]
    if blob is None or len(blob) <= CHUNK:
        conn.execute(INSERT_RESULT, row)
        return
    rowid = conn.execute(_INSERT_RESULT_SPACE, (*row[:4], len(blob), *row[5:])).lastrowid
    view = memoryview(blob).cast("B")
    with conn.blobopen("results", "blob", rowid) as target:
        for offset in range(0, len(view), CHUNK):
            target.write(view[offset:offset + CHUNK])


def by_run(rows: list[tuple[Any, ...]]) -> dict[Any, list[tuple[Any, ...]]]:
    """Rows (each starting with its run id) grouped by run, in order."""
    first = rows[0][0] if rows else None
    if all(row[0] == first for row in rows):  # the usual case: one run, no copying
        return {first: rows} if rows else {}
    grouped: dict[Any, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    return grouped


def pack(rows: list[tuple[Any, ...]]) -> tuple[bytes, list[tuple[Any, ...]], list[str]]:
    """(blob, rows kept, why the others were dropped): a row with anything but plain
    values, or an unhashable task id (it keys the run's summary), is dropped alone."""
    try:
        return marshal.dumps(rows, MARSHAL_VERSION), rows, []
    except ValueError:
        kept, dropped = [], []
        for row in rows:
            try:
                marshal.dumps(row, MARSHAL_VERSION)
                hash(row[1])
                kept.append(row)
            except (ValueError, TypeError) as exc:
                dropped.append(f"{exc}: {row!r}"[:200])
        return marshal.dumps(kept, MARSHAL_VERSION), kept, dropped
