"""Where the memory budget's results live when dropped: the engine's journal, spill files.

``memory_budget.py`` decides what to drop; this is the engine's side of it: it
builds the budget, measures each result in the worker (outside the engine lock),
spills a result the journal refused as too large to a signed file of its own when
the budget may want it dropped, registers results as the engine stores them, and
reads dropped ones back (from the spill file, or through the journal's verified
path; a stopped engine's journal is opened for the read and closed after it, so no
writer thread outlives ``stop_execution``). It pins in the journal the results it
may read back, so the size bound keeps them.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from typing import TYPE_CHECKING, Any

from .memory_budget import MIN_SIZE, Entry, MemoryBudget, ResultUnavailable, estimate, load_spill
from .memory_budget import spill as spill_to_file
from .spill_files import spill_folder

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

_budgets: weakref.WeakSet[MemoryBudget] = weakref.WeakSet()


@atexit.register
def _remove_spill_files() -> None:
    """Spill files are this process's own: none outlives it."""
    for budget in list(_budgets):
        budget.close()


class ResultStore:
    """One engine's link between its memory budget and its journal."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def make_budget(self, limit: int) -> MemoryBudget:
        budget = MemoryBudget(limit, self.read_back, journal_on=self.journal_on,
                              hurry=self.hurry, pin=self.pin, unpin=self.unpin,
                              alive=self.engine.sched.known)  # tasks and map items
        _budgets.add(budget)
        return budget

    def _journal(self) -> Any:
        recorder = self.engine.recorder
        return None if recorder is None else recorder._journal

    def journal_on(self) -> bool:
        """Could a journal hold results at all (off, or unwritable: nothing is dropped)?
        A journal closed while the engine is stopped counts as it was when last open."""
        recorder = self.engine.recorder
        if recorder is None:
            return False
        journal = recorder._journal
        return recorder.usable if journal is None else journal.enabled

    def hurry(self) -> None:
        journal = self._journal()
        if journal is not None:
            journal.commit_soon()

    def pin(self, key: tuple[int, str]) -> None:
        recorder = self.engine.recorder
        if recorder is not None:
            recorder.pinned.add(key)

    def unpin(self, key: tuple[int, str]) -> None:
        recorder = self.engine.recorder
        if recorder is not None:
            recorder.pinned.discard(key)

    # -- storing ---------------------------------------------------------------------------
    def measure(self, rec: Any, value: Any, prepared: tuple[Any, ...] | None) -> Any:
        """Worker thread, no lock: (size, spill file, (MAC, signer)) of a result the budget
        will hold (None below ``MIN_SIZE``). A result the journal refused as too large is
        spilled to a signed file of its own, so that it can be dropped too, when the budget
        may well want that: it is an eighth of the budget or more, or it takes the results
        over it (pickling a large result costs time and disk: not for nothing)."""
        size = estimate(value)
        if size < MIN_SIZE:
            return None
        budget, journal = self.engine.budget, self._journal()
        limit = None if budget is None else budget.limit
        if prepared is None or prepared[1] is not None or not prepared[0] or journal is None \
                or not journal.enabled or journal.signer is None or limit is None \
                or "larger than the journal" not in (prepared[2] or "") \
                or (size * 8 < limit and budget.held + budget.pending + size <= limit):
            return size, None, None
        path = self.engine.recorder.path  # type: ignore[union-attr]
        try:
            spilled, mac = spill_to_file(spill_folder(path), rec.id, value, prepared[0],
                                         journal.signer)
        except Exception as exc:  # noqa: BLE001 - it stays in memory
            log.warning("could not spill %r's result to a file (%s); it stays in memory",
                        rec.name, exc)
            return size, None, None
        return size, spilled, (mac, journal.signer)

    def hold(self, rec: Any, held: Any, prepared: tuple[Any, ...] | None) -> None:
        """Under the engine lock, before the result's journal row is queued (a quick commit
        must find it registered): the budget holds ``rec``'s result."""
        size, path, signed = held
        recorder = self.engine.recorder
        run_id = None if recorder is None else recorder.run_id
        stored = prepared is not None and prepared[1] is not None and run_id is not None
        self.engine.budget.add(  # type: ignore[union-attr]
            rec, rec.result, size, run_id, None if prepared is None else prepared[0], stored,
            path, None if signed is None else signed[0],
            (recorder, None if signed is None else signed[1]))

    def hold_restored(self, rec: Any) -> None:
        """Under the engine lock: a result restored from the journal (recorded again next)."""
        result = rec.result
        if result is None or self.engine.recorder is None:
            return
        size = estimate(result._data)
        if size >= MIN_SIZE:  # as a prepared result whose blob is recorded (its restored one)
            self.hold(rec, (size, None, None), (rec.fingerprint, b"restored", None, None))

    # -- reading back ---------------------------------------------------------------------------
    def read_back(self, entry: Entry) -> Any:
        """The budget's loader: a dropped result from its spill file or the journal (any
        thread, no lock held)."""
        name = entry.rec.name
        recorder, signer = entry.source
        if entry.spill is not None:
            return load_spill(entry, signer, name)
        fix = f"rerun the task (orchestrator.rerun({name!r}))"
        if recorder is None or entry.run_id is None or not entry.fp:
            raise ResultUnavailable(f"task {name!r}: its result was dropped from memory and "
                                    f"no journal holds it; {fix}")
        engine = self.engine
        why = "no stored copy verifies"
        try:
            if recorder.is_open:
                try:
                    return recorder.read_back(entry.run_id, entry.fp)
                except LookupError:
                    if recorder.is_open:
                        raise
            with engine._lifecycle:  # stopped: open the journal for this read, close it after
                opened = not recorder.is_open
                try:
                    recorder.ensure_open()
                    return recorder.read_back(entry.run_id, entry.fp)
                finally:
                    if opened and (not engine.running or recorder is not engine.recorder):
                        recorder.close()
        except LookupError:
            pass
        except Exception as exc:  # noqa: BLE001 - unpickling: said below
            why = f"{type(exc).__name__}: {exc}"
        raise ResultUnavailable(f"task {name!r}: its result was dropped from memory and "
                                f"cannot be read back from the journal {recorder.path} "
                                f"({why}); {fix}")
