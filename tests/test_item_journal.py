"""Map items in the journal as groups of columns (``item_journal.py``): what a user reads
back (history counts, transitions, definitions, restored items, a cache clear) is what it
was when each item was journaled as a row of its own, and the journal keeps no item
record alive until its commit."""

from __future__ import annotations

import functools
import marshal
import os
import sqlite3
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from codomyrmex_nb import TaskOrchestrator
from codomyrmex_nb.core import journal_writer
from codomyrmex_nb.core import recorder as recorder_module
from codomyrmex_nb.core.item_journal import (
    _digests,
    expansion_fps,
    expansion_group,
    fold_group,
    pack_group,
    refold_group,
)
from codomyrmex_nb.core.journal import Journal
from codomyrmex_nb.core.journal_tables import STATUSES, RunSummary, pack_tasks, task_rows
from codomyrmex_nb.core.records import ItemRecord

FAILING = {3, 13, 23}


def fails_on_some(item: int) -> int:
    if item in FAILING:
        raise ValueError(f"bad item {item}")
    return item * 2


def _run(orch: TaskOrchestrator) -> None:
    orch.start_execution()
    assert orch.wait_for_completion(30)


def _ran_failing_map(path, items: int = 30, plain: bool = False) -> dict[str, str]:
    """Run a map over ``range(items)`` whose items 3, 13 and 23 fail (tolerated), beside a
    plain task if ``plain``, with a journal at ``path``; task name -> id."""
    orch = TaskOrchestrator(2, journal=path)
    if plain:
        orch.create_task("plain", func=lambda: 5)
    orch.create_task("m", func=fails_on_some, map=list(range(items)), tolerate=3)
    _run(orch)
    ids = {task.name: task.id for task in orch.list_tasks()}
    orch.stop_execution()
    return ids


def _read(path, reader):
    journal = Journal(path)
    try:
        return reader(journal)
    finally:
        journal.close()


def test_items_read_back_as_rows_with_their_last_state_and_count_in_the_history(tmp_path):
    path = tmp_path / "j.sqlite"
    map_id = _ran_failing_map(path)["m"]

    def reader(journal):
        run = journal.history()[0]
        return run, journal.transitions(run.run_id), journal.definitions(run.run_id)

    run, transitions, definitions = _read(path, reader)
    conn = sqlite3.connect(path)
    try:  # the items' small results name their fingerprints by the expansion's: once each
        blobs = [marshal.loads(blob) for (blob,) in conn.execute("SELECT rows FROM packed")]
        groups = [group for columns in blobs if columns[0] == 2 for group in columns[-1]
                  if group[9]]
    finally:
        conn.close()
    assert groups and all(group[10] is None for group in groups)
    assert (run.tasks, run.completed, run.failed) == (31, 28, 3)  # 30 items and the map
    seqs = [row[0] for row in transitions]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    last = {row[2]: row for row in transitions}
    for i in range(30):
        row = last[f"{map_id}[{i}]"]
        assert row[3] == f"m[{i}]"
        assert row[5] == ("failed" if i in FAILING else "completed")
    assert last[map_id][5] == "completed"
    fps = {task_id: fp for task_id, _, fp in definitions}
    assert len({fps[f"{map_id}[{i}]"] for i in range(30)}) == 30
    hits = _read(path, lambda journal: [journal.restorable_hit(None, fps[f"{map_id}[{i}]"])
                                        for i in range(30)])
    assert [None if hit is None else hit[0] for hit in hits] == \
        [None if i in FAILING else i * 2 for i in range(30)]


def test_the_journal_keeps_no_item_record_alive_until_it_commits(tmp_path, monkeypatch):
    """An item that moved is queued as its index on its map, not as its record: a record
    held until the commit was promoted by the garbage collector and walked again and
    again (the map's items are compact tuples once done)."""
    seen = {"items": 0, "maps": 0}
    real = recorder_module.Recorder._snapshot

    def watched(self, everything=False):
        journal = self._journal
        if journal is not None:
            seen["items"] += sum(1 for rec in journal._touched if isinstance(rec, ItemRecord))
            seen["maps"] += len(journal._mapped)
        return real(self, everything)

    monkeypatch.setattr(recorder_module.Recorder, "_snapshot", watched)
    _ran_failing_map(tmp_path / "j.sqlite", items=2000)
    assert seen["maps"] > 0 and seen["items"] == 0


