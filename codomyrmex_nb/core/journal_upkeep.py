"""Journal upkeep: what the file holds and the space it takes, and what a prune removes.

``Journal.info``, ``Journal.prune`` and ``Journal.clear_cache`` (``%codo_journal``)
read and plan here; ``journal.py`` runs the removal itself on its writer thread (one
removal function, shared with the size bound) and gives the space back to the file
system. Pure functions of a connection and plain values, so each is easy to test.

What is never removed, whatever is asked: a run open in this process (the current
run, even while tasks run), every run of *another* process that still runs (its
results may have been dropped from its memory, to be read back), and any run or
result row holding a key of ``Journal.pinned`` (a result this process dropped from
memory and will read back). Ended runs of this process may go: what it may still
read back is pinned. Pins count across this process: every orchestrator (its
``Recorder``) and every ``Journal`` on a file registers here (``hold_pins``), open or
not, so a removal through one keeps what any other may read back (``pinned_here``),
and gives up the pins of results any of them still holds in RAM (``release_here``).
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .journal_tables import NUMBER, of_kind
from .sessions import current, is_alive
from .sizes import size_text

__all__ = ["JournalInfo", "Removal", "RunSpace", "hold_pins", "parse_age", "pinned_here",
           "release_here"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_AGE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd])\s*$", re.I)


# journal file -> what holds pins on it in this process: objects with ``pinned`` (a set of
# (run id, fingerprint)) and ``on_upkeep`` (the memory budget's release, or None)
_HOLDERS: dict[str, weakref.WeakSet[Any]] = {}


def hold_pins(path: str | os.PathLike, holder: Any) -> None:
    """Count ``holder``'s pins (its ``pinned``, read when a removal plans) in every removal
    from the file ``path`` in this process, through any ``Journal``, for as long as it lives."""
    _HOLDERS.setdefault(os.fspath(path), weakref.WeakSet()).add(holder)


def _holders(path: str | os.PathLike) -> list[Any]:
    """The live holders of pins on ``path``, one per pin set (a recorder and the journal
    it opened share theirs)."""
    unique: dict[int, Any] = {}
    for holder in list(_HOLDERS.get(os.fspath(path), ())):
        pins = getattr(holder, "pinned", None)
        if pins is not None:
            unique.setdefault(id(pins), holder)
    return list(unique.values())


def pinned_here(path: str | os.PathLike,
                own: Collection[tuple[int, str]] = ()) -> set[tuple[int, str]]:
    """Every pin on ``path`` in this process, ``own`` included: a copy (a set copied in one
    C call, while other threads may add to it)."""
    keys = set(own)
    for holder in _holders(path):
        keys |= holder.pinned
    return keys


def release_here(path: str | os.PathLike, dry_run: bool) -> set[tuple[int, str]]:
    """Before an explicit removal from ``path``: every memory budget on it gives up the pins
    of results it still holds in RAM (``MemoryBudget.release``); the keys given up."""
    keys: set[tuple[int, str]] = set()
    for holder in _holders(path):
        hook = getattr(holder, "on_upkeep", None)
        if hook is not None:
            keys |= hook(dry_run)
    return keys


def parse_age(text: str | float | int) -> float:
    """Seconds from an age such as ``"30d"``, ``"12h"``, ``"90m"`` or ``"45s"``; an int
    or float is seconds. Text needs its unit: ``"30"`` alone is ambiguous."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0 or text != text:
            raise ValueError(f"an age must be >= 0, got {text!r}")
        return float(text)
    match = _AGE.match(str(text))
    if match is None:
        raise ValueError(f"age {text!r} not understood: give a number and a unit "
                         "s, m, h or d, e.g. 30d or 12h")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def size_on_disk(path: str | os.PathLike) -> tuple[int, int]:
    """(bytes of the file, bytes of its ``-wal``), 0 for one that is not there."""
    sizes = []
    for name in (os.fspath(path), f"{os.fspath(path)}-wal"):
        try:
            sizes.append(os.path.getsize(name))
        except OSError:
            sizes.append(0)
    return sizes[0], sizes[1]


