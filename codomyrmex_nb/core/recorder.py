"""Between the scheduler and the journal: runs, fingerprints, results, and restoring them.

The scheduler hands every transition record to ``on_transition`` (under the lock: only
a deque append in the journal) and every completed attempt's value to
``prepare_result`` in the worker thread, outside the lock: the fingerprint, the
serialised bytes and their MAC (``signing.py``) are made there, so a later in-place
change by a downstream task cannot alter what was saved and a big result never
stalls the engine. A result whose size alone (bytes, strings, numpy arrays, pandas
numeric columns, a few levels of containers of those) is over the journal's bound is
refused before it is pickled.

A *run* opens at the first transition after the previous run ended (defining a
task) and closes as ``"finished"`` when every task has ended (``"stopped"`` when the
engine stops with work left). A stop of an engine that was not running ends no run
(``keep_run``): the run the definitions opened is the one the next start runs them in.
A run in which tasks were only restored stays open while the engine runs (a crash
then keeps them resumable) and ends when the running engine stops or the process
exits cleanly. When a new orchestrator opens the journal,
``sessions.resume_source`` picks the runs of the processes that are gone and
whose last run did not finish (a kernel or script died): ``resume`` then
restores, at definition, each task whose fingerprint (``task_fingerprints``)
matches a task that completed in any of them (its result row committed); a live
process's runs are never resumed from. Tasks that opt into caching (``cache=True``)
are restored from any run. Fingerprints (``fingerprint.py``) hash the task's code,
parameters, upstream fingerprints, the files and variables it ``watch``es and, for
a notebook cell, what the cell reads (``__codo_fingerprint__`` on the task's callable);
a ``module``/``action`` task by the code of the function it resolves to. A task whose fingerprint
cannot be made (a lock as a parameter) is never restorable; ``unhashable``
says why. Restoring unpickles, so only a blob whose MAC verifies under the user's key
is ever unpickled (``Journal.restorable_signed``): one from a journal written before
signing, with another key, or damaged is skipped with one line, and its task runs.
Restoring itself is ``restoring.py`` (a mixin of ``Recorder``); a result's bytes,
``result_bytes.py``.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from .fingerprint import (
    Unhashable,
)
from .invoke import takes_map_index
from .item_journal import expansion_group, item_group
from .journal import SMALL, Journal, JournalWarning, RunInfo, default_path
from .journal_tables import _CODE, SMALL_MAX, TRIVIAL_TYPES, Moves, is_small
from .journal_upkeep import hold_pins
from .map_steps import source_record
from .mapping import item_fingerprint, item_fingerprints
from .model import TaskStatus
from .restoring import Restoring
from .result_bytes import NO_SIZE, dumps, pickled_at_least
from .sessions import resume_source
from .task_fingerprints import TaskFingerprints

log = logging.getLogger(__name__)
_S = TaskStatus
_RUNNING = TaskStatus.RUNNING
COLLECT_WAIT = 0.2  # seconds the writer waits for the engine's lock to read moved records
_JSEQ, _JTIME, _JDETAIL, _JSMALL, _JSFP, _JDEF = map(
    operator.attrgetter, ("jseq", "jtime", "jdetail", "jsmall", "jsfp", "jdef"))
_ID, _NAME, _STATUS = map(operator.attrgetter, ("id", "name", "status"))
_WAITING = frozenset({TaskStatus.PENDING, TaskStatus.READY})  # a commit leaves these out
_FLAT_SMALL = frozenset({bytes, str})  # small up to SMALL_MAX characters (is_small)
_SMALL_BITS = SMALL_MAX * 8
Prepared = tuple[str | None, bytes | None, str | None, bytes | None]  # fp, blob, error, MAC
# what a commit collects: the moved tasks as columns (None: none), item groups (``item_group``)
Collected = tuple[Moves | None, list[tuple[Any, ...]]]


def journal_setting(value: Any = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where the journal lives: a path, or None when it is off.

    ``value``: None (the ``CODOMYRMEX_JOURNAL`` environment variable, else the
    default place), False/"off" (no journal), True (the default place), or a path.
    """
    if value is None:
        value = environ.get("CODOMYRMEX_JOURNAL") or True
    if value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        return None
    if value is True:
        return default_path()
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise ValueError(f"journal must be True, False, 'off' or a file path, got {value!r}")


_OFF = {"off", "0", "false", "no", "none", ""}


