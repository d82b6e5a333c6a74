"""The memory budget for results: what is dropped, when, and how it comes back.

The pipeline test runs in a subprocess (its peak RSS is its own); the others use
small results and a small budget in this process.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest

from codomyrmex_nb import Task, TaskOrchestrator, TaskStatus
from codomyrmex_nb.core import recorder as recorder_module
from codomyrmex_nb.core import sessions
from codomyrmex_nb.core.journal import Journal, JournalWarning
from codomyrmex_nb.core.memory_budget import (
    MIN_SIZE,
    MemoryBudget,
    MemoryBudgetWarning,
    ResultUnavailable,
    estimate,
    parse_limit,
    physical_memory,
    size_text,
)
from codomyrmex_nb.core.model import DROPPED, TaskResult
from codomyrmex_nb.core.spill_files import spill_name

MB = 2**20
ROOT = Path(__file__).resolve().parents[1]


# -- the pipeline: 30 chained tasks of 30 MB under a 200 MB budget -------------------
PIPELINE = textwrap.dedent("""
    import functools, json, sys
    import numpy as np
    from codomyrmex_nb import Task, TaskOrchestrator

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

    def step(i, upstream):
        prev = next(iter(upstream.values()), None)
        out = np.empty(30 * 2**20 // 8)
        out[:] = i if prev is None else prev[1] + 1  # needs its upstream value, read back or not
        out[0] = i
        return out

    limit = None if sys.argv[2] == "none" else sys.argv[2]
    orch = TaskOrchestrator(max_workers=2, journal=sys.argv[1], memory_limit=limit)
    tasks = []
    for i in range(30):
        tasks.append(Task(name=f"t{i}", func=functools.partial(step, i), dependencies=tasks[-1:]))
    orch.add_tasks(tasks)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) counts from here
    before = status("VmRSS")
    orch.start_execution()
    ok = orch.wait_for_completion(300)
    peak = status("VmHWM")
    orch.stop_execution()
    stats = orch.memory_stats()
    readable = 0
    for i, t in enumerate(tasks):
        data = orch.get_task_result(t.name).data
        readable += bool(data.nbytes == 30 * 2**20 and data[0] == i and data[1] == i
                         and data[-1] == i)
        del data
    print(json.dumps({"ok": ok, "above": peak - before, "readable": readable, **stats}))
""")


def _journal_folder(tmp_path: Path) -> Path:
    """A RAM-backed folder where there is one (the test is about RSS, not the disk's speed)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * 2**30:
        return Path(os.path.join(shm, f"codo-membudget-{os.getpid()}-{tmp_path.name}"))
    return tmp_path


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_thirty_chained_30mb_results_under_a_200mb_budget_stay_under_450mb(tmp_path):
    folder = _journal_folder(tmp_path)
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, str(script), str(folder / "j.sqlite"), "200MB"],
                              capture_output=True, text=True, timeout=240, env=env)
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"]
    assert result["readable"] == 30  # every result, equal to what was computed
    assert result["drops"] >= 20  # the budget did the work, not luck
    assert result["above"] <= 450 * MB, f"peak {result['above'] / MB:.0f} MB above the start"


# -- limits and sizes ----------------------------------------------------------------------------
def test_limits_are_bytes_sizes_or_a_share_of_ram():
    assert parse_limit(123_456) == 123_456
    assert parse_limit("4GB") == 4 * 1000**3
    assert parse_limit("500MB") == 500 * 1000**2
    assert parse_limit("2GiB") == 2 * 2**30
    assert parse_limit(" 1.5 gb ") == 1_500_000_000
    for off in (None, 0, "0", "off", "none", ""):
        assert parse_limit(off) is None
    total = physical_memory()
    assert total is not None and total > 0
    assert parse_limit("25%") == int(total * 0.25)


@pytest.mark.parametrize("bad", ["lots", "12 parsecs", "0%", "150%", "-5MB", -1, [1], True])
def test_a_bad_limit_is_one_clear_error(bad):
    with pytest.raises(ValueError, match="memory_limit"):
        parse_limit(bad)


