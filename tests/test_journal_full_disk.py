"""A journal on a full disk: it turns off with a line naming the fix (the upkeep commands),
and those commands still work on it, free the space, and the journal turns back on.

The real case runs on a small tmpfs filled to the last byte (root only: skipped where
``mount`` is refused); the simulated one fails the open with SQLite's SQLITE_FULL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
import warnings

import pytest

from codomyrmex_nb import TaskOrchestrator
from codomyrmex_nb.core import journal_files
from codomyrmex_nb.core.journal import Journal, JournalWarning

RESULT = 700_000


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB tmpfs of its own, unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _journal_of_three_runs(path) -> None:
    journal = Journal(path)
    assert journal.enabled
    for n in range(3):
        run = journal.begin_run()
        journal.define(run, "t", "t", f"fp{n}")
        journal.result(run, "t", "t", f"fp{n}", os.urandom(RESULT), None, time.time())
        journal.end_run(run)
        assert journal.flush(10)
    journal.close()


def _fill(folder) -> None:
    """Write a file until the disk has not one byte left."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        block = b"\xff" * 65536
        while block:
            try:
                filler.write(block)
            except OSError:
                block = block[:len(block) // 2]


def _opened_off(path) -> tuple[Journal, list[str]]:
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        journal = Journal(path)
    return journal, [str(w.message) for w in said if issubclass(w.category, JournalWarning)]


def test_on_a_full_disk_the_journal_says_the_fix_and_a_prune_makes_room(small_disk):
    path = small_disk / "j.sqlite"
    _journal_of_three_runs(path)
    _fill(small_disk)
    journal, said = _opened_off(path)
    try:
        assert not journal.enabled
        assert len(said) == 1 and "is full" in said[0] and "%codo_journal --prune" in said[0] \
            and "--clear-cache" in said[0] and "turns back on" in said[0], said
        info = journal.info()  # what it holds is still shown
        assert len(info.runs) == 3 and "the journal is off: its disk is full" in info.summary()
        before = os.path.getsize(path)
        removal = journal.prune(keep_runs=1)
        assert removal.error is None, removal.summary()
        assert removal.runs == [1, 2] and os.path.getsize(path) < before - RESULT
        assert "there is room again" in removal.summary()
    finally:
        journal.close()
    again = Journal(path)  # back on, in WAL, with the run that was kept
    try:
        assert again.enabled and again.mode == "wal"
        assert [run.run_id for run in again.history()] == [3]
        assert again.restorable(3, "fp2") is not None
    finally:
        again.close()


def test_on_a_full_disk_the_orchestrator_clears_the_cache_and_records_again(small_disk):
    path = small_disk / "j.sqlite"
    _journal_of_three_runs(path)
    _fill(small_disk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JournalWarning)  # off: said (the first test)
        orch = TaskOrchestrator(1, journal=path)
        removal = orch.clear_journal_cache()
    assert removal is not None and removal.error is None, removal.summary()
    assert removal.results == 3 and "removed 3 cached results" in removal.summary()
    orch.create_task("after", func=lambda: b"x" * 100_000)
    orch.start_execution()
    assert orch.wait_for_completion(30)
    info = orch.journal_info()
    assert info.enabled and info.results == 1, info.summary()
    orch.stop_execution()


def test_a_journal_whose_open_fails_for_a_full_disk_keeps_its_upkeep(tmp_path, monkeypatch):
    path = tmp_path / "j.sqlite"
    _journal_of_three_runs(path)

    def full(self):
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode, error.sqlite_errorname = 13, "SQLITE_FULL"
        raise error

    monkeypatch.setattr(journal_files.JournalFiles, "_open_writer", full)
    journal, said = _opened_off(path)
    try:
        assert not journal.enabled and len(said) == 1 and "%codo_journal --prune" in said[0]
        dry = journal.clear_cache("t", dry_run=True)
        assert dry.results == 3 and "would remove 3 cached results" in dry.summary()
        removal = journal.clear_cache("t")
        assert removal.error is None and removal.results == 3, removal.summary()
    finally:
        journal.close()
    monkeypatch.undo()
    again = Journal(path)
    try:
        assert again.enabled and len(again.history()) == 3  # history stays, results went
        assert all(again.restorable(run.run_id, f"fp{n}") is None
                   for n, run in enumerate(reversed(again.history())))
    finally:
        again.close()


def test_an_unwritable_folder_is_not_taken_for_a_full_disk(tmp_path, monkeypatch):
    def refused(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(journal_files.JournalFiles, "_prepare_files", refused)
    journal, said = _opened_off(tmp_path / "j.sqlite")
    assert not journal.enabled and journal.full_disk is None
    assert "cannot write" in said[0] and "--prune" not in said[0]
    assert journal.prune(keep_runs=1).error == "the run journal is off"
