"""Journal upkeep (``%codo_journal``, ``Journal.info/prune/clear_cache``): what the file
holds, each removal and its dry run, the file shrinking on disk, and what is never
removed (pinned results, runs of a live process, the current run); an old file made
without incremental auto-vacuum converted; the magic's usage errors one line each."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import warnings

import pandas as pd
import pytest
from conftest import fresh_ip, raw
from IPython.core.error import UsageError

from codomyrmex_nb.core import sessions
from codomyrmex_nb.core.journal import Journal, JournalWarning
from codomyrmex_nb.core.journal_upkeep import parse_age, size_on_disk
from codomyrmex_nb.notebook.magics import current_orchestrator

MB = 2**20
DAY = 86400.0


def add_run(journal: Journal, n: int, size: int = 100_000, ended: float | None = None,
            name: str = "t", end: bool = True) -> int:
    """A run with one task and one result of ``size`` random bytes (fingerprint fp<n>)."""
    run = journal.begin_run()
    journal.define(run, "t", name, f"fp{n}")
    journal.transition(run, 1, time.time(), "t", name, "running", "completed", None)
    journal.result(run, "t", name, f"fp{n}", os.urandom(size), None, time.time())
    if end:
        journal.end_run(run, time=ended)
    assert journal.flush(10)
    return run


def on_disk(journal: Journal) -> int:
    return sum(size_on_disk(journal.path))


# -- what the journal holds ----------------------------------------------------------------


def test_info_shows_the_file_its_size_runs_and_the_space_each_takes(make_journal):
    journal = make_journal()
    runs = [add_run(journal, n, size=(n + 1) * 50_000) for n in range(3)]
    journal.result(runs[-1], "u", "u", "err", None, "could not pickle", 1.0)  # no value
    assert journal.flush(10)
    info = journal.info()
    assert info.enabled and info.path == str(journal.path)
    db, wal = os.path.getsize(journal.path), os.path.getsize(f"{journal.path}-wal")
    assert (info.db_bytes, info.wal_bytes, info.size_on_disk) == (db, wal, db + wal)
    assert [r.run_id for r in info.runs] == runs[::-1]  # newest first
    assert [r.results for r in info.runs] == [1, 1, 1]  # the error row is no cached result
    assert [r.result_bytes for r in info.runs] == [150_000, 100_000, 50_000]
    assert all(r.history_bytes > 0 and r.tasks >= 1 for r in info.runs)
    assert info.auto_vacuum == "incremental"
    totals = info.as_dict()
    assert totals["runs"] == 3 and totals["results"] == 3 and totals["result_bytes"] == 300_000
    frame = info.frame()
    assert list(frame.columns) == ["run", "started", "status", "tasks", "results",
                                   "result_bytes", "history_bytes"]
    assert frame["run"].tolist() == runs[::-1] and frame["status"].eq("finished").all()
    line = info.summary()
    assert str(journal.path) in line and "3 runs, 3 cached results (300 KB)" in line


def test_info_of_a_journal_that_is_off(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    journal.close()
    info = journal.info()
    assert not info.enabled and info.runs == () and "is off" in info.summary()
    assert journal.prune(keep_runs=1).error == "the run journal is off"


# -- removing -------------------------------------------------------------------------------


def test_prune_keep_runs_removes_all_but_the_newest(make_journal):
    journal = make_journal()
    runs = [add_run(journal, n) for n in range(5)]
    removal = journal.prune(keep_runs=2)
    assert removal.error is None and not removal.dry_run
    assert removal.runs == runs[:3] and removal.results == 3 and removal.freed >= 300_000
    assert [r.run_id for r in journal.history()] == runs[:-3:-1]
    assert journal.restorable(None, "fp0") is None and journal.restorable(None, "fp4")
    assert journal.definitions(runs[0]) == [] and journal.definitions(runs[4])
    assert "removed 3 runs (1, 2, 3) with 3 cached results" in removal.summary()


def test_prune_older_than_goes_by_when_a_run_was_last_heard_of(make_journal):
    journal = make_journal()
    now = time.time()
    old = [add_run(journal, n, ended=now - 40 * DAY) for n in range(2)]
    recent = [add_run(journal, n, ended=now - 2 * DAY) for n in range(2, 4)]
    assert journal.prune(older_than="30d", dry_run=True).runs == old
    removal = journal.prune(older_than="30d")
    assert removal.runs == old
    assert {r.run_id for r in journal.history()} == set(recent)
    assert journal.prune(older_than="3d").runs == []  # two days is not three
    assert journal.prune(older_than="36h").runs == recent


def test_keep_runs_and_older_than_together(make_journal):
    journal = make_journal()
    now = time.time()
    runs = [add_run(journal, n, ended=now - (10 - n) * DAY) for n in range(6)]  # 10..5 days
    # outside the 2 newest AND older than 7.5 days: runs 0..2 (10, 9, 8 days old)
    removal = journal.prune(keep_runs=2, older_than="7.5d", dry_run=True)
    assert removal.runs == runs[:3]
    removal = journal.prune(keep_runs=5, older_than="7.5d")
    assert removal.runs == runs[:1]  # only the oldest is outside the 5 newest
    assert journal.prune(keep_runs=0, older_than=12 * DAY).runs == []  # none that old


@pytest.mark.parametrize(("text", "seconds"), [("45s", 45), ("90m", 5400), ("12h", 43200),
                                               ("30d", 30 * DAY), ("1.5h", 5400), (" 2D ", 2 * DAY),
                                               (60, 60.0)])
def test_ages_accept_s_m_h_d(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["30", "30w", "d", "-1d", "", "soon"])
def test_an_age_without_a_known_unit_is_refused(text, make_journal):
    with pytest.raises(ValueError, match="s, m, h or d"):
        parse_age(text)
    journal = make_journal()
    add_run(journal, 0)
    with pytest.raises(ValueError):
        journal.prune(older_than=text)
    assert len(journal.history()) == 1


def test_prune_needs_an_option_and_a_sane_count(make_journal):
    journal = make_journal()
    add_run(journal, 0)
    with pytest.raises(ValueError, match="keep_runs=N and/or older_than"):
        journal.prune()
    with pytest.raises(ValueError, match="keep_runs must be a whole number >= 0"):
        journal.prune(keep_runs=-1)
    assert len(journal.history()) == 1


def test_a_dry_run_says_what_would_go_and_removes_nothing(make_journal):
    journal = make_journal()
    runs = [add_run(journal, n, size=200_000) for n in range(4)]
    before = on_disk(journal)
    dry = journal.prune(keep_runs=1, dry_run=True)
    assert dry.dry_run and dry.runs == runs[:3] and dry.results == 3
    assert dry.freed >= 600_000
    assert "would remove 3 runs" in dry.summary() and "nothing removed" in dry.summary()
    assert len(journal.history()) == 4 and on_disk(journal) == before
    cache = journal.clear_cache(dry_run=True)
    assert cache.results == 4 and cache.freed == 800_000
    assert all(journal.restorable(None, f"fp{n}") for n in range(4))
    real = journal.prune(keep_runs=1)  # the dry run told the truth
    assert (real.runs, real.results, real.freed) == (dry.runs, dry.results, dry.freed)


def test_clear_cache_of_one_task_or_all_keeps_runs_and_history(make_journal):
    journal = make_journal()
    runs = [add_run(journal, n, name="load" if n % 2 else "train") for n in range(4)]
    removal = journal.clear_cache("load")
    assert removal.results == 2 and removal.runs == []
    assert journal.restorable(None, "fp1") is None and journal.restorable(None, "fp3") is None
    assert journal.restorable(None, "fp0") and journal.restorable(None, "fp2")
    assert journal.clear_cache("nope").results == 0
    assert journal.clear_cache().results == 2
    assert all(journal.restorable(None, f"fp{n}") is None for n in range(4))
    assert [r.run_id for r in journal.history()] == runs[::-1]  # the runs stay
    assert all(journal.transitions(run) for run in runs)
    assert all(r.results == 0 and r.result_bytes == 0 for r in journal.info().runs)


# -- the file shrinks on disk ------------------------------------------------------------------


def test_the_file_shrinks_on_disk_after_a_prune(make_journal):
    journal = make_journal()
    runs = [add_run(journal, n, size=MB) for n in range(6)]
    before = on_disk(journal)
    assert before > 5 * MB
    removal = journal.prune(keep_runs=1)
    after = on_disk(journal)
    assert removal.runs == runs[:5] and (removal.before, removal.after) == (before, after)
    assert after < 2 * MB and before - after > 4 * MB
    with raw(journal.path) as conn:  # run to completion (one step frees one page), WAL truncated
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert os.path.getsize(f"{journal.path}-wal") == 0
    assert journal.restorable(runs[-1], "fp5")  # what stayed is intact
    assert "went from" in removal.summary()


def test_the_file_shrinks_after_clearing_the_cache(make_journal):
    journal = make_journal()
    for n in range(4):
        add_run(journal, n, size=MB)
    before = on_disk(journal)
    journal.clear_cache()
    assert on_disk(journal) < before - 3 * MB


def test_new_journals_use_incremental_auto_vacuum(make_journal):
    journal = make_journal()
    with raw(journal.path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2


def test_an_old_file_without_auto_vacuum_is_converted_when_first_pruned(make_journal, tmp_path):
    path = tmp_path / ".codomyrmex" / "j.sqlite"
    Journal(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("VACUUM")  # as a journal made before this version was
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
    journal = make_journal()
    runs = [add_run(journal, n, size=MB) for n in range(4)]
    with raw(journal.path) as conn:  # opening does not rewrite the file
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    before = on_disk(journal)
    assert journal.prune(keep_runs=1).runs == runs[:3]
    with raw(journal.path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert on_disk(journal) < before - 2 * MB
    add_run(journal, 9, size=MB)  # from now on the incremental vacuum frees the space
    before = on_disk(journal)
    journal.prune(keep_runs=1)
    assert on_disk(journal) < before - MB / 2
    assert journal.info().auto_vacuum == "incremental"


def test_the_size_bound_prunes_the_same_way_and_shrinks_the_file(make_journal):
    journal = make_journal(max_bytes=3 * MB, vacuum_interval=0.0)
    runs = [add_run(journal, n, size=MB // 2) for n in range(12)]
    kept = [r.run_id for r in journal.history()]
    assert len(kept) < 12 and kept[0] == runs[-1]
    with raw(journal.path) as conn:
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert on_disk(journal) < 4 * MB


# -- never removed ------------------------------------------------------------------------------


def test_a_pinned_result_is_never_removed(make_journal):
    journal = make_journal()
    runs = [add_run(journal, n) for n in range(4)]
    journal.result(runs[1], "u", "u", "other", os.urandom(1000), None, 1.0)
    assert journal.flush(10)
    journal.pinned.add((runs[0], "fp0"))  # dropped from memory: it will be read back
    journal.pinned.add((runs[1], "fp1"))
    removal = journal.prune(keep_runs=0)
    assert removal.runs == runs[2:]
    assert removal.kept == {runs[0]: "holds results dropped from memory",
                            runs[1]: "holds results dropped from memory"}
    assert journal.restorable(runs[0], "fp0") and journal.restorable(runs[1], "fp1")
    cache = journal.clear_cache()
    assert cache.results == 1 and cache.pinned == 2  # the unpinned row of a pinned run went
    assert journal.restorable(runs[1], "other") is None
    assert journal.restorable(runs[0], "fp0") and journal.restorable(runs[1], "fp1")
    journal.clear()  # %codo_reset --journal too
    assert journal.restorable(runs[0], "fp0") and journal.restorable(runs[1], "fp1")
    journal.pinned.clear()  # read back and no longer dropped: now they may go
    assert journal.prune(keep_runs=0).runs == runs[:2]
    assert journal.history() == []


def test_clearing_keeps_the_runs_of_another_live_process_and_says_so(make_journal):
    """``%codo_reset --journal`` from one kernel while another still runs on the file (and
    may read its dropped results back): its runs and their results stay."""
    journal = make_journal()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        born = sessions.start_time(sleeper.pid)
        mine = add_run(journal, 0)
        live = add_run(journal, 1)
        with raw(journal.path) as conn:  # the second run is the other process's
            conn.execute("UPDATE runs SET pid = ?, pstarted = ? WHERE run_id = ?",
                         (sleeper.pid, born, live))
        removal = journal.clear()
        assert journal.restorable(live, "fp1") is not None  # the other process reads it back
        assert journal.restorable(mine, "fp0") is None
        assert removal.runs == [mine] and removal.kept == {live: "its process still runs"}
        assert "kept run 2 (its process still runs)" in removal.summary()
        sleeper.kill()
        sleeper.wait(10)
        assert journal.clear().runs == [live]  # gone now: it may go
        assert journal.history() == []
    finally:
        sleeper.kill()
        sleeper.wait(10)


def test_the_size_bound_never_removes_a_pinned_result(make_journal):
    journal = make_journal(max_bytes=2 * MB, vacuum_interval=0.0)
    first = add_run(journal, 0, size=MB // 2)
    journal.pinned.add((first, "fp0"))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for n in range(1, 10):
            add_run(journal, n, size=MB // 2)
    runs = [r.run_id for r in journal.history()]
    assert first in runs and len(runs) < 10  # others went, not the pinned one
    assert journal.restorable(first, "fp0")
    assert not [w for w in record if "over its bound" in str(w.message)]


def test_runs_of_another_live_process_are_never_removed(make_journal):
    journal = make_journal()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        born = sessions.start_time(sleeper.pid)
        add_run(journal, 0)
        with raw(journal.path) as conn:  # another process's runs: one ended, one open
            ids = [conn.execute("INSERT INTO runs(started, ended, status, pid, pstarted) VALUES "
                                "(1.0, ?, ?, ?, ?)", (end, status, sleeper.pid, born)).lastrowid
                   for end, status in ((2.0, "finished"), (None, "running"))]
        add_run(journal, 1)
        removal = journal.prune(keep_runs=0)
        assert removal.kept == {i: "its process still runs" for i in ids}
        assert {r.run_id for r in journal.history()} == set(ids)
        assert journal.clear_cache().kept == {}  # they hold no result; nothing else left
        sleeper.kill()
        sleeper.wait(10)
        assert journal.prune(keep_runs=0).runs == ids  # gone now: they may go
    finally:
        sleeper.kill()
        sleeper.wait(10)


def test_the_current_run_is_never_removed_while_it_records(make_journal):
    journal = make_journal(commit_interval=0.0)
    old = [add_run(journal, n) for n in range(3)]
    current = add_run(journal, 3, end=False)
    stop = threading.Event()
    recorded = []

    def record() -> None:  # a run recording while the prunes go on (a few MB in all)
        for n in range(3000):
            if stop.is_set():
                break
            journal.result(current, f"t{n}", "t", f"live{n}", os.urandom(2_000), None, 1.0)
            recorded.append(n)

    writer = threading.Thread(target=record)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer.start()
        try:
            journal.flush(10)  # some of the run is recorded, the rest goes on below
            removals = [journal.prune(keep_runs=0) for _ in range(5)]
            removals += [journal.clear_cache("t") for _ in range(3)]
        finally:
            stop.set()
            writer.join(10)
        assert journal.flush(10)
    assert [str(w.message) for w in caught if issubclass(w.category, JournalWarning)] == []
    assert all(r.error is None for r in removals)
    assert removals[0].runs == old and removals[0].kept == {current: "open in this process"}
    assert [r.run_id for r in journal.history()] == [current]
    assert all(journal.restorable(current, f"live{n}") for n in recorded)
    journal.end_run(current)
    assert journal.flush(10)
    assert journal.prune(keep_runs=0).runs == [current]  # ended: it may go now


# -- the orchestrator and the magic ------------------------------------------------------------


def test_the_orchestrator_reports_and_prunes_its_journal(make_orch, tmp_path):
    orch = make_orch(journal=tmp_path / "j.sqlite")
    for n in range(3):
        orch.add_task(_task(f"big{n}"))
        orch.start_execution()
        assert orch.wait_for_completion(30)
        orch.stop_execution()
    info = orch.journal_info()
    assert len(info.runs) == 3 and info.results == 3 and info.result_bytes > 3 * 100_000
    removal = orch.prune_journal(keep_runs=1)
    assert len(removal.runs) == 2
    assert orch.clear_journal_cache("big2").results == 1
    assert orch.journal_info().results == 0
    assert make_orch(journal=False).journal_info() is None


def _task(name: str):
    from codomyrmex_nb import Task

    return Task(name=name, func=lambda: os.urandom(150_000))


@pytest.fixture
def ip(shell, tmp_path):
    for ip in fresh_ip(shell, ("info",)):
        current_orchestrator().use_journal(tmp_path / "j.sqlite")
        yield ip


@pytest.mark.parametrize(("line", "expected"), [
    ("--keep-runs 2", "--keep-runs and --older-than go with --prune"),
    ("--prune", "--prune needs --keep-runs N and/or --older-than AGE"),
    ("--prune --keep-runs 1 --clear-cache", "give --prune or --clear-cache, not both"),
    ("--dry-run", "--dry-run goes with --prune or --clear-cache"),
    ("--prune --keep-runs -1", "--keep-runs must be >= 0, got -1"),
    ("--prune --older-than 30", "--older-than: age '30' not understood"),
    ("--prune --keep-runs x", "argument --keep-runs: invalid int value: 'x'"),
    ("--everything", "unrecognized arguments: --everything"),
])
def test_magic_argument_mistakes_are_one_line_usage_errors(ip, capsys, line, expected):
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("codo_journal", line)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("%codo_journal: ")
    ip.run_cell(f"%codo_journal {line}")  # in a cell: one line, no traceback
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_magic_shows_prunes_and_clears(ip, capsys):
    orch = current_orchestrator()
    for n in range(3):
        orch.add_task(_task(f"big{n}"))
        orch.start_execution()
        assert orch.wait_for_completion(30)
        orch.stop_execution()
    capsys.readouterr()
    ip.run_cell("info = %codo_journal  # what it holds")
    out = capsys.readouterr().out
    frame = ip.user_ns["info"]
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert "codo_journal: " in out and "3 runs, 3 cached results" in out
    ip.run_line_magic("codo_journal", "--prune --keep-runs 1 --dry-run")
    out = capsys.readouterr().out
    assert "codo_journal --prune --dry-run: would remove 2 runs" in out
    assert len(orch.journal_info().runs) == 3
    frame = ip.run_line_magic("codo_journal", "--prune --older-than 0s --keep-runs 1")
    out = capsys.readouterr().out
    assert "codo_journal --prune: removed 2 runs" in out and len(frame) == 1
    ip.run_line_magic("codo_journal", "--clear-cache nope")
    assert "no cached result of a task named 'nope'" in capsys.readouterr().out
    frame = ip.run_line_magic("codo_journal", "--clear-cache big2")
    assert "removed 1 cached result" in capsys.readouterr().out
    assert frame["results"].tolist() == [0]


def test_clear_cache_says_it_swept_spill_files_and_nothing_to_clear_only_when_so(
        ip, capsys, tmp_path):
    """A killed process left a spill file of task ``big`` (no row: it was over the cap):
    clearing ``big`` removes it and says so, with its space; a second clear has nothing."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = sessions.start_time(child.pid)
    child.kill()
    child.wait(10)
    folder = tmp_path / "j.spill"
    folder.mkdir(exist_ok=True)
    (folder / f"{child.pid}.{int(started)}-big-1.pkl").write_bytes(b"x" * 2_500_000)
    ip.run_line_magic("codo_journal", "--clear-cache big --dry-run")
    out = capsys.readouterr().out
    assert "--clear-cache --dry-run: no cached result of a task named 'big'; would remove " \
           "1 spill file of processes that no longer run (2.5 MB)" in out, out
    ip.run_line_magic("codo_journal", "--clear-cache big")
    out = capsys.readouterr().out
    assert "codo_journal --clear-cache: no cached result of a task named 'big'; removed 1 " \
           "spill file of processes that no longer run (2.5 MB)" in out, out
    assert list(folder.iterdir()) == []
    ip.run_line_magic("codo_journal", "--clear-cache big")
    out = capsys.readouterr().out
    assert "no cached result of a task named 'big'; nothing to clear" in out, out
    ip.run_line_magic("codo_journal", "--clear-cache")
    assert "codo_journal --clear-cache: nothing to clear\n" in capsys.readouterr().out


