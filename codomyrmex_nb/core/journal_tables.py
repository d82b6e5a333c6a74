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

**Columns (version 4).** Since version 4 a commit stores one ``packed`` row per run of
kind ``"tasks"`` (``pack_tasks``): its transitions, definitions and small results as
columns, not rows. Sequence numbers and times are little-endian machine numbers (packed
with ``struct``), statuses a byte each (``STATUSES`` codes; the engine queues the codes,
so a queued row holds plain values only and the garbage collector stops tracking it),
task ids and names ``marshal``'s shared references: each column is taken by one C-level
pass over the queued rows, and no row is marshalled or folded into the summary in
Python (the summary folds each touched task's latest code with C-level dict and
``Counter`` calls, walking the commit's rows, never the whole run's). Reading
back rebuilds exactly the rows ``transitions`` and ``definitions`` gave before. A
*small result* (``SMALL_TYPES``: None, a bool, a number, a string or bytes of at most
``SMALL_MAX`` characters) is stored in that row as the value itself, with its task,
fingerprint and time: no pickle, no row of its own, no result MAC (the packed row's MAC
covers it; nothing in it is unmarshalled before that MAC verifies). A batch the columns
cannot hold (a status outside ``STATUSES``, a time that is not a number) is written the
version-3 way, one ``"transitions"`` / ``"definitions"`` row each, which every reader
still reads: a version-3 file needs no conversion. A cache clear removes small results
by rewriting their (verified) row without them, signed again (``without_small``).

**Map items (version 5).** A commit whose map items moved stores a ``"tasks"`` blob of
layout 2: layout 1's columns and one more, a group of columns per map
(``item_journal.py``: item indices, seqs, times, statuses, small results, or the
expansion's fingerprints), not a row, an id and a name per item. Readers get the same
rows back as when items were journaled like tasks; the summary follows each map's items
a byte each (``RunSummary.follow_items``).
"""

from __future__ import annotations

import functools
import marshal
import operator
import sqlite3
import struct
import sys
from array import array
from collections import Counter, deque
from collections.abc import Callable
from itertools import repeat
from typing import Any, NamedTuple

from .model import TaskStatus
from .signing import Signer

SCHEMA_VERSION = 6         # 3: signed blobs (mac columns, runs.key_id); 4: "tasks" columns;
# 5: "tasks" blobs of layout 2 (map items as groups). A version-4 file needs no conversion:
# its blobs are read as they are; the number only keeps an older engine from reading a
# layout-2 blob as nothing (it refuses the file, saying it was written by a newer version).
# 6: a new file's ``results`` table has ``blob`` last (``blob_last``); an older engine
# inserts by position, so it must refuse such a file. An older file keeps its order.
SIGNED_SINCE = 3           # files of an older version were written before signing
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
    run_id INTEGER, task_id TEXT, name TEXT, fingerprint TEXT, error TEXT, time REAL,
    mac BLOB, blob BLOB);
CREATE INDEX IF NOT EXISTS packed_run ON packed(run_id);
CREATE INDEX IF NOT EXISTS results_run_fingerprint ON results(run_id, fingerprint);
DROP INDEX IF EXISTS results_fingerprint;
"""
TABLES = ("packed", "results", "runs")  # what a run is made of (pruning, clearing)

INSERT_PACKED = "INSERT INTO packed VALUES (?, ?, ?, ?)"
TASKS = "tasks"            # the packed kind of version 4: transitions, definitions, small results
LAYOUT = 1                 # the first item of a "tasks" blob: how its columns are laid out
LAYOUT_ITEMS = 2           # layout 1 and a last column: groups of map items (item_journal.py)
_LAYOUTS = (LAYOUT, LAYOUT_ITEMS)
# Status codes of the "tasks" columns (a byte each): fixed for good, append only.
STATUSES = (None, "pending", "ready", "running", "completed", "failed", "cancelled", "skipped")
_CODE: dict[Any, int] = {**{s: i for i, s in enumerate(STATUSES)},
                         **{s: STATUSES.index(s.value) for s in TaskStatus}}
_NAME: dict[Any, Any] = {**{s: s for s in STATUSES}, **{s: s.value for s in TaskStatus},
                         **dict(enumerate(STATUSES))}  # a code (as queued) -> its name
SMALL_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})
# small whatever their value: a map item's result of these types is not prepared for the
# journal by its worker; the journal reads it from the item with its last move
TRIVIAL_TYPES = frozenset({type(None), bool, float, complex})
SMALL_MAX = 256            # characters of a small string or bytes; bytes of a small int
_CODES = bytes(range(len(STATUSES)))
_AS_CODE = {**_CODE, **{code: code for code in range(len(STATUSES))}}  # a name or a code
_COMPLETED, _FAILED = STATUSES.index("completed"), STATUSES.index("failed")
_UNSEEN = 255              # RunSummary.items: an item not defined nor seen yet
_UNSEEN_BYTE = bytes([_UNSEEN])
_SWAP = sys.byteorder != "little"  # the columns are little-endian whatever the machine
UPDATE_SUMMARY = "UPDATE runs SET tasks = ?, completed = ?, failed = ?, last_time = ? " \
    "WHERE run_id = ?"