def test_a_bad_limit_leaves_no_orchestrator_half_made():
    with pytest.raises(ValueError, match="memory_limit 'much'"):
        TaskOrchestrator(max_workers=1, memory_limit="much")


def test_a_bad_limit_with_a_journal_leaves_no_thread_nor_open_file(tmp_path):
    def writers() -> int:
        return sum(t.name == "codo-journal-writer" for t in threading.enumerate())

    threads, fds = writers(), len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(ValueError, match="memory_limit 'lots'"):
            TaskOrchestrator(max_workers=1, journal=tmp_path / "j.sqlite", memory_limit="lots")
    assert writers() == threads
    assert len(os.listdir("/proc/self/fd")) == fds
    assert not (tmp_path / "j.sqlite").exists()  # not even opened


def test_the_default_budget_is_a_quarter_of_ram(make_orch):
    assert make_orch(1).memory_limit == int(physical_memory() * 0.25)
    assert make_orch(1, memory_limit=None).memory_limit is None


def test_sizes_print_in_the_units_a_limit_is_given_in():
    assert size_text(parse_limit("30MB")) == "30 MB"
    assert size_text(parse_limit("4GB")) == "4 GB"
    assert size_text(parse_limit("1.5GB")) == "1.5 GB"
    assert size_text(300_000) == "300 KB"
    assert size_text(512) == "512 bytes"


def test_sizes_are_estimated_cheaply():
    import pandas as pd
    assert estimate(None) == 0 and estimate(3) == 0
    assert estimate(b"x" * 1000) == 1000 and estimate("y" * 500) == 500
    assert estimate(np.zeros(1000)) == 8000
    frame = pd.DataFrame({"a": np.zeros(1000), "b": np.ones(1000)})
    assert estimate(frame) >= 16000
    assert estimate([b"z" * 100_000, b"w" * 100_000]) >= 200_000


# -- the policy, on its own -----------------------------------------------------------------------
class Rec:
    """A scheduler record as the budget sees it."""

    def __init__(self, name: str) -> None:
        self.id = self.name = name
        self.downs: list[Rec] = []
        self.status = TaskStatus.COMPLETED
        self.result: TaskResult | None = None
        self.parent: Rec | None = None  # an item's mapped record


class Weakable:
    def __init__(self, tag: str) -> None:
        self.tag = tag


def _budget(limit: int, loads: list[str]) -> MemoryBudget:
    def loader(entry):
        loads.append(entry.rec.name)
        return f"read back {entry.rec.name}"
    return MemoryBudget(limit, loader, journal_on=lambda: True)


def _add(budget: MemoryBudget, name: str, value, size: int = 100, committed: bool = True):
    rec = Rec(name)
    rec.result = TaskResult(True, value, task_id=name)
    budget.add(rec, rec.result, size, run_id=1, fp=f"fp-{name}", stored=True)
    if committed:
        budget.committed([(1, name, name, f"fp-{name}", b"blob")])
    return rec


def test_the_least_recently_used_committed_result_goes_first():
    loads: list[str] = []
    budget = _budget(250, loads)
    a, b = _add(budget, "a", "A"), _add(budget, "b", "B")
    a.result.read_data()  # a used: b is now the least recent
    _add(budget, "c", "C")
    assert b.result._data is DROPPED and a.result._data == "A"
    assert budget.held == 200
    assert b.result.read_data() == "read back b" and loads == ["b"]


def test_a_consumed_intermediate_goes_before_a_more_recent_leaf():
    budget = _budget(250, [])
    leaf = _add(budget, "leaf", "L")
    middle = _add(budget, "middle", "M")
    child = Rec("child")
    middle.downs.append(child)  # middle feeds child, which has ended: middle is consumed
    _add(budget, "last", "Z")
    assert middle.result._data is DROPPED
    assert leaf.result._data == "L"


