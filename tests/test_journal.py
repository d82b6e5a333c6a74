"""The run journal's storage layer: round trips, committed-only reads, permissions,
fallbacks (unwritable folder, no WAL, corrupted or truncated file), the size bound,
two processes at once, and a process killed mid-run."""

from __future__ import annotations

import importlib.machinery
import marshal
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import types
import warnings
from pathlib import Path

import pytest
from conftest import raw

from codomyrmex_nb import TaskOrchestrator
from codomyrmex_nb.core import journal as journal_module
from codomyrmex_nb.core import journal_files, journal_tables, journal_writer
from codomyrmex_nb.core.journal import Journal, JournalWarning, RunInfo, default_path

ROOT = Path(__file__).resolve().parents[1]


def journal_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, JournalWarning)]


# -- paths and permissions --------------------------------------------------------------


def test_default_path_one_per_notebook_else_one_per_folder(tmp_path):
    kernel = types.ModuleType("__main__")  # a kernel's or a REPL's: no file, no spec
    env = {"JPY_SESSION_NAME": "/home/me/work/My Analysis (v2).ipynb"}
    assert default_path(tmp_path, env, kernel) == \
        tmp_path / ".codomyrmex" / "My_Analysis_v2.sqlite"
    assert default_path(tmp_path, {}, kernel) == tmp_path / ".codomyrmex" / "folder.sqlite"
    assert default_path(tmp_path, {"JPY_SESSION_NAME": "..."}, kernel).name == "folder.sqlite"
    assert default_path(tmp_path, {"JPY_SESSION_NAME": "C:\\nb\\a.ipynb"}, kernel).name == \
        "a.sqlite"
    assert default_path(None, {}, kernel).parent == Path(os.getcwd()) / ".codomyrmex"


def test_default_path_of_a_script_is_named_after_the_script(tmp_path):
    script = types.ModuleType("__main__")
    script.__file__ = "/home/me/work/train model.py"
    assert default_path(tmp_path, {}, script).name == "train_model.sqlite"
    # a script started from a notebook (!python train.py) inherits JPY_SESSION_NAME
    assert default_path(tmp_path, {"JPY_SESSION_NAME": "nb.ipynb"}, script).name == \
        "train_model.sqlite"
    module = types.ModuleType("__main__")  # python -m tools.train, python -m tools
    module.__file__ = "/home/me/work/tools/train.py"
    module.__spec__ = importlib.machinery.ModuleSpec("tools.train", None)
    assert default_path(tmp_path, {}, module).name == "tools.train.sqlite"
    module.__spec__ = importlib.machinery.ModuleSpec("tools.__main__", None)
    assert default_path(tmp_path, {}, module).name == "tools.sqlite"
    stdin = types.ModuleType("__main__")  # python - < script.py
    stdin.__file__ = "<stdin>"
    assert default_path(tmp_path, {}, stdin).name == "folder.sqlite"
    launcher = types.ModuleType("__main__")  # a kernel before IPython takes __main__ over
    launcher.__file__ = "/venv/lib/site-packages/ipykernel_launcher.py"
    assert default_path(tmp_path, {"JPY_SESSION_NAME": "nb.ipynb"}, launcher).name == \
        "nb.sqlite"


def test_folder_owner_only_with_gitignore_and_file_0600(make_journal, tmp_path):
    journal = make_journal()
    assert journal.enabled and journal.mode == "wal"
    folder = tmp_path / ".codomyrmex"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / ".gitignore").read_text().strip() == "*"
    run = journal.begin_run()
    journal.result(run, "t", "t", "fp", b"x" * 100, None, 1.0)
    assert journal.flush(10)
    for file in folder.iterdir():
        if file.name.startswith("j.sqlite"):  # the database and its -wal / -shm
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


# -- recording and reading --------------------------------------------------------------


def test_round_trip(make_journal):
    journal = make_journal()
    assert journal.last_run() is None and journal.history() == []
    run = journal.begin_run()
    assert run > 0
    journal.define(run, "a1", "load", "fpA")
    journal.define(run, "b1", "clean", "fpB")
    journal.transition(run, 1, 10.0, "a1", "load", None, "pending", None)
    journal.transition(run, 2, 11.0, "a1", "load", "pending", "running", None)
    journal.transition(run, 3, 12.0, "a1", "load", "running", "completed", None)
    journal.result(run, "a1", "load", "fpA", b"result-a", None, 12.0)
    journal.transition(run, 4, 13.0, "b1", "clean", "running", "failed", "boom")
    journal.end_run(run, "stopped")
    assert journal.flush(10)
    info = journal.last_run()
    assert isinstance(info, RunInfo)
    assert (info.run_id, info.status, info.tasks, info.completed, info.failed) == \
        (run, "stopped", 2, 1, 1)
    assert info.ended is not None and info.started <= info.ended and info.last_time == 13.0
    assert journal.restorable(run, "fpA") == (b"result-a", 12.0)
    assert journal.restorable(run, "fpB") is None
    assert journal.restorable(run + 1, "fpA") is None
    # one commit window: each task's latest move, from the state it had before the window
    assert journal.transitions(run)[-1] == (4, 13.0, "b1", "clean", None, "failed", "boom")
    assert journal.transitions(run)[0] == (3, 12.0, "a1", "load", None, "completed", None)
    assert [row[0] for row in journal.transitions(run)] == [3, 4]
    assert journal.definitions(run) == [("a1", "load", "fpA"), ("b1", "clean", "fpB")]
    with Journal(journal.path) as again:  # what another process reads back
        assert again.transitions(run) == journal.transitions(run)
        assert again.last_run() == info


def test_counts_follow_each_tasks_latest_transition(make_journal):
    journal = make_journal()
    run = journal.begin_run()
    journal.define(run, "d", "defined only", None)
    for seq, task, status in [(1, "a", "running"), (2, "a", "completed"), (3, "b", "failed"),
                              (4, "c", "failed"), (5, "c", "running"), (6, "c", "completed")]:
        journal.transition(run, seq, float(seq), task, task, None, status, None)
    journal.end_run(run)
    assert journal.flush(10)
    info = journal.last_run()
    assert (info.tasks, info.completed, info.failed, info.status) == (4, 2, 1, "finished")


def test_a_run_continued_by_a_reopened_journal_keeps_its_counts(make_journal):
    journal = make_journal()
    run = journal.begin_run()
    journal.transition(run, 1, 1.0, "a", "a", None, "running", None)
    journal.transition(run, 2, 2.0, "a", "a", "running", "completed", None)
    journal.transition(run, 3, 3.0, "b", "b", None, "failed", None)
    journal.close()  # the engine stopped with the run still open (restored tasks only)
    again = make_journal(path=journal.path)
    again.transition(run, 4, 4.0, "b", "b", "failed", "completed", None)
    again.transition(run, 5, 5.0, "c", "c", None, "failed", None)
    assert again.flush(10)
    info = again.last_run()
    assert (info.tasks, info.completed, info.failed, info.last_time) == (3, 2, 1, 5.0)
    assert [row[0] for row in again.transitions(run)] == [2, 3, 4, 5]  # "a": its latest