RUN_COLUMNS = "run_id, started, ended, status, tasks, completed, failed, last_time, pid, pstarted"
# a result row as the journal queues it, whatever the order of the file's columns
RESULT_COLUMNS = "results(run_id, task_id, name, fingerprint, blob, error, time, mac)"
INSERT_RESULT = f"INSERT INTO {RESULT_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
NUMBER = (int, float)


def of_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    """``isinstance``, a bool not counting as a number: is a field of a runs row (edited by
    hand, perhaps) of the kind the journal wrote there?"""
    return isinstance(value, kind) and value.__class__ is not bool
_INSERT_RESULT_SPACE = f"INSERT INTO {RESULT_COLUMNS} VALUES (?, ?, ?, ?, zeroblob(?), ?, ?, ?)"
UPDATE_END = "UPDATE runs SET ended = ?, status = ? WHERE run_id = ?"


class RunSummary:
    """A run's summary as the writer folds its rows in: each task's latest status."""

    __slots__ = ("status", "completed", "failed", "last", "items")

    def __init__(self) -> None:
        self.status: dict[Any, Any] = {}
        # map id -> a byte per item: its latest code, _UNSEEN for one not seen yet
        self.items: dict[Any, bytearray] = {}
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
            if old == "completed" or old == _COMPLETED:  # a name, or a code (follow_columns)
                completed -= 1
            elif old == "failed" or old == _FAILED:
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

    def define_columns(self, ids: tuple[Any, ...]) -> None:
        """The commit's defined tasks, added with no status where not seen yet. The
        difference is taken with the dict itself, which walks this commit's ids; one
        with its keys view walked every task of the run, at every commit."""
        status = self.status
        status.update(dict.fromkeys(set(ids).difference(status)))

    def follow_columns(self, ids: tuple[Any, ...], codes: bytes, last: float | None) -> None:
        """``follow`` on columns (task ids, their new status codes, the latest time), at C
        speed: the counts move by what the touched tasks' latest status was and is (a
        code, or a name where version-3 rows set it)."""
        status = self.status
        latest = dict(zip(ids, codes, strict=False))  # each touched task's latest code
        before = Counter(map(status.get, latest))
        status.update(latest)
        after = Counter(latest.values())
        self.completed += after[_COMPLETED] + after["completed"] \
            - before[_COMPLETED] - before["completed"]
        self.failed += after[_FAILED] + after["failed"] - before[_FAILED] - before["failed"]
        self.saw(last)

    def previous(self, rows: list[tuple[Any, ...]]) -> bytes:
        """The status codes the tasks of ``rows`` had at the last commit (None: not seen),
        as ``pack_tasks`` takes a previous-status column. KeyError for a status the
        codes do not hold (a version-3 row's): the caller writes that batch the old way."""
        return self.previous_of(tuple(map(_T_ID, rows)))

    def previous_of(self, ids: tuple[Any, ...]) -> bytes:
        """``previous`` for a column of task ids."""
        return bytes(map(_AS_CODE.__getitem__, map(self.status.get, ids)))

    def saw(self, when: float | None) -> None:
        if when is not None and (self.last is None or when > self.last):
            self.last = when

    def _item_codes(self, map_id: Any, size: int) -> bytearray:
        codes = self.items.get(map_id)
        if codes is None:
            codes = self.items[map_id] = bytearray()
        if len(codes) < size:
            codes.extend(_UNSEEN_BYTE * (size - len(codes)))
        return codes

    def define_items(self, map_id: Any, count: int) -> None:
        """A map's expansion: its ``count`` items are tasks of the run, with no status yet."""
        codes = self._item_codes(map_id, count)
        codes[:count] = codes[:count].replace(_UNSEEN_BYTE, b"\0")

    def follow_items(self, map_id: Any, indices: Any, codes: bytes,
                     last: float | None) -> bytes:
        """``follow_columns`` for a group of one map's items (each index once); returns the
        codes they had before (0 for an item not seen), as its packed group keeps them."""
        if not indices:
            return b""
        held = self._item_codes(map_id, max(indices) + 1)
        previous = bytes(map(held.__getitem__, indices)).replace(_UNSEEN_BYTE, b"\0")
        deque(map(held.__setitem__, indices, codes), 0)
        self.completed += codes.count(_COMPLETED) - previous.count(_COMPLETED)
        self.failed += codes.count(_FAILED) - previous.count(_FAILED)
        self.saw(last)
        return previous

    def row(self) -> tuple[int, int, int, float | None]:
        items = sum(len(codes) - codes.count(_UNSEEN) for codes in self.items.values())
        return len(self.status) + items, self.completed, self.failed, self.last


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


