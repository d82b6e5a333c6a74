"""Restoring: the results a new definition finds in the journal (resume after a run
that did not finish, or ``cache=True``), read back only through the verified path, and
recorded again in the open run so that a second crash still finds them.

A mixin of ``Recorder`` (``recorder.py``), which records; everything here runs outside
the engine's lock but ``record_restored``.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from .fingerprint import Unhashable, new_memo
from .journal import SMALL, Journal, JournalWarning, RunInfo
from .model import Task, TaskStatus, output_refs
from .trigger_rules import DEFAULT as DEFAULT_RULE

log = logging.getLogger(__name__)
_LATER = object()  # an upstream task of the same batch has no fingerprint yet
_UNKNOWN = object()  # an upstream fingerprint is known only once it ran (a map's)
_WARNED: set[str] = set()  # reasons a task was said not restorable (each said once)


class Restoring:
    """``Recorder``'s reading back (see the module docstring)."""

    # what it uses of the recorder (set by ``Recorder.__init__``)
    journal: Journal
    _journal: Journal | None
    run_id: int | None
    resume_from: RunInfo | None
    resume_runs: tuple[int, ...]
    restored: list[str]  # names restored since the last summary
    unhashable: dict[str, str]  # task name -> why it cannot be fingerprinted
    _blobs: dict[str, tuple[Any, str, Any]]  # task id -> (blob, fingerprint, MAC) to record again
    deferred: set[str]  # ids of tasks to look up as they start (an upstream map's fingerprint)
    _lock: threading.Lock
    fingerprint: Callable[..., str]
    fingerprint_of: Callable[[Any], str | None]
    origin: Callable[[], str]
    _define_row: Callable[[Any], None]

    def restorations(self, batch: list[Task], lookup: Callable[[Any], Any]) -> dict[str, Any]:
        """task id -> (value, when, source) for new tasks of ``batch`` found in the journal.

        Only when a resume is pending (the last run did not finish) or a task
        opts into caching. ``lookup`` finds a known task's record by Task, id or
        name (its fingerprint is computed on demand). Unresolvable dependencies
        are left to the definition to explain: such a task is simply not restored.
        """
        if not self.journal.enabled or (self.resume_from is None
                                        and not any(t.cache for t in batch)):
            return {}
        in_batch = {t.id: t for t in batch}
        names = {t.name: t.id for t in batch}
        fps: dict[str, str | None] = {}
        names_of: dict[str, str] = {}  # upstream task id -> its name
        found: dict[str, Any] = {}
        pending = list(batch)
        memo = new_memo()  # one moment: a value many tasks read is hashed once
        unknown: set[str] = set()  # fingerprints known only later: maps', and after them
        deferred: set[str] = set()  # of those, the tasks looked up as they start instead
        hoped = self.resume_from is not None  # else only cache=True tasks restore
        while pending:
            waiting = []
            for task in pending:
                ups = self._upstream_fingerprints(task, in_batch, names, fps, lookup, names_of,
                                                  unknown)
                if ups is _LATER:
                    waiting.append(task)
                    continue
                if ups is _UNKNOWN or task._map is not None:  # a map restores item by item
                    unknown.add(task.id)
                    fps[task.id] = None
                    if task._map is None and (hoped or task.cache):
                        deferred.add(task.id)  # kept_at_start
                    continue
                fps[task.id] = fp = None if ups is None \
                    else self._task_fp(task, ups, names_of, memo)
                if fp is not None and task.trigger_rule is not DEFAULT_RULE \
                        and not _all_completed(ups, found, in_batch, lookup):
                    continue  # its recorded result may have been computed after a failure
                if fp is not None:
                    hit = self._lookup_result(task, fp)
                    if hit is not None:
                        found[task.id] = (*hit, fp)
            if len(waiting) == len(pending):  # a cycle or a bad reference: define() explains
                break
            pending = waiting
        if deferred:
            with self._lock:
                self.deferred.update(deferred)
        return found

    def _upstream_fingerprints(self, task: Task, in_batch: Mapping[str, Task],
                               names: Mapping[str, str], fps: Mapping[str, str | None],
                               lookup: Callable[[Any], Any], names_of: dict[str, str],
                               unknown: set[str] | frozenset[str] = frozenset()) -> Any:
        """Upstream fingerprints in the scheduler's order; _LATER if one in the batch is not
        done yet; _UNKNOWN if one is not known before it ran (a map's, known once its items
        ended); None if one is unknown or unhashable (then the task is not restorable)."""
        ids: dict[str, None] = {}
        refs = [r.task_id for v in task.parameters.values() for r in output_refs(v)] \
            if task.parameters else []
        for dep in [*task.dependencies, *refs]:
            dep_id = dep.id if isinstance(dep, Task) else dep
            if dep_id not in in_batch and isinstance(dep_id, str) and dep_id in names:
                dep_id = names[dep_id]
            if dep_id not in in_batch:
                rec = lookup(dep)
                if rec is None:
                    return None
                dep_id = rec.id
            ids[dep_id] = None
        ups = []
        for dep_id in ids:
            if dep_id in in_batch:
                if dep_id not in fps:
                    return _LATER
                if dep_id in unknown:
                    return _UNKNOWN
                fp = fps[dep_id]
            else:
                up = lookup(dep_id)
                fp = self.fingerprint_of(up)
                if fp is None and up.fingerprint is None and (
                        up.mapping is not None or up.id in self.deferred):
                    return _UNKNOWN
            if fp is None:
                return None
            ups.append((dep_id, fp))
            names_of[dep_id] = in_batch[dep_id].name if dep_id in in_batch else lookup(dep_id).name
        return ups

    def _task_fp(self, task: Task, ups: list[tuple[str, str]],
                 names_of: Mapping[str, str], memo: object = None) -> str | None:
        try:
            return self.fingerprint(task, [fp for _, fp in ups], dict(ups),
                                    frozenset(names_of[i] for i, _ in ups), memo)
        except Unhashable as exc:
            with self._lock:
                self.unhashable[task.name] = str(exc)
                expected = task.cache or self.resume_from is not None  # a restore was hoped for
                first = expected and str(exc) not in _WARNED
                if first and len(_WARNED) < 10_000:
                    _WARNED.add(str(exc))
            if first:  # one line per reason and process, however many tasks share it
                kind = "cache=True task" if task.cache else "task"
                warnings.warn(f"{kind} {task.name!r} cannot be restored: {exc}",
                              JournalWarning, stacklevel=5)
            return None

    def _find(self, fp: str, cache: bool) -> tuple[Any, float, str, Any, Any] | None:
        """(value, when, source, blob, MAC) of the result recorded for ``fp`` in the runs
        being resumed, else (``cache``) in any run; None if none verifies. Raises what
        unpickling raises."""
        hit, source = None, ""
        if self.resume_from is not None:
            hit = self.journal.restorable_hit(self.resume_runs, fp)
            source = self.origin()
        if hit is None and cache:
            hit, source = self.journal.restorable_hit(None, fp), "the cache"
        if hit is None:
            return None
        blob, when, mac = hit  # its MAC verified: written by this user's key, for this fp
        value = blob if mac is SMALL else pickle.loads(blob)  # small: the value itself
        return value, when, source, blob, mac

    def _safe_find(self, task: Task, fp: str) -> tuple[Any, float, str, Any, Any] | None:
        """``_find`` for ``task``; None (and one log line) when reading it back fails."""
        try:
            return self._find(fp, task.cache)
        except Exception as exc:  # noqa: BLE001 - it runs instead
            log.warning("could not restore %r from the journal (%s); running it", task.name, exc)
            return None

    def _lookup_result(self, task: Task, fp: str) -> tuple[Any, float, str] | None:
        found = self._safe_find(task, fp)
        if found is None:
            return None
        value, when, source, blob, mac = found
        with self._lock:
            self.restored.append(task.name)
            self._blobs[task.id] = (blob, fp, mac)  # recorded again in this run (record_restored)
        return value, when, source

    def kept_at_start(self, rec: Any) -> tuple[Any, float, str] | None:
        """(value, when, source) of a cached (or resumed) task's result found as its first
        attempt starts, with the fingerprint made then; None to run it. Its definition
        could not look it up when an upstream fingerprint was not known yet (a map's is
        known once its items ended); a rule task only after every upstream completed."""
        with self._lock:
            if rec.id not in self.deferred:
                return None  # looked up at definition already
            self.deferred.discard(rec.id)
        fp = rec.fingerprint
        if not fp or not self.journal.enabled:
            return None
        if rec.rule is not None and any(up.status is not TaskStatus.COMPLETED for up in rec.ups):
            return None
        found = self._safe_find(rec.task, fp)
        return None if found is None else found[:3]

    def run_at_start(self, task_id: str) -> None:
        """The task was asked to run (a rerun, retry or redefinition): never restored as it
        starts."""
        with self._lock:
            self.deferred.discard(task_id)

    def record_restored(self, rec: Any) -> None:
        """Under the engine lock, once ``rec`` was restored: record its result in the open
        run too, so that a second crash still finds it."""
        with self._lock:
            kept = self._blobs.pop(rec.id, None)
        if kept is not None and self.run_id is not None:
            blob, fp, mac = kept
            self._define_row(rec)
            if mac is SMALL:  # the value itself, packed again
                self.journal.small_result(self.run_id, rec.id, rec.name, rec.fingerprint, blob,
                                          rec.restored or time.time())
                return
            self.journal.result(self.run_id, rec.id, rec.name, rec.fingerprint, blob, None,
                                rec.restored or time.time(),
                                mac if fp == rec.fingerprint else None)

    def read_back(self, run_id: int, fp: str) -> Any:
        """A result this process recorded in run ``run_id``, read back through the verified
        path (``restorable_hit``; raises ``LookupError`` when no row verifies). The
        memory budget never drops a small result (it is under ``memory_budget.MIN_SIZE``),
        but one found here (its packed row newer) comes back as itself."""
        journal = self._journal
        hit = None if journal is None else journal.restorable_hit(run_id, fp)
        if hit is None:
            raise LookupError(f"no result row of run {run_id} with that fingerprint verifies")
        return hit[0] if hit[2] is SMALL else pickle.loads(hit[0])

    def take_summary(self) -> str | None:
        """One line on what was restored since the last call (None if nothing)."""
        with self._lock:
            names, self.restored = self.restored, []
        if not names:
            return None
        shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more"
                                                         if len(names) > 5 else "")
        return (f"restored {len(names)} finished task{'s' * (len(names) != 1)} from {self.origin()} "
                f"({shown}); --fresh (or orchestrator.rerun) recomputes")


def _all_completed(ups: list[tuple[str, str]], found: Mapping[str, Any],
                   in_batch: Mapping[str, Task], lookup: Callable[[Any], Any]) -> bool:
    """Every upstream task of a rule task is restored in this batch or completed already."""
    for dep_id, _ in ups:
        if dep_id in in_batch:
            if dep_id not in found:
                return False
        else:
            rec = lookup(dep_id)
            if rec is None or rec.status is not TaskStatus.COMPLETED:
                return False
    return True