def test_the_magic_help_is_plain_text(ip, capsys):
    ip.run_cell("%codo_journal?")
    out = capsys.readouterr().out
    assert "%codo_journal [--prune] [--keep-runs N] [--older-than AGE]" in out
    assert "::" not in out and "``" not in out and "<" not in out


def test_the_magic_without_a_journal_says_so(ip, capsys):
    current_orchestrator().use_journal(False)
    assert ip.run_line_magic("codo_journal", "") is None
    assert "the run journal is off" in capsys.readouterr().out


# -- small results, packed with their run's history (journal format 4) -------------------------


def small_run(journal: Journal) -> int:
    """An ended run whose two results are small: stored in its packed row, no result row."""
    run = journal.begin_run()
    for seq, (task, value) in enumerate((("load", 7), ("train", "short text"))):
        journal.define(run, task, task, f"fp-{task}")
        journal.transition(run, seq, time.time(), task, task, "running", "completed", None)
        journal.small_result(run, task, task, f"fp-{task}", value, time.time())
    journal.end_run(run)
    assert journal.flush(10)
    return run


def test_small_results_are_counted_cleared_by_name_and_dry_run_says_so(make_journal):
    journal = make_journal()
    run = small_run(journal)
    big = add_run(journal, 9)
    other = Journal(journal.path)  # another reader that indexed them before the clear
    try:
        assert other.restorable(None, "fp-load") is not None
        history = (journal.transitions(run), journal.definitions(run))
        info = {r.run_id: r for r in journal.info().runs}
        assert info[run].results == 2 and 0 < info[run].result_bytes < 1000
        assert info[big].results == 1
        dry = journal.clear_cache("load", dry_run=True)
        assert (dry.results, dry.dry_run) == (1, True) and dry.freed > 0
        assert journal.restorable_hit(None, "fp-load")[0] == 7  # nothing removed
        removal = journal.clear_cache("load")
        assert (removal.results, removal.freed) == (dry.results, dry.freed)
        assert journal.restorable(None, "fp-load") is None
        assert other.restorable(None, "fp-load") is None  # its index follows the file
        assert journal.restorable_hit(None, "fp-train")[0] == "short text"
        assert other.restorable_hit(None, "fp-train")[0] == "short text"
        assert (journal.transitions(run), journal.definitions(run)) == history  # kept
        assert journal.clear_cache().results == 2  # the other small one and the big one
        assert journal.restorable(None, "fp-train") is None
        assert all(r.results == 0 and r.result_bytes == 0 for r in journal.info().runs)
        assert (journal.transitions(run), journal.definitions(run)) == history
        with Journal(journal.path) as fresh:  # the rewritten row verifies: read, not skipped
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert fresh.transitions(run) == history[0]
    finally:
        other.close()


def test_small_results_of_a_live_processs_run_are_kept(make_journal):
    journal = make_journal()
    run = journal.begin_run()  # open in this process: never cleared
    journal.small_result(run, "t", "t", "fp-t", None, time.time())
    assert journal.flush(10)
    removal = journal.clear_cache()
    assert removal.results == 0 and removal.kept == {run: "open in this process"}
    assert journal.restorable_hit(None, "fp-t")[:1] == (None,)
    journal.end_run(run)
    assert journal.flush(10)
    assert journal.clear_cache().results == 1
    assert journal.restorable(None, "fp-t") is None


def test_a_prune_counts_the_small_results_of_the_runs_it_removes(make_journal):
    journal = make_journal()
    runs = [small_run(journal), small_run(journal)]
    dry = journal.prune(keep_runs=1, dry_run=True)
    assert (dry.runs, dry.results) == (runs[:1], 2)
    assert journal.prune(keep_runs=1).results == 2
    assert journal.restorable_hit(None, "fp-load")[0] == 7  # the newer run's, kept