def unpack(conn: sqlite3.Connection, run_id: int, kind: str, signer: Signer,
           groups: list[tuple[Any, ...]] | None = None) -> tuple[list[tuple[Any, ...]], int]:
    """A run's rows of one kind (``"transitions"``, ``"definitions"``, or ``"results"``:
    its small results), in the order they were written, each starting with the run id,
    from version-3 rows of that kind and ``"tasks"`` columns alike; and how many packed
    blobs were skipped because their MAC does not verify (never unmarshalled). Map items
    come as rows too, unless ``groups`` is given: then their packed groups go into it."""
    rows: list[tuple[Any, ...]] = []
    skipped = 0
    expansions: dict[tuple[int, str], Any] = {}  # item fingerprints, as the blobs are read
    for stored, blob, mac in conn.execute(
            "SELECT kind, rows, mac FROM packed WHERE run_id = ? AND kind IN (?, ?) "
            "ORDER BY rowid", (run_id, kind, TASKS)):
        if not signer.packed_ok(run_id, stored, blob, mac):
            skipped += 1
        elif stored == TASKS:
            columns = marshal.loads(blob)
            rows.extend(task_rows(run_id, columns, kind, groups is None, expansions))
            if groups is not None and columns and columns[0] == LAYOUT_ITEMS:
                groups.extend(columns[-1])
        else:
            rows.extend(marshal.loads(blob))
    return rows, skipped


def pack_tasks(transitions: list[tuple[Any, ...]], definitions: list[tuple[Any, ...]],
               small: list[tuple[Any, ...]], previous: bytes | None = None,
               groups: list[tuple[Any, ...]] | tuple[()] = (),
               ) -> tuple[bytes, tuple[Any, ...], tuple[Any, ...]]:
    """One run's rows of a commit as a ``"tasks"`` blob, with the columns the summary
    folds: (blob, (task ids, status codes, latest time) of the transitions, definition
    task ids). ``groups``: map items, packed (``item_journal.pack_group``): layout 2.
    Raises (TypeError, ValueError, KeyError, OverflowError) when the rows do not fit the
    columns; the caller then writes them the version-3 way."""
    # Each column is taken by its own pass at C speed: ``zip(*rows)`` would make an
    # iterator object per row, tens of thousands of objects the garbage collector counts
    # and, alive while it runs, carries into its older generations.
    moves = None
    if transitions:
        moves = Moves(None, tuple(map(_T_ID, transitions)), tuple(map(_T_NAME, transitions)),
                      tuple(map(_T_SEQ, transitions)), tuple(map(_T_TIME, transitions)),
                      bytes(map(_T_STATUS, transitions)), tuple(map(_T_DETAIL, transitions)))
        if previous is None:
            previous = bytes(map(_T_PREV, transitions))
    results = None
    if small:
        results = (*(tuple(map(get, small)) for get in _SMALL_COLUMNS), tuple(map(_S_TIME, small)))
    return pack_columns(moves, definitions, results, previous, groups)