V1_SCHEMA = """
CREATE TABLE runs(run_id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, ended REAL,
                  status TEXT);
CREATE TABLE definitions(run_id INTEGER, task_id TEXT, name TEXT, fingerprint TEXT);
CREATE TABLE transitions(run_id INTEGER, seq INTEGER, time REAL, task_id TEXT, name TEXT,
                         previous TEXT, status TEXT, detail TEXT);
CREATE TABLE results(run_id INTEGER, task_id TEXT, name TEXT, fingerprint TEXT, blob BLOB,
                     error TEXT, time REAL);
PRAGMA user_version = 1;
"""


def test_a_version_1_journal_is_converted_when_opened(tmp_path, make_journal):
    path = tmp_path / ".codomyrmex" / "old.sqlite"
    path.parent.mkdir(mode=0o700)
    with raw(path) as conn:
        conn.executescript(V1_SCHEMA)
        conn.execute("INSERT INTO runs VALUES (1, 1.0, 9.0, 'finished')")
        conn.execute("INSERT INTO runs VALUES (2, 10.0, NULL, 'running')")
        conn.executemany("INSERT INTO definitions VALUES (?, ?, ?, ?)",
                         [(2, "a", "a", "fpA"), (2, "z", "z", None)])
        conn.executemany("INSERT INTO transitions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            (1, 1, 2.0, "a", "a", "running", "completed", None),
            (2, 2, 12.0, "a", "a", "running", "completed", None),
            (2, 1, 11.0, "a", "a", "pending", "running", None),
            (2, 3, 13.0, "b", "b", "running", "FAILED", "boom")])
        conn.execute("INSERT INTO results VALUES (2, 'a', 'a', 'fpA', x'01', NULL, 14.0)")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal = make_journal(path=path)
        # its history stays; written before signing, nothing of it is ever read back
        first, second = sorted(journal.history(), key=lambda info: info.run_id)
        assert journal.transitions(2) == [] and journal.definitions(2) == []
        assert journal.restorable(2, "fpA") is None
    assert (first.status, first.tasks, first.completed, first.last_time) == \
        ("finished", 1, 1, 2.0)
    assert (second.status, second.tasks, second.completed, second.failed, second.last_time) == \
        ("running", 3, 1, 1, 14.0)
    messages = journal_warnings(record)
    assert len(messages) == 1 and "written before journals were signed" in messages[0]
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == journal_tables.SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "transitions" not in tables and "packed" in tables


def test_begin_run_is_committed_before_it_returns(make_journal):
    journal = make_journal(commit_interval=60.0)
    run = journal.begin_run()
    with raw(journal.path) as conn:
        assert conn.execute("SELECT status, ended FROM runs WHERE run_id = ?",
                            (run,)).fetchone() == ("running", None)
    assert journal.last_run().status == "running"


def test_a_result_is_restorable_only_once_committed(make_journal):
    journal = make_journal(commit_interval=60.0)  # nothing commits on its own in this test
    run = journal.begin_run()
    journal.result(run, "t", "t", "fp", b"payload", None, 5.0)
    assert journal.restorable(run, "fp") is None
    assert journal.restorable(None, "fp") is None
    assert journal.flush(10)
    assert journal.restorable(run, "fp") == (b"payload", 5.0)
    assert journal.restorable(None, "fp") == (b"payload", 5.0)


def test_records_commit_on_their_own_within_the_interval(make_journal):
    journal = make_journal(commit_interval=0.05)
    run = journal.begin_run()
    journal.result(run, "t", "t", "fp", b"payload", None, 5.0)
    deadline = time.monotonic() + 10
    while journal.restorable(run, "fp") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert journal.restorable(run, "fp") == (b"payload", 5.0)


def test_a_burst_of_transitions_is_a_handful_of_commits(make_journal):
    journal = make_journal(commit_interval=0.1)
    commits = []
    commit = journal._commit
    journal._commit = lambda **kw: commits.append(1) or commit(**kw)  # looked up each time
    run = journal.begin_run()
    for seq in range(10_000):
        journal.transition(run, seq, 1.0, f"t{seq}", "t", "running", "completed", None)
    assert journal.flush(30)
    assert 1 <= len(commits) <= 10
    assert journal.last_run().completed == 10_000


def test_restorable_any_run_takes_the_newest_and_skips_unserialisable(make_journal):
    journal = make_journal()
    first = journal.begin_run()
    journal.result(first, "t", "t", "fp", b"old", None, 1.0)
    journal.end_run(first)
    second = journal.begin_run()
    journal.result(second, "t", "t", "fp", b"new", None, 2.0)
    journal.result(second, "u", "u", "fpU", None, "TypeError: cannot pickle 'generator'", 2.0)
    journal.end_run(second)
    assert journal.flush(10)
    assert journal.restorable(None, "fp") == (b"new", 2.0)
    assert journal.restorable(first, "fp") == (b"old", 1.0)
    assert journal.restorable(second, "fpU") is None
    with raw(journal.path) as conn:  # recorded as such, never restorable
        assert conn.execute("SELECT blob, error FROM results WHERE fingerprint = 'fpU'"
                            ).fetchone() == (None, "TypeError: cannot pickle 'generator'")


def test_a_result_over_the_size_bound_is_recorded_as_an_error(make_journal):
    journal = make_journal(max_bytes=100_000)
    run = journal.begin_run()
    journal.result(run, "t", "t", "fp", b"x" * 200_000, None, 1.0)
    assert journal.flush(10)
    assert journal.restorable(run, "fp") is None
    with raw(journal.path) as conn:
        blob, error = conn.execute("SELECT blob, error FROM results").fetchone()
    assert blob is None and "larger than the journal's size bound" in error


def test_large_results_are_written_in_chunks_and_read_back_whole(make_journal, monkeypatch):
    monkeypatch.setattr(journal_tables, "CHUNK", 1000)  # so 10 KB counts as large
    journal = make_journal()
    run = journal.begin_run()
    big, small = os.urandom(10_500), b"small"
    journal.result(run, "s", "s", "fp-small", small, None, 1.0)
    journal.result(run, "b", "b", "fp-big", big, None, 2.0)
    journal.result(run, "n", "n", "fp-none", None, "could not pickle", 3.0)
    assert journal.flush(10)
    assert journal.restorable(run, "fp-big") == (big, 2.0)
    assert journal.restorable(run, "fp-small") == (small, 1.0)
    assert journal.restorable(run, "fp-none") is None


