"""Resume restores from every run of a process that died, never from one that still runs.

A script (``STAGES``, written into the test's folder) runs in real subprocesses. It
has two stages with ``wait_for_completion`` between them (two runs in the journal).
Each task body appends its name to ``ran.log`` as it starts, so a restored task never
appears there again; a body named in ``$HOLD`` waits while ``hold-NAME`` exists in the
work folder. Kills are SIGKILL from the test once the journal (read read-only) has
committed what the test waits for, so every check is exact whatever the timing.

Also here: which file a script's journal is (named after the script), a run that only
restored results ends when its process ends cleanly (and stays resumable when it is
killed), the live view and ``history()`` numbering runs alike, which processes count as
alive, and that an open run of a live process is never pruned.
"""

from __future__ import annotations

import json
import marshal
import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from codomyrmex_nb import TaskOrchestrator
from codomyrmex_nb.core import journal_tables, sessions
from codomyrmex_nb.core.journal import Journal, JournalWarning, RunInfo
from codomyrmex_nb.core.sessions import is_alive, resume_source

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

STAGES = r'''
import json, os, sys, time
import warnings

from codomyrmex_nb import TaskOrchestrator

WORK = os.environ["WORK"]


def note(name):
    with open(os.path.join(WORK, "ran.log"), "a") as log:
        log.write(name + "\n")
    if name == os.environ.get("HOLD"):
        while os.path.exists(os.path.join(WORK, "hold-" + name)):
            time.sleep(0.005)


def first(i):
    note(f"s1-{i}")
    return i * 10


def second(upstream, i):
    note(f"s2-{i}")
    return sum(upstream.values()) + i


if __name__ == "__main__":
    warnings.simplefilter("always")
    orch = TaskOrchestrator(2)  # the default journal: ./.codomyrmex/<script>.sqlite
    restored = []
    for i in range(3):
        task = orch.create_task(f"s1-{i}", func=first, parameters={"i": i})
        restored += [task.name] if task.status.value == "completed" else []
    summary = orch.restored_summary()
    if os.environ.get("MODE") == "define":  # only look at what comes back, then exit
        print(json.dumps({"restored": restored, "summary": summary}), flush=True)
        sys.exit(0)
    orch.start_execution()
    assert orch.wait_for_completion(60)
    for i in range(3):
        task = orch.create_task(f"s2-{i}", func=second, parameters={"i": i},
                                dependencies=[f"s1-{j}" for j in range(3)])
        restored += [task.name] if task.status.value == "completed" else []
    summary = summary or orch.restored_summary()
    assert orch.wait_for_completion(60)
    results = {t.name: t.result.data for t in orch.list_tasks()}
    orch.stop_execution()
    print(json.dumps({"restored": restored, "summary": summary, "results": results}))
'''

EXPECTED = {"s1-0": 0, "s1-1": 10, "s1-2": 20, "s2-0": 30, "s2-1": 31, "s2-2": 32}


