"""Nothing lost, in plain Python: resume after a process dies, the result cache, fingerprints,
what the journal keeps and what it costs.

Where a process must die, a script (``PIPELINE``, written into the test's folder) runs
in a subprocess and is SIGKILLed; the next interpreter runs the same script. Each task
body appends its name to a log file as it starts: a restored task never appends again.
The script's tasks are held at will by ``hold-NAME`` files in its work folder (the
paths come from environment variables read inside the bodies, so they are not part of
any fingerprint). What a killed run committed is read afterwards from the journal
itself (read-only), so every check is exact whatever the timing.

The test process runs with ``CODOMYRMEX_JOURNAL=off`` (conftest): every journal here
is a file of the test's own, given explicitly.
"""

from __future__ import annotations

import functools
import itertools
import json
import marshal
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from codomyrmex_nb import Task, TaskOrchestrator, TaskPriority, TaskStatus
from codomyrmex_nb.core import journal_tables
from codomyrmex_nb.core.fingerprint import Unhashable
from codomyrmex_nb.core.journal import Journal

S = TaskStatus

PIPELINE = r'''
import json, os, signal, sys, threading, time

import pandas as pd

from codomyrmex_nb import TaskOrchestrator, TaskStatus
from codomyrmex_nb.core.journal import Journal

SCALE = int(os.environ.get("RESUME_SCALE", "3"))  # a global constant that `scale` reads
ROWS = int(os.environ.get("RESUME_ROWS", "5"))


def note(name):
    with open(os.environ["RESUME_LOG"], "a") as log:
        log.write(name + "\n")


def hold(name):
    flag = os.path.join(os.environ["RESUME_WORK"], "hold-" + name)
    while os.path.exists(flag):
        time.sleep(0.005)


def load(frame):
    note("load")
    return frame.assign(c=frame["a"] * 2)


def scale(upstream):
    note("scale")
    hold("scale")
    return [int(v) * SCALE for v in upstream["load"]["c"]]


def count(upstream):
    note("count")
    hold("count")
    return len(upstream["load"])


def slow(upstream):
    note("slow")
    hold("slow")
    return sum(upstream["scale"])


def report(upstream):
    note("report")
    return {"sum": upstream["slow"], "count": upstream["count"]}


def build(orch):
    frame = pd.DataFrame({"a": range(ROWS), "b": [chr(97 + i) for i in range(ROWS)]})
    orch.create_task("load", func=load, parameters={"frame": frame})
    orch.create_task("scale", func=scale, dependencies=["load"])
    orch.create_task("count", func=count, dependencies=["load"], cache=True)
    orch.create_task("slow", func=slow, dependencies=["scale"])
    orch.create_task("report", func=report, dependencies=["slow", "count"])


def when_completed(orch, names, then):
    """Call `then` (on the event thread) once every task in `names` has completed."""
    left = set(names)
    lock = threading.Lock()

    def completed(name):
        with lock:
            if not left:
                return
            left.discard(name)
            done = not left
        if done:
            then()

    def on_event(event):
        if event.status is TaskStatus.COMPLETED and event.name in names:
            completed(event.name)

    orch.subscribe(on_event)
    for task in orch.list_tasks():  # restored at definition: completed already
        if task.name in names and task.status is TaskStatus.COMPLETED:
            completed(task.name)


def jsonable(value):
    if isinstance(value, pd.DataFrame):
        return value.to_dict("list")
    return value


if __name__ == "__main__":
    mode = sys.argv[1]
    work = os.environ["RESUME_WORK"]
    orch = TaskOrchestrator(2)  # the journal from $CODOMYRMEX_JOURNAL
    if mode == "unflushed":  # nothing commits by itself for 30 s, only when flushed
        recorder = orch._engine.recorder
        old, recorder._journal = recorder._journal, Journal(recorder.path, commit_interval=30)
        old.close()
    build(orch)
    if mode == "committed":  # load, scale, count committed; the test kills us in `slow`
        done = threading.Event()
        when_completed(orch, ["load", "scale", "count"], done.set)
        orch.start_execution()
        done.wait(60)
        orch._engine.recorder.journal.flush()
        open(os.path.join(work, "committed"), "w").close()
        time.sleep(600)
    elif mode == "unflushed":  # load committed; scale killed just after it completed
        loaded = threading.Event()
        when_completed(orch, ["load"], loaded.set)
        when_completed(orch, ["scale"], lambda: os.kill(os.getpid(), signal.SIGKILL))
        orch.start_execution()
        loaded.wait(60)
        orch._engine.recorder.journal.flush()
        for name in ("count", "scale"):  # scale last: once it may complete, we may die
            os.unlink(os.path.join(work, "hold-" + name))
        time.sleep(600)
    else:  # "finish": run to the end and report
        restored = [t.name for t in orch.list_tasks() if t.status is TaskStatus.COMPLETED]
        summary = orch.restored_summary()
        orch.start_execution()
        began = time.monotonic()
        ok = orch.wait_for_completion(60)
        if mode == "finish-rerun":
            orch.rerun("count")
            orch.wait_for_completion(60)
        waited = time.monotonic() - began
        out = {"ok": ok, "restored_at_definition": restored, "summary": summary,
               "results": {t.name: jsonable(t.result.data) if t.result is not None else
                           f"<no result: {t.status.value} after {waited:.1f} s>"
                           for t in orch.list_tasks()},
               "restored": sorted(t.name for t in orch.list_tasks()
                                  if t.result is not None and t.result.metadata.get("restored")),
               "attempts": {t.name: len(t.attempts) for t in orch.list_tasks()}}
        orch.stop_execution()
        out["history"] = [[int(r), s] for r, s in zip(orch.history()["run"],
                                                     orch.history()["status"])]
        print(json.dumps(out))
'''