def test_history_newest_first_and_clear(make_journal):
    journal = make_journal()
    runs = []
    for n in range(3):
        run = journal.begin_run()
        journal.transition(run, 1, float(n), "t", "t", "running", "completed", None)
        journal.result(run, "t", "t", f"fp{n}", b"r", None, float(n))
        journal.end_run(run)
        runs.append(run)
    assert journal.flush(10)
    history = journal.history()
    assert [info.run_id for info in history] == runs[::-1]
    assert all(info.status == "finished" and info.completed == 1 for info in history)
    journal.clear()
    assert journal.history() == [] and journal.last_run() is None
    assert journal.restorable(None, "fp0") is None
    assert journal.begin_run() > runs[-1]  # ids never come back after a clear


def test_a_record_that_cannot_be_stored_is_dropped_alone(make_journal):
    journal = make_journal()
    run = journal.begin_run()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal.transition(run, 1, 1.0, "good", "good", None, "completed", None)
        journal.transition(run, 2, 1.0, object(), "bad", None, "completed", None)
        journal.result(run, "good", "good", "fp", b"ok", None, 1.0)
        assert journal.flush(10) is False
    assert len(journal_warnings(record)) == 1 and journal.dropped == 1
    assert journal.restorable(run, "fp") == (b"ok", 1.0)
    journal.transition(run, 3, 1.0, "later", "later", None, "completed", None)
    assert journal.flush(10)
    assert journal.last_run().completed == 2