def test_an_uncommitted_result_is_never_dropped():
    budget = _budget(150, [])
    first = _add(budget, "first", "F", committed=False)
    _add(budget, "second", "S", committed=False)
    assert first.result._data == "F" and budget.held == 200
    budget.committed([(1, "first", "first", "fp-first", b"blob")])
    assert first.result._data is DROPPED and budget.held == 100


def test_a_handed_out_result_is_kept_by_weak_reference_and_read_back_only_once_dead():
    loads: list[str] = []
    budget = _budget(150, loads)
    rec = _add(budget, "obj", Weakable("mine"))
    held = rec.result.data  # handed to user code
    _add(budget, "next", "N")
    assert rec.result._data is DROPPED  # weakly referenced: dropped from the engine's books
    assert rec.result.data is held and loads == []  # still alive: the same object, no read back
    _add(budget, "again", "G")
    del held
    gc.collect()
    assert rec.result._data is DROPPED
    assert rec.result.data == "read back obj" and loads == ["obj"]


@pytest.mark.parametrize("value", [[1, 2], {"k": 1}, 7, "text", (1, 2), b"bytes"])
def test_a_handed_out_result_that_cannot_be_weakly_referenced_is_never_dropped(value):
    loads: list[str] = []
    budget = _budget(150, loads)
    rec = _add(budget, "plain", value)
    assert rec.result.data == value
    _add(budget, "next", "N")
    _add(budget, "more", "M")
    assert rec.result._data is not DROPPED and rec.result.data == value and loads == []


def test_the_engine_reading_an_upstream_value_does_not_count_as_handing_it_out():
    budget = _budget(150, [])
    rec = _add(budget, "up", [1, 2, 3])
    assert rec.result.read_data() == [1, 2, 3]
    _add(budget, "next", "N")
    assert rec.result._data is DROPPED


def test_concurrent_readers_of_a_dropped_result_share_one_read_back():
    release = threading.Event()
    loads: list[str] = []

    def loader(entry):
        loads.append(entry.rec.name)
        release.wait(5)
        return "value"

    budget = MemoryBudget(150, loader, journal_on=lambda: True)
    rec = _add(budget, "slow", "v")
    _add(budget, "next", "N")
    got: list[str] = []
    readers = [threading.Thread(target=lambda: got.append(rec.result.read_data()))
               for _ in range(4)]
    for t in readers:
        t.start()
    release.set()
    for t in readers:
        t.join(5)
    assert got == ["value"] * 4 and loads == ["slow"]


def test_a_result_replaced_by_hand_leaves_the_budget():
    budget = _budget(1000, [])
    rec = _add(budget, "a", "A")
    rec.result.data = "new"
    assert budget.held == 0 and rec.result._entry is None and rec.result.data == "new"


def test_a_result_under_a_budget_pickles_and_copies_with_its_data():
    import copy
    budget = _budget(150, [])
    rec = _add(budget, "p", "P")
    _add(budget, "q", "Q")
    assert rec.result._data is DROPPED
    twin = pickle.loads(pickle.dumps(rec.result))
    assert twin.data == "read back p" and twin._entry is None
    assert copy.copy(rec.result).data == "read back p"


