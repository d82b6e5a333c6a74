"""The journal's writer thread: drains what producers queued and commits it in batches.

Producers (the engine's workers) only append to deques; this thread moves
what is queued onto its lists, packs the engine's moves and small results into
rows (``journal_tables``), writes a batch in one transaction (row by row when the
batch fails, dropping only the bad rows, each with a warning), retries a
locked file for ``RETRY_BUDGET`` seconds and keeps the file within its size bound.
A mixin of ``Journal`` (``journal``).
"""

from __future__ import annotations

import math
import operator
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

from .item_journal import fold_group, pack_group, refold_group
from .journal_files import RETRY_BUDGET, _is_busy
from .journal_full_disk import FIX, disk_full
from .journal_tables import (
    INSERT_PACKED,
    INSERT_RESULT,
    INSERT_RUN,
    TASKS,
    UPDATE_END,
    UPDATE_SUMMARY,
    Moves,
    RunSummary,
    by_run,
    insert_result,
    insert_results,
    latest_per_task,
    pack,
    pack_columns,
    pack_tasks,
    plain_statuses,
    unpack,
)
from .sessions import current as this_process

MAX_BATCH = 50_000         # records held before a commit is forced, whatever the interval
_TIME_OF_SMALL = operator.itemgetter(5)  # a queued small result's time


class JournalWriter:
    """Mixed into ``Journal``: its writer thread's side."""

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
                full = isinstance(error, BaseException) and disk_full(error, self.path.parent)
                self._warn_once("write-records", f"run journal {self.path.name}: could not "
                                f"write records ({error}); they are lost"
                                + (f"; the disk is full: to make room, {FIX}" if full else ""))
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

