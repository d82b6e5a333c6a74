"""The journal's removals, on its writer thread: a prune (``%codo_journal --prune``), a
cache clear, a clear (``%codo_reset --journal``) and the size bound, all through one
removal (``_remove``: one transaction, never a result this process may still read back),
then the file shrunk on disk (``_vacuum``).

What to remove is planned by ``journal_upkeep.py`` (pure functions over what the file
holds); this mixin of ``Journal`` carries it out on the writer connection.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .journal_files import _is_busy, _warn
from .journal_full_disk import disk_full
from .journal_tables import TABLES, TASKS, without_small
from .journal_upkeep import (
    KEPT_NEWEST,
    KEPT_PINNED,
    Removal,
    RunSpace,
    kept_runs,
    page_space,
    pinned_here,
    release_here,
    runs_space,
    runs_to_prune,
    size_on_disk,
)
from .signing import Signer
from .sizes import size_text
from .spill_files import spill_folder, sweep

_MAX_IDS = 900             # run ids bound to one query (older SQLite allows 999 parameters)

# files whose size bound this process said it is over: said once per file, not once per
# ``Journal`` (the engine opens one per run), until a size check finds it back under
_OVER_BOUND: set[Path] = set()


class Removals:
    """``Journal``'s removals (see the module docstring); every method runs on the writer
    thread, on its connection."""

    # what they use of the journal (set by ``Journal.__init__``)
    path: Path
    mode: str
    signer: Signer | None
    pinned: set[tuple[int, str]]  # (run, fingerprint) of results its owner may read back
    # (the pins of every owner of this file in this process count: ``_pins``)
    _wconn: sqlite3.Connection | None
    _rlock: threading.Lock
    _max_bytes: int
    _open_runs: set[int]
    _summaries: dict[int, Any]
    _last_vacuum: float
    _vacuum_interval: float
    _write: Callable[..., tuple[bool, Any]]
    _warn_once: Callable[[str, str], None]
    _verified_tasks: Callable[..., Iterator[tuple[Any, ...]]]
    _small_space: Callable[[sqlite3.Connection], dict[int, tuple[int, int]]]
    _forget_small: Callable[[], None]

    def _pins(self) -> set[tuple[int, str]]:
        """Every result any orchestrator of this process may read back from this file
        (``journal_upkeep.pinned_here``), not only this journal's."""
        return pinned_here(self.path, self.pinned)

    def _released(self, dry_run: bool) -> set[tuple[int, str]]:
        """Pins of results still in RAM, which an explicit removal may take: given up by
        every memory budget on this file (kept in RAM for good from now on), or in a dry
        run only named."""
        return release_here(self.path, dry_run)

    def _do_clear(self) -> Removal:
        """``clear`` on the writer thread: every run but those a prune keeps (open here,
        of another process that still runs, holding a result dropped from memory), and
        of a run kept only for such results, its other results; then shrink the file."""
        conn = self._wconn
        assert conn is not None
        before = sum(size_on_disk(self.path))
        removal = Removal("clear", before=before, after=before)
        runs = runs_space(conn, small=self._small_space(conn))
        pinned = self._pins() - self._released(False)
        removal.kept = kept_runs(runs, self._open_runs, pinned)
        chosen = [run for run in runs if run.run_id not in removal.kept]
        only_pins = [run_id for run_id, why in removal.kept.items() if why == KEPT_PINNED]
        extra = [rowid for chunk, marks in in_chunks(only_pins) for rowid, run_id, fp in
                 conn.execute(f"SELECT rowid, run_id, fingerprint FROM results WHERE blob IS "
                              f"NOT NULL AND run_id IN ({marks})", chunk)
                 if (run_id, fp) not in pinned]
        removed = self._remove([run.run_id for run in chosen], extra)
        if removed is None:
            removal.error = self._why_not_removed()
            return removal
        chosen = self._gone(removal, chosen, removed[0])
        removal.runs = [run.run_id for run in chosen]
        removal.results = sum(run.results for run in chosen) + removed[1]
        removal.freed = sum(run.result_bytes + run.history_bytes for run in chosen)
        return self._shrunk(removal, bool(chosen or removed[1]))

    def _gone(self, removal: Removal, chosen: list[RunSpace], removed: list[int]
              ) -> list[RunSpace]:
        """The chosen runs that ``_remove`` removed; one pinned since it was planned (its
        transaction checks again) was kept, and ``removal`` says so."""
        gone = set(removed)
        for run in chosen:
            if run.run_id not in gone:
                removal.kept[run.run_id] = kept_runs([run], (), self._pins()).get(
                    run.run_id, KEPT_PINNED)
        return [run for run in chosen if run.run_id in gone]

    # -- size bound ---------------------------------------------------------------------------

    def _bound_size(self) -> None:
        conn = self._wconn
        assert conn is not None
        used, free = page_space(conn)
        if used > self._max_bytes:
            used, free = self._prune(used, free)
        if used <= self._max_bytes:
            _OVER_BOUND.discard(self.path)  # over it again later: said again
        if free > self._max_bytes // 4 and \
                time.monotonic() - self._last_vacuum >= self._vacuum_interval:
            self._vacuum()

    def _prune(self, used: int, free: int) -> tuple[int, int]:
        """Drop the oldest runs until the live data (``used`` bytes, ``free`` in empty
        pages, as counted by the caller) is back under ~80% of the bound (never the newest
        run, nor one ``journal_upkeep.kept_runs`` keeps); returns them as they are after."""
        conn = self._wconn
        assert conn is not None
        runs = runs_space(conn, space=False)
        protected = kept_runs(runs, self._open_runs, self._pins())
        if runs:
            protected.setdefault(runs[0].run_id, KEPT_NEWEST)
        for run in reversed(runs):
            if used <= self._max_bytes * 0.8:
                break
            if run.run_id in protected:
                continue
            if self._remove([run.run_id]) is None:
                break
            used, free = page_space(conn)
        if used > self._max_bytes and self.path not in _OVER_BOUND:
            _OVER_BOUND.add(self.path)
            pinned = KEPT_PINNED in protected.values()
            why = " (results dropped from memory are read back from them)" if pinned else ""
            _warn(f"run journal {self.path.name} holds {size_text(used)}, over its bound "
                  f"of {size_text(self._max_bytes)}, in runs it must keep{why}")
        return used, free

    def _do_prune(self, keep_runs: int | None, older_than: float | None,
                  dry_run: bool) -> Removal:
        """``prune`` on the writer thread: plan, remove, shrink the file."""
        conn = self._wconn
        assert conn is not None
        before = sum(size_on_disk(self.path))
        removal = Removal("prune", dry_run, before=before, after=before)
        runs = runs_space(conn, small=self._small_space(conn))
        kept = kept_runs(runs, self._open_runs, self._pins() - self._released(dry_run))
        chosen = []
        for run in runs_to_prune(runs, keep_runs, older_than, time.time()):
            if run.run_id in kept:
                removal.kept[run.run_id] = kept[run.run_id]
            else:
                chosen.append(run)
        if not dry_run and chosen:
            removed = self._remove([run.run_id for run in chosen])
            if removed is None:
                removal.error = self._why_not_removed()
                return removal
            chosen = self._gone(removal, chosen, removed[0])
        removal.runs = [run.run_id for run in chosen]
        removal.results = sum(run.results for run in chosen)
        removal.freed = sum(run.result_bytes + run.history_bytes for run in chosen)
        return self._shrunk(removal, bool(chosen))

    def _do_clear_cache(self, name: str | None, dry_run: bool) -> Removal:
        """``clear_cache`` on the writer thread: plan, remove, shrink the file."""
        conn = self._wconn
        assert conn is not None
        before = sum(size_on_disk(self.path))
        removal = Removal("clear-cache", dry_run, before=before, after=before, name=name)
        kept = kept_runs(runs_space(conn, space=False), self._open_runs, ())
        pinned = self._pins() - self._released(dry_run)
        sql = "SELECT rowid, run_id, fingerprint, length(blob) FROM results " \
              "WHERE blob IS NOT NULL"
        rows = conn.execute(sql + (" AND name = ?" if name is not None else ""),
                            () if name is None else (name,)).fetchall()
        chosen = []
        for rowid, run_id, fingerprint, size in rows:
            if run_id in kept:
                removal.kept[run_id] = kept[run_id]
            elif (run_id, fingerprint) in pinned:
                removal.pinned += 1
            else:
                chosen.append((rowid, size))
        rewritten = self._small_to_clear(conn, name, kept, pinned, removal)
        if not dry_run and (chosen or rewritten):  # one transaction: all of it or nothing
            removed = self._remove(results=[rowid for rowid, _ in chosen], rewrite=rewritten)
            if removed is None:
                removal.error = self._why_not_removed()
                return removal
            removal.pinned += len(chosen) - removed[1]  # pinned since it was planned
            removal.results = removed[1]
        else:
            removal.results = len(chosen)
        removal.freed = sum(size for _, size in chosen)
        if rewritten:
            removal.results += sum(count for *_, count, _ in rewritten)
            removal.freed += sum(freed for *_, freed in rewritten)
        return self._shrunk(removal, bool(chosen or rewritten))

    def _small_to_clear(self, conn: sqlite3.Connection, name: str | None,
                        kept: Mapping[int, str], pinned: set[tuple[int, str]],
                        removal: Removal) -> list[tuple[int, bytes, bytes, bytes, int, int]]:
        """The small results a cache clear removes: (rowid, old MAC, new blob, its MAC,
        how many went, bytes freed) per packed row to rewrite, its transitions and
        definitions kept. Only rows that verify are rewritten (and signed again); a row
        that does not is never read back anyway. Small results are never dropped from
        RAM (they are under ``memory_budget.MIN_SIZE``), so none is pinned, but the
        check is the same as for a result row."""
        signer = self.signer
        assert signer is not None
        plan = []
        for rowid, run, blob, mac, columns in self._verified_tasks(conn):
            if columns is None:
                continue
            if run in kept:
                if without_small(columns, name, lambda fp: False)[1]:  # some would go
                    removal.kept[run] = kept[run]
                continue
            new, count = without_small(columns, name, lambda fp, run=run: (run, fp) in pinned)
            if new is not None:
                plan.append((rowid, mac, new, signer.packed(run, TASKS, new), count,
                             max(0, len(blob) - len(new))))  # a group may grow a little
        return plan

    def _shrunk(self, removal: Removal, removed: bool) -> Removal:
        """A removal planned or done: the spill files of processes that no longer run
        removed (a dry run: counted); done, the space given back if anything went, and
        the size on disk after it."""
        removal.spill_files, removal.spill_bytes = sweep(spill_folder(self.path),
                                                         removal.dry_run)
        if not removal.dry_run:
            removal.note = self._vacuum() if removed else None
            removal.after = sum(size_on_disk(self.path))
        return removal

    def _remove(self, runs: Sequence[int] = (), results: Sequence[int] = (),
                rewrite: Sequence[tuple[Any, ...]] = ()) -> tuple[list[int], int] | None:
        """The one removal (prune, cache clear, clear, the size bound), on the writer
        connection in one transaction: ``runs`` whole, result rows by rowid;
        ``rewrite``: packed rows written again without their small
        results (``_small_to_clear``; a row changed since it was planned stays as it
        is). A run holding a pinned key is never removed, nor a pinned result row, as
        the pins of this process are when the transaction runs (``_pins``: a result
        an orchestrator here dropped from memory and will read back). Returns (runs
        removed, result rows removed), None when the file stayed locked (nothing
        removed)."""
        def work(conn: sqlite3.Connection) -> tuple[list[int], int]:
            if rewrite:
                conn.executemany("UPDATE packed SET rows = ?, mac = ? WHERE rowid = ? AND "
                                 "mac = ?", [(new, new_mac, rowid, mac) for rowid, mac, new,
                                             new_mac, _, _ in rewrite])
            pinned = self._pins()  # a copy: another thread may add to them meanwhile
            held = {run_id for run_id, _ in pinned}
            gone = [run_id for run_id in runs if run_id not in held]
            for chunk, marks in in_chunks(gone):
                for table in TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", chunk)
            count = 0
            rowids = list(results)
            for chunk, marks in in_chunks(rowids):
                doomed = [rowid for rowid, run_id, fingerprint in conn.execute(
                    f"SELECT rowid, run_id, fingerprint FROM results WHERE rowid IN ({marks})",
                    chunk) if (run_id, fingerprint) not in pinned]
                if doomed:
                    conn.execute(f"DELETE FROM results WHERE rowid IN "
                                 f"({', '.join('?' * len(doomed))})", doomed)
                count += len(doomed)
            return gone, count

        ok, removed = self._write(work, "a prune", warn=False)
        if not ok:
            self._failure = removed  # the error (``_why_not_removed``)
            return None
        if rewrite:
            with self._rlock:  # this process's index of small results: read anew
                self._forget_small()
        for run_id in removed[0]:
            self._summaries.pop(run_id, None)
        return removed

    def _why_not_removed(self) -> str:
        """Why ``_remove`` removed nothing: a full disk (and the fix), another error, or
        the file stayed locked."""
        failure = getattr(self, "_failure", None)
        if isinstance(failure, BaseException) and disk_full(failure, self.path.parent):
            return (f"the disk is full ({failure}); stop the orchestrator and run this again: "
                    f"a journal opened on a full disk removes without needing space")
        if isinstance(failure, BaseException) and not _is_busy(failure):
            return f"could not write ({failure})"
        return "the file stayed locked; try again"

    def _vacuum(self) -> str | None:
        """Give the free pages back to the file system: the incremental vacuum run to
        completion (each step of the pragma frees one page; ``execute`` steps it once),
        then the WAL checkpointed and truncated. A file made before journals were
        created with ``auto_vacuum=INCREMENTAL`` is converted here, the first time
        anything is removed from it, by one ``VACUUM`` (not when opened: that rewrites
        the whole file, and a file never pruned has no need). Returns why it failed."""
        conn = self._wconn
        assert conn is not None
        self._last_vacuum = time.monotonic()
        try:
            if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("VACUUM")
            else:  # executescript steps the pragma until done (execute steps it once)
                conn.executescript("PRAGMA incremental_vacuum;")
            if self.mode == "wal":
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:  # another process reading or writing: next time
            self._warn_once("vacuum", f"run journal {self.path.name}: vacuum skipped ({exc})")
            return f"the file could not shrink now ({exc})"
        return None


def in_chunks(ids: Sequence[int]) -> Iterator[tuple[Sequence[int], str]]:
    """``ids`` a bounded number at a time, each chunk with its ``?, ?, ...`` placeholders."""
    for at in range(0, len(ids), _MAX_IDS):
        chunk = ids[at:at + _MAX_IDS]
        yield chunk, ", ".join("?" * len(chunk))