# -- in an orchestrator -------------------------------------------------------------------------
def _big(tag: int, upstream=None) -> np.ndarray:
    out = np.full(MIN_SIZE // 8 * 4, float(tag))  # 256 KB
    if upstream:
        out[0] = next(iter(upstream.values()))[1]  # read its upstream (back, if dropped)
    return out


def _chain(orch: TaskOrchestrator, n: int) -> list[Task]:
    tasks: list[Task] = []
    for i in range(n):
        tasks.append(Task(name=f"b{i}", func=functools.partial(_big, i),
                          dependencies=tasks[-1:]))
    orch.add_tasks(tasks)
    return tasks


def _run_chain(orch: TaskOrchestrator, n: int) -> list[Task]:
    """``_chain`` run to its end."""
    tasks = _chain(orch, n)
    orch.start_execution()
    assert orch.wait_for_completion(60)
    return tasks


def test_dropped_results_come_back_everywhere_they_are_asked_for(make_orch, tmp_path):
    orch = make_orch(2, journal=tmp_path / "j.sqlite", memory_limit=600_000)
    tasks = _run_chain(orch, 8)
    orch.stop_execution()
    stats = orch.memory_stats()
    assert stats["dropped"] >= 4 and stats["held"] <= 600_000
    for i, task in enumerate(tasks):  # a stopped engine: its journal is opened for the read
        assert orch.get_task_result(task.name).data[1] == i
        if i:
            assert task.result.data[0] == i - 1  # each read its upstream's value
    frame = orch.results_frame()
    assert [row[1] for row in frame["data"]] == list(range(8))
    views = {v.name: v for v in orch.snapshot().tasks}
    assert views["b3"].data[1] == 3
    assert stats["read_backs"] <= orch.memory_stats()["read_backs"]


def test_a_downstream_task_reads_a_dropped_upstream_value_back(make_orch, tmp_path):
    orch = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=300_000)
    first = orch.create_task("first", func=functools.partial(_big, 1))
    for i in range(4):
        orch.create_task(f"o{i}", func=functools.partial(_big, 10 + i))
    orch.start_execution()
    assert orch.wait_for_completion(60)
    orch._engine.recorder.journal.flush(5)
    assert first.result._data is DROPPED
    last = orch.create_task("last", func=lambda upstream: float(upstream["first"][1]),
                            dependencies=["first"])
    assert orch.wait_for_completion(60)
    assert last.result.data == 1.0