TASKS = ["load", "scale", "count", "slow", "report"]
EXPECTED = {"load": {"a": [0, 1, 2, 3, 4], "b": ["a", "b", "c", "d", "e"], "c": [0, 2, 4, 6, 8]},
            "scale": [0, 6, 12, 18, 24], "count": 5, "slow": 60, "report": {"sum": 60, "count": 5}}


class Pipeline:
    """The script in a folder of its own, with its journal, log and hold files."""

    def __init__(self, folder: Path, journal: Path | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.script = folder / "pipeline.py"
        self.script.write_text(PIPELINE)
        self.journal = journal or folder / "journal.sqlite"
        self.log = folder / "ran.log"
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return {**os.environ, "CODOMYRMEX_JOURNAL": str(self.journal),
                "RESUME_WORK": str(self.folder), "RESUME_LOG": str(self.log),
                "PYTHONUNBUFFERED": "1", **self.extra_env}

    def hold(self, *names: str) -> None:
        for name in names:
            (self.folder / f"hold-{name}").touch()

    def release(self, *names: str) -> None:
        for name in names:
            (self.folder / f"hold-{name}").unlink(missing_ok=True)

    def ran(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def start(self, mode: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(self.script), mode], env=self.env(),
                                cwd=self.folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def finish(self, mode: str = "finish") -> dict:
        proc = subprocess.run([sys.executable, str(self.script), mode], env=self.env(),
                              cwd=self.folder, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["stderr"] = proc.stderr[-2000:]  # the journal's warnings, shown when a check fails
        return out

    def kill_when_committed(self) -> None:
        """Run until load, scale and count are committed (slow is held), then SIGKILL."""
        self.hold("slow")
        proc = self.start("committed")
        marker = self.folder / "committed"
        deadline = time.monotonic() + 60
        while not marker.exists():  # polling a file in a test is fine
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the script never committed its first tasks"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        marker.unlink()

    def committed(self) -> set[str]:
        """Names whose result row (a restorable blob) the journal's last run committed."""
        return committed_results(self.journal)


def committed_results(path: Path, run: str = "max") -> set[str]:
    """Read the journal read-only: task names with a committed result blob in its last run."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        [(last,)] = conn.execute("SELECT max(run_id) FROM runs").fetchall()
        rows = stored_results(conn)
    finally:
        conn.close()
    return {name for run, name, _, value, error in rows if run == last and error is None}


def stored_results(conn: sqlite3.Connection) -> list[tuple]:
    """Every result the file holds, unverified: (run, name, fingerprint, blob or small value,
    error); a small result lives in its run's packed "tasks" row (journal format 4)."""
    rows = list(conn.execute("SELECT run_id, name, fingerprint, blob, error FROM results"))
    for run, blob in conn.execute("SELECT run_id, rows FROM packed WHERE kind = 'tasks' "
                                  "ORDER BY rowid"):
        rows += [(run, name, fp, value, None) for _, _, name, fp, value, _ in
                 journal_tables.task_rows(run, marshal.loads(blob), "results")]
    return rows


def as_if_dead(path: Path) -> None:
    """Make the journal's runs look written by a process that is gone: the same pid with
    another start time is another process (pid reuse)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE runs SET pstarted = pstarted - 3600")
    finally:
        conn.close()


def copy_journal(source: Path, target: Path) -> None:
    """A copy of a journal no process has open (the file and its WAL)."""
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


# -- (a) killed after some commits, resumed in a new interpreter -----------------------------------
def test_a_killed_script_resumes_exactly_its_committed_completions(tmp_path):
    clean = Pipeline(tmp_path / "clean").finish()  # the same script, never interrupted
    assert clean["ok"] and clean["results"] == EXPECTED and clean["restored"] == []

    run = Pipeline(tmp_path / "killed")
    run.kill_when_committed()
    committed = run.committed()
    assert committed == {"load", "scale", "count"}
    assert sorted(run.ran()) == ["count", "load", "scale", "slow"]  # slow was mid-attempt
    before = len(run.ran())

    run.release("slow")
    second = run.finish()
    assert second["ok"]
    assert set(second["restored"]) == committed
    assert set(second["restored_at_definition"]) == committed  # before the engine started
    assert all(second["attempts"][name] == 0 for name in committed)
    assert sorted(run.ran()[before:]) == ["report", "slow"]  # the rest ran, once each
    assert second["results"] == clean["results"] == EXPECTED
    assert second["summary"].startswith("restored 3 finished tasks from the unfinished run of ")
    statuses = dict((r, s) for r, s in second["history"])
    assert statuses[min(statuses)] == "running"  # the killed run: it never ended
    assert statuses[max(statuses)] == "finished"


# -- (b) a completion inside the last commit window is not restored ---------------------------------
def test_a_task_that_completed_after_the_last_commit_runs_again(tmp_path):
    run = Pipeline(tmp_path)
    run.hold("scale", "count", "slow")
    proc = run.start("unflushed")  # kills itself right after scale completed, before a commit
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert run.committed() == {"load"}  # scale completed, but only in memory
    assert "scale" in run.ran()
    before = len(run.ran())

    run.release("slow")
    second = run.finish()
    assert second["restored"] == ["load"], second
    assert sorted(run.ran()[before:]) == ["count", "report", "scale", "slow"], (run.ran(), second)
    assert second["results"] == EXPECTED


# -- (c) after a run that finished: recompute, except cache=True; rerun always runs -----------------
def test_after_a_finished_run_only_cached_tasks_are_restored_and_rerun_runs(tmp_path):
    run = Pipeline(tmp_path)
    first = run.finish()
    assert first["restored"] == [] and sorted(run.ran()) == sorted(TASKS)
    before = len(run.ran())
    second = run.finish("finish-rerun")
    assert second["restored_at_definition"] == ["count"]  # cache=True, fingerprint matches
    assert sorted(run.ran()[before:]) == ["count", "load", "report", "report", "scale", "slow"]
    # count restored at definition, then rerun("count") ran it (and report after it again)
    assert second["attempts"]["count"] == 1 and second["restored"] == []
    assert second["results"] == EXPECTED
    assert second["summary"].startswith("restored 1 finished task from the cache ('count')")


# -- (d) what changes a fingerprint -------------------------------------------------------------------
@pytest.mark.parametrize(("change", "rerun"), [
    ("parameter", {"load", "scale", "count", "slow", "report"}),  # the DataFrame has 6 rows
    ("global", {"scale", "slow", "report"}),                        # SCALE = 4
    ("code", {"scale", "slow", "report"}),                          # scale's body changed
    ("nothing", {"slow", "report"}),
])
def test_a_changed_parameter_code_or_global_reruns(tmp_path, change, rerun):
    run = Pipeline(tmp_path)
    run.kill_when_committed()
    assert run.committed() == {"load", "scale", "count"}
    if change == "parameter":
        run.extra_env["RESUME_ROWS"] = "6"
    elif change == "global":
        run.extra_env["RESUME_SCALE"] = "4"
    elif change == "code":
        source = run.script.read_text()
        edited = source.replace("return [int(v) * SCALE for v in", "return [SCALE * int(v) for v in")
        assert edited != source
        run.script.write_text(edited)
    run.release("slow")
    before = len(run.ran())
    second = run.finish()
    assert set(run.ran()[before:]) == rerun and len(run.ran()[before:]) == len(rerun)
    assert set(second["restored"]) == set(TASKS) - rerun
    if change in ("code", "nothing"):
        assert second["results"] == EXPECTED


# -- (e) unhashable parameters, unpicklable results --------------------------------------------------
def test_an_unhashable_parameter_is_never_restorable_and_says_why(tmp_path):
    journal = tmp_path / "j.sqlite"
    calls = []

    def guarded(lock):
        calls.append(1)
        with lock:
            return "done"

    for _ in range(2):  # the second orchestrator reads the first one's finished run
        orch = TaskOrchestrator(2, journal=journal)
        try:
            task = orch.create_task("guarded", func=guarded, cache=True,
                                    parameters={"lock": threading.Lock()})
            assert task.status is S.READY  # never restored
            orch.start_execution()
            assert orch.wait_for_completion(20)
            assert task.result.data == "done"
            reason = orch._engine.recorder.unhashable["guarded"]
            assert "lock" in reason.lower()
        finally:
            orch.stop_execution()
    assert len(calls) == 2
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    rows = conn.execute("SELECT fingerprint, blob, error FROM results WHERE name = 'guarded'")
    assert [(fp, blob) for fp, blob, _ in rows] == [(None, None), (None, None)]
    conn.close()


def test_an_unpicklable_result_is_recorded_as_such_and_the_run_goes_on(tmp_path):
    journal = tmp_path / "j.sqlite"
    orch = TaskOrchestrator(2, journal=journal)
    try:
        lock = orch.create_task("lock", func=threading.Lock)
        after = orch.create_task("after", func=lambda upstream: type(upstream["lock"]).__name__,
                                 dependencies=[lock])
        orch.start_execution()
        assert orch.wait_for_completion(20)
        assert lock.status is S.COMPLETED and after.result.data == "lock"
        assert orch._engine.recorder.journal.flush(10)
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        rows = {n: (b, e) for _, n, _, b, e in stored_results(conn)}
        conn.close()
        blob, error = rows["lock"]
        assert blob is None and "pickle" in error.lower()
        assert rows["after"][0] is not None and rows["after"][1] is None
    finally:
        orch.stop_execution()


# -- (f) a 100 MB result does not stall the engine ---------------------------------------------------
def test_a_100_mb_result_does_not_stall_the_engine(tmp_path):
    """While a 100 MB DataFrame is made, pickled (by its worker, outside the engine lock) and
    written (by the journal's writer, in chunks), a stream of 1 ms tasks on the other workers
    keeps completing: no gap of a second, and progress throughout."""
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    path = tmp_path / "j.sqlite"
    orch = TaskOrchestrator(4, journal=path)
    journal = orch._engine.recorder.journal
    stamps: list[float] = []  # when each tiny task finished, taken in the task itself
    big_started: list[float] = []
    big_done = threading.Event()

    feeding = threading.Event()  # set until the big blob is committed: the stream goes on
    feeding.set()
    more = itertools.count()

    def on_event(event):
        if event.name == "big" and event.status is S.RUNNING:
            big_started.append(time.perf_counter())
        if event.name == "big" and event.status is S.COMPLETED:
            big_done.set()
        if (event.name or "").startswith(("tiny", "more")) and event.status is S.COMPLETED \
                and feeding.is_set():  # however slow the machine, the stream outlasts the write
            orch.create_task(f"more{next(more)}", func=tiny)

    def big():  # its closure (pd, np) can be fingerprinted: its result is restorable
        return pd.DataFrame(np.ones((100 * 2**20 // 80, 10)))  # 100 MB of float64

    def tiny():
        time.sleep(0.001)
        stamps.append(time.perf_counter())
        return 1

    orch.subscribe(on_event)
    try:
        for i in range(200):  # the stream is flowing before the big task starts
            orch.create_task(f"early{i}", func=tiny)
        orch.start_execution()
        for i in range(8000):
            orch.create_task(f"tiny{i}", func=tiny)
        orch.create_task("big", func=big, priority=TaskPriority.CRITICAL)
        assert big_done.wait(60)
        assert journal.flush(120)  # the big blob is committed when this returns
        committed = time.perf_counter()
        began = big_started[0]
        streaming = bool(orch.get_execution_stats()["pending"])
        feeding.clear()
        orch.wait_for_completion(120)
    finally:
        orch.stop_execution()
    assert streaming, "the stream of tiny tasks ended before the big result was written"
    window = sorted(t for t in stamps if began <= t <= committed)
    gaps = [b - a for a, b in zip([began, *window], [*window, committed], strict=True)]
    assert max(gaps) < 1.0, (max(gaps), committed - began)
    assert len(window) >= min(20, (committed - began) / 0.01)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    size, = conn.execute("SELECT length(blob) FROM results WHERE name = 'big'").fetchone()
    conn.close()
    assert size > 100 * 2**20  # written whole


# -- (g) history -------------------------------------------------------------------------------------
def test_history_lists_runs_newest_first_with_their_statuses(tmp_path):
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
    gate = threading.Event()

    def boom():
        raise ValueError("no")

    def held():
        while not gate.is_set():
            time.sleep(0.005)

    try:
        orch.create_task("one", func=lambda: 1)
        orch.start_execution()
        assert orch.wait_for_completion(20)
        orch.create_task("two", func=lambda: 2)
        orch.create_task("bad", func=boom)
        assert orch.wait_for_completion(20) is False
        orch.create_task("held", func=held)
        orch.create_task("waits", func=lambda: 3, dependencies=["held"])
        time.sleep(0.05)
        orch.stop_execution()  # work left: the run is "stopped"
    finally:
        gate.set()
        orch.stop_execution()
    runs = orch.history()
    assert list(runs["status"]) == ["stopped", "finished", "finished"]
    assert list(runs["run"]) == sorted(runs["run"], reverse=True)
    assert list(runs["completed"]) == [0, 1, 1] and list(runs["failed"]) == [0, 1, 0]
    assert list(runs["tasks"]) == [2, 2, 1]
    assert runs["started"].is_monotonic_decreasing and (runs["makespan"] >= 0).all()


def test_a_stop_before_any_start_leaves_one_run_the_tasks_ran_in(tmp_path):
    """Tasks defined, stop_execution() before any start (and again after defining more),
    then start: the history showed a run 1 "stopped" in which nothing ran, then run 2.
    The run defining the tasks opened is the one they run in; a stop that stopped
    nothing leaves nothing in the history."""
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
    try:
        orch.create_task("a", func=lambda: 1)
        orch.stop_execution()
        orch.create_task("b", func=lambda: 2, dependencies=["a"])
        orch.stop_execution()
        assert orch._engine.recorder._journal is None  # the stop closed the journal still
        orch.start_execution()
        assert orch.wait_for_completion(20)
        assert orch.journal_run == 1
    finally:
        orch.stop_execution()
    runs = orch.history()
    assert list(runs["run"]) == [1] and list(runs["status"]) == ["finished"], runs
    assert (runs["tasks"].iloc[0], runs["completed"].iloc[0]) == (2, 2)
    assert list(orch.journal_info().frame()["status"]) == ["finished"]


def test_a_run_a_stop_left_open_is_never_pruned_and_ends_at_a_clean_exit(tmp_path):
    """The run kept open by a stop of a stopped engine, while its journal is closed: a
    prune (another Journal object on the file) keeps it, and a clean exit ends it."""
    path = tmp_path / "j.sqlite"
    orch = TaskOrchestrator(2, journal=path)
    try:
        orch.create_task("old", func=lambda: 0)
        orch.start_execution()
        assert orch.wait_for_completion(20)
        orch.stop_execution()
        orch.create_task("a", func=lambda: 1)
        orch.stop_execution()
        removal = orch.prune_journal(keep_runs=0)
        assert list(removal.runs) == [1]  # the finished run goes, run 2 stays
        with Journal(path) as journal:
            journal.prune(keep_runs=0)
            assert [(r.run_id, r.status, r.tasks) for r in journal.history()] == [
                (2, "running", 1)]
        orch.start_execution()
        assert orch.wait_for_completion(20)
    finally:
        orch.stop_execution()
    runs = orch.history()
    rows = zip(runs["run"], runs["status"], runs["completed"], strict=True)
    assert list(rows) == [(2, "finished", 1)]

    script = tmp_path / "exit.py"
    script.write_text(
        "import sys\n"
        "from codomyrmex_nb import TaskOrchestrator\n"
        "orch = TaskOrchestrator(1, journal=sys.argv[1])\n"
        "orch.create_task('a', func=int)\n"
        "orch.stop_execution()\n")
    other = tmp_path / "exit.sqlite"
    proc = subprocess.run([sys.executable, str(script), str(other)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with Journal(other) as journal:
        [run] = journal.history()
    assert (run.status, run.tasks) == ("stopped", 1) and run.ended is not None


STOP_THEN_DIE = r'''
import os, signal, sys
from codomyrmex_nb import TaskOrchestrator

def note(name):
    with open(os.environ["RESUME_LOG"], "a") as log:
        log.write(name + "\n")
    return name

orch = TaskOrchestrator(1, journal=sys.argv[2])
task = orch.create_task("a", func=note, parameters={"name": "a"})
if sys.argv[1] == "die":
    orch.start_execution()
    assert orch.wait_for_completion(60)
    orch.stop_execution()  # run 1 finished
    orch.create_task("b", func=note, parameters={"name": "b"})  # opens run 2
    orch.stop_execution()  # stops nothing: run 2 stays open
    os.kill(os.getpid(), signal.SIGKILL)
print("restored" if task.result is not None else "not restored")
orch.create_task("b", func=note, parameters={"name": "b"})
orch.start_execution()
assert orch.wait_for_completion(60)
orch.stop_execution()
'''


def test_a_process_killed_after_a_stop_of_its_stopped_engine_is_resumed(tmp_path):
    """Tasks defined, a stop that stopped nothing, then the process dies: its run stays
    open, so the next process resumes from that process's runs as from any crash."""
    script = tmp_path / "die.py"
    script.write_text(STOP_THEN_DIE)
    log = tmp_path / "ran.log"
    env = {**os.environ, "RESUME_LOG": str(log)}
    path = str(tmp_path / "j.sqlite")
    died = subprocess.run([sys.executable, str(script), "die", path], env=env,
                          capture_output=True, text=True, timeout=120)
    assert died.returncode == -signal.SIGKILL, died.stderr
    again = subprocess.run([sys.executable, str(script), "again", path], env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["restored"], again.stderr
    assert log.read_text().split() == ["a", "b"]  # a ran once, b once (after the resume)
    with Journal(path) as journal:
        statuses = [(r.run_id, r.status) for r in journal.history()]
    assert statuses == [(3, "finished"), (2, "running"), (1, "finished")]


# -- (h) the writer thread ends with the engine and comes back with work --------------------------------
def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "codo-journal-writer" and t.is_alive()]


def test_stop_leaves_no_writer_thread_and_the_journal_reopens(tmp_path):
    others = set(writer_threads())  # another test's, if any: not ours to judge here
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")

    def ours() -> list[threading.Thread]:
        return [t for t in writer_threads() if t not in others]

    try:
        orch.create_task("a", func=lambda: 1)
        orch.start_execution()
        assert orch.wait_for_completion(20)
        assert len(ours()) == 1
        orch.stop_execution()
        assert ours() == []
        orch.create_task("b", func=lambda: 2)  # the next activity opens the journal again
        orch.start_execution()
        assert orch.wait_for_completion(20)
        assert len(ours()) == 1
    finally:
        orch.stop_execution()
    assert ours() == []
    runs = orch.history()
    orch._engine.recorder.close()
    assert list(runs["status"]) == ["finished", "finished"] and list(runs["completed"]) == [1, 1]
    assert committed_results(tmp_path / "j.sqlite") == {"b"}


# -- (i) the journal on, many short tasks: every result recorded --------------------------------------
def test_two_thousand_short_tasks_are_all_recorded(tmp_path):
    path = tmp_path / "j.sqlite"
    orch = TaskOrchestrator(4, journal=path)
    try:
        for i in range(2000):
            orch.create_task(f"t{i}", func=lambda i=i: {"i": i, "square": i * i})
        orch.start_execution()
        assert orch.wait_for_completion(120)
        assert orch._engine.recorder.journal.flush(60)
        assert orch._engine.recorder.journal.dropped == 0
    finally:
        orch.stop_execution()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [name for _, name, _, _, error in stored_results(conn) if error is None]
        results = (len(names), len(set(names)))
        runs = conn.execute("SELECT status, tasks, completed FROM runs").fetchall()
    finally:
        conn.close()
    with Journal(path) as journal:
        done = [row for row in journal.transitions(journal.last_run().run_id)
                if row[5] == "completed"]
    assert results == (2000, 2000) and len(done) == 2000
    assert runs == [("finished", 2000, 2000)]


# -- a second crash, resume of tasks not started, reading after stop ------------------------------------
def test_a_second_crash_keeps_what_the_first_resume_restored(tmp_path):
    run = Pipeline(tmp_path)
    run.kill_when_committed()  # load, scale, count committed; slow held
    run.kill_when_committed()  # resumed (those 3 restored), then killed again while slow is held
    before = len(run.ran())
    run.release("slow")
    third = run.finish()
    assert sorted(run.ran()[before:]) == ["report", "slow"]
    assert set(third["restored"]) == {"load", "scale", "count"}


def test_resume_restores_a_task_defined_before_it_that_has_not_started(tmp_path):
    gate = threading.Event()

    def first():
        return 41

    def second(upstream):
        while not gate.is_set():
            time.sleep(0.005)
        return upstream["first"] + 1

    orch = TaskOrchestrator(2, journal=tmp_path / "old.sqlite")
    orch.create_task("first", func=first)
    orch.create_task("second", func=second, dependencies=["first"])
    orch.start_execution()
    time.sleep(0.3)
    orch.stop_execution()  # first completed (and committed), second interrupted: "stopped"
    gate.set()
    as_if_dead(tmp_path / "old.sqlite")  # this process's runs are never resumed from
    again = TaskOrchestrator(2, journal=tmp_path / "other.sqlite")
    task = again.create_task("first", func=first)
    assert task.status is S.READY  # the engine is stopped: ready, not started
    again.use_journal(tmp_path / "old.sqlite")
    summary = again.resume()
    again.stop_execution()
    assert task.status is S.COMPLETED, summary


def test_tasks_forgotten_by_reset_do_not_count_in_the_next_run(tmp_path):
    """reset() then a new set of tasks (as %codo_reset then Run All): each run counts the
    tasks it held, not those forgotten after the run before ended."""
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
    try:
        for run in range(3):
            orch.reset()
            for i in range(5):
                orch.create_task(f"t{i}", func=functools.partial(int, i + run))
            orch.start_execution()
            assert orch.wait_for_completion(20)
            orch.stop_execution()
        runs = orch.history()
        assert list(runs["tasks"]) == [5, 5, 5] and list(runs["completed"]) == [5, 5, 5]
        assert list(orch.journal_info().frame()["tasks"]) == [5, 5, 5]
    finally:
        orch.stop_execution()


def test_reading_the_history_of_a_stopped_orchestrator_leaves_no_writer_thread(tmp_path):
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
    orch.create_task("a", func=lambda: 1)
    orch.start_execution()
    assert orch.wait_for_completion(20)
    orch.stop_execution()
    journal = orch._engine.recorder._journal
    assert journal is None  # closed with the engine
    try:
        assert len(orch.history()) == 1
        journal = orch._engine.recorder._journal
        assert journal is None or journal._thread is None or not journal._thread.is_alive()
    finally:
        if orch._engine.recorder._journal is not None:
            orch._engine.recorder.close()


def test_history_right_after_the_run_shows_it_finished(tmp_path):
    from codomyrmex_nb.core.journal import Journal

    path = tmp_path / "j.sqlite"
    orch = TaskOrchestrator(2, journal=path)
    recorder = orch._engine.recorder
    old, recorder._journal = recorder._journal, Journal(path, commit_interval=5)
    old.close()
    try:
        orch.create_task("a", func=lambda: 1)
        orch.start_execution()
        assert orch.wait_for_completion(20)
        runs = orch.history()
        assert (runs["status"].iloc[0], runs["completed"].iloc[0]) == ("finished", 1)
    finally:
        orch.stop_execution()


def test_tasks_made_from_partials_are_fingerprinted_by_function_and_arguments(tmp_path):
    import functools

    from codomyrmex_nb.core.recorder import Recorder

    recorder = Recorder(tmp_path / "j.sqlite", resume=False)
    try:
        def fp(func, cache=False):
            return recorder.fingerprint(Task(name="t", func=func, cache=cache), [], {})

        def note(word):
            return word

        def hold(word):
            return word * 2

        one, same, other = (functools.partial(note, "a"), functools.partial(note, "a"),
                            functools.partial(note, "b"))
        assert fp(one) == fp(same) != fp(other)
        assert fp(one) == fp(one, cache=True)  # a cached task finds what others recorded
        assert fp(functools.partial(hold, "a")) != fp(one)  # another function
        with pytest.raises(Unhashable):
            fp(functools.partial(note, threading.Lock()))
    finally:
        recorder.close()


SETTING = [1]  # a global that `_reads_setting` reads


def _reads_setting():
    return SETTING[0]


def test_a_cached_task_is_recorded_as_what_it_read_when_it_ran_not_when_defined(tmp_path):
    """Its downstream task's definition looks it up in the cache, which fingerprints it
    early; a global changed between definition and start used to be recorded under the
    early fingerprint, so a later run with the old value restored the new one."""
    journal = tmp_path / "j.sqlite"

    def run(changed_after_definition: int | None) -> tuple[object, object, bool]:
        orch = TaskOrchestrator(2, journal=journal)
        try:
            orch.create_task("up", func=_reads_setting, cache=True)
            orch.create_task("down", func=lambda upstream: ("down", upstream["up"]),
                             dependencies=["up"], cache=True)
            if changed_after_definition is not None:
                SETTING[0] = changed_after_definition
            orch.start_execution()
            assert orch.wait_for_completion(30)
            up = orch.get_task_result("up")
            return up.data, orch.get_task_result("down").data, bool(up.metadata.get("restored"))
        finally:
            orch.stop_execution()

    try:
        SETTING[0] = 1
        assert run(changed_after_definition=2) == (2, ("down", 2), False)
        SETTING[0] = 1
        assert run(None) == (1, ("down", 1), False)  # 1 was never computed: it runs
        assert run(None) == (1, ("down", 1), True)  # now it is cached
        SETTING[0] = 2
        assert run(None) == (2, ("down", 2), True)  # as computed by the first run
    finally:
        SETTING[0] = 1
