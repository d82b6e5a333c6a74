"""A memory budget for results: drop the least recently used ones the journal holds.

Results stay on their ``TaskResult`` as before; a result of at least ``MIN_SIZE``
bytes (estimated cheaply: ``estimate``) is also registered here when the engine
stores it. While the registered results add up to more than ``limit`` bytes, the
least recently used ones that can be read back are dropped from RAM: their
``TaskResult`` keeps a marker (``model.DROPPED``) instead of the value. An
intermediate result that every dependent has already used (they all ended) goes
first, then the others by age. A result can be read back once the journal has
committed its row (``committed``), or once it was spilled to a signed file of its
own (a result over the journal's per-result cap, ``spill``; named after this process,
so that those a killed process leaves are swept later: ``spill_files.py``).

Reading a dropped result (a downstream task's upstream value, ``result.data``,
a snapshot's ``data``) reads it back through ``loader`` in the reader's thread,
never under the engine lock nor this module's lock; readers of one result wait for
one read. What was handed to user code (``TaskResult.data``: ``get_task_result``,
``--out``, a name the user gave it) is not read back a second time while user code
holds it: a weak reference is kept where the type allows and serves until it dies;
a value that cannot be weakly referenced (list, dict, int, str, tuple, bytes) and was
handed out is never dropped. Without a journal (off, or one that cannot be used: its
results are never queued, so none waits for a commit) nothing is dropped, and one
line says so the first time the budget is exceeded.

While the results, with the pickled copies that wait for their commit, are over the
limit, workers pause before their next task until the journal commits (``pause``,
as Dask pauses a worker near its limit): a chain of large results cannot outrun
the disk. Every result committed while registered is *pinned* (``pin``): this process
may read it back, so the journal's size bound keeps its run (``Journal.pinned``), and
so does clearing the journal; a result that leaves the budget still in RAM is unpinned.
An explicit removal (``%codo_journal --prune`` / ``--clear-cache``, a clear) first takes
back the pins of results still in RAM (``release``): what the user removes goes, and
those results stay in RAM for good; only dropped results keep their runs.
Results that one task recorded twice in one run under one fingerprint share a row:
the newest committed one is read back. A small result (``journal_tables.is_small``:
None, a number, a string or bytes of up to 256) is stored in its run's packed journal
row, not a result row; it is never registered here (it is far under ``MIN_SIZE``), so
it stays in RAM and is never read back, pinned or spilled.

The default is ``DEFAULT`` (a quarter of physical RAM): a notebook's kernel then
keeps room for the data a task works on while finished results wait on disk.
"""

from __future__ import annotations

import hmac
import os
import pickle
import re
import sys
import threading
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .model import DROPPED, TaskStatus
from .result_bytes import (  # containers: a few levels, each object once
    NO_SIZE,
    dumps_to,
    pickled_at_least,
)
from .sizes import UNITS, size_text
from .spill_files import spill_name

__all__ = ["DEFAULT", "MIN_SIZE", "MemoryBudget", "MemoryBudgetWarning", "ResultUnavailable",
           "estimate", "parse_limit", "physical_memory", "size_text"]

DEFAULT = "25%"
MIN_SIZE = 64 * 1024  # smaller results are not worth a read back (nor an entry)
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*$")
_TERMINAL = frozenset(s for s in TaskStatus if s.is_terminal)


class MemoryBudgetWarning(UserWarning):
    """The memory budget could not do what it is for (always one line)."""


class ResultUnavailable(RuntimeError):
    """A result dropped from memory could not be read back (its stored copy is gone or
    does not verify); the message names the task and the fix."""