def test_without_a_journal_nothing_is_dropped_and_one_line_says_so(make_orch):
    orch = make_orch(2, journal=False, memory_limit=300_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks = _run_chain(orch, 6)
    lines = [str(w.message) for w in caught if issubclass(w.category, MemoryBudgetWarning)]
    assert len(lines) == 1 and "no journal" in lines[0] and "nothing is dropped" in lines[0]
    assert "over the limit of 300 KB" in lines[0]  # in the units memory_limit reads
    assert orch.memory_stats()["dropped"] == 0
    assert [t.result.data[1] for t in tasks] == list(range(6))


def test_with_an_unusable_journal_one_line_says_the_budget_drops_nothing(make_orch, tmp_path):
    (tmp_path / "notadir").write_text("a file, not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        orch = make_orch(2, journal=tmp_path / "notadir" / "j.sqlite", memory_limit=300_000)
        tasks = _run_chain(orch, 6)
        orch.stop_execution()  # its journal closed: still known as unusable
        orch.memory_limit = 200_000
    lines = [str(w.message) for w in caught if issubclass(w.category, MemoryBudgetWarning)]
    assert len(lines) == 2 and all("nothing is dropped" in line for line in lines), lines
    assert orch.memory_stats()["dropped"] == 0
    assert [t.result.data[1] for t in tasks] == list(range(6))


def test_no_budget_keeps_every_result(make_orch, tmp_path):
    orch = make_orch(2, journal=tmp_path / "j.sqlite", memory_limit=None)
    tasks = _run_chain(orch, 4)
    assert all(t.result._entry is None for t in tasks)


def _small(value):
    return value


def test_small_results_packed_in_the_journal_are_never_dropped(make_orch, tmp_path):
    """A small result lives in its run's packed journal row, not a result row of its own;
    the budget never drops one (the largest is far under MIN_SIZE), so it is never
    read back from there, while a large result next to it is dropped as usual."""
    from codomyrmex_nb.core.journal_tables import SMALL_MAX, is_small

    values = [None, 7, 2**(SMALL_MAX * 8) - 1, 1.5, "x" * SMALL_MAX, b"y" * SMALL_MAX]
    assert all(is_small(v) and estimate(v) < MIN_SIZE for v in values)
    orch = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=300_000)
    small = [orch.create_task(f"s{i}", func=functools.partial(_small, v))
             for i, v in enumerate(values)]
    big = [orch.create_task(f"o{i}", func=functools.partial(_big, i)) for i in range(4)]
    orch.start_execution()
    assert orch.wait_for_completion(60)
    orch._engine.recorder.journal.flush(5)
    assert big[0].result._data is DROPPED and orch.memory_stats()["dropped"] >= 1
    assert all(t.result._entry is None and t.result._data is not DROPPED for t in small)
    assert [t.result.data for t in small] == values


# -- spill files: results over the journal's per-result cap -------------------------------------
@pytest.fixture
def small_journal(monkeypatch):
    """Journals that keep results of at most 1 MB (larger ones are spilled)."""
    monkeypatch.setattr(recorder_module, "Journal", functools.partial(Journal, max_bytes=MB))


def _huge(tag: int) -> np.ndarray:
    return np.full(2 * MB // 8, float(tag))  # 2 MB: over the 1 MB cap


def test_a_result_over_the_journals_cap_is_spilled_signed_and_read_back(make_orch, tmp_path,
                                                                         small_journal):
    orch = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=3 * MB)
    tasks = [orch.create_task(f"h{i}", func=functools.partial(_huge, i)) for i in range(4)]
    orch.start_execution()
    assert orch.wait_for_completion(60)
    spilled = sorted((tmp_path / "j.spill").glob("*.pkl"))
    assert len(spilled) == 4 and all(p.stat().st_mode & 0o077 == 0 for p in spilled)
    assert orch.memory_stats()["dropped"] >= 2
    for i, task in enumerate(tasks):
        assert task.result.data[0] == i


def test_a_tampered_spill_file_is_never_unpickled(make_orch, tmp_path, small_journal):
    orch = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=3 * MB)
    first = orch.create_task("first", func=functools.partial(_huge, 1))
    for i in range(3):
        orch.create_task(f"later{i}", func=functools.partial(_huge, 2 + i))
    orch.start_execution()
    assert orch.wait_for_completion(60)
    assert first.result._data is DROPPED
    path = first.result._entry.spill
    evil = tmp_path / "evil"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(evil).encode() + b"'\ntR.")
    with pytest.raises(ResultUnavailable, match=r"task 'first'.*does not verify.*rerun"):
        first.result.data  # noqa: B018
    assert not evil.exists()
    user = orch.create_task("user", func=lambda upstream: 1, dependencies=["first"])
    assert orch.wait_for_completion(60) is False
    assert user.status is TaskStatus.FAILED and "does not verify" in user.result.error_message


def test_spill_files_are_removed_when_their_result_is_forgotten(make_orch, tmp_path,
                                                                 small_journal):
    orch = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=10 * MB)
    orch.create_task("h", func=functools.partial(_huge, 1))
    orch.start_execution()
    assert orch.wait_for_completion(60)
    assert len(list((tmp_path / "j.spill").glob("*.pkl"))) == 1
    orch.reset()
    orch.memory_limit = 1  # the next eviction pass finds the forgotten result
    assert list((tmp_path / "j.spill").glob("*.pkl")) == []