def test_close_is_idempotent_and_later_calls_do_nothing(make_journal):
    journal = make_journal()
    run = journal.begin_run()
    journal.result(run, "t", "t", "fp", b"r", None, 1.0)
    journal.close()  # flushes first
    journal.close()
    assert not journal.enabled
    journal.transition(run, 1, 1.0, "t", "t", None, "completed", None)
    assert journal.flush() and journal.begin_run() == 0 and journal.history() == []
    with Journal(journal.path) as again:
        assert again.restorable(run, "fp") == (b"r", 1.0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_leaves_the_parents_journal_alone(make_journal):
    journal = make_journal()
    run = journal.begin_run()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        pid = os.fork()
    if pid == 0:  # the child: a quiet copy
        ok = journal.enabled is False and journal.begin_run() == 0
        journal.transition(run, 1, 1.0, "child", "child", None, "completed", None)
        os._exit(0 if ok and journal.flush() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    journal.transition(run, 2, 2.0, "parent", "parent", None, "completed", None)
    assert journal.flush(10)
    assert journal.last_run().completed == 1


# -- fallbacks --------------------------------------------------------------------------


def check_disabled(journal: Journal) -> None:
    assert journal.enabled is False
    assert journal.begin_run() == 0
    journal.define(0, "t", "t", "fp")
    journal.transition(0, 1, 1.0, "t", "t", None, "completed", None)
    journal.result(0, "t", "t", "fp", b"r", None, 1.0)
    journal.end_run(0)
    journal.clear()
    assert journal.flush() is True
    assert journal.last_run() is None and journal.history() == []
    assert journal.restorable(None, "fp") is None
    journal.close()


def test_unwritable_folder_turns_the_journal_off_with_one_warning(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal = Journal(blocker / ".codomyrmex" / "j.sqlite")
        check_disabled(journal)
    messages = journal_warnings(record)
    assert len(messages) == 1 and "\n" not in messages[0] and "journal off" in messages[0]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes through file permissions")
def test_read_only_folder_turns_the_journal_off_with_one_warning(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            check_disabled(Journal(folder / "j.sqlite"))
        assert len(journal_warnings(record)) == 1
    finally:
        folder.chmod(0o700)


def test_no_wal_falls_back_to_the_rollback_journal_with_one_warning(make_journal, monkeypatch):
    monkeypatch.setattr(journal_files, "_enable_wal", lambda conn: "delete")  # NFS answers so
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal = make_journal()
    messages = journal_warnings(record)
    assert len(messages) == 1 and "WAL" in messages[0] and "\n" not in messages[0]
    assert journal.enabled and journal.mode == "delete"
    with raw(journal.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    run = journal.begin_run()
    journal.result(run, "t", "t", "fp", b"r", None, 1.0)
    journal.end_run(run)
    assert journal.flush(10)
    assert journal.restorable(run, "fp") == (b"r", 1.0)
    assert journal.last_run().status == "finished"


def test_wal_refused_with_an_error_also_falls_back(make_journal, monkeypatch):
    def refuse(conn):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(journal_files, "_enable_wal", refuse)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal = make_journal()
    assert len(journal_warnings(record)) == 1 and journal.enabled and journal.mode == "delete"
    assert journal.begin_run() > 0


def aside_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def test_a_garbage_file_is_moved_aside_and_a_fresh_journal_started(make_journal, tmp_path):
    path = tmp_path / ".codomyrmex" / "j.sqlite"
    path.parent.mkdir(mode=0o700)
    garbage = b"this is not a database, " * 200
    path.write_bytes(garbage)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal = make_journal(path)
    messages = journal_warnings(record)
    assert len(messages) == 1 and "moved aside" in messages[0] and "\n" not in messages[0]
    [aside] = aside_files(path)
    assert aside.read_bytes() == garbage  # never deleted
    assert journal.enabled and journal.history() == []
    run = journal.begin_run()
    journal.result(run, "t", "t", "fp", b"r", None, 1.0)
    assert journal.flush(10) and journal.restorable(run, "fp") == (b"r", 1.0)


def test_a_truncated_journal_is_moved_aside_and_a_fresh_journal_started(tmp_path):
    path = tmp_path / ".codomyrmex" / "j.sqlite"
    with Journal(path) as journal:
        for _ in range(3):
            run = journal.begin_run()
            for seq in range(500):
                journal.transition(run, seq, 1.0, f"t{seq}", "t", "running", "completed", None)
                if seq % 10 == 0:
                    journal.result(run, f"t{seq}", "t", f"fp{seq}", os.urandom(4000), None, 1.0)
            journal.end_run(run)
    data = path.read_bytes()
    assert len(data) > 200_000
    path.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fresh = Journal(path)
    try:
        assert len(journal_warnings(record)) == 1
        [aside] = aside_files(path)
        assert aside.read_bytes() == data[: len(data) // 2]
        assert fresh.enabled and fresh.history() == []
        assert fresh.begin_run() >= 1
    finally:
        fresh.close()


def test_a_foreign_sqlite_file_is_moved_aside(make_journal, tmp_path):
    path = tmp_path / "j.sqlite"
    with raw(path) as conn:
        conn.execute("CREATE TABLE customers(name TEXT)")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal = make_journal(path)
    assert len(journal_warnings(record)) == 1 and len(aside_files(path)) == 1
    assert journal.enabled


def test_a_foreign_file_with_a_table_named_runs_is_moved_aside_unaltered(make_journal, tmp_path):
    path = tmp_path / "j.sqlite"
    with raw(path) as conn:
        conn.execute("CREATE TABLE runs(a TEXT, b TEXT)")
        conn.execute("INSERT INTO runs VALUES ('x', 'y')")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal = make_journal(path)
    said = journal_warnings(record)
    assert len(said) == 1 and "not a codomyrmex journal (its runs table is another's)" in said[0]
    [aside] = aside_files(path)
    with raw(aside) as conn:  # never altered: its own table, its own columns, its row
        assert [r[1] for r in conn.execute("PRAGMA table_info(runs)")] == ["a", "b"]
        assert conn.execute("SELECT * FROM runs").fetchall() == [("x", "y")]
        assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master")} == {"runs"}
    assert journal.enabled and journal.history() == []


# -- size bound ------------------------------------------------------------------------


def test_the_size_bound_prunes_the_oldest_runs(make_journal):
    journal = make_journal(max_bytes=300_000, vacuum_interval=0.0)
    runs = []
    for n in range(12):
        run = journal.begin_run()
        journal.transition(run, 1, 1.0, "t", "t", "running", "completed", None)
        journal.result(run, "t", "t", f"fp{n}", os.urandom(60_000), None, float(n))
        journal.end_run(run)
        assert journal.flush(10)
        runs.append(run)
    kept = [info.run_id for info in journal.history()]
    assert kept == runs[-len(kept):][::-1]  # a suffix: the oldest went first
    assert 2 <= len(kept) < 12 and kept[0] == runs[-1]
    assert journal.restorable(None, "fp0") is None
    assert journal.restorable(runs[-1], "fp11") is not None
    assert journal.path.stat().st_size < 3 * 300_000  # vacuumed, not just emptied


def test_the_size_bound_never_prunes_the_current_run(make_journal):
    journal = make_journal(max_bytes=200_000, vacuum_interval=0.0)
    old = journal.begin_run()
    journal.result(old, "t", "t", "old", os.urandom(50_000), None, 1.0)
    journal.end_run(old)
    current = journal.begin_run()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for n in range(6):
            journal.result(current, f"t{n}", "t", f"fp{n}", os.urandom(50_000), None, 2.0)
            assert journal.flush(10)
    assert [info.run_id for info in journal.history()] == [current]
    assert all(journal.restorable(current, f"fp{n}") for n in range(6))
    assert len(journal_warnings(record)) == 1  # over the bound, in runs it must keep


# -- processes ------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from codomyrmex_nb.core.journal import Journal
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    journal = Journal(path, commit_interval=0.0)
    assert journal.enabled
    run = journal.begin_run()
    print(run, flush=True)
    sys.stdin.readline()  # both start writing at the same moment
    for i in range(n):
        journal.transition(run, i, float(i), f"{tag}{i}", tag, "running", "completed", None)
        journal.result(run, f"{tag}{i}", tag, f"{tag}-fp{i}", (f"{tag}{i}" * 20).encode(),
                       None, float(i))
        if i % 10 == 0:
            journal.flush()  # many small commits interleave with the other process
    journal.end_run(run)
    journal.close()
""")


def run_python(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_processes_writing_one_journal_keep_it_intact(tmp_path):
    path = tmp_path / ".codomyrmex" / "j.sqlite"
    procs = [run_python(WRITER, str(path), tag, "2000") for tag in ("a", "b")]
    runs = [int(proc.stdout.readline()) for proc in procs]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert "JournalWarning" not in err, err
    with raw(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        for tag, run in zip(("a", "b"), runs, strict=True):
            seqs = [row[1] for row in stored_transitions(conn, run)]
            assert sorted(seqs) == list(range(2000))
            rows = conn.execute("SELECT task_id, blob FROM results WHERE run_id = ?",
                                (run,)).fetchall()
            assert len(rows) == 2000 and {task for task, _ in rows} == \
                {f"{tag}{i}" for i in range(2000)}
            assert all(blob == (task * 20).encode() for task, blob in rows)
            assert conn.execute("SELECT status FROM runs WHERE run_id = ?",
                                (run,)).fetchone() == ("finished",)
        order = [run for (run,) in conn.execute("SELECT run_id FROM results ORDER BY rowid")]
    switches = sum(1 for before, after in zip(order, order[1:], strict=False) if before != after)
    assert switches >= 2  # the two really wrote at the same time


def stored_transitions(conn: sqlite3.Connection, run: int) -> list[tuple]:
    """A run's transition rows as stored (version-3 rows and "tasks" columns), unverified."""
    rows = []
    for kind, blob in conn.execute("SELECT kind, rows FROM packed WHERE run_id = ? AND kind "
                                   "IN ('transitions', 'tasks') ORDER BY rowid", (run,)):
        data = marshal.loads(blob)
        rows.extend(journal_tables.task_rows(run, data, "transitions") if kind == "tasks"
                    else data)
    return rows


KILLED = textwrap.dedent("""
    import os, signal, sys
    from codomyrmex_nb.core.journal import Journal
    journal = Journal(sys.argv[1], commit_interval=60.0)
    run = journal.begin_run()
    journal.transition(run, 1, 1.0, "a", "a", "running", "completed", None)
    journal.result(run, "a", "a", "fpA", b"A", None, 1.0)
    assert journal.flush(10)
    journal.transition(run, 2, 2.0, "b", "b", "running", "completed", None)
    journal.result(run, "b", "b", "fpB", b"B", None, 2.0)  # still queued when killed
    print(run, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_process_leaves_exactly_its_committed_rows(tmp_path):
    path = tmp_path / ".codomyrmex" / "j.sqlite"
    proc = run_python(KILLED, str(path))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    run = int(out)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal = Journal(path)
    try:
        assert journal_warnings(record) == []
        info = journal.last_run()
        assert (info.run_id, info.status, info.ended, info.completed) == (run, "running", None, 1)
        assert journal.restorable(run, "fpA") == (b"A", 1.0)
        assert journal.restorable(run, "fpB") is None
    finally:
        journal.close()


OPENER = textwrap.dedent("""
    import sys
    from codomyrmex_nb.core.journal import Journal
    journal = Journal(sys.argv[1], commit_interval=0.0)
    print(journal.enabled, journal.begin_run(), flush=True)
    journal.close()
""")


def test_two_processes_creating_one_new_journal_both_get_it(tmp_path):
    """Two kernels started in one folder at once: neither loses the race for the folder."""
    for attempt in range(8):
        path = tmp_path / f"try{attempt}" / ".codomyrmex" / "j.sqlite"
        procs = [run_python(OPENER, str(path)) for _ in range(2)]
        outs = [proc.communicate(timeout=60) for proc in procs]
        for out, err in outs:
            enabled, run = out.split()
            assert enabled == "True" and int(run) > 0, err


def test_a_large_journal_is_opened_without_reading_it_all(tmp_path, monkeypatch):
    """Above the full-check size only truncation is checked on open; a journal whose latest
    pages sit in its WAL (a killed kernel) is not mistaken for a truncated one."""
    monkeypatch.setattr(journal_files, "FULL_CHECK_BYTES", 1)
    path = tmp_path / "j.sqlite"
    first = Journal(path, commit_interval=0.0)
    run = first.begin_run()
    first.result(run, "t", "t", "fp", b"x" * 50_000, None, 1.0)
    assert first.flush(10)
    again = Journal(path)  # the first one is still open: its pages may be in the WAL
    assert again.enabled and again.restorable(run, "fp") is not None
    again.close()
    first.close()
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fresh = Journal(path)
    assert fresh.enabled and fresh.last_run() is None and journal_warnings(record)
    fresh.close()


# -- format 4: columns and small results ------------------------------------------------------------


def test_transitions_come_back_exactly_from_the_columns_or_the_old_rows(make_journal):
    journal = make_journal()
    run = journal.begin_run()
    from codomyrmex_nb.core.model import TaskStatus as S  # the engine queues its members
    journal.transition(run, 5, 20.5, "a", "load", None, S.PENDING, None)
    assert journal.flush(10)
    journal.transition(run, 7, 21, "a", "load", S.PENDING, S.COMPLETED, "why")
    assert journal.flush(10)
    assert (journal.last_run().completed, journal.last_run().failed) == (1, 0)
    journal.transition(run, 9, None, "b", "b", None, "a status of another kind", None)
    journal.transition(run, 10, None, "a", "load", "completed", "failed", None)
    assert journal.flush(10)  # no time, an unknown status: written as version-3 rows
    assert journal.transitions(run) == [(5, 20.5, "a", "load", None, "pending", None),
                                        (7, 21.0, "a", "load", "pending", "completed", "why"),
                                        (9, None, "b", "b", None, "a status of another kind",
                                         None),
                                        (10, None, "a", "load", "completed", "failed", None)]
    with raw(journal.path) as conn:
        kinds = [kind for (kind,) in conn.execute("SELECT kind FROM packed ORDER BY rowid")]
    assert kinds == ["tasks", "tasks", "transitions"]
    info = journal.last_run()
    assert (info.tasks, info.completed, info.failed, info.last_time) == (2, 0, 1, 21.0)


def test_a_small_result_lives_in_its_runs_packed_row_and_is_restorable(make_journal):
    journal = make_journal()
    first = journal.begin_run()
    journal.small_result(first, "t", "t", "fp", 41, 1.0)
    journal.result(first, "u", "u", "fpU", b"pickled", None, 1.0)
    journal.end_run(first)
    second = journal.begin_run()
    journal.small_result(second, "t", "t", "fp", None, 2.0)  # None is a result too
    journal.small_result(second, "s", "s", "fpS", "short text", 2.0)
    assert journal.flush(10)
    with raw(journal.path) as conn:
        assert conn.execute("SELECT name FROM results").fetchall() == [("u",)]
    assert journal.restorable_hit(None, "fp") == (None, 2.0, journal_module.SMALL)
    assert journal.restorable_hit(first, "fp") == (41, 1.0, journal_module.SMALL)
    assert journal.restorable(second, "fpS") == (__import__("pickle").dumps("short text", 5), 2.0)
    assert journal.restorable([first, second], "fpU") == (b"pickled", 1.0)
    assert journal.restorable(second, "fpU") is None
    journal.result(second, "t", "t", "fp", b"newer, pickled", None, 3.0)  # the newer one wins
    assert journal.flush(10)
    assert journal.restorable(None, "fp") == (b"newer, pickled", 3.0)
    assert journal.last_run().last_time == 3.0


def test_only_none_numbers_and_short_text_are_small():
    small = journal_tables.is_small
    assert all(small(v) for v in (None, True, 7, 2**100, 1.5, 1j, "x" * 256, b"y" * 256))
    assert not any(small(v) for v in ("x" * 257, b"y" * 257, 2**5000, [1], (1,), {"a": 1},
                                      bytearray(b"z"), type("Int", (int,), {})(3)))


def small_answer(x):
    return None if x == 0 else x * 2 if x < 3 else f"text {x}"


def run_small_answers(path: Path, cache: bool = True) -> list:
    from codomyrmex_nb import TaskOrchestrator

    orch = TaskOrchestrator(1, journal=path)
    try:
        tasks = [orch.create_task(f"t{x}", func=small_answer, parameters={"x": x}, cache=cache)
                 for x in range(5)]
        orch.start_execution()
        assert orch.wait_for_completion(30)
    finally:
        orch.stop_execution()
    return tasks


def test_small_results_of_a_run_are_restored_from_its_packed_row(tmp_path, monkeypatch):
    from codomyrmex_nb.core import signing

    path = tmp_path / "j.sqlite"
    made = []
    real = signing.Signer.result
    monkeypatch.setattr(signing.Signer, "result", lambda self, fp, blob: made.append(fp)
                        or real(self, fp, blob))
    first = run_small_answers(path)
    assert [t.result.data for t in first] == [None, 2, 4, "text 3", "text 4"]
    assert made == []  # not pickled, not signed one by one: the packed row's MAC covers them
    with raw(path) as conn:
        assert conn.execute("SELECT count(*) FROM results").fetchone() == (0,)
    again = run_small_answers(path)
    assert [t.result.data for t in again] == [None, 2, 4, "text 3", "text 4"]
    assert all(t.result.metadata.get("restored") for t in again)
    assert all(len(t.attempts) == 0 for t in again)


def test_a_damaged_packed_row_restores_no_small_result_and_is_never_unmarshalled(tmp_path,
                                                                                monkeypatch):
    path = tmp_path / "j.sqlite"
    run_small_answers(path)
    damaged = []
    with raw(path) as conn:
        for rowid, blob in conn.execute("SELECT rowid, rows FROM packed WHERE kind = 'tasks'"
                                        ).fetchall():
            flipped = bytearray(blob)
            flipped[len(flipped) // 2] ^= 1
            damaged.append(bytes(flipped))
            conn.execute("UPDATE packed SET rows = ? WHERE rowid = ?", (damaged[-1], rowid))
        conn.commit()
    loads = []
    monkeypatch.setattr(marshal, "loads",  # one module object: every reader calls this
                        lambda data, real=marshal.loads: loads.append(data) or real(data))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = run_small_answers(path)
    assert damaged and not any(blob in loads for blob in damaged)
    assert [t.result.data for t in again] == [None, 2, 4, "text 3", "text 4"]
    assert not any(t.result.metadata.get("restored") for t in again)  # they ran again
    assert any("does not verify" in m for m in journal_warnings(record))


def test_the_engines_journal_rows_are_plain_values_and_packing_makes_no_object_per_row(
        tmp_path, monkeypatch):
    """What a run hands the journal holds plain values only (statuses as codes): queued rows
    and the columns of the engine's moved tasks, so the garbage collector stops tracking
    them at its first look; and packing a commit makes no object per row (zip(*rows) made
    one per row, alive while it ran): the collector's generations do not fill up with the
    journal's rows."""
    import gc

    from codomyrmex_nb import TaskOrchestrator

    seen, peaks, entries = [], [], []
    real = journal_tables.pack_columns

    def watched(moves, definitions, small, previous=None, groups=()):
        seen.extend(definitions)
        if moves is not None:
            seen.extend((moves.ids, moves.names, moves.seqs, moves.times, moves.details))
            entries.extend(moves.ids)
        if small is not None:
            seen.extend(small)
            entries.extend(small[0])
        entries.extend(definitions)
        before = len(gc.get_objects(0))
        gc.callbacks.append(lambda phase, info: peaks.append(len(gc.get_objects(0)) - before)
                            if phase == "start" else None)
        try:
            old = gc.get_threshold()
            gc.set_threshold(1)  # look at the young objects at every allocation
            try:
                return real(moves, definitions, small, previous, groups)
            finally:
                gc.set_threshold(*old)
        finally:
            gc.callbacks.pop()

    monkeypatch.setattr(journal_writer, "pack_columns", watched)  # the engine's moves
    monkeypatch.setattr(journal_tables, "pack_columns", watched)  # rows (pack_tasks)
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
    try:
        tasks = [orch.create_task(f"t{i}", func=small_answer, parameters={"x": i})
                 for i in range(300)]
        orch.start_execution()
        assert orch.wait_for_completion(30)
    finally:
        orch.stop_execution()
    assert [t.result.data for t in tasks[:4]] == [None, 2, 4, "text 3"]
    assert len(entries) >= 300 * 3  # per task: a definition, its result, its latest move(s)
    gc.collect()
    assert not any(gc.is_tracked(row) for row in seen)
    assert peaks and max(peaks) < 100  # not one object per row while packing


def test_a_commits_definitions_cost_the_same_late_in_a_long_run():
    """Folding a commit's definitions walks that commit's task ids, not every task the run
    has seen (which made a long run's commits slower and slower)."""
    import timeit

    ids = tuple(f"new{i}" for i in range(200))

    def cost(seen: int) -> float:
        summary = journal_tables.RunSummary()
        summary.status = {f"t{i}": 4 for i in range(seen)}

        def fold():
            summary.define_columns(ids)
            for task in ids:
                del summary.status[task]

        return min(timeit.repeat(fold, number=5, repeat=5))

    early, late = cost(1_000), cost(300_000)
    assert late < 5 * early + 0.002, (early, late)


def test_restorable_signed_gives_pickled_bytes_for_small_results_too(make_journal):
    """Callers that unpickle what restorable_signed gives (as before small results were
    packed) get the value back, even small bytes that happen to be a pickle themselves;
    restorable_hit gives the value itself."""
    import pickle

    journal = make_journal()
    run = journal.begin_run()
    inner = pickle.dumps({"a": 1})  # small bytes that are a pickle: must stay bytes
    journal.small_result(run, "b", "b", "fpB", inner, 1.0)
    journal.small_result(run, "n", "n", "fpN", None, 1.0)
    assert journal.flush(10)
    blob, when, mac = journal.restorable_signed(run, "fpB")
    assert pickle.loads(blob) == inner and when == 1.0 and mac is None
    assert pickle.loads(journal.restorable_signed(None, "fpN")[0]) is None
    assert journal.restorable_hit(run, "fpB") == (inner, 1.0, journal_module.SMALL)


def test_a_commit_window_stores_each_tasks_latest_move_from_where_it_was():
    """Four moves of a no-op task in one commit window are stored as one: the history, the
    counts and resume read only where each task got to."""
    rows = [(1, 1, 1.0, "a", "a", 0, 1, None), (1, 2, 2.0, "b", "b", 0, 1, None),
            (1, 3, 3.0, "a", "a", 1, 3, None), (1, 4, 4.0, "b", "b", 1, 5, "boom"),
            (1, 5, 5.0, "a", "a", 3, 4, None)]
    kept, folded = journal_tables.latest_per_task(rows)
    assert folded and kept == [(1, 4, 4.0, "b", "b", 1, 5, "boom"), (1, 5, 5.0, "a", "a", 3, 4, None)]
    summary = journal_tables.RunSummary()
    summary.follow_columns(("a",), bytes([1]), 0.5)  # the last commit left "a" pending
    assert summary.previous(kept) == bytes([0, 1])  # "b" unseen: no state before
    once = rows[:2]
    assert journal_tables.latest_per_task(once) == (once, False)  # nothing to fold


def test_moves_collected_as_columns_pack_as_their_rows_do():
    """The engine's moved tasks reach the writer as columns (``Moves``): packed as they
    are, they give what their rows give packed the row way, and back as the same rows."""
    moves = journal_tables.Moves(
        7, ("a", "b", "c"), ("load", "fit", "plot"), (3, 5, 9), (1.5, 2.0, 2.5),
        bytes([3, 4, 5]), (None, None, "boom"),
        (("b",), ("fit",), ("fp-b",), (42,), (2.0,)))
    rows = moves.transition_rows()
    assert rows == [(7, 3, 1.5, "a", "load", 0, 3, None), (7, 5, 2.0, "b", "fit", 0, 4, None),
                    (7, 9, 2.5, "c", "plot", 0, 5, "boom")]
    assert moves.small_rows() == [(7, "b", "fit", "fp-b", 42, 2.0)]
    previous = bytes([2, 3, 0])
    definitions = [(7, "c", "plot", "fp-c")]
    by_columns = journal_tables.pack_columns(moves, definitions, moves.small, previous)
    by_rows = journal_tables.pack_tasks(rows, definitions, moves.small_rows(), previous)
    assert marshal.loads(by_columns[0]) == marshal.loads(by_rows[0])
    assert by_columns[1:] == by_rows[1:] == ((("a", "b", "c"), bytes([3, 4, 5]), 2.5), ("c",))
    columns = marshal.loads(by_columns[0])
    assert journal_tables.task_rows(7, columns, "transitions") == [
        (7, 3, 1.5, "a", "load", "ready", "running", None),
        (7, 5, 2.0, "b", "fit", "running", "completed", None),
        (7, 9, 2.5, "c", "plot", None, "failed", "boom")]
    with pytest.raises(ValueError):  # a code out of range: the caller packs rows instead
        journal_tables.pack_columns(moves._replace(codes=bytes([3, 4, 99])), [], None)


def test_an_engine_run_journals_one_row_per_task_per_commit_window(tmp_path):
    from codomyrmex_nb import TaskOrchestrator
    from codomyrmex_nb.core.journal import Journal

    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
    try:
        first = orch.create_task("first", func=small_answer, parameters={"x": 1})
        orch.create_task("second", func=small_answer, parameters={"x": 2}, dependencies=[first])
        orch.start_execution()
        assert orch.wait_for_completion(30)
    finally:
        orch.stop_execution()
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.last_run()
        rows = journal.transitions(run.run_id)
    latest = {}
    for _seq, _when, _id, name, _prev, status, _detail in rows:
        latest[name] = status
    assert latest == {"first": "completed", "second": "completed"}
    assert len(rows) <= 4  # at most a window for the definitions and one for the run
    assert (run.tasks, run.completed, run.failed) == (2, 2, 0)


def test_a_commit_while_the_engine_runs_holds_each_tasks_latest_move_and_small_result(tmp_path):
    """The writer reads moved records under the engine's lock as it commits: a task that
    completed is stored completed with its small result, one still running as running."""
    import threading

    from codomyrmex_nb import TaskOrchestrator

    gate, began = threading.Event(), threading.Event()

    def held() -> str:
        began.set()
        gate.wait(30)
        return "late"

    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
    try:
        done = orch.create_task("done", func=small_answer, parameters={"x": 2})
        orch.create_task("held", func=held, dependencies=[done])  # starts once "done" ended
        orch.start_execution()
        assert began.wait(30)
        recorder = orch._engine.recorder
        journal = recorder.journal
        assert journal.flush(10)
        run = recorder.run_id
        latest = {name: status for _s, _t, _i, name, _p, status, _d in journal.transitions(run)}
        assert latest == {"done": "completed", "held": "running"}
        fp = orch._engine.sched.records[done.id].fingerprint
        assert journal.restorable_hit(run, fp)[0] == 4
    finally:
        gate.set()
        orch.stop_execution()


def _watch_commits(monkeypatch):
    """Every commit's transition rows as (task name, status name) pairs, and an event set
    by each commit (the writer's ``_pack`` sees the rows the commit stores)."""
    import threading

    commits: list[list[tuple[str, str]]] = []
    committed = threading.Event()
    real = Journal._pack

    def watched(self):
        rows = self._trans + [row for moved in self._moved for row in moved.transition_rows()]
        commits.append([(row[4], journal_tables.STATUSES[row[6]]) for row in rows])
        committed.set()
        return real(self)

    monkeypatch.setattr(Journal, "_pack", watched)
    return commits, committed


def test_a_commit_leaves_out_tasks_waiting_to_run_and_writes_each_once_it_moves_on(
        tmp_path, monkeypatch):
    """Tasks made ready (or pending) a commit before they run are not written at that
    commit: their next move writes them, a row each, not one while they wait and another
    once they ran (nothing about a task that has not run can be lost)."""
    import threading

    from codomyrmex_nb import TaskOrchestrator

    commits, committed = _watch_commits(monkeypatch)
    gate, began = threading.Event(), threading.Event()

    def held() -> str:
        began.set()
        gate.wait(30)
        return "late"

    orch = TaskOrchestrator(1, journal=tmp_path / "j.sqlite")
    try:
        first = orch.create_task("held", func=held)
        for i in range(5):
            orch.create_task(f"w{i}", func=small_answer, parameters={"x": i})
        orch.create_task("after", func=small_answer, parameters={"x": 9}, dependencies=[first])
        orch.start_execution()
        assert began.wait(30)  # one worker: the five others wait ready, "after" pending
        recorder = orch._engine.recorder
        journal = recorder.journal
        committed.clear()
        journal.commit_soon()
        assert committed.wait(10)
        while_held = commits[-1]
        assert ("held", "running") in while_held
        assert not [row for row in while_held if row[0] != "held"]
        gate.set()
        assert orch.wait_for_completion(30)
        run = recorder.last_run_id
    finally:
        gate.set()
        orch.stop_execution()
    with Journal(tmp_path / "j.sqlite") as journal:
        rows = journal.transitions(run)
        info = journal.run(run)
    statuses = {}
    for _seq, _when, _id, name, _prev, status, _detail in rows:
        statuses.setdefault(name, []).append(status)
    assert {name: states[-1] for name, states in statuses.items()} == \
        {name: "completed" for name in ("held", "after", "w0", "w1", "w2", "w3", "w4")}
    assert not [s for states in statuses.values() for s in states if s in ("pending", "ready")]
    assert (info.tasks, info.completed, info.failed) == (7, 7, 0)


def test_tasks_left_waiting_are_written_by_a_flush_and_by_the_end_of_their_run(
        tmp_path, monkeypatch):
    """A flush (``history``) and a run's end write the tasks a commit left out as they
    wait: the history counts every task of a run, and a stop before its tasks ran writes
    them, waiting (that stop ends no run: the next start runs them in this one)."""
    from codomyrmex_nb import TaskOrchestrator

    commits, committed = _watch_commits(monkeypatch)
    orch = TaskOrchestrator(1, journal=tmp_path / "j.sqlite")
    try:
        for i in range(3):
            orch.create_task(f"p{i}", func=small_answer, parameters={"x": i})
        journal = orch._engine.recorder.journal
        committed.clear()
        journal.commit_soon()  # a commit while all three wait: none of them written but
        assert committed.wait(10)  # the first, whose move opened the run (queued as made)
        assert [name for commit in commits for name, _ in commit] == ["p0"]
        assert orch.history()["tasks"].iloc[0] == 3  # the flush wrote them
        orch.create_task("p3", func=small_answer, parameters={"x": 3})
        committed.clear()
        journal.commit_soon()
        assert committed.wait(10)
        run = orch._engine.recorder.run_id
    finally:
        orch.stop_execution()  # never started: the run stays open, its four tasks waiting
    with Journal(tmp_path / "j.sqlite") as journal:
        rows = journal.transitions(run)
        info = journal.run(run)
    latest = {name: status for _s, _t, _i, name, _p, status, _d in rows}
    assert latest.keys() == {"p0", "p1", "p2", "p3"}
    assert set(latest.values()) <= {"pending", "ready"}
    assert (info.tasks, info.status, info.ended) == (4, "running", None)


def test_opening_a_run_never_waits_for_the_writer_to_take_the_engines_lock(tmp_path, monkeypatch):
    """A run begins under the engine's lock, waiting for the writer; the writer reads moved
    records under that same lock only for a flush or a commit, never for a begin (it
    would wait out ``COLLECT_WAIT`` on every first task of a run)."""
    import time

    from codomyrmex_nb import TaskOrchestrator
    from codomyrmex_nb.core import recorder as recorder_module

    monkeypatch.setattr(recorder_module, "COLLECT_WAIT", 5.0)
    orch = TaskOrchestrator(1, journal=tmp_path / "j.sqlite")
    try:
        for round_ in range(2):  # a first run, then a second one after it ended
            began = time.monotonic()
            orch.create_task(f"first{round_}", func=small_answer, parameters={"x": 1})
            assert time.monotonic() - began < 2.0
            orch.start_execution()
            assert orch.wait_for_completion(30)
            orch.stop_execution()
    finally:
        orch.stop_execution()


def test_a_runs_row_edited_by_hand_is_left_out_of_the_history_with_one_line(tmp_path):
    path = tmp_path / "j.sqlite"
    for _ in range(2):
        orch = TaskOrchestrator(1, journal=path)
        orch.create_task("a", func=lambda: 1)
        orch.start_execution()
        assert orch.wait_for_completion(10)
        orch.stop_execution()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET started = 'yesterday', tasks = 'x' WHERE run_id = 1")
    conn.commit()
    conn.close()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        orch = TaskOrchestrator(1, journal=path)
        try:
            history = orch.history()
            frame = orch.journal_info().frame()
            removal = orch.prune_journal(older_than="1d", dry_run=True)
        finally:
            orch.stop_execution()
    said = journal_warnings(record)
    assert history["run"].tolist() == [2]
    assert said == ["run journal j.sqlite: run(s) 1 have damaged fields (edited by hand?); "
                    "left out of the history"]
    assert frame["run"].tolist() == [2, 1] and frame["started"].isna().tolist() == [False, True]
    assert removal.error is None


def _work(kind: str, flag: str = "") -> object:
    """Reads no global data, so the run keeps its code fingerprint: every task after the
    first takes the fast path (``Recorder._plain_fingerprint``)."""
    while kind == "held" and os.path.exists(flag):  # polling a file in a test is fine
        time.sleep(0.005)
    return {"none": None, "number": 7, "text": "x" * 1000, "held": None}[kind]


def test_each_task_is_defined_once_with_the_fingerprint_it_ran_under(tmp_path):
    """A task fingerprinted as its attempt began (after the first of its function, whose
    code the run then knows) is defined with its moves, no row of its own waiting for the
    commit: in the run it ran in, once, under the fingerprint its result was stored
    with; one committed running and then interrupted by a stop too."""
    flag = tmp_path / "hold"
    flag.touch()
    path = tmp_path / "j.sqlite"
    orch = TaskOrchestrator(1, journal=path)
    try:
        kinds = ["none", "none", "number", "text", "held"]
        tasks = [orch.create_task(f"{kind}{i}", func=_work,
                                  parameters={"kind": kind, "flag": str(flag)})
                 for i, kind in enumerate(kinds)]
        orch.start_execution()
        deadline = time.monotonic() + 30
        while sum(t.status.value == "completed" for t in tasks) < 4 \
                or tasks[-1].status.value != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        made = {t.id: orch._engine.sched.lookup(t.id).fingerprint for t in tasks}
        assert orch._engine.sched.lookup(tasks[-1].id).jdef == made[tasks[-1].id]  # the path
        assert orch._engine.recorder.journal.flush(30)  # "held" running, committed
        orch.stop_execution()  # "held" goes back to READY: a second commit moves it
    finally:
        flag.unlink()
        orch.stop_execution()
    journal = Journal(path)
    try:
        run_id = journal.history()[0].run_id
        defined = journal.definitions(run_id)
        restorable = [journal.restorable(run_id, made[t.id]) is not None for t in tasks[:4]]
    finally:
        journal.close()
    assert sorted(task_id for task_id, _, _ in defined) == sorted(made)  # each once
    assert {task_id: fp for task_id, _, fp in defined} == made
    assert all(len(fp) == 64 for fp in made.values()) and len(set(made.values())) == 4
    assert restorable == [True, True, True, True]


def _other_work(kind: str, flag: str = "") -> object:
    return f"other {kind}"


def test_a_task_redefined_while_it_runs_is_defined_last_under_its_new_fingerprint(tmp_path):
    """Redefined mid-attempt before a commit: the fingerprint the first attempt was given
    (waiting to be defined with the task's next move) is dropped with the attempt, so the
    run's definitions end with the one the task ran under (they ended with the old)."""
    flag = tmp_path / "hold"
    flag.touch()
    path = tmp_path / "j.sqlite"
    orch = TaskOrchestrator(1, journal=path)
    try:
        orch.create_task("warm", func=_work, parameters={"kind": "none"})  # the run knows it
        task = orch.create_task("a", func=_work, parameters={"kind": "held", "flag": str(flag)})
        orch.start_execution()
        rec = orch._engine.sched.lookup(task.id)
        deadline = time.monotonic() + 30
        while not rec.jdef:  # fingerprinted on the fast path, not committed yet
            assert time.monotonic() < deadline
            time.sleep(0.001)
        first = rec.fingerprint
        orch.redefine("a", func=_other_work)  # interrupts the attempt; a runs again
        assert orch.wait_for_completion(30) and task.result.data == "other held"
        ran_under = rec.fingerprint
    finally:
        flag.unlink()
        orch.stop_execution()
    assert ran_under != first
    journal = Journal(path)
    try:
        defined = [fp for task_id, _, fp in journal.definitions(journal.history()[0].run_id)
                   if task_id == task.id]
    finally:
        journal.close()
    assert defined[-1] == ran_under, (defined, first, ran_under)


def test_a_task_a_stop_interrupted_is_defined_again_in_the_run_it_finishes_in(tmp_path):
    """Stopped mid-attempt and started again: the next run defines the task too, under the
    fingerprint it finished with (before, only the run it was interrupted in had it)."""
    flag = tmp_path / "hold"
    flag.touch()
    path = tmp_path / "j.sqlite"
    orch = TaskOrchestrator(1, journal=path)
    try:
        task = orch.create_task("a", func=_work, parameters={"kind": "held", "flag": str(flag)})
        orch.start_execution()
        deadline = time.monotonic() + 30
        while task.status.value != "running":
            assert time.monotonic() < deadline
            time.sleep(0.005)
        orch.stop_execution()
        flag.unlink()
        orch.start_execution()
        assert orch.wait_for_completion(30)
        finished_under = orch._engine.sched.lookup(task.id).fingerprint
    finally:
        orch.stop_execution()
    journal = Journal(path)
    try:
        runs = [r.run_id for r in journal.history()]  # newest first
        defined = {run: [fp for task_id, _, fp in journal.definitions(run) if task_id == task.id]
                   for run in runs}
    finally:
        journal.close()
    assert len(runs) == 2
    assert defined[runs[0]] == [finished_under] and defined[runs[1]]