def test_a_summary_rebuilt_from_the_file_counts_each_item_once(tmp_path):
    """A writer that meets a run it has not seen rebuilds its summary from the file: the
    items' groups fold into it once, as the writer that wrote them had it."""
    path = tmp_path / "j.sqlite"
    _ran_failing_map(path)
    journal = Journal(path)
    try:
        run = journal.history()[0]
        ok, row = journal._call(lambda: journal._summary(run.run_id).row())
        assert ok and row[:3] == (run.tasks, run.completed, run.failed) == (31, 28, 3)
    finally:
        journal.close()


def _rerun_before_the_journal_reads(tmp_path, monkeypatch, only):
    """Run a map whose items 3, 13 and 23 fail, then rerun it (``only``) before the journal
    (committing rarely here, its run kept open by another task) read the items' last
    moves; the states each item's id went through, as the journal has them."""
    monkeypatch.setattr(recorder_module, "Journal",
                        functools.partial(recorder_module.Journal, commit_interval=60))
    path = tmp_path / "j.sqlite"
    fixed, hold, ended = threading.Event(), threading.Event(), threading.Event()

    def flaky(item: int) -> int:
        if item in FAILING and not fixed.is_set():
            raise ValueError("not yet")
        return item

    orch = TaskOrchestrator(2, journal=path)
    orch.create_task("blocker", func=lambda: hold.wait(30))
    orch.create_task("m", func=flaky, map=list(range(30)), tolerate=3)
    orch.subscribe(lambda e: ended.set() if e.name == "m" and e.status.value == "completed"
                   and e.kind == "status" else None)
    orch.start_execution()
    try:
        assert ended.wait(30)
        pending = orch._engine.sched.lookup("m").mapping.jmoved
        assert pending  # not read by the journal yet: the rerun below takes that path
        fixed.set()
        orch.rerun("m", only=only)
    finally:
        hold.set()
    assert orch.wait_for_completion(30)
    map_id = orch.get_task("m").id
    orch.stop_execution()

    def states(journal):
        runs = sorted(run.run_id for run in journal.history())
        out: dict[str, list[str]] = {}
        for run in runs:
            for row in journal.transitions(run):
                out.setdefault(row[2], []).append(row[5])
        return out

    seen = _read(path, states)
    return [seen[f"{map_id}[{i}]"] for i in range(30)]


def test_failed_items_rerun_before_the_journal_read_them_keep_their_failure(tmp_path,
                                                                              monkeypatch):
    """A rerun of the failed items replaces their records: the journal reads their last
    moves from the records they had."""
    seen = _rerun_before_the_journal_reads(tmp_path, monkeypatch, "failed")
    for i in range(30):
        assert seen[i] == (["failed", "completed"] if i in FAILING else ["completed"])


def test_a_whole_map_rerun_before_the_journal_read_it_keeps_every_first_outcome(tmp_path,
                                                                               monkeypatch):
    """A whole rerun resets the map (new items): the journal reads the items' last moves
    from the items the reset replaced, then the new ones'."""
    seen = _rerun_before_the_journal_reads(tmp_path, monkeypatch, None)
    for i in range(30):
        assert seen[i][0] == ("failed" if i in FAILING else "completed")
        assert seen[i][-1] == "completed"


def _cached_map(path, items, calls):
    orch = TaskOrchestrator(2, journal=path)

    def body(item):
        calls.append(item)
        return item * 10

    orch.create_task("m", func=body, map=items, cache=True)
    _run(orch)
    values = list(orch.get_task_result("m").data)
    orch.stop_execution()
    return values


def test_clearing_one_items_cache_reruns_that_item_only(tmp_path):
    path = tmp_path / "j.sqlite"
    calls: list[int] = []
    assert _cached_map(path, [1, 2, 3], calls) == [10, 20, 30] and sorted(calls) == [1, 2, 3]
    calls.clear()
    assert _cached_map(path, [1, 2, 3], calls) == [10, 20, 30] and calls == []  # all restored
    journal = Journal(path)
    try:
        # small results, packed with their runs' items: each run recorded all three
        assert sum(run.results for run in journal.info().runs) == 6
        assert journal.clear_cache("m[1]", dry_run=True).results == 2
        removal = journal.clear_cache("m[1]")
        assert removal.results == 2 and removal.freed >= 0  # the bytes of two small ints
        assert sum(run.results for run in journal.info().runs) == 4
    finally:
        journal.close()
    assert _cached_map(path, [1, 2, 3], calls) == [10, 20, 30] and calls == [2]


