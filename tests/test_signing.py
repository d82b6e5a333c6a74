"""The signed journal: the key (where it lives, owner-only, one key for racing
processes), and nothing read back from a journal unless its MAC verifies: a crafted
journal never runs its payload, a flipped bit is caught, a lost key and a journal
written before signing each get their own line, and nothing of them is restored.

Every journal here is a file of the test's own; the session's key file comes from
conftest (``CODOMYRMEX_JOURNAL_KEY_FILE``), or the test sets its own.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from codomyrmex_nb import TaskOrchestrator
from codomyrmex_nb.core import journal_tables, signing
from codomyrmex_nb.core.journal import Journal, JournalWarning
from codomyrmex_nb.core.recorder import journal_setting
from codomyrmex_nb.core.signing import KeyUnavailable, Signer, key_path, load_key

ROOT = Path(__file__).resolve().parents[1]


def journal_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, JournalWarning)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the key ------------------------------------------------------------------------------


def test_the_key_is_made_once_owner_only_in_the_users_config_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert key_path({}) == tmp_path / "home" / ".config" / "codomyrmex-nb" / "journal.key"
    config = tmp_path / "xdg"
    path = key_path({"XDG_CONFIG_HOME": str(config)})
    assert path == config / "codomyrmex-nb" / "journal.key"
    assert key_path({"XDG_CONFIG_HOME": str(config), signing.KEY_ENV: "/k/elsewhere.key"}) == \
        Path("/k/elsewhere.key")
    key = load_key(path)
    assert len(key) == 32 and path.read_bytes() == key
    assert mode(path.parent) == 0o700 and mode(path) == 0o600
    assert load_key(path) == key  # read back, not made again
    assert [p.name for p in path.parent.iterdir()] == ["journal.key"]  # no temporary left
    os.chmod(path, 0o644)
    os.chmod(path.parent, 0o755)
    assert load_key(path) == key and mode(path) == 0o600


def test_without_a_home_folder_the_key_is_never_kept_in_the_project(monkeypatch):
    monkeypatch.setattr(signing.os.path, "expanduser", lambda path: path)  # "~" unresolved
    with pytest.raises(KeyUnavailable, match=signing.KEY_ENV):
        key_path({})


def test_processes_racing_to_make_the_key_all_get_the_same_one(tmp_path):
    path, gate = tmp_path / "cfg" / "codomyrmex-nb" / "journal.key", tmp_path / "go"
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from codomyrmex_nb.core.signing import load_key
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.001)
        print(load_key(Path({str(path)!r})).hex())
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(6)]
    time.sleep(1.0)  # let them all start and wait at the gate
    gate.touch()
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert keys == {path.read_bytes().hex()} and len(path.read_bytes()) == 32


def test_a_damaged_key_file_is_refused_and_the_journal_signs_for_this_process(tmp_path,
                                                                             monkeypatch):
    key_file = tmp_path / "bad.key"
    key_file.write_bytes(b"short")
    os.utime(key_file, (time.time() - 60, time.time() - 60))
    with pytest.raises(KeyUnavailable, match=r"^the journal key .* is damaged \(5 bytes"):
        load_key(key_file)
    monkeypatch.setenv(signing.KEY_ENV, str(key_file))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        journal = Journal(tmp_path / "j.sqlite")
    try:
        [message] = journal_warnings(record)
        assert str(key_file) in message and signing.KEY_ENV in message
        run = journal.begin_run()
        journal.result(run, "t", "t", "fp", b"value", None, 1.0)
        assert journal.flush(10) and journal.restorable(run, "fp") == (b"value", 1.0)
    finally:
        journal.close()
    assert key_file.read_bytes() == b"short"  # left for the user to look at


# -- the journal reads back only what verifies ----------------------------------------------


def stored(path: Path, sql: str, *args):
    conn = sqlite3.connect(str(path))
    try:
        with conn:
            return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def flip_a_bit(path: Path, table: str, column: str, where: str, *args) -> None:
    [(rowid, blob)] = stored(path, f"SELECT rowid, {column} FROM {table} WHERE {where}", *args)
    damaged = bytearray(blob)
    damaged[len(damaged) // 2] ^= 0x10
    stored(path, f"UPDATE {table} SET {column} = ? WHERE rowid = ?", bytes(damaged), rowid)


def test_a_flipped_bit_or_a_blob_moved_to_another_fingerprint_is_never_read(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        first = journal.begin_run()
        journal.result(first, "t", "t", "fp", b"old value", None, 1.0)
        journal.end_run(first)
        second = journal.begin_run()
        journal.result(second, "t", "t", "fp", b"new value", None, 2.0)
        journal.result(second, "u", "u", "fpU", b"value of u", None, 2.0)
        journal.result(second, "w", "w", "fpW", os.urandom(10_000), None, 2.0)  # a long one
        journal.transition(second, 1, 2.0, "t", "t", None, "completed", None)
        assert journal.flush(10) and journal.restorable(None, "fpW") is not None
        journal.end_run(second)
        assert journal.flush(10)
    flip_a_bit(path, "results", "blob", "run_id = ? AND fingerprint = 'fp'", second)
    flip_a_bit(path, "results", "blob", "fingerprint = 'fpW'")
    stored(path, "UPDATE results SET fingerprint = 'fpV' WHERE fingerprint = 'fpU'")
    flip_a_bit(path, "packed", "rows", "run_id = ? AND kind = 'tasks'", second)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with Journal(path) as journal:
            assert journal.restorable(second, "fp") is None
            assert journal.restorable(None, "fp") == (b"old value", 1.0)  # the older one serves
            assert journal.restorable(None, "fpV") is None
            assert journal.restorable(None, "fpW") is None
            assert journal.transitions(second) == []
    messages = journal_warnings(record)
    assert len(messages) == 1, messages  # one line per file and reason
    assert str(path) in messages[0] and "does not verify" in messages[0]


@pytest.mark.parametrize(("table", "column", "value"), [
    ("packed", "rows", "xx"), ("results", "mac", "abc"), ("results", "blob", 7)])
def test_a_blob_or_mac_edited_into_another_kind_does_not_verify_and_blocks_nothing(
        tmp_path, table, column, value):
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        run = journal.begin_run()
        journal.result(run, "t", "t", "fp", b"big value", None, 1.0)
        journal.small_result(run, "s", "s", "fpS", 3, 1.0)
        journal.end_run(run)
        assert journal.flush(10)
    stored(path, f"UPDATE {table} SET {column} = ?", value)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with Journal(path) as journal:
            big, small = journal.restorable(None, "fp"), journal.restorable_hit(None, "fpS")
    if table == "packed":  # the small result's row: the result row still serves
        assert big == (b"big value", 1.0) and small is None
    else:
        assert big is None and small is not None and small[0] == 3
    [message] = journal_warnings(record)
    assert str(path) in message and "does not verify" in message


def test_a_packed_row_moved_to_another_run_is_never_unmarshalled(tmp_path, monkeypatch):
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        runs = [journal.begin_run() for _ in range(2)]
        journal.transition(runs[0], 1, 1.0, "a", "a", None, "completed", None)
        journal.transition(runs[1], 1, 1.0, "b", "b", None, "failed", None)
        assert journal.flush(10)
    stored(path, "UPDATE packed SET run_id = ? WHERE run_id = ?", runs[1], runs[0])
    loads = []
    monkeypatch.setattr(journal_tables.marshal, "loads",
                        lambda blob, real=journal_tables.marshal.loads: loads.append(1)
                        or real(blob))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with Journal(path) as journal:
            assert [row[2] for row in journal.transitions(runs[1])] == ["b"]
    assert len(loads) == 1  # the moved row was never unmarshalled
    assert "does not verify" in journal_warnings(record)[0]


def test_another_users_key_restores_nothing_and_says_so(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path, key=b"k" * 32) as theirs:
        run = theirs.begin_run()
        theirs.result(run, "t", "t", "fp", b"theirs", None, 1.0)
        theirs.transition(run, 1, 1.0, "t", "t", None, "completed", None)
        assert theirs.flush(10) and theirs.restorable(run, "fp") == (b"theirs", 1.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with Journal(path) as mine:
            assert mine.restorable(run, "fp") is None and mine.restorable(None, "fp") is None
            assert mine.transitions(run) == []
            assert mine.history()[0].run_id == run  # the history still shows it
    [message] = journal_warnings(record)
    assert "signed with another key" in message and str(key_path()) in message


def test_after_a_run_under_another_key_the_own_runs_still_restore_and_the_line_says_so(tmp_path):
    path = tmp_path / "j.sqlite"
    for key, value in ((None, b"mine"), (b"k" * 32, b"theirs")):
        with Journal(path, key=key) as journal:
            run = journal.begin_run()
            journal.result(run, "t", "t", "fp", value, None, float(run))
            journal.end_run(run)
            assert journal.flush(10)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with Journal(path) as mine:
            assert mine.restorable(None, "fp") == (b"mine", 1.0)  # the run of this key serves
    [message] = journal_warnings(record)
    assert "signed with another key" in message
    assert message.endswith("nothing is restored from those runs; a task found in no other "
                            "run runs again")


# -- a project re-run with defaults --------------------------------------------------------


def answer(x):
    return x * 2


class Payload:
    """What an attacker stores: unpickling it creates ``marker`` (it could run anything)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