class Script:
    """``STAGES`` saved as ``<name>.py`` in ``folder``, run with the default journal."""

    def __init__(self, folder: Path, name: str = "stages") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.py"
        self.path.write_text(STAGES)
        self.journal = folder / ".codomyrmex" / f"{name}.sqlite"
        self.log = folder / "ran.log"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("CODOMYRMEX_JOURNAL", "JPY_SESSION_NAME")}
        path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        return {**env, "PYTHONPATH": path, "WORK": str(self.folder), **extra}

    def start(self, **extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(self.path)], env=self.env(**extra),
                                cwd=self.folder, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def run(self, **extra: str) -> tuple[dict, str]:
        proc = subprocess.run([sys.executable, str(self.path)], env=self.env(**extra),
                              cwd=self.folder, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr

    def ran(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def hold(self, name: str) -> dict[str, str]:
        (self.folder / f"hold-{name}").touch()
        return {"HOLD": name}

    def release(self, name: str) -> None:
        (self.folder / f"hold-{name}").unlink(missing_ok=True)

    def kill_when_committed(self, proc: subprocess.Popen, names: set[str]) -> None:
        wait_committed(self.journal, names, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL


def read(path: Path, sql: str) -> list[tuple]:
    """Rows from the journal, read-only ([] while it has no tables yet)."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def stored_results(path: Path) -> list[tuple]:
    """Every result the journal holds, unverified: (run, name, error); a small result lives
    in its run's packed "tasks" row (journal format 4). [] while it has no tables yet."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = list(conn.execute("SELECT run_id, name, error FROM results"))
        for run, blob in conn.execute("SELECT run_id, rows FROM packed WHERE kind = 'tasks'"):
            rows += [(run, name, None) for _, _, name, _, _, _ in
                     journal_tables.task_rows(run, marshal.loads(blob), "results")]
        return rows
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def committed(path: Path) -> set[str]:
    return {name for _, name, error in stored_results(path) if error is None}


def wait_committed(path: Path, names: set[str], proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 60
    while not committed(path) >= names:  # polling a file in a test is fine
        assert proc is None or proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"only {sorted(committed(path))} committed"
        time.sleep(0.01)


# -- every run of the dead process ---------------------------------------------------------------
def test_a_script_killed_in_its_second_stage_gets_its_first_stage_back(tmp_path):
    script = Script(tmp_path)
    proc = script.start(**script.hold("s2-1"))
    script.kill_when_committed(proc, {"s1-0", "s1-1", "s1-2", "s2-0"})
    saved = committed(script.journal)  # s2-2 too, if it ran while s2-1 was held
    assert "s2-1" not in saved
    runs = read(script.journal, "SELECT run_id, status, pid FROM runs ORDER BY run_id")
    assert [s for _, s, _ in runs] == ["finished", "running"]  # stage 1, stage 2: two runs
    assert {pid for _, _, pid in runs} == {proc.pid}
    before = len(script.ran())
    script.release("s2-1")

    out, _ = script.run()
    assert out["results"] == EXPECTED
    assert set(out["restored"]) == saved and len(out["restored"]) == len(saved)
    assert sorted(script.ran()[before:]) == sorted(set(EXPECTED) - saved)  # none of stage 1
    assert out["summary"].startswith("restored 3 finished tasks from the unfinished run of ")
    assert "and 1 earlier run" in out["summary"]


def test_two_scripts_in_one_folder_keep_their_own_journals(tmp_path):
    first, other = Script(tmp_path, "prepare"), Script(tmp_path, "train")
    proc = first.start(**first.hold("s2-1"))
    first.kill_when_committed(proc, {"s1-0", "s1-1", "s1-2"})
    first.release("s2-1")
    out, _ = other.run()  # another script in the same folder runs to its end meanwhile
    assert out["restored"] == [] and out["results"] == EXPECTED
    names = sorted(p.name for p in (tmp_path / ".codomyrmex").glob("*.sqlite"))
    assert names == ["prepare.sqlite", "train.sqlite"]
    before = len(first.ran())
    out, _ = first.run()  # the first one's crash is still recoverable
    assert {"s1-0", "s1-1", "s1-2"} <= set(out["restored"])
    assert not {"s1-0", "s1-1", "s1-2"} & set(first.ran()[before:])
    assert out["results"] == EXPECTED


def test_a_live_process_is_never_resumed_from(tmp_path):
    script = Script(tmp_path)
    live = script.start(**script.hold("s1-2"))  # s1-0 and s1-1 complete, s1-2 hangs
    try:
        wait_committed(script.journal, {"s1-0", "s1-1"}, live)
        out, err = script.run(MODE="define")  # the same script again, in another process
        assert out["restored"] == [] and out["summary"] is None
        lines = [line for line in err.splitlines() if "JournalWarning" in line]
        assert len(lines) == 1, err
        assert f"is still running in process {live.pid}" in lines[0]
        assert live.poll() is None  # nothing disturbed the live one
    finally:
        live.send_signal(signal.SIGKILL)
        live.communicate(timeout=30)
    script.release("s1-2")
    # now that it is dead, its work comes back (past the run the second process left)
    out, err = script.run(MODE="define")
    assert out["restored"] == ["s1-0", "s1-1"], err
    assert out["summary"].startswith("restored 2 finished tasks from the unfinished run of ")


# -- a run that only restored results ----------------------------------------------------------------
CACHED = r'''
import json, os, signal, sys, time

from codomyrmex_nb import TaskOrchestrator


def work():
    with open(os.path.join(os.environ["WORK"], "ran.log"), "a") as log:
        log.write("work\n")
    return 42


if __name__ == "__main__":
    end = sys.argv[1]
    orch = TaskOrchestrator(2)
    orch.start_execution()
    task = orch.create_task("work", func=work, cache=True)  # restored while the engine runs
    assert orch.wait_for_completion(60)
    print(json.dumps({"summary": orch.restored_summary(), "data": task.result.data}),
          flush=True)
    if end == "stop":
        orch.stop_execution()
    elif end == "killed":
        time.sleep(600)  # the test kills it
'''


@pytest.mark.parametrize("end", ["stop", "exit", "killed"])
def test_a_run_that_only_restored_ends_with_its_process_unless_killed(tmp_path, end):
    script = Script(tmp_path, "cached")
    script.path.write_text(CACHED)
    run = subprocess.run([sys.executable, str(script.path), "stop"], env=script.env(),
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert script.ran() == ["work"]

    proc = subprocess.Popen([sys.executable, str(script.path), end], env=script.env(),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first_line = proc.stdout.readline()
    if end == "killed":
        deadline = time.monotonic() + 60
        while not [run for run, _, error in stored_results(script.journal) if error is None
                   and [(run,)] == read(script.journal, "SELECT max(run_id) FROM runs")]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (-signal.SIGKILL if end == "killed" else 0), err
    second = json.loads(first_line)
    assert second["summary"].startswith("restored 1 finished task from the cache")
    assert script.ran() == ["work"]
    runs = read(script.journal, "SELECT status, ended FROM runs ORDER BY run_id")
    assert len(runs) == 2
    if end == "killed":  # it died first: its run stays open, and resumable
        assert runs[1] == ("running", None)
    else:
        assert runs[1][0] == "finished" and runs[1][1] is not None

    third = subprocess.run([sys.executable, str(script.path), "stop"], env=script.env(),
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    summary = json.loads(third.stdout.splitlines()[0])["summary"]
    origin = "the unfinished run of " if end == "killed" else "the cache"
    assert summary.startswith(f"restored 1 finished task from {origin}"), summary
    assert script.ran() == ["work"]


def test_stopping_ends_a_run_that_only_restored_results(tmp_path):
    path = tmp_path / "j.sqlite"
    for _ in range(2):
        orch = TaskOrchestrator(2, journal=path)
        try:
            orch.start_execution()
            orch.create_task("work", func=lambda: 42, cache=True)
            assert orch.wait_for_completion(30)
        finally:
            orch.stop_execution()
    runs = orch.history()
    assert list(runs["status"]) == ["finished", "finished"] and runs["ended"].notna().all()
    assert list(runs["completed"]) == [1, 1]


# -- the live view and %codo_history number runs alike -----------------------------------------------------
def test_the_live_view_names_the_run_as_history_does(tmp_path):
    pytest.importorskip("anywidget")
    from codomyrmex_nb.notebook.live_view import LiveView

    path = tmp_path / "j.sqlite"
    earlier = TaskOrchestrator(2, journal=path)  # two runs before this notebook's view
    try:
        for name in ("a", "b"):
            earlier.create_task(name, func=lambda: 1)
            earlier.start_execution()
            assert earlier.wait_for_completion(30)
    finally:
        earlier.stop_execution()
    orch = TaskOrchestrator(2, journal=path)
    view = LiveView(orch, interval=0.01)
    try:
        for name in ("c", "d"):
            orch.create_task(name, func=lambda: 1)
            orch.start_execution()
            assert orch.wait_for_completion(30) and view.flush(30)
            newest = int(orch.history()["run"].iloc[0])
            assert orch.journal_run == newest
            assert f"run {newest} \u00b7 started " in view.summary(), view.summary()
        assert newest == 4
    finally:
        view.close()
        orch.stop_execution()


def test_without_a_journal_the_view_counts_its_own_runs(orch):
    pytest.importorskip("anywidget")
    from codomyrmex_nb.notebook.live_view import LiveView

    view = LiveView(orch, interval=0.01)
    try:
        orch.create_task("a", func=lambda: 1)
        orch.start_execution()
        assert orch.wait_for_completion(30) and view.flush(30)
        assert orch.journal_run is None and "run 1 \u00b7 started " in view.summary()
    finally:
        view.close()


# -- processes: alive or not --------------------------------------------------------------------------
def test_a_process_is_alive_by_its_pid_and_start_time():
    pid, started = sessions.current()
    assert pid == os.getpid() and is_alive(pid, started)
    assert not is_alive(pid, started - 3600)  # the same pid, another process (reused)
    assert not is_alive(None, None)  # a run of an older journal: no process known
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        born = sessions.start_time(sleeper.pid)
        assert born is not None and abs(born - time.time()) < 30
        assert is_alive(sleeper.pid, born)
        assert not is_alive(sleeper.pid, born - 3600)
        sleeper.kill()
        deadline = time.monotonic() + 10
        while is_alive(sleeper.pid, born):  # a zombie until reaped: dead already
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        sleeper.kill()
        sleeper.wait(10)
    assert not is_alive(sleeper.pid, born)


@pytest.mark.parametrize("way", ["psutil", "pid only"])
def test_without_proc_psutil_or_the_pid_alone_tells(monkeypatch, way):
    if way == "psutil":
        pytest.importorskip("psutil")
    else:
        monkeypatch.setattr(sessions, "_psutil", lambda: None)
    monkeypatch.setattr(sessions, "_has_proc", lambda: False)
    monkeypatch.setattr(sessions, "_proc_stat", lambda pid: None)
    pid, started = sessions.current()
    assert is_alive(pid, started) and not is_alive(pid, started - 3600)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        born = sessions.start_time(sleeper.pid)  # psutil's, or None
        assert is_alive(sleeper.pid, born if born is not None else time.time())
        if way == "psutil":
            assert not is_alive(sleeper.pid, born - 3600)
    finally:
        sleeper.kill()
        sleeper.wait(10)
    assert not is_alive(sleeper.pid, born if born is not None else time.time())


def info(run_id: int, status: str, pid: int | None, started: float | None) -> RunInfo:
    return RunInfo(run_id, float(run_id), None, status, 1, 1, 0, None, pid, started)


def test_resume_source_walks_sessions_newest_first():
    me, born = sessions.current()
    dead = (me, born - 3600)  # our pid, another start: a process that is gone
    older = (me, born - 7200)
    history = [info(5, "running", *dead), info(4, "finished", *dead),
               info(3, "stopped", *older), info(2, "finished", None, None),
               info(1, "running", None, None)]
    found = resume_source(history, "j.sqlite")
    assert [r.run_id for r in found.runs] == [3, 4, 5] and found.note is None  # stops at 2
    ours = [info(6, "running", me, born), *history]
    assert [r.run_id for r in resume_source(ours, "j").runs] == [3, 4, 5]  # ours: skipped
    clean = [info(7, "finished", *dead), info(6, "running", *dead), *history]
    assert resume_source(clean, "j").runs == ()  # that process ended cleanly
    legacy = [info(2, "running", None, None), info(1, "running", None, None)]
    assert [r.run_id for r in resume_source(legacy, "j").runs] == [1, 2]


def test_a_live_process_gets_one_line_and_is_passed_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        born = sessions.start_time(sleeper.pid)
        found = resume_source([info(2, "running", sleeper.pid, born)], "nb.sqlite")
        assert found.runs == ()
        assert found.note == (f"run journal nb.sqlite: its last run (2) is still running in "
                              f"process {sleeper.pid}; nothing is resumed from a live process")
        me, mine = sessions.current()
        past = resume_source([info(3, "running", sleeper.pid, born),
                              info(1, "stopped", me, mine - 3600)], "nb.sqlite")
        assert [r.run_id for r in past.runs] == [1] and past.note is None
    finally:
        sleeper.kill()
        sleeper.wait(10)


# -- the journal file: process columns, pruning --------------------------------------------------------
def test_an_older_journal_gains_the_process_columns(tmp_path):
    from codomyrmex_nb.core import journal_tables

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(journal_tables.SCHEMA)  # a journal as written before the columns
    conn.execute("INSERT INTO runs(started, ended, status) VALUES (1.0, NULL, 'running')")
    conn.execute(f"PRAGMA user_version = {journal_tables.SCHEMA_VERSION}")
    conn.commit()
    conn.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", JournalWarning)
        journal = Journal(path)
    try:
        run = journal.begin_run()
        old, new = sorted(journal.history(), key=lambda r: r.run_id)
        assert (old.pid, old.process_started) == (None, None)
        assert (new.run_id, new.pid, new.process_started) == (run, *sessions.current())
    finally:
        journal.close()


def test_an_open_run_of_a_live_process_is_never_pruned(tmp_path):
    path = tmp_path / "j.sqlite"
    journal = Journal(path, max_bytes=300_000, vacuum_interval=0.0)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        born = sessions.start_time(sleeper.pid)
        conn = sqlite3.connect(path)  # another process's open run, with a result
        with conn:
            other = conn.execute("INSERT INTO runs(started, status, pid, pstarted) VALUES "
                                 "(1.0, 'running', ?, ?)", (sleeper.pid, born)).lastrowid
            conn.execute("INSERT INTO results(run_id, task_id, name, fingerprint, blob, error, "
                         "time) VALUES (?, 't', 't', 'other', ?, NULL, 1.0)",
                         (other, os.urandom(60_000)))
        conn.close()
        for n in range(8):
            run = journal.begin_run()
            journal.result(run, "t", "t", f"fp{n}", os.urandom(60_000), None, float(n))
            journal.end_run(run)
            assert journal.flush(10)
        kept = {r.run_id for r in journal.history()}
        assert other in kept and len(kept) < 9  # others were pruned, not the live one's
        sleeper.kill()
        sleeper.wait(10)
        for n in range(8, 12):
            run = journal.begin_run()
            journal.result(run, "t", "t", f"fp{n}", os.urandom(60_000), None, float(n))
            journal.end_run(run)
            assert journal.flush(10)
        assert other not in {r.run_id for r in journal.history()}  # dead now: it may go
    finally:
        sleeper.kill()
        sleeper.wait(10)
        journal.close()