def test_items_are_kept_when_their_commits_task_rows_do_not_fit_the_columns(tmp_path,
                                                                           monkeypatch):
    """Rows the columns cannot hold are written the version-3 way; the items of that
    commit then get a blob of their own, already counted in the summary."""
    real, refused = journal_writer.pack_tasks, []

    def picky(transitions, definitions, small, previous=None, groups=()):
        if groups and (transitions or definitions or small):
            refused.append(len(groups))
            raise ValueError("does not fit")
        return real(transitions, definitions, small, previous, groups)

    monkeypatch.setattr(journal_writer, "pack_tasks", picky)
    path = tmp_path / "j.sqlite"
    ids = _ran_failing_map(path, plain=True)
    map_id = ids["m"]

    def reader(journal):
        run = journal.history()[0]
        return run, {row[2]: row[5] for row in journal.transitions(run.run_id)}

    run, last = _read(path, reader)
    assert refused  # the map's groups met the tasks' rows in a commit
    assert (run.tasks, run.completed, run.failed) == (32, 29, 3)
    assert all(last[f"{map_id}[{i}]"] == ("failed" if i in FAILING else "completed")
               for i in range(30))
    assert last[ids["plain"]] == "completed"

def test_items_kept_as_records_with_trivially_small_results_are_restored(tmp_path):
    """An item that printed keeps its record; its None, bool or float result is not
    prepared by its worker but read by the journal from the record: still restorable."""
    path = tmp_path / "j.sqlite"
    calls: list[int] = []

    def talks(item: int) -> float | None:
        calls.append(item)
        print("item", item)
        return None if item == 0 else item / 2

    for expected_calls in ([0, 1, 2, 3], []):
        calls.clear()
        orch = TaskOrchestrator(2, journal=path)
        orch.create_task("m", func=talks, map=[0, 1, 2, 3], cache=True)
        _run(orch)
        assert list(orch.get_task_result("m").data) == [None, 0.5, 1.0, 1.5]
        orch.stop_execution()
        assert sorted(calls) == expected_calls

def test_an_expansions_fingerprints_read_back_as_made_an_unhashable_item_as_none(tmp_path):
    """An expansion's fingerprints are stored as one string of digests; an item that
    cannot be fingerprinted (a lock) reads back as no fingerprint, the others as made."""
    path = tmp_path / "j.sqlite"
    lock = threading.Lock()
    orch = TaskOrchestrator(2, journal=path)
    orch.create_task("m", func=lambda item: 1, map=[1, lock, "x"])
    _run(orch)
    map_id = orch.get_task("m").id
    made = [orch._engine.sched.lookup("m").mapping.fps[i] for i in range(3)]
    orch.stop_execution()
    defined = _read(path, lambda journal: {
        task_id: fp for task_id, _, fp in journal.definitions(journal.history()[0].run_id)})
    assert made[1] == "" and len(made[0]) == len(made[2]) == 64
    assert [defined[f"{map_id}[{i}]"] for i in range(3)] == [made[0], None, made[2]]
    assert expansion_fps(_digests(made)) == made

# -- the groups themselves: packed, read back, folded (property-based) ----------------------------

_moves = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 40),
                            st.integers(1, 7)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _moves, st.booleans()), min_size=1, max_size=8))