def physical_memory() -> int | None:
    """Bytes of physical RAM (None where the system does not say)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        total = 0
    if total > 0:
        return int(total)
    try:
        import psutil  # optional: Windows has no sysconf
        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - no way to tell
        return None


def parse_limit(value: Any) -> int | None:
    """``memory_limit`` as bytes: a number of bytes, ``"4GB"`` / ``"500MB"`` / ``"2GiB"``,
    a share of physical RAM (``"25%"``), or None / 0 / ``"off"`` (no budget)."""
    if value is None or value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"memory_limit must be bytes, a size such as '4GB', a share of RAM "
                         f"such as '25%', or None; got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "off", "none", "0"):
            return None
        if text.endswith("%"):
            try:
                share = float(text[:-1])
            except ValueError:
                share = -1.0
            if not 0 < share <= 100:
                raise ValueError(f"memory_limit {value!r}: a share of RAM must be between "
                                 "0% and 100%, such as '25%'")
            total = physical_memory()
            if total is None:
                raise ValueError(f"memory_limit {value!r}: this system does not say how much "
                                 "RAM it has; give bytes instead, such as '4GB'")
            return max(1, int(total * share / 100))
        match = _SIZE.match(text)
        unit = match.group(2).upper() if match else ""
        if match is None or unit not in UNITS:
            raise ValueError(f"memory_limit {value!r} is not a size: use bytes, '500MB', "
                             "'4GB', '2GiB' or a share of RAM such as '25%'")
        value = float(match.group(1)) * UNITS[unit]
    if value != value or value < 0 or value == float("inf"):
        raise ValueError(f"memory_limit must be a positive size, got {value!r}")
    return int(value) or None


def estimate(value: Any) -> int:
    """A cheap size of ``value`` in bytes, no walk of big data: numpy ``nbytes``, pandas
    ``memory_usage(deep=False)``, bytes and strings by length, ``sys.getsizeof``
    otherwise (with what ``pickled_at_least`` sees inside containers)."""
    kind = type(value)
    if kind in NO_SIZE:
        return 0
    if kind is bytes or kind is bytearray or kind is str:
        return len(value)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return int(value.nbytes)
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame | pd.Series):
        usage = value.memory_usage(deep=False)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    try:
        return max(sys.getsizeof(value), pickled_at_least(value))
    except Exception:  # noqa: BLE001 - an odd __sizeof__: count nothing
        return 0


class Entry:
    """One registered result: where it can be read back from, and its state."""

    __slots__ = ("budget", "result", "rec", "size", "run_id", "fp", "committed", "dropped",
                 "handed", "ref", "loading", "spill", "mac", "gone", "source", "__weakref__")

    def __init__(self, budget: MemoryBudget, result: Any, rec: Any, size: int,
                 run_id: int | None, fp: str | None) -> None:
        self.budget, self.result, self.rec, self.size = budget, result, rec, size
        self.run_id, self.fp = run_id, fp
        self.committed = False  # the journal (or a spill file) holds it: it may be dropped
        self.dropped = False
        self.handed = False  # user code was given it (TaskResult.data)
        self.ref: weakref.ref[Any] | None = None  # the value while someone still holds it
        self.loading: threading.Event | None = None
        self.spill: Path | None = None
        self.mac: bytes | None = None
        self.gone = False  # no longer the task's result: out of the accounting
        self.source: Any = (None, None)  # what the loader reads it back from (the engine's)

    def read(self, handed: bool) -> Any:
        """The value (read back if dropped); ``handed``: user code gets it."""
        return self.budget.read(self, handed)

    def forget(self) -> None:
        self.budget.forget(self)

    def consumed(self) -> bool:
        """An intermediate result every dependent has used (they all ended)."""
        rec = self.rec
        downs = rec.downs if rec.parent is None else rec.parent.downs  # an item: its map's
        return bool(downs) and all(d.status in _TERMINAL for d in list(downs))


class MemoryBudget:
    """The accounting and the drop policy for one engine's results (see the module docstring).

    ``loader(entry)`` reads a dropped result back (raises ``ResultUnavailable``);
    ``journal_on()`` says whether a journal can hold results at all; ``hurry()`` asks
    it to commit what is queued now (results over the budget wait for that);
    ``pin``/``unpin`` tell the journal which stored results this process may still
    read back (its size bound keeps them); ``alive(rec)``: the record is still known.
    """

    def __init__(self, limit: int | None, loader: Callable[[Entry], Any],
                 journal_on: Callable[[], bool] = lambda: False,
                 hurry: Callable[[], None] | None = None,
                 pin: Callable[[tuple[int, str]], None] | None = None,
                 unpin: Callable[[tuple[int, str]], None] | None = None,
                 alive: Callable[[Any], bool] = lambda rec: True) -> None:
        self.limit = limit
        self.loader, self.journal_on, self.hurry = loader, journal_on, hurry
        self.pin, self.unpin, self.alive = pin, unpin, alive
        self._lock = threading.Lock()
        self._lru: dict[Entry, None] = {}  # oldest use first
        self._waiting: dict[tuple[Any, str], Entry] = {}  # (run id, task id) -> not committed
        self.held = 0  # bytes of registered results in RAM
        self.pending = 0  # bytes of those whose journal rows (their pickled copies) wait
        self.drops = 0
        self.read_backs = 0
        self._warned = False
        self._commits = threading.Condition(self._lock)  # a commit came in (pause waits on it)
        self._stalled = False  # a pause ran out without a commit: do not pause again till one
        self._files: set[Path] = set()  # spill files not removed yet (all go at exit)

    # -- registering (under the engine lock: only bookkeeping) ---------------------------
    def add(self, rec: Any, result: Any, size: int, run_id: int | None = None,
            fp: str | None = None, stored: bool = False, spill: Path | None = None,
            mac: bytes | None = None, source: Any = (None, None)) -> Entry:
        """Register ``result`` (``rec``'s). ``stored``: its row is queued in the journal
        (droppable once committed); ``spill``/``mac``: it was written to a signed file."""
        entry = Entry(self, result, rec, size, run_id, fp)
        entry.spill, entry.mac, entry.source = spill, mac, source
        result._entry = entry
        with self._lock:
            self._lru[entry] = None
            self.held += size
            if spill is not None:
                entry.committed = True
                self._files.add(spill)
            elif stored and run_id is not None:
                before = self._waiting.get((run_id, rec.id))
                if before is not None:  # the task ran again before its row was committed
                    self.pending -= before.size
                self._waiting[(run_id, rec.id)] = entry
                self.pending += size
            self._evict()
        return entry

    def committed(self, rows: list[tuple[Any, ...]]) -> None:
        """The journal committed these result rows ``(run id, task id, name, fingerprint,
        blob, ...)`` (its writer thread, before it checks its size bound: the pins are in
        place by then). Results are registered before their rows are queued."""
        if not self._waiting:  # no lock: nothing of ours can be in this commit
            return
        with self._lock:
            waiting = self._waiting
            for row in rows:
                run_id, task_id, fp = row[0], row[1], row[3]
                entry = waiting.pop((run_id, task_id), None) if row[4] is not None else None
                if entry is not None:
                    self.pending -= entry.size
                if entry is not None and entry.fp == fp and not entry.gone:
                    entry.committed = True
                    if self.pin is not None:
                        self.pin((run_id, fp))
            self._stalled = False
            self._evict()
            self._commits.notify_all()

    def over(self) -> bool:
        """Over the limit, counting the pickled copies of results that wait for their
        journal commit, while some do (no lock: a hint)."""
        limit = self.limit
        return limit is not None and self.held + self.pending > limit \
            and bool(self._waiting) and not self._stalled

    def pause(self, go_on: Callable[[], bool] = lambda: True, timeout: float = 2.0) -> None:
        """A worker, before its next task, while ``over()``: wait for the journal to commit
        (then results can be dropped), as Dask pauses a worker near its memory limit.
        Woken by each commit and by ``wake`` (the engine stops: ``go_on`` turns False); a
        pause that sees no commit in ``timeout`` seconds (the journal cannot keep up, or
        cannot write) stops pausing until one comes."""
        with self._lock:
            while self.over() and go_on():
                if self.hurry is not None:
                    self.hurry()
                if not self._commits.wait(timeout):
                    self._stalled = True

    def wake(self) -> None:
        """End every pause now (the engine stops)."""
        with self._lock:
            self._commits.notify_all()

    def set_limit(self, limit: int | None) -> None:
        with self._lock:
            self.limit = limit
            self._warned = False
            self._evict()

    # -- reading ---------------------------------------------------------------------------
    def read(self, entry: Entry, handed: bool) -> Any:
        """The result's value; read back (outside every lock, one reader per result)."""
        result = entry.result
        while True:
            with self._lock:
                if handed:
                    entry.handed = True
                value = result._data
                if value is not DROPPED:
                    if not entry.gone:
                        lru = self._lru
                        lru.pop(entry, None)
                        lru[entry] = None
                    return value
                ref = entry.ref
                value = None if ref is None else ref()
                if value is not None:  # someone still holds it: no read back
                    self._readmit(entry, value)
                    return value
                event = entry.loading
                mine = event is None
                if mine:
                    event = entry.loading = threading.Event()
            if not mine:
                event.wait()
                continue
            try:
                value = self.loader(entry)
            except BaseException:
                with self._lock:
                    entry.loading = None
                event.set()
                raise
            with self._lock:
                entry.loading = None
                self.read_backs += 1
                self._readmit(entry, value)
                self._evict()
            event.set()
            return value

    def _readmit(self, entry: Entry, value: Any) -> None:
        entry.result._data = value
        entry.dropped, entry.ref = False, None
        if not entry.gone:
            self.held += entry.size
            self._lru.pop(entry, None)
            self._lru[entry] = None  # the most recently used now

    def forget(self, entry: Entry) -> None:
        """The result's data was replaced by hand: it leaves the budget."""
        with self._lock:
            self._remove(entry)

    def forget_all(self) -> None:
        """Every result leaves the budget (the orchestrator switches it off)."""
        with self._lock:
            for entry in list(self._lru):
                self._remove(entry)

    # -- the policy (under this module's lock) ---------------------------------------------
    def _remove(self, entry: Entry) -> None:
        if entry.gone:
            return
        entry.gone = True
        self._lru.pop(entry, None)
        if entry.run_id is not None and \
                self._waiting.get((entry.run_id, entry.rec.id)) is entry:
            del self._waiting[(entry.run_id, entry.rec.id)]
            self.pending -= entry.size
        if not entry.dropped:
            self.held -= entry.size
            entry.result._entry = None  # holds its value again: plain from now on
            if entry.spill is not None:
                _unlink(entry.spill)
                self._files.discard(entry.spill)
                entry.spill = None
        if entry.committed and entry.spill is None and entry.fp and self.unpin is not None \
                and not entry.dropped:
            self.unpin((entry.run_id, entry.fp))

    def release(self, dry_run: bool = False) -> set[tuple[int, str]]:
        """Before the user removes runs or cached results (``%codo_journal --prune``,
        ``--clear-cache``, a clear): the pins of results still held in RAM are given up,
        so that what the user removes goes, and those results are not dropped from now
        on (nothing could read them back). Dropped results keep their pins. Returns the
        keys given up (``dry_run``: the keys that would be, nothing changed)."""
        keys: set[tuple[int, str]] = set()
        with self._lock:
            for entry in self._lru:
                if entry.committed and not entry.dropped and entry.spill is None \
                        and entry.fp and entry.run_id is not None:
                    keys.add((entry.run_id, entry.fp))
                    if not dry_run:
                        entry.committed = False
                        if self.unpin is not None:
                            self.unpin((entry.run_id, entry.fp))
        return keys

    def _evict(self) -> None:
        limit = self.limit
        if limit is None or self.held <= limit:
            return
        first: list[Entry] = []
        later: list[Entry] = []
        stale: list[Entry] = []
        waiting = False
        for entry in self._lru:
            if entry.result._entry is not entry or entry.rec.result is not entry.result \
                    or not self.alive(entry.rec):
                stale.append(entry)
            elif entry.dropped or entry.loading is not None:
                continue
            elif not entry.committed:  # droppable once its queued row commits, if it has one
                waiting = waiting or self._waiting.get((entry.run_id, entry.rec.id)) is entry
            elif not entry.handed or _weakable(entry.result._data):
                (first if entry.consumed() else later).append(entry)
        for entry in stale:
            self._remove(entry)
        for entry in first + later:
            if self.held <= limit:
                return
            self._drop(entry)
        if self.held <= limit:
            return
        if waiting and self.hurry is not None:
            self.hurry()  # their rows are queued: commit them now, then they can go
        elif not self._warned and not self.journal_on():
            self._warned = True
            warnings.warn(f"memory budget: results hold {size_text(self.held)}, over the "
                          f"limit of {size_text(limit)}, but there is no journal to read "
                          "them back from, so nothing is dropped (turn the journal on, or "
                          "raise memory_limit)", MemoryBudgetWarning, stacklevel=2)

    def _drop(self, entry: Entry) -> None:
        result = entry.result
        value = result._data
        entry.ref = weakref.ref(value) if _weakable(value) else None
        result._data = DROPPED
        entry.dropped = True
        self.held -= entry.size
        self.drops += 1

    def stats(self) -> dict[str, Any]:
        """Bytes held, results held and dropped, read backs (for the docs and the bench)."""
        with self._lock:
            return {"limit": self.limit, "held": self.held,
                    "results": sum(1 for e in self._lru if not e.dropped),
                    "dropped": sum(1 for e in self._lru if e.dropped),
                    "drops": self.drops, "read_backs": self.read_backs}

    def close(self) -> None:
        """Remove this budget's spill files (the process ends: nothing reads them again)."""
        with self._lock:
            for path in self._files:
                _unlink(path)
            self._files.clear()


def _weakable(value: Any) -> bool:
    try:
        weakref.ref(value)
    except TypeError:
        return False
    return True


def _unlink(path: Path | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


# -- spill files: a result over the journal's per-result cap ---------------------------------
_spill_seq = iter(range(1, sys.maxsize))


def spill(folder: Path, task_id: str, value: Any, fp: str, signer: Any) -> tuple[Path, bytes]:
    """Pickle ``value`` straight into a new owner-only file in ``folder`` and sign it
    (``Signer.result_file``, bound to the fingerprint): (path, MAC). The MAC stays in
    memory: only this process reads the file back. Raises what pickling raises."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / spill_name(task_id, next(_spill_seq))  # whose it is (spill_files.py)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w+b") as file:
            dumps_to(value, file)
            file.flush()
            file.seek(0)
            mac = signer.result_file(fp, file)
    except BaseException:
        _unlink(path)
        raise
    return path, mac


def load_spill(entry: Entry, signer: Any, name: str) -> Any:
    """A spilled result read back, only if its MAC verifies (else ``ResultUnavailable``)."""
    path = entry.spill
    fix = f"rerun the task (orchestrator.rerun({name!r}))"
    if path is None or signer is None:
        raise ResultUnavailable(f"task {name!r}: its result was dropped from memory and its "
                                f"spill file is gone; {fix}")
    try:
        with open(path, "rb") as file:
            mac = signer.result_file(entry.fp or "", file)
            if entry.mac is None or not hmac.compare_digest(mac, entry.mac):
                raise ResultUnavailable(f"task {name!r}: the spill file {path} of its result "
                                        f"does not verify (altered or damaged), so it is not "
                                        f"read back; {fix}")
            file.seek(0)
            return pickle.load(file)
    except OSError as exc:
        raise ResultUnavailable(f"task {name!r}: cannot read the spill file of its result "
                                f"({exc.strerror or exc}); {fix}") from exc