class Moves(NamedTuple):
    """A commit's latest move of each moved task of one run, as columns (the engine's
    records read by ``Recorder.collect``, or transition rows), in sequence order; and the
    small results they completed with: (ids, names, fingerprints, values, times); and the
    definitions of tasks fingerprinted as they began: (ids, names, fingerprints)."""

    run_id: Any
    ids: tuple[Any, ...]
    names: tuple[Any, ...]
    seqs: tuple[Any, ...]
    times: tuple[Any, ...]
    codes: bytes
    details: tuple[Any, ...]
    small: tuple[tuple[Any, ...], ...] | None = None
    defs: tuple[tuple[Any, ...], ...] | None = None

    def definition_rows(self) -> list[tuple[Any, ...]]:
        """As ``Journal.define`` rows."""
        if not self.defs:
            return []
        return list(zip(repeat(self.run_id, len(self.defs[0])), *self.defs, strict=True))

    def transition_rows(self) -> list[tuple[Any, ...]]:
        """As ``Journal.transition`` rows (previous state 0: the summary's to fill)."""
        count = len(self.ids)
        return list(zip(repeat(self.run_id, count), self.seqs, self.times, self.ids,
                        self.names, repeat(0, count), self.codes, self.details, strict=True))

    def small_rows(self) -> list[tuple[Any, ...]]:
        """As ``Journal.small_result`` rows."""
        if not self.small:
            return []
        return list(zip(repeat(self.run_id, len(self.small[0])), *self.small, strict=True))


def pack_columns(moves: Moves | None, definitions: list[tuple[Any, ...]],
                 small: tuple[tuple[Any, ...], ...] | None, previous: bytes | None = None,
                 groups: list[tuple[Any, ...]] | tuple[()] = (),
                 ) -> tuple[bytes, tuple[Any, ...], tuple[Any, ...]]:
    """``pack_tasks`` from columns: ``moves`` (each task once; ``previous`` its previous
    codes, None for none seen), definition rows (before those ``moves`` holds), small
    results as columns (ids, names, fingerprints, values, times)."""
    if moves is not None and moves.ids:
        ids, names, times = moves.ids, moves.names, moves.times
        seq_col, time_col = _little("q", moves.seqs), _little("d", times)
        status_col = moves.codes
        prev_col = bytes(len(ids)) if previous is None else previous
        if prev_col.translate(None, _CODES) or status_col.translate(None, _CODES) \
                or not len(ids) == len(names) == len(times) == len(status_col) == len(prev_col):
            raise ValueError("a status code out of range")
        hash(ids)  # every task id keys the run's summary
        details = moves.details
        if details.count(None) == len(details):
            details = None
        folded = (ids, status_col, max(times))
    else:
        seq_col, time_col, ids, names, prev_col, status_col, details = \
            b"", b"", (), (), b"", b"", None
        folded = ((), b"", None)
    d_ids = d_names = d_fps = ()
    if definitions:
        d_ids, d_names, d_fps = (tuple(map(get, definitions)) for get in _DEF_COLUMNS)
    if moves is not None and moves.defs:  # after the queued rows: the later definition
        d_ids, d_names, d_fps = d_ids + moves.defs[0], d_names + moves.defs[1], \
            d_fps + moves.defs[2]
    if d_ids:
        hash(d_ids)
    r_ids = r_names = r_fps = r_values = ()
    r_times = b""
    if small:
        r_ids, r_names, r_fps, r_values, times_of_small = small
        r_times = _little("d", times_of_small)
    columns: tuple[Any, ...] = (LAYOUT, seq_col, time_col, ids, names, prev_col, status_col,
                                details, d_ids, d_names, d_fps, r_ids, r_names, r_fps,
                                r_values, r_times)
    if groups:
        columns = (LAYOUT_ITEMS, *columns[1:], tuple(groups))
    return marshal.dumps(columns, MARSHAL_VERSION), folded, d_ids