class Recorder(Restoring, TaskFingerprints):
    """One orchestrator's link to its journal file (opened while the engine needs it)."""

    def __init__(self, path: Path, resume: bool | None = None) -> None:
        self.path = path
        self._journal: Journal | None = None
        self.run_id: int | None = None
        self.last_run_id: int | None = None  # the open run, else the last one this recorder had
        self.worked = False  # a task of the open run reached a worker
        # the journal while a run is open in it and it is on, else None: the scheduler
        # queues each move on it directly (Scheduler._move); on_transition opens a run
        self.sink: Journal | None = None
        self.engine_lock: Any = None  # the engine's lock: collect reads records under it
        # records of the open run left waiting (PENDING or READY) at a commit, not written
        # yet -> their sequence number then (``_snapshot``): written at their next move, a
        # flush or the run's end, whichever comes first
        self._waiting: dict[Any, int] = {}
        self.resume_from: RunInfo | None = None  # the newest run resumed from, if any
        self.resume_runs: tuple[int, ...] = ()  # every run resumed from (of dead processes)
        self.resume_note: str | None = None  # why nothing is resumed (a live process's run)
        self.restored: list[str] = []  # names restored since the last summary
        self.unhashable: dict[str, str] = {}  # task name -> why it can never be restored
        # function -> its code fingerprint, for this run (cleared when a run begins: globals
        # may have changed). A plain dict: a weak one cost a microsecond per attempt, and the
        # tasks hold their functions anyway.
        self._code: dict[Any, str] = {}
        # restored task id -> (its bytes, fingerprint, MAC), to record again (a small
        # result: the value itself and SMALL for the MAC)
        self._blobs: dict[str, tuple[Any, str, Any]] = {}
        self.deferred: set[str] = set()  # looked up as they start (Restoring.kept_at_start)
        self._lock = threading.Lock()  # guards the code cache and the lists above
        # module + action -> the action's function (the engine's registry), so that an
        # action is fingerprinted by its code, not only its names
        self.resolve: Callable[[str, str], Any] | None = None
        self._open_lock = threading.Lock()  # the file is opened once
        # (run id, fingerprint) of results the memory budget may read back: every journal
        # this recorder opens keeps them through its size bound (Journal.pinned)
        self.pinned: set[tuple[int, str]] = set()
        self.on_commit: Callable[[list[tuple[Any, ...]]], None] | None = None  # the budget's
        self.on_upkeep: Callable[[bool], set[tuple[int, str]]] | None = None  # its release
        self.usable = True  # the journal was usable when last opened (the memory budget asks)
        if resume is not False:
            self.look_for_resume()

    def use_hooks(self, on_commit: Callable[[list[tuple[Any, ...]]], None] | None,
                  on_upkeep: Callable[[bool], set[tuple[int, str]]] | None) -> None:
        """The memory budget's hooks: on this recorder and on its journal, open or not."""
        self.on_commit, self.on_upkeep = on_commit, on_upkeep
        journal = self._journal
        if journal is not None:
            journal.on_commit, journal.on_upkeep = on_commit, on_upkeep

    @property
    def journal(self) -> Journal:
        """The open journal (opened on first use, again after ``close``)."""
        journal = self._journal
        if journal is None:
            journal = Journal(self.path)
            journal.pinned = self.pinned
            journal.collect = self.collect
            journal.on_commit, journal.on_upkeep = self.on_commit, self.on_upkeep
            hold_pins(journal.path, self)  # its pins count while its journal is closed too
            self._journal = journal
            self.usable = journal.enabled
        return journal

    @property
    def enabled(self) -> bool:
        return self.journal.enabled

    @property
    def is_open(self) -> bool:
        """Whether the journal (and its writer thread) is open now."""
        return self._journal is not None

    def look_for_resume(self) -> RunInfo | None:
        """Resume from every run of the processes that died (or exited) with their last
        run unfinished since the last clean end; never from a process that still runs
        (one line says so)."""
        found = resume_source(self.journal.history() if self.journal.enabled else [],
                              self.path.name)
        self.resume_from = found.runs[-1] if found.runs else None
        self.resume_runs = tuple(run.run_id for run in found.runs)
        if found.note is not None and found.note != self.resume_note:
            warnings.warn(found.note, JournalWarning, stacklevel=2)
        self.resume_note = found.note
        return self.resume_from

    def origin(self) -> str:
        """What was resumed from, for messages: "the unfinished run of <when>" (and how
        many earlier runs, of its process or of processes that died before it)."""
        if self.resume_from is None:
            return "the cache"
        earlier = len(self.resume_runs) - 1
        more = f" and {earlier} earlier run{'s' * (earlier != 1)}" if earlier > 0 else ""
        return f"the unfinished run of {_when(self.resume_from.started)}{more}"

    def close_if_room_made(self) -> None:
        """Under the engine lock: a journal turned off for a full disk whose upkeep made
        room is closed between runs, so that the next run opens it again, on."""
        journal = self._journal
        if journal is not None and journal.room_made and self.run_id is None:
            self.close()

    def close(self) -> None:
        """Commit what is queued and stop the writer thread (the engine stopped)."""
        journal, self._journal = self._journal, None
        self.sink = None
        if journal is not None:
            journal.close()

    # -- runs and transitions (under the engine lock) ------------------------------------
    def on_transition(self, seq: int, when: float, task_id: str, name: str, previous: Any,
                      status: Any, detail: str | None) -> None:
        """A transition record from the scheduler, under the engine lock: queue it (opens a
        run if none is open). Plain values, no Event object: this runs for every change."""
        journal = self.open_run()
        if status is _RUNNING:
            self.worked = True
        # Journal.queue_transition written out, the statuses as their byte codes: a tuple
        # of plain values only, which the garbage collector stops tracking at its first
        # look (a TaskStatus member kept it tracked until the commit, and the queued
        # tuples then made the engine's full collections more frequent)
        if journal is not None:
            journal._trans_q.append((self.run_id, seq, when, task_id, name, _CODE[previous],
                                     _CODE[status], detail))
            if journal._idle:
                journal._rouse()

    def open_run(self) -> Journal | None:
        """Under the engine lock, as a move is about to be queued with no journal taking
        the run's moves yet: begin a run if none is open, and return the journal that
        takes its moves from now on (``sink``; None when it is off)."""
        journal = self.journal  # opened already by ensure_open, but for a rare race
        if self.run_id is None:
            self.run_id = self.last_run_id = journal.begin_run()
            self.worked = False
            with self._lock:
                self._code.clear()  # globals may have changed since the last run
        if not journal.enabled:
            return None
        self.sink = journal  # the scheduler queues the run's next moves itself
        journal.collect = self.collect  # whichever journal the run is in reads them
        return journal

    def ensure_open(self) -> None:
        """Open the journal file if it is closed: called before the engine's lock is taken
        for a change, since opening checks the file and starts the writer thread. (A run
        itself begins with its first transition: no empty runs hide an unfinished one.)"""
        if self._journal is None:
            with self._open_lock:
                self.journal  # noqa: B018 - the property opens it

    def end_run(self, status: str, final: bool = False) -> None:
        """Close the open run. While the engine runs, a run ends "finished" only once a
        task in it really ran: tasks restored at definition leave it open, so a crash
        right after keeps them. ``final`` (the engine stops, the process exits): it ends."""
        if status == "finished" and not self.worked and not final:
            return
        if self.run_id is not None:
            self.sink = None
            journal = self.journal
            moved, groups = self._snapshot(True)  # its last moves, under the engine lock
            if moved is not None:
                journal.queue_moves(moved)
            journal.queue_item_groups(groups)
            journal.end_run(self.run_id, status)
            self.run_id = None

    def keep_run(self) -> None:
        """Under the engine lock, as an engine that was not running is stopped (its journal
        closes next): the open run stays open, and the one the next start runs its tasks
        in. Its moves so far, those of tasks left waiting too, are queued for that close to
        commit: the closing journal's list of moved tasks goes with it, and a reopened
        journal lists only later moves. While the journal is closed the run is kept from
        pruning as an open run of a live process (``journal_upkeep.kept_runs``); a clean
        exit ends it (``engine._end_runs_at_exit``), a crash leaves it open: resumable."""
        journal = self._journal
        if self.run_id is None or journal is None:
            return
        self.sink = None  # the next move reopens the journal if need be (``open_run``)
        moved, groups = self._snapshot(True)
        if moved is not None:
            journal.queue_moves(moved)
        journal.queue_item_groups(groups)

    def collect(self, everything: bool = False) -> Collected:
        """The journal's writer, as a commit begins: the latest move of each record that
        moved since the last, as columns, with the small results they completed with, and
        the moved items of each map as one group of columns (``item_group``), read under
        the engine's lock so that no move is half seen. A lock held for long (a stop
        waiting on this writer) leaves them for the next commit. ``everything`` (a flush):
        the tasks left waiting too (``_snapshot``)."""
        lock = self.engine_lock
        if lock is None:
            return self._snapshot(everything)
        if not lock.acquire(timeout=COLLECT_WAIT):
            return None, []
        try:
            return self._snapshot(everything)
        finally:
            lock.release()

    def _snapshot(self, everything: bool = False) -> Collected:
        """The touched records' latest moves in the open run as columns, in the order of
        those moves (their previous state is the journal's to fill: ``RunSummary``), with
        the small results they completed with (timed by that latest move), and the moved
        items of each map as a group (``item_group``). Each column is one pass over the
        records at C speed: a row tuple per record, split into columns again by the
        writer, cost twice as much.

        A task whose latest move left it waiting (PENDING or READY) is not written unless
        ``everything`` (a flush, the run's end): until it runs or ends nothing about it can
        be lost, and its next move writes it anyway. Most tasks of a burst are defined and
        made ready a commit or more before they run; each was written twice before."""
        journal, run_id = self._journal, self.run_id
        if journal is None:
            return None, []
        touched, mapped, waiting = journal._touched, journal._mapped, self._waiting
        count, maps = len(touched), len(mapped)
        if not count and not maps and not (everything and waiting):
            return None, []
        records = dict.fromkeys(islice(iter(touched.popleft, None), count))  # once each
        if everything:  # with those left waiting that have not moved since
            if waiting:
                records.update(dict.fromkeys(r for r, seq in waiting.items() if r.jseq == seq))
                waiting.clear()
        elif records:
            left = [r for r in records if r.status in _WAITING]
            if left:  # their sequence numbers tell a later move from theirs
                waiting.update(zip(left, map(_JSEQ, left), strict=True))
                records = [r for r in records if r.status not in _WAITING]
        moved = dict.fromkeys(islice(iter(mapped.popleft, None), maps))
        groups = []
        for rec, m in moved:
            unread, m.jmoved = [(m.items, m.jmoved)], []
            if m.jold is not None:
                unread[:0], m.jold = m.jold, None
            if run_id is not None:  # the expansion's fingerprints, if this run holds them
                fps = m.fps if m.fps_run == run_id else None
                groups.extend(item_group(run_id, rec, items, indices, fps)
                              for items, indices in unread)
        groups = [g for g in groups if g is not None]
        if run_id is None:  # no open run (end_run collected its moves): nothing to add
            return None, []
        if not records:
            return None, groups
        small = defs = None
        done = list(filter(_JSFP, records))
        if done:
            small = (tuple(map(_ID, done)), tuple(map(_NAME, done)), tuple(map(_JSFP, done)),
                     tuple(map(_JSMALL, done)), tuple(map(_JTIME, done)))
            for r in done:
                r.jsmall = r.jsfp = None
        defined = list(filter(_JDEF, records))
        if defined:  # fingerprints made as their attempts began (``before_attempt``)
            defs = (tuple(map(_ID, defined)), tuple(map(_NAME, defined)),
                    tuple(map(_JDEF, defined)))
            for r in defined:
                r.jdef = None
        if None in map(_JSEQ, records):  # a record that never moved journaled
            records = [r for r in records if r.jseq is not None]
        records = sorted(records, key=_JSEQ)
        moved = Moves(run_id, tuple(map(_ID, records)), tuple(map(_NAME, records)),
                      tuple(map(_JSEQ, records)), tuple(map(_JTIME, records)),
                      bytes(map(_CODE.__getitem__, map(_STATUS, records))),
                      tuple(map(_JDETAIL, records)), small, defs)
        return moved, groups

    # -- mapped tasks (worker thread, outside the engine lock) -------------------------------
    def _map_base(self, rec: Any) -> str | None:
        """A mapped task's fingerprint without its mapped sources (the items carry those)."""
        spec = rec.mapping.spec
        sources = {source_record(rec, ref) for ref in spec.sources()}
        ups = [u for u in rec.ups if u not in sources]
        fps = [self.fingerprint_of(u) for u in ups]
        if any(fp is None for fp in fps):
            return None
        try:
            code = self.fingerprint(rec.task, fps, {u.id: fp for u, fp in zip(ups, fps, strict=True)},
                                    frozenset(u.name for u in ups))
        except Unhashable as exc:
            with self._lock:
                self.unhashable[rec.name] = str(exc)
            return None
        return hashlib.sha256(f"codo-map-base-1;{code};{spec.mode};{sorted(spec.bindings)}"
                              .encode()).hexdigest()

    def expanded(self, rec: Any, plan: Any) -> None:
        """A mapped task's items are known: fingerprint each and journal the expansion (one
        definition row per item) before any item runs. Never raises."""
        m = rec.mapping
        try:
            m.base_fp = base = self._map_base(rec)
            if base is None:
                return
            fn = rec.func
            m.fps = fps = item_fingerprints(base, plan, fn is not None and takes_map_index(fn))
            run_id, journal = self.run_id, self._journal
            if run_id is not None and journal is not None:  # one group: no row per item
                journal.queue_item_groups([expansion_group(run_id, rec.id, rec.name, fps)])
                m.fps_run = run_id
        except Exception:  # noqa: BLE001 - the journal must never fail a task
            log.debug("could not fingerprint the items of %r", rec.name, exc_info=True)

    def item_started(self, item: Any, binding: Any) -> tuple[Any, float, str] | None:
        """Fingerprint an item as it starts; its recorded result when resuming or caching."""
        fps = item.parent.mapping.fps
        if fps is not None and self.resume_from is None and not item.task.cache:
            if item.fingerprint is None:  # the usual run: the expansion's, nothing to look up
                item.fingerprint = fps[item.index]
            return None
        try:
            if item.fingerprint is None:
                item.fingerprint = self._item_fp(item, binding)
            fp = item.fingerprint
            cache = item.task.cache
            if not fp or (self.resume_from is None and not cache) or not self.journal.enabled:
                return None  # nothing to look for (_find's own first tests, one call less)
            found = self._find(fp, cache)
            if found is None:
                return None
            value, when, source, _blob, _mac = found
            return value, when, source
        except Exception:  # noqa: BLE001 - the item runs instead
            log.debug("could not restore item %r", item.name, exc_info=True)
            return None

    def _item_fp(self, item: Any, binding: Any) -> str:
        m = item.parent.mapping
        if m.fps is not None:
            return m.fps[item.index]
        if m.base_fp is None:  # chained: no expansion step made it
            m.base_fp = self._map_base(item.parent) or ""
        if not m.base_fp:
            return ""
        fn = item.func
        index = item.index if fn is not None and takes_map_index(fn) else None
        try:
            return item_fingerprint(m.base_fp, binding, index)
        except Unhashable:
            return ""

    # -- attempts and results (worker thread, outside the engine lock) ----------------------
    def prepare_result(self, rec: Any, value: Any) -> Prepared:
        """(fingerprint, bytes, error, MAC): what the journal keeps of a completed attempt;
        for a small result (``journal_tables.is_small``) (fingerprint, the value, None,
        ``SMALL``): neither pickled nor signed here, its run's packed row holds it.

        Never raises: whatever goes wrong is recorded as the reason it cannot be restored.
        """
        try:
            fp = rec.fingerprint
            if fp:  # the usual small result (``is_small`` written out), in one call
                kind = type(value)
                if kind in TRIVIAL_TYPES or (kind is int and value.bit_length() <= _SMALL_BITS) \
                        or (kind in _FLAT_SMALL and len(value) <= SMALL_MAX):
                    journal = self._journal
                    if journal is not None and journal.enabled and journal.signer is not None:
                        return fp, value, None, SMALL
            return self._prepare(rec, value)
        except Exception as exc:  # noqa: BLE001 - the journal must never fail a task
            return None, None, f"{type(exc).__name__}: {exc}", None

    def _prepare(self, rec: Any, value: Any) -> Prepared:
        fp = self.fingerprint_of(rec)
        if fp is None:
            return None, None, "the task's definition cannot be fingerprinted", None
        journal = self._journal  # never reopened from a worker: that is the engine's to do
        if journal is None or not journal.enabled or journal.signer is None:
            return fp, None, "the journal is closed or off", None
        if is_small(value):
            return fp, value, None, SMALL
        signer, limit = journal.signer, journal.blob_limit
        if type(value) not in NO_SIZE:
            size = pickled_at_least(value)
            if size > limit:  # refused before pickling: no second copy, no seconds spent
                return fp, None, journal.too_large(size), None
        try:
            blob = dumps(value)
        except Exception as exc:  # noqa: BLE001 - recorded as such, the run goes on
            return fp, None, f"{type(exc).__name__}: {exc}", None
        if len(blob) > limit:
            return fp, None, journal.too_large(len(blob)), None
        return fp, blob, None, signer.result(fp, blob)

    def record_result(self, rec: Any, prepared: Prepared) -> None:
        if self.run_id is None:
            return
        fp, blob, error, mac = prepared
        sink = self.sink
        if mac is SMALL and sink is not None:  # read with the record's latest move (collect)
            rec.jsmall, rec.jsfp = blob, fp  # no tuple kept per task until the commit
            if rec.parent is None:  # an item's move to COMPLETED, just made under the same
                sink._touched.append(rec)  # hold of the engine's lock, listed it already
            return
        journal = self._journal or self.journal
        if mac is SMALL:  # Journal.small_result written out
            if journal.enabled:
                journal._small_q.append((self.run_id, rec.id, rec.name, fp, blob, time.time()))
                if journal._idle:
                    journal._rouse()
        else:
            journal.result(self.run_id, rec.id, rec.name, fp, blob, error, time.time(), mac)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