def test_groups_read_back_as_the_rows_and_counts_a_row_per_item_would_give(commits):
    """Commits of item moves (and expansions) of two maps, packed as groups: every row read
    back names its item and carries the state it had before and after, every small result
    its fingerprint (its own, or its expansion's when the group stored none: read across
    the run's blobs in order), the summary's counts are those of the items' latest
    states, and a summary rebuilt from the blobs alone (a writer that meets the run
    later) counts the same."""
    summary, blobs, latest, seq = RunSummary(), [], {}, 0
    defined: dict[str, int] = {}
    expansions: dict = {}  # what a reader keeps across the run's blobs
    for expand, moves, by_expansion in commits:
        groups = []
        if expand:
            for map_id in ("a", "b"):
                fps = [f"x{map_id}{i}" for i in range(20)]
                groups.append(expansion_group(1, map_id, f"m{map_id}", fps))
                defined[map_id] = max(defined.get(map_id, 0), 20)
        by_map: dict[str, dict[int, int]] = {}
        for map_id, index, code in moves:
            by_map.setdefault(map_id, {})[index] = code  # the latest move of a commit
        expected = []
        for map_id, last in by_map.items():
            idx = list(last)
            seqs = list(range(seq + 1, seq + 1 + len(idx)))
            seq += len(idx)
            codes = bytes(last.values())
            small = [i for i in idx if last[i] == 4]
            expanded = by_expansion and map_id in defined and all(i < 20 for i in small)
            groups.append((1, map_id, f"m{map_id}", idx, seqs, [float(s) for s in seqs], codes,
                           None, None, small, None if expanded else [f"fp{i}" for i in small],
                           [i * 3 for i in small], [1.0] * len(small)))
            for i, s in zip(idx, seqs, strict=True):
                before = latest.get((map_id, i), 0)
                expected.append((s, f"{map_id}[{i}]", f"m{map_id}[{i}]",
                                 STATUSES[before], STATUSES[last[i]]))
                latest[(map_id, i)] = last[i]
        packed = [pack_group(group, fold_group(summary, group)) for group in groups]
        blob = pack_tasks([], [], [], None, packed)[0]
        blobs.append(blob)
        columns = marshal.loads(blob)
        rows = task_rows(1, columns, "transitions")
        assert [(r[1], r[3], r[4], r[5], r[6]) for r in rows] == sorted(expected)
        results = task_rows(1, columns, "results", expansions=expansions)
        own = {group[1] for group in groups if group[3] and group[10] is not None}
        assert {(r[1], r[3], r[4]) for r in results} == {
            (f"{m}[{i}]", f"fp{i}" if m in own else f"x{m}{i}", i * 3)
            for m, last in by_map.items() for i, code in last.items() if code == 4}
    seen = {key for key in latest} | {(m, i) for m, n in defined.items() for i in range(n)}
    codes = list(latest.values())
    assert summary.row()[:3] == (len(seen), codes.count(4), codes.count(5))
    rebuilt = RunSummary()
    for blob in blobs:
        for group in marshal.loads(blob)[-1]:
            refold_group(rebuilt, group)
    assert rebuilt.row() == summary.row()


def _plus_one(item):
    return item + 1


def _total(upstream):
    with open(os.environ["CODO_TEST_RAN"], "a") as ran:  # (read where no fingerprint looks)
        ran.write("x")
    return sum(upstream["a"])


def _double(upstream):
    return upstream["total"] * 2


def test_a_cached_task_after_a_map_is_restored_once_the_maps_fingerprint_is_known(
        tmp_path, monkeypatch):
    """Its definition cannot look it up (the map's fingerprint is known once its items
    ended): it is looked up as it starts, and restored then."""
    journal, ran = tmp_path / "j.sqlite", tmp_path / "ran"
    monkeypatch.setenv("CODO_TEST_RAN", str(ran))

    def run() -> tuple[object, bool, int]:
        orch = TaskOrchestrator(2, journal=journal)
        try:
            orch.create_task("a", func=_plus_one, map=[1, 2, 3], cache=True)
            after = orch.create_task("total", func=_total, dependencies=["a"], cache=True)
            last = orch.create_task("double", func=_double, dependencies=["total"], cache=True)
            orch.start_execution()
            assert orch.wait_for_completion(30)
            assert last.result.data == 18  # two steps after the map: restored alike
            assert last.result.metadata.get("restored") == after.result.metadata.get("restored")
            return after.result.data, bool(after.result.metadata.get("restored")), \
                len(ran.read_text())
        finally:
            orch.stop_execution()

    assert run() == (9, False, 1)
    assert run() == (9, True, 1)  # not run again
    assert run() == (9, True, 1)  # and recorded again in the run that restored it