V2_SCHEMA = """
CREATE TABLE runs(run_id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, ended REAL,
    status TEXT, tasks INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0, last_time REAL);
CREATE TABLE packed(run_id INTEGER, kind TEXT, rows BLOB);
CREATE TABLE results(
    run_id INTEGER, task_id TEXT, name TEXT, fingerprint TEXT, blob BLOB, error TEXT, time REAL);
PRAGMA user_version = 2;
"""


def fingerprint_of_answer(folder: Path) -> str:
    """What anyone can compute: fingerprints are deterministic."""
    orch = TaskOrchestrator(1, journal=folder / "probe.sqlite")
    orch.create_task("answer", func=answer, parameters={"x": 21})
    orch.start_execution()
    assert orch.wait_for_completion(30)
    orch.stop_execution()
    with Journal(folder / "probe.sqlite") as journal:
        [(_, _, fp)] = journal.definitions(journal.last_run().run_id)
    return fp


def write_unsigned(path: Path, fp: str, blob: bytes, packed: bytes = b"\xffnot marshal") -> None:
    """A journal as versions before signing wrote it: an unfinished run that completed
    the task (its result ``blob``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path))
    with conn:
        conn.executescript(V2_SCHEMA)
        conn.execute("INSERT INTO runs VALUES (1, 1.0, NULL, 'running', 1, 1, 0, 2.0)")
        conn.execute("INSERT INTO packed VALUES (1, 'transitions', ?)", (packed,))
        conn.execute("INSERT INTO results VALUES (1, 'x', 'answer', ?, ?, NULL, 2.0)", (fp, blob))
    conn.close()


def write_signed(path: Path, fp: str, blob: bytes, key_id: str | None = None) -> None:
    """A journal signed with the attacker's own key (``key_id``: claimed to be ours)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Journal(path, key=b"attacker" * 4) as journal:
        run = journal.begin_run()  # left unfinished: a resume restores from it
        journal.result(run, "x", "answer", fp, blob, None, 2.0)
        assert journal.flush(10)
    if key_id is not None:
        stored(path, "UPDATE runs SET key_id = ?", key_id)
    if "pid" in {row[1] for row in stored(path, "PRAGMA table_info(runs)")}:
        stored(path, "UPDATE runs SET pid = NULL")  # not this test's (live) process: resumable