# -- the journal's size bound keeps what may be read back ------------------------------------------
def test_the_size_bound_never_prunes_a_pinned_result(tmp_path):
    journal = Journal(tmp_path / "j.sqlite", max_bytes=300_000, commit_interval=0.0)
    caught = warnings.catch_warnings(record=True)
    said = caught.__enter__()
    warnings.simplefilter("always")
    try:
        blob = os.urandom(100_000)
        first = journal.begin_run()
        for i in range(3):  # 300 KB that must stay: the file cannot get under its bound
            journal.result(first, f"t{i}", "t", f"fp-kept{i}", blob, None, 1.0)
            journal.pinned.add((first, f"fp-kept{i}"))
        journal.end_run(first)
        assert journal.flush(5)
        for i in range(5):
            run = journal.begin_run()
            journal.result(run, f"u{i}", "u", f"fp-{i}", os.urandom(100_000), None, 1.0)
            journal.end_run(run)
            assert journal.flush(5)
        assert all(journal.restorable(first, f"fp-kept{i}")[0] == blob for i in range(3))
        assert journal.restorable(None, "fp-0") is None  # unpinned old runs were pruned
        over = [w for w in said if issubclass(w.category, JournalWarning)
                and "over its bound" in str(w.message)]
        assert len(over) == 1 and "read back" in str(over[0].message)
        journal.pinned.clear()
        run = journal.begin_run()
        journal.result(run, "v", "v", "fp-v", os.urandom(100_000), None, 1.0)
        assert journal.flush(5)
        assert journal.restorable(first, "fp-kept0") is None  # unpinned: pruned as usual
    finally:
        journal.close()
        caught.__exit__(None, None, None)


def test_a_journal_over_its_bound_says_so_once_across_runs_of_one_process(tmp_path):
    """The engine opens the journal anew for each run: the line is said once per file."""
    pinned: set[tuple[int, str]] = set()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for i in range(4):  # each run adds a pinned 100 KB to a file bound to 150 KB
            journal = Journal(tmp_path / "j.sqlite", max_bytes=150_000, commit_interval=0.0)
            journal.pinned = pinned
            run = journal.begin_run()
            journal.result(run, f"t{i}", "t", f"fp{i}", os.urandom(100_000), None, 1.0)
            pinned.add((run, f"fp{i}"))
            journal.end_run(run)
            assert journal.flush(5)
            journal.close()
    over = [str(w.message) for w in said if "over its bound" in str(w.message)]
    assert len(over) == 1, over
    journal = Journal(tmp_path / "j.sqlite", max_bytes=150_000, commit_interval=0.0)
    try:
        assert all(journal.restorable(None, f"fp{i}") is not None for i in range(4))
    finally:
        journal.close()


def test_results_the_budget_may_read_back_are_pinned_in_the_journal(make_orch, tmp_path):
    orch = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=300_000)
    tasks = _run_chain(orch, 3)
    recorder = orch._engine.recorder
    recorder.journal.flush(5)
    run = orch.journal_run
    pinned = recorder.journal.pinned
    assert pinned is recorder.pinned
    for task in tasks:
        fp = task._record.fingerprint
        assert (run, fp) in pinned
    with sqlite3.connect(tmp_path / "j.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM results WHERE blob IS NOT NULL").fetchone()[0] >= 3


def _spill_three(tmp_path, then: str = "") -> subprocess.CompletedProcess:
    """Run a script whose three results are spilled (each over the journal's 1 MB cap,
    under a 3 MiB budget); it prints how many spill files there are, then runs ``then``."""
    script = tmp_path / "spill.py"
    script.write_text(textwrap.dedent(f"""
        import functools, os, pathlib, signal
        import numpy as np
        from codomyrmex_nb import TaskOrchestrator
        from codomyrmex_nb.core import recorder
        from codomyrmex_nb.core.journal import Journal
        recorder.Journal = functools.partial(Journal, max_bytes=2**20)
        orch = TaskOrchestrator(1, journal={str(tmp_path / "j.sqlite")!r}, memory_limit="3MiB")
        for i in range(3):
            orch.create_task(f"h{{i}}", func=functools.partial(np.full, 2**18, float(i)))
        orch.start_execution()
        assert orch.wait_for_completion(60)
        print(len(list(pathlib.Path({str(tmp_path / "j.spill")!r}).glob("*.pkl"))), flush=True)
    """) + then)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_spill_files_do_not_outlive_the_process(tmp_path):
    done = _spill_three(tmp_path)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == 3  # spilled while it ran
    assert list((tmp_path / "j.spill").glob("*.pkl")) == []  # and gone once it exited


