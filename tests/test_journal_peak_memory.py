"""Journaling a big result costs one copy of it in RAM (its pickled bytes, made in the
worker so a later in-place change cannot alter what is saved), not three: SQLite gets
the blob in chunks into a ``zeroblob`` at the end of its row, which it never makes in
memory (``journal_tables.insert_result``). Measured as peak RSS in a subprocess.
What is stored reads back, verified, as it was; a tampered blob is refused."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codomyrmex_nb.core import journal_tables
from codomyrmex_nb.core.journal import Journal, JournalWarning

ROOT = Path(__file__).resolve().parents[1]
SIZE = 120 * 10**6


def test_journaling_a_big_result_takes_one_copy_of_it_in_ram(tmp_path):
    script = textwrap.dedent(f"""
        import json, resource
        import numpy as np
        from codomyrmex_nb import TaskOrchestrator

        def make():
            return np.random.default_rng(7).integers(0, 255, {SIZE}, dtype=np.uint8)

        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        orch = TaskOrchestrator(1, journal={str(tmp_path / "j.sqlite")!r}, memory_limit=None)
        task = orch.create_task("big", func=make)
        value = make()  # the result itself, once: the high-water mark the run starts from
        held = peak()
        del value
        orch.start_execution()
        assert orch.wait_for_completion(120)
        orch.stop_execution()  # the journal commits and closes
        print(json.dumps({{"extra": peak() - held, "sum": int(task.result.data.sum())}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    # the pickled copy (1x) and change; before: 3x (SQLite made the row twice in memory)
    assert measured["extra"] <= 1.5 * SIZE, f"{measured['extra'] / SIZE:.2f}x the result"
    journal = Journal(tmp_path / "j.sqlite")
    try:
        with sqlite3.connect(tmp_path / "j.sqlite") as conn:
            assert journal_tables.blob_last(conn)
            fp, run_id = conn.execute("SELECT fingerprint, run_id FROM results").fetchone()
        blob, _ = journal.restorable(run_id, fp)  # verified under the user's key
        assert int(pickle.loads(blob).sum()) == measured["sum"]
    finally:
        journal.close()


def test_a_big_blob_read_back_verifies_and_a_tampered_one_is_refused(make_journal):
    journal = make_journal()
    run = journal.begin_run()
    blob = os.urandom(3 * journal_tables.CHUNK + 5)  # written in chunks
    journal.result(run, "t", "t", "fp", blob, None, 1.0)
    journal.end_run(run)
    assert journal.flush(10)
    assert journal.restorable(run, "fp")[0] == blob
    with sqlite3.connect(journal.path) as conn:
        conn.execute("UPDATE results SET blob = ? WHERE fingerprint = 'fp'",
                     (blob[:-1] + bytes([blob[-1] ^ 1]),))
    with pytest.warns(JournalWarning, match="does not verify"):
        assert journal.restorable(run, "fp") is None


def test_a_file_of_the_older_layout_still_takes_results(tmp_path):
    """A version-5 file keeps ``blob`` in the middle of its rows: results still go in
    (by column name) and read back."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(journal_tables.SCHEMA.replace(
            "error TEXT, time REAL,\n    mac BLOB, blob BLOB)",
            "blob BLOB, error TEXT,\n    time REAL, mac BLOB)"))
        conn.execute("PRAGMA user_version = 5")
        assert not journal_tables.blob_last(conn)
    journal = Journal(path)
    try:
        run = journal.begin_run()
        blob = os.urandom(2 * journal_tables.CHUNK)
        journal.result(run, "t", "t", "fp", blob, None, 1.0)
        journal.result(run, "u", "u", "fq", b"small blob" * 50, None, 1.0)
        journal.end_run(run)
        assert journal.flush(10)
        assert journal.restorable(run, "fp")[0] == blob
        assert journal.restorable(run, "fq")[0] == b"small blob" * 50
    finally:
        journal.close()