@pytest.mark.parametrize("crafted, says", [
    ("before signing", "written before journals were signed"),
    ("another key", "signed with another key"),
    ("our key id, forged MAC", "does not verify"),
])
def test_a_crafted_journal_never_runs_its_payload_and_the_task_runs_again(
        tmp_path, monkeypatch, crafted, says):
    fp = fingerprint_of_answer(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("CODOMYRMEX_JOURNAL")  # defaults: the journal in the project folder
    path = journal_setting(None).absolute()
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(Payload(marker))
    if crafted == "before signing":
        write_unsigned(path, fp, payload)
    else:
        ours = Signer(load_key()).key_id if crafted == "our key id, forged MAC" else None
        write_signed(path, fp, payload, key_id=ours)

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        orch = TaskOrchestrator(1)
        try:
            task = orch.create_task("answer", func=answer, parameters={"x": 21})
            orch.start_execution()
            assert orch.wait_for_completion(30)
            history = orch.history()
        finally:
            orch.stop_execution()
    assert not marker.exists(), "the crafted journal's payload ran"
    assert task.result.data == 42 and not task.result.metadata.get("restored")
    assert len(task.attempts) == 1  # it ran again
    messages = journal_warnings(record)
    assert len(messages) == 1, messages
    assert str(path) in messages[0] and says in messages[0]
    assert len(history) == 2  # the crafted run stays listed; nothing of it was restored


def value_of(i):
    return [i + k / 7 for k in range(20)]


def run_sixty(journal: Path):
    orch = TaskOrchestrator(2, journal=journal)
    tasks = [orch.create_task(f"t{i}", func=value_of, parameters={"i": i}, cache=True)
             for i in range(60)]
    orch.start_execution()
    assert orch.wait_for_completion(60)
    orch.stop_execution()
    return tasks


def test_one_flipped_bit_in_a_stored_result_is_caught_and_that_task_recomputes(tmp_path):
    path = tmp_path / "j.sqlite"
    run_sixty(path)
    flip_a_bit(path, "results", "blob", "name = 't7'")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tasks = run_sixty(path)
    assert [t.name for t in tasks if not t.result.metadata.get("restored")] == ["t7"]
    assert [t.result.data for t in tasks] == [value_of(i) for i in range(60)]
    [message] = journal_warnings(record)
    assert str(path) in message and "'t7'" in message and "does not verify" in message


def test_a_lost_key_restores_nothing_with_one_line_and_a_new_key(tmp_path, monkeypatch):
    key_file = tmp_path / "config" / "journal.key"
    monkeypatch.setenv(signing.KEY_ENV, str(key_file))
    path = tmp_path / "j.sqlite"
    run_sixty(path)
    old_key = key_file.read_bytes()
    key_file.unlink()  # a home folder that does not persist
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tasks = run_sixty(path)
    assert not any(t.result.metadata.get("restored") for t in tasks)
    assert [t.result.data for t in tasks] == [value_of(i) for i in range(60)]
    [message] = journal_warnings(record)
    assert "signed with another key" in message and str(key_file) in message
    assert key_file.read_bytes() != old_key
    tasks = run_sixty(path)  # what was written with the new key restores again
    assert all(t.result.metadata.get("restored") for t in tasks)


def test_a_journal_written_before_signing_keeps_its_history_and_restores_nothing(tmp_path):
    fp = fingerprint_of_answer(tmp_path)
    path = tmp_path / "old.sqlite"
    write_unsigned(path, fp, pickle.dumps(42))  # a genuine result, as old versions stored it
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        orch = TaskOrchestrator(1, journal=path)
        try:
            task = orch.create_task("answer", func=answer, parameters={"x": 21})
            orch.start_execution()
            assert orch.wait_for_completion(30)
        finally:
            orch.stop_execution()
    assert task.result.data == 42 and not task.result.metadata.get("restored")
    [message] = journal_warnings(record)
    assert "written before journals were signed" in message and str(path) in message
    history = orch.history()
    assert list(history["run"]) == [2, 1] and list(history["status"]) == ["finished", "running"]
    with Journal(path) as journal:
        assert journal.restorable(None, fp) is not None  # the new run's result, signed
        [(version,)] = stored(path, "PRAGMA user_version")
        assert version == journal_tables.SCHEMA_VERSION


def listed(x):
    return [x * 2]  # not a small result: pickled and signed


def test_results_are_signed_in_the_worker_that_pickled_them(tmp_path, monkeypatch):
    calls, given = [], []
    real_mac, real_result = Signer.result, Journal.result
    monkeypatch.setattr(Signer, "result", lambda self, fp, blob: calls.append(
        threading.current_thread().name) or real_mac(self, fp, blob))
    monkeypatch.setattr(Journal, "result", lambda self, *args: given.append(args[-1]) or
                        real_result(self, *args))
    orch = TaskOrchestrator(2, journal=tmp_path / "j.sqlite")
    try:
        for i in range(20):
            orch.create_task(f"t{i}", func=listed, parameters={"x": i})
        orch.start_execution()
        assert orch.wait_for_completion(30)
    finally:
        orch.stop_execution()
    assert len(calls) == 20 and all(name.startswith("codo-worker") for name in calls)
    assert len(given) == 20 and all(isinstance(mac, bytes) for mac in given)  # made already