def latest_per_task(transitions: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], bool]:
    """One run's transitions of one commit window, one per task: its latest, in the order
    of their sequence numbers; and whether any task moved more than once (then the kept
    rows' previous states are those of their last move: ``RunSummary.previous`` gives
    the state each had before the window). A no-op task moves four times in a window;
    the history, the summary and resume read only where each task got to, so that is what
    the journal stores (a detail given on an earlier move of the window is not kept).
    Taken at C speed: one pass for the ids, one dict, one pick by index."""
    count = len(transitions)
    if count < 2:
        return transitions, False
    last = dict(zip(map(_T_ID, transitions), range(count), strict=True))  # later overwrite
    if len(last) == count:
        return transitions, False
    kept = sorted(last.values())
    if len(kept) == 1:
        return [transitions[kept[0]]], True
    return list(operator.itemgetter(*kept)(transitions)), True


_T_SEQ, _T_TIME, _T_ID, _T_NAME, _T_PREV, _T_STATUS, _T_DETAIL = (
    operator.itemgetter(i) for i in range(1, 8))
_DEF_COLUMNS = tuple(operator.itemgetter(i) for i in range(1, 4))
_SMALL_COLUMNS = tuple(operator.itemgetter(i) for i in range(1, 5))  # id, name, fp, value
_S_TIME = operator.itemgetter(5)


def _little(kind: str, values: tuple[Any, ...]) -> bytes:
    """Numbers as a little-endian column (``struct`` takes them in one call; ``array``
    parsed each one on its own)."""
    try:
        return struct.pack(f"<{len(values)}{kind}", *values)
    except struct.error as exc:  # a value of another kind: the caller's TypeError
        raise TypeError(str(exc)) from None


def _numbers(kind: str, data: bytes) -> array:
    column = array(kind)
    column.frombytes(data)
    if _SWAP:
        column.byteswap()
    return column


def task_rows(run_id: int, columns: tuple[Any, ...], kind: str, items: bool = True,
              expansions: dict[tuple[int, str], Any] | None = None) -> list[tuple[Any, ...]]:
    """The rows of one kind (as ``unpack`` gives them) that a ``"tasks"`` blob holds (its
    map items' too, in sequence order with the tasks' transitions, unless not ``items``).
    ``expansions``: what ``item_journal.group_rows`` keeps across the blobs of a run read
    in order (an item's small result may name its fingerprint by its expansion's)."""
    if not columns or columns[0] not in _LAYOUTS:
        return []  # a layout of a later version: not ours to read
    (_, seqs, times, ids, names, previous, statuses, details, d_ids, d_names, d_fps,
     r_ids, r_names, r_fps, r_values, r_times) = columns[:16]
    run = repeat(run_id)
    if kind == "transitions":
        status = STATUSES.__getitem__
        rows = list(zip(run, _numbers("q", seqs), _numbers("d", times), ids, names,
                        map(status, previous), map(status, statuses),
                        repeat(None) if details is None else details, strict=False))
    elif kind == "definitions":
        rows = list(zip(run, d_ids, d_names, d_fps, strict=False))
    elif kind == "results":  # (run, task id, name, fingerprint, value, time)
        rows = list(zip(run, r_ids, r_names, r_fps, r_values, _numbers("d", r_times),
                        strict=False))
    else:
        return []
    if items and columns[0] == LAYOUT_ITEMS and columns[-1]:
        from .item_journal import group_rows  # it imports this module
        if expansions is None:
            expansions = {}
        for group in columns[-1]:
            rows.extend(group_rows(run_id, group, kind, expansions))
        if kind == "transitions":
            rows.sort(key=_T_SEQ)
    return rows


_SMALL_AT = 11  # where a "tasks" blob's small-result columns start (LAYOUT 1)


def small_space(columns: tuple[Any, ...]) -> tuple[int, int]:
    """(how many small results a ``"tasks"`` blob holds, the bytes they take in it)."""
    if not columns or columns[0] not in _LAYOUTS:
        return 0, 0
    parts = [columns[_SMALL_AT:_SMALL_AT + 5]] if columns[_SMALL_AT] else []
    if columns[0] == LAYOUT_ITEMS:
        from .item_journal import small_of  # it imports this module
        parts.extend(small for small in map(small_of, columns[-1]) if small[2])  # values
    count = sum(len(part[-2]) for part in parts)  # the values column
    size = sum(len(marshal.dumps(part, MARSHAL_VERSION)) for part in parts)
    return (count, size) if count else (0, 0)