@dataclass(frozen=True)
class RunSpace:
    """One run and the space it takes: ``results`` cached results (rows with a value)
    taking ``result_bytes``, its packed history taking ``history_bytes``."""

    run_id: int
    started: float | None
    ended: float | None
    status: str | None
    tasks: int
    results: int
    result_bytes: int
    history_bytes: int
    last_time: float | None = None
    pid: int | None = None
    process_started: float | None = None

    @property
    def last_sign(self) -> float | None:
        """When the run was last heard of (its end, else its last record, else its start)."""
        for when in (self.ended, self.last_time, self.started):
            if when is not None:
                return when
        return None


@dataclass(frozen=True)
class JournalInfo:
    """What a journal holds: its file and size on disk (the database and its ``-wal``),
    ``free_bytes`` of pages empty inside it, its runs (newest first) and their space, and
    the memory budget's ``spill_files`` beside it (of every process) and their bytes;
    ``full_disk`` why it is off when its disk is full (what it holds is still read).
    ``frame()`` is the runs as a DataFrame; ``as_dict()`` the totals as plain values."""

    path: str
    enabled: bool
    db_bytes: int = 0
    wal_bytes: int = 0
    free_bytes: int = 0
    auto_vacuum: str = "none"
    runs: tuple[RunSpace, ...] = ()
    spill_files: int = 0
    spill_bytes: int = 0
    full_disk: str | None = None

    @property
    def size_on_disk(self) -> int:
        return self.db_bytes + self.wal_bytes

    @property
    def results(self) -> int:
        return sum(run.results for run in self.runs)

    @property
    def result_bytes(self) -> int:
        return sum(run.result_bytes for run in self.runs)

    @property
    def history_bytes(self) -> int:
        return sum(run.history_bytes for run in self.runs)

    def as_dict(self) -> dict[str, Any]:
        """The totals (no per-run rows): path, sizes in bytes, counts."""
        return {"path": self.path, "enabled": self.enabled, "size_on_disk": self.size_on_disk,
                "db_bytes": self.db_bytes, "wal_bytes": self.wal_bytes,
                "free_bytes": self.free_bytes, "auto_vacuum": self.auto_vacuum,
                "runs": len(self.runs), "results": self.results,
                "result_bytes": self.result_bytes, "history_bytes": self.history_bytes,
                "spill_files": self.spill_files, "spill_bytes": self.spill_bytes}

    def frame(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per run, newest first: started (UTC), status, tasks, cached results and
        the bytes they take, the bytes of its history."""
        import pandas as pd

        columns = ["run", "started", "status", "tasks", "results", "result_bytes",
                   "history_bytes"]
        frame = pd.DataFrame([{"run": r.run_id, "started": r.started, "status": r.status,
                               "tasks": r.tasks, "results": r.results,
                               "result_bytes": r.result_bytes,
                               "history_bytes": r.history_bytes} for r in self.runs],
                             columns=columns)
        frame["started"] = pd.to_datetime(frame["started"].astype("float64"), unit="s",
                                          utc=True)
        for column in columns[3:]:
            frame[column] = frame[column].astype("int64")
        return frame

    def summary(self) -> str:
        """One line: the file, its size on disk, runs, cached results and their space."""
        off = "" if self.full_disk is None else f"; the journal is off: {self.full_disk}"
        if not self.enabled and (self.full_disk is None or not self.db_bytes):
            return f"the run journal {self.path} is off{off}"
        wal = f" + wal {size_text(self.wal_bytes)}" if self.wal_bytes else ""
        spill = "" if not self.spill_files else (
            f" + {self.spill_files} spill file{'s' * (self.spill_files != 1)} "
            f"{size_text(self.spill_bytes)}")
        free = f", {size_text(self.free_bytes)} free inside" if self.free_bytes else ""
        runs = len(self.runs)
        return (f"{self.path}: {size_text(self.size_on_disk + self.spill_bytes)} on disk "
                f"(db {size_text(self.db_bytes)}{wal}{spill}{free}); "
                f"{runs} run{'s' * (runs != 1)}, "
                f"{self.results} cached result{'s' * (self.results != 1)} "
                f"({size_text(self.result_bytes)}), history {size_text(self.history_bytes)}"
                f"{off}")


@dataclass
class Removal:
    """What a prune or cache clear removed (or, ``dry_run``, would remove): ``runs``
    removed whole, ``results`` cached result rows, ``freed`` their bytes of data;
    ``kept`` run id -> why a run that matched was kept, ``pinned`` how many matching
    results were kept because they back results dropped from memory; ``before``/``after`` the size
    on disk (db + wal; ``after`` equals ``before`` in a dry run); ``error`` when the
    removal failed (then nothing was removed); ``note`` when it was done but the file
    could not shrink yet (another process held it: the next removal or size check
    gives the space back); ``spill_files``/``spill_bytes`` the spill files of processes
    that no longer run, swept with it; ``name`` the task a cache clear was asked for."""

    what: str
    dry_run: bool = False
    runs: list[int] = field(default_factory=list)
    results: int = 0
    freed: int = 0
    kept: dict[int, str] = field(default_factory=dict)
    pinned: int = 0
    before: int = 0
    after: int = 0
    error: str | None = None
    note: str | None = None
    spill_files: int = 0  # spill files of processes that no longer run, removed with it
    spill_bytes: int = 0
    name: str | None = None  # clear-cache NAME: the task asked for

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def kept_text(self) -> str:
        """What matched but was kept, and why: ``"; kept run 3 (its process still runs)"``
        (empty when nothing was)."""
        kept = ""
        if self.kept:
            reasons: dict[str, list[int]] = {}
            for run_id, why in sorted(self.kept.items()):
                reasons.setdefault(why, []).append(run_id)
            kept = "; kept " + "; ".join(f"run{'s' * (len(ids) != 1)} {_ids(ids)} ({why})"
                                         for why, ids in reasons.items())
        if self.pinned:
            kept += (f"; kept {self.pinned} result{'s' * (self.pinned != 1)} dropped from "
                     "memory (read back from here)")
        return kept

    def went_text(self) -> str | None:
        """What went (would go): runs, cached results and their data, spill files and
        their bytes, each only if any; None when nothing did."""
        data = []
        if self.runs:
            data.append(f"{len(self.runs)} run{'s' * (len(self.runs) != 1)} "
                        f"({_ids(self.runs)})")
        if self.results:
            data.append(f"{self.results} cached result{'s' * (self.results != 1)}")
        went = " with ".join(data) + (f" ({size_text(self.freed)} of data)" if data else "")
        if self.spill_files:
            spill = (f"{self.spill_files} spill file{'s' * (self.spill_files != 1)} of "
                     f"processes that no longer run ({size_text(self.spill_bytes)})")
            went = f"{went}, and {spill}" if went else spill
        return went or None

    def summary(self) -> str:
        """One line on what went (or would go) and the space it frees; "nothing to clear"
        (or prune) only when nothing went, and for a cache clear of a task that has no
        cached result, that it has none, then what else went (spill files)."""
        if self.error is not None:
            return f"{self.what}: could not remove anything ({self.error})"
        went, kept = self.went_text(), self.kept_text()
        head = f"{self.what}{' --dry-run' if self.dry_run else ''}: "
        if self.name is not None and not (self.results or self.kept or self.pinned):
            head += f"no cached result of a task named {self.name!r}; "
        if went is None:
            return f"{head}nothing to {'prune' if self.what == 'prune' else 'clear'}{kept}"
        if self.dry_run:
            return (f"{head}would remove {went}, freeing about "
                    f"{size_text(self.freed + self.spill_bytes)}; nothing removed{kept}")
        note = f"; {self.note}" if self.note else ""
        shrunk = "" if not (self.runs or self.results) else (
            f"; the file went from {size_text(self.before)} to {size_text(self.after)} on disk")
        return f"{head}removed {went}{shrunk}{kept}{note}"


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in sorted(ids)[:8])
    return shown + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")


_RUNS_SPACE = (
    "SELECT r.run_id, r.started, r.ended, r.status, r.tasks, "
    "(SELECT count(*) FROM results WHERE run_id = r.run_id AND blob IS NOT NULL), "
    "(SELECT coalesce(sum(length(blob)), 0) FROM results WHERE run_id = r.run_id), "
    "(SELECT coalesce(sum(length(rows)), 0) FROM packed WHERE run_id = r.run_id), "
    "r.last_time, r.pid, r.pstarted FROM runs AS r ORDER BY r.run_id DESC")


_RUNS_ONLY = ("SELECT run_id, started, ended, status, tasks, 0, 0, 0, last_time, pid, pstarted "
              "FROM runs ORDER BY run_id DESC")


def runs_space(conn: Any, space: bool = True,
               small: Mapping[int, tuple[int, int]] | None = None) -> list[RunSpace]:
    """Every run with its space, newest first (``length`` reads no blob's content);
    ``space=False``: the runs alone, their space 0 (the size bound's cheap look).
    ``small``: run id -> (small results, their bytes) held in its packed rows (journal
    format 4), counted as cached results and their space rather than as history."""
    runs = [RunSpace(*_plain(row)) for row in conn.execute(_RUNS_SPACE if space else _RUNS_ONLY)]
    if not small:
        return runs
    return [run if run.run_id not in small else
            replace(run, results=run.results + small[run.run_id][0],
                    result_bytes=run.result_bytes + small[run.run_id][1],
                    history_bytes=max(0, run.history_bytes - small[run.run_id][1]))
            for run in runs]


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A runs row as ``RunSpace`` takes it: a field edited by hand into another kind (a
    time as text) reads as unknown (None; a count as 0), so planning and views go on."""
    return tuple(value if of_kind(value, kind) else default
                 for value, (kind, default) in zip(row, _SPACE_KINDS, strict=True))


# each RunSpace field's kind and what it reads as when it is not of it
_SPACE_KINDS = ((object, None), (NUMBER, None), (NUMBER, None), (str, None), (int, 0),
                (int, 0), (int, 0), (int, 0), (NUMBER, None), (int, None), (NUMBER, None))


def page_space(conn: Any) -> tuple[int, int]:
    """(bytes of the pages in use, bytes of the free pages) inside the database file."""
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page, free * page


def read_info(conn: Any, path: str | os.PathLike, enabled: bool = True,
              small: Mapping[int, tuple[int, int]] | None = None,
              spill: tuple[int, int] = (0, 0)) -> JournalInfo:
    """The journal's ``JournalInfo``, read on ``conn`` (sizes on disk as they are now;
    ``small`` as for ``runs_space``; ``spill``: its spill files and their bytes)."""
    free = page_space(conn)[1]
    mode = {0: "none", 1: "full", 2: "incremental"}.get(
        conn.execute("PRAGMA auto_vacuum").fetchone()[0], "none")
    runs = tuple(runs_space(conn, small=small))
    db, wal = size_on_disk(path)
    return JournalInfo(str(path), enabled, db, wal, free, mode, runs, *spill)


KEPT_OPEN = "open in this process"
KEPT_ALIVE = "its process still runs"
KEPT_PINNED = "holds results dropped from memory"
KEPT_NEWEST = "the newest run"


def kept_runs(runs: Iterable[RunSpace], open_runs: Collection[int],
              pinned: Collection[tuple[int, str]]) -> dict[int, str]:
    """Run id -> why it must stay: open here, written by another process that still
    runs, or holding a pinned result. Liveness is asked once per process."""
    me = current()[0]
    pinned_runs = {run_id for run_id, _ in pinned}
    alive: dict[tuple[int, float | None], bool] = {}
    kept: dict[int, str] = {}
    for run in runs:
        live = False
        if run.pid is not None and run.run_id not in open_runs:
            key = (run.pid, run.process_started)
            if key not in alive:
                alive[key] = is_alive(*key)
            live = alive[key]
        if run.run_id in open_runs or (live and run.pid == me and run.ended is None):
            kept[run.run_id] = KEPT_OPEN  # (the latter: open in another journal here)
        elif live and run.pid != me:
            kept[run.run_id] = KEPT_ALIVE
        elif run.run_id in pinned_runs:
            kept[run.run_id] = KEPT_PINNED
    return kept


def runs_to_prune(runs: list[RunSpace], keep_runs: int | None, older_than: float | None,
                  now: float) -> list[RunSpace]:
    """The runs a prune asks for, oldest first: outside the ``keep_runs`` newest *and*
    last heard of more than ``older_than`` seconds ago (each option given must let a run
    go). ``runs`` newest first, as ``runs_space`` gives them."""
    chosen = []
    for index, run in enumerate(runs):
        if keep_runs is not None and index < keep_runs:
            continue
        if older_than is not None:
            last = run.last_sign
            if last is not None and last > now - older_than:
                continue
        chosen.append(run)
    return chosen[::-1]