def test_spill_files_of_a_killed_process_are_swept_when_the_journal_opens(tmp_path):
    done = _spill_three(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)\n")  # no exit handler
    assert done.returncode == -9 and int(done.stdout.strip()) == 3, done.stderr
    assert len(list((tmp_path / "j.spill").glob("*.pkl"))) == 3  # left behind by the kill
    journal = Journal(tmp_path / "j.sqlite")
    try:
        assert list((tmp_path / "j.spill").glob("*.pkl")) == []
        assert journal.info().spill_files == 0
    finally:
        journal.close()


def _dead_process() -> tuple[int, float]:
    """(pid, start time) of a process that ran and is gone."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = sessions.start_time(child.pid)
    child.kill()
    child.wait(10)
    return child.pid, started


def test_journal_info_counts_spill_files_and_prune_and_clear_sweep_dead_ones(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "j.spill"
        folder.mkdir()
        live = folder / f"{sleeper.pid}.{int(sessions.start_time(sleeper.pid))}-t-1.pkl"
        mine = folder / spill_name("t", 1)
        for path in (live, mine):
            path.write_bytes(b"x" * 1000)
        for what in ("prune", "clear-cache", "clear"):
            pid, started = _dead_process()  # killed after the journal opened
            dead = [folder / f"{pid}.{int(started)}-t-{n}.pkl" for n in range(2)]
            for path in dead:
                path.write_bytes(b"y" * 50_000)
            info = journal.info()
            assert (info.spill_files, info.spill_bytes) == (4, 102_000)
            assert "4 spill files" in info.summary()
            assert journal.prune(keep_runs=0, dry_run=True).spill_files == 2  # counted only
            removal = {"prune": lambda: journal.prune(keep_runs=0),
                       "clear-cache": journal.clear_cache, "clear": journal.clear}[what]()
            assert (removal.spill_files, removal.spill_bytes) == (2, 100_000)
            assert "2 spill files of processes that no longer run" in removal.summary()
            assert sorted(folder.iterdir()) == sorted([live, mine])  # the live ones stay
    finally:
        sleeper.kill()
        sleeper.wait(10)
        journal.close()


def test_a_spill_file_named_by_pid_alone_is_swept_once_that_process_is_gone(tmp_path):
    folder = tmp_path / "j.spill"
    folder.mkdir()
    pid, _ = _dead_process()
    old = folder / f"{pid}-t-1.pkl"  # an earlier version's name
    reused = folder / f"{os.getpid()}-t-1.pkl"  # this pid, written before this process began
    for path in (old, reused):
        path.write_bytes(b"z")
    os.utime(reused, (1_000_000, 1_000_000))
    ours = folder / f"{os.getpid()}-t-2.pkl"  # this pid, written since: may be this process's
    ours.write_bytes(b"z")
    Journal(tmp_path / "j.sqlite").close()
    assert list(folder.iterdir()) == [ours]


def test_clearing_the_journal_keeps_the_runs_of_results_it_may_read_back(make_orch, tmp_path):
    orch = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=300_000)
    tasks = _run_chain(orch, 4)
    orch.stop_execution()
    old = TaskOrchestrator(1, journal=tmp_path / "j.sqlite", memory_limit=None)
    old.create_task("other", func=lambda: 1)
    old.start_execution()
    assert old.wait_for_completion(30)
    old.stop_execution()
    assert len(orch.history()) == 2
    orch.clear_journal()
    assert len(orch.history()) == 1  # the other run went; ours holds dropped results
    assert [t.result.data[1] for t in tasks] == [0, 1, 2, 3]


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped"])
@pytest.mark.parametrize("remove", ["prune", "clear-cache", "clear"])
def test_another_orchestrator_on_the_file_keeps_what_this_one_dropped(make_orch, tmp_path,
                                                                      remove, stopped):
    """In a notebook the default orchestrator and a TaskOrchestrator() share one file: a
    removal through either keeps the other's dropped results (its engine running, or
    stopped with its journal closed)."""
    first = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=300_000)
    tasks = _run_chain(first, 4)
    first._engine.recorder.journal.flush(5)
    assert first.memory_stats()["dropped"] >= 2
    if stopped:
        first.stop_execution()
    second = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=None)
    removal = {"prune": lambda: second.prune_journal(keep_runs=0),
               "clear-cache": second.clear_journal_cache,
               "clear": second.clear_journal}[remove]()
    assert removal.error is None and first.journal_run not in removal.runs, removal
    assert "kept" in removal.summary() and "dropped from memory" in removal.summary()
    assert [t.result.data[1] for t in tasks] == [0, 1, 2, 3]  # read back, none unavailable


def _cached_big() -> np.ndarray:
    return np.full(MIN_SIZE // 2, 5.0)  # 256 KB


def test_a_result_restored_from_the_cache_is_under_the_budget_too(make_orch, tmp_path):
    first = make_orch(1, journal=tmp_path / "j.sqlite")
    first.create_task("cached", func=_cached_big, cache=True)
    first.start_execution()
    assert first.wait_for_completion(30)
    first.stop_execution()
    again = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit=100_000)
    task = again.create_task("cached", func=_cached_big, cache=True)
    assert task.status is TaskStatus.COMPLETED and task.result.metadata["restored"]
    again.start_execution()
    again._engine.recorder.journal.flush(5)  # its row, recorded again in this run
    assert task.result._data is DROPPED  # over the budget once committed
    assert task.result.data[0] == 5.0


def test_pruning_by_hand_removes_runs_whose_results_are_still_in_ram(make_orch, tmp_path):
    """A run whose results this process still holds in RAM (none dropped) is pruned when
    the user asks; those results then stay in RAM for good. A run holding a dropped result
    is kept, and its result still reads back."""
    held = make_orch(1, journal=tmp_path / "j.sqlite", memory_limit="1GB")  # nothing dropped
    kept = _chain(held, 2)
    held.start_execution()
    assert held.wait_for_completion(60)
    held._engine.recorder.journal.flush(5)
    assert held.memory_stats()["dropped"] == 0 and held._engine.recorder.pinned
    other = TaskOrchestrator(1, journal=tmp_path / "j.sqlite", memory_limit=None)
    other.create_task("newer", func=lambda: 1)
    other.start_execution()
    assert other.wait_for_completion(30)
    other.stop_execution()
    dry = held.prune_journal(keep_runs=1, dry_run=True)
    assert dry.runs == [held.journal_run] and held._engine.recorder.pinned  # nothing given up
    removal = held.prune_journal(keep_runs=1)
    assert removal.runs == [held.journal_run], removal
    assert not held._engine.recorder.pinned
    held.memory_limit = 1  # over the budget now: but nothing could be read back
    assert held.memory_stats()["dropped"] == 0
    assert [t.result.data[1] for t in kept] == [0, 1]
    held.stop_execution()



def test_a_dropped_result_is_not_kept_in_ram_by_an_idle_worker(make_orch, tmp_path):
    made: list = []

    def big():
        array = np.arange(500_000, dtype=np.int64)  # 4 MB, measured by nbytes
        made.append(weakref.ref(array))
        return array

    orch = make_orch(2, journal=tmp_path / "j.sqlite", memory_limit=500_000)
    first = orch.create_task("big", func=big)
    orch.create_task("total", func=lambda upstream: int(upstream["big"].sum()),
                     dependencies=["big"])
    orch.start_execution()
    assert orch.wait_for_completion(30)
    orch._engine.recorder.journal.flush(5)  # committed: the budget may drop it now
    assert first.result._data is DROPPED
    gc.collect()  # the workers wait for work: neither holds the array or the call that read it
    assert made[0]() is None, [type(r).__name__ for r in gc.get_referrers(made[0]())]
    assert orch.get_task_result("total").data == 499_999 * 500_000 // 2
    assert (orch.get_task_result("big").data == np.arange(500_000)).all()  # read back