def without_small(columns: tuple[Any, ...], name: str | None,
                  keep: Callable[[Any], bool]) -> tuple[bytes | None, int]:
    """A ``"tasks"`` blob's columns with its small results of task ``name`` (None: all)
    removed, unless ``keep(fingerprint)``; (the new blob, how many went), the blob None
    when none went. Its transitions and definitions stay as they are."""
    if not columns or columns[0] not in _LAYOUTS \
            or (columns[0] == LAYOUT and not columns[_SMALL_AT]):
        return None, 0
    r_ids, r_names, r_fps, r_values, r_times = columns[_SMALL_AT:_SMALL_AT + 5]
    times = _numbers("d", r_times)
    stay = [i for i, (task, fp) in enumerate(zip(r_names, r_fps, strict=True))
            if (name is not None and task != name) or keep(fp)]
    gone = len(r_ids) - len(stay)
    kept = tuple(tuple(column[i] for i in stay) for column in (r_ids, r_names, r_fps, r_values))
    rest: tuple[Any, ...] = (*columns[:_SMALL_AT], *kept,
                             _little("d", tuple(times[i] for i in stay)))
    if columns[0] == LAYOUT_ITEMS:
        from .item_journal import without_small_items  # it imports this module
        groups = []
        for group in columns[-1]:
            group, went = without_small_items(group, name, keep)
            groups.append(group)
            gone += went
        rest = (*rest, tuple(groups))
    if not gone:
        return None, 0
    return marshal.dumps(rest, MARSHAL_VERSION), gone


def is_small(value: Any) -> bool:
    """Whether a result is stored in its run's packed row, as itself (``SMALL_TYPES``)."""
    kind = type(value)
    if kind not in SMALL_TYPES:
        return False
    if kind is str or kind is bytes:
        return len(value) <= SMALL_MAX
    if kind is int:
        return value.bit_length() <= SMALL_MAX * 8
    return True


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
    return f"INSERT INTO {RESULT_COLUMNS} VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] *
                                                                count)


def blob_last(conn: sqlite3.Connection) -> bool:
    """Is ``blob`` the last column of the file's ``results`` table (version 6 on)? Only
    then does a large blob go in without a copy in memory: SQLite builds a row in
    memory whole, but for a ``zeroblob`` at its very end, which it leaves to be written
    on disk (``insert_result``); anywhere else the zeros are made in memory, and the
    row from them, twice the blob's size."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(results)")]
    return bool(columns) and columns[-1] == "blob"


def insert_result(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """One result row; a large blob goes in by chunks, each copied without the GIL (binding
    a 100 MB blob at once would hold every other thread for tens of milliseconds, and
    SQLite would copy it twice more). In a file whose ``blob`` column is last
    (``blob_last``) that takes no memory beyond a chunk; in an older file SQLite makes
    the row in memory first (twice the blob) and the journal pays that."""
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
    if not rows:
        return {}
    first = rows[0][0]
    if set(map(_RUN, rows)) == {first}:  # the usual case: one run, no copying (C speed)
        return {first: rows}
    grouped: dict[Any, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    return grouped


_RUN = operator.itemgetter(0)


def status_code(status: Any) -> Any:
    """A status (a name, a ``TaskStatus`` member or None) as the byte code the queues carry
    (``STATUSES``); any other status as it is (its batch is written the version-3 way)."""
    try:
        return _CODE.get(status, status)
    except TypeError:  # unhashable: pack() drops the row and says why
        return status


def plain_statuses(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Transition rows with their statuses as names (the queues carry codes), for the
    version-3 rows; a status of no known kind is kept as it is."""
    plain = []
    for row in rows:
        previous, status = row[5], row[6]
        try:
            previous, status = _NAME.get(previous, previous), _NAME.get(status, status)
        except TypeError:  # unhashable: pack() drops the row and says why
            pass
        plain.append((*row[:5], previous, status, *row[7:]))
    return plain


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
