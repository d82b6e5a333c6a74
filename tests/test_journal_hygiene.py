"""Journal hygiene: what others could read is tightened, a journal in a git work tree
is kept out of git, and a result too large to store is refused before it is pickled."""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import stat
import subprocess
import warnings
from pathlib import Path

import pytest

from codomyrmex_nb import TaskOrchestrator
from codomyrmex_nb.core import journal as journal_module
from codomyrmex_nb.core import recorder as recorder_module
from codomyrmex_nb.core.journal import Journal, JournalWarning
from codomyrmex_nb.core.result_bytes import pickled_at_least

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git program")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def journal_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, JournalWarning)]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_an_existing_folder_and_files_others_can_read_are_tightened(tmp_path):
    folder = tmp_path / ".codomyrmex"
    path = folder / "j.sqlite"
    with Journal(path) as journal:
        run = journal.begin_run()
        journal.result(run, "t", "t", "fp", b"secret", None, 1.0)
        assert journal.flush(10)
    sides = [Path(f"{path}-wal"), Path(f"{path}-shm")]
    for side in sides:
        side.touch()  # left by a process that died, made by hand, or by an old version
    for file in (path, *sides):
        os.chmod(file, 0o644)
    os.chmod(folder, 0o755)
    with Journal(path) as journal:
        assert journal.enabled and journal.restorable(run, "fp") == (b"secret", 1.0)
        assert mode(folder) == 0o700
        assert {file.name: mode(file) for file in (path, *sides)} == \
            {file.name: 0o600 for file in (path, *sides)}


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_custom_folder_of_the_users_keeps_its_mode(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    with Journal(folder / "runs.sqlite") as journal:
        assert journal.enabled and mode(journal.path) == 0o600
    assert mode(folder) == 0o755  # not ours to tighten


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


@needs_git
def test_a_journal_at_a_custom_path_in_a_git_work_tree_is_ignored(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    assert git("init", "-q", cwd=repo).returncode == 0
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with Journal(repo / "data" / "my runs [1].sqlite") as journal:
            run = journal.begin_run()
            journal.result(run, "t", "t", "fp", b"x", None, 1.0)
            assert journal.flush(10)
            assert Path(f"{journal.path}-wal").exists()
            status = git("status", "--porcelain", "--untracked-files=all", cwd=repo).stdout
        Journal(repo / "data" / "my runs [1].sqlite").close()  # opened again: no second rule
    assert status == "" and journal_warnings(record) == []
    for name in ("my runs [1].sqlite", "my runs [1].sqlite-wal", "my runs [1].sqlite.corrupt-1"):
        assert git("check-ignore", "-q", f"data/{name}", cwd=repo).returncode == 0, name
    assert git("check-ignore", "-q", "data/other.sqlite", cwd=repo).returncode == 1
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    assert exclude.count("/data/my runs \\[1].sqlite\n") == 1


@needs_git
def test_a_journal_in_a_linked_worktree_is_ignored_there(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "f").write_text("x")
    git("add", "f", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x", cwd=repo)
    assert git("worktree", "add", "-q", str(tmp_path / "wt"), cwd=repo).returncode == 0
    with Journal(tmp_path / "wt" / "runs.sqlite"):
        pass
    assert git("check-ignore", "-q", "runs.sqlite", cwd=tmp_path / "wt").returncode == 0
    assert git("status", "--porcelain", cwd=tmp_path / "wt").stdout == ""


def test_a_journal_that_cannot_be_ignored_says_so_in_one_line(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git" / "info" / "exclude").mkdir(parents=True)  # cannot be written to
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with Journal(repo / "runs.sqlite") as journal:
            assert journal.enabled
    [message] = journal_warnings(record)
    assert "is not ignored" in message and "runs.sqlite" in message and "\n" not in message


def test_outside_a_work_tree_nothing_is_written(tmp_path):
    with Journal(tmp_path / "runs.sqlite"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.sqlite"]


# -- a result too large to store ----------------------------------------------------------


REDUCED: list[str] = []


class Spy:
    """Records being pickled."""

    def __reduce__(self):
        REDUCED.append("pickled")
        return (Spy, ())


def big_with_spy():
    return [b"x" * 3_000_000, Spy()]


def small_with_spy():
    return [b"x" * 10, Spy()]


def test_a_result_too_large_for_the_journal_is_refused_before_it_is_pickled(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(journal_module, "MAX_BLOB", 1_000_000)
    REDUCED.clear()
    orch = TaskOrchestrator(1, journal=tmp_path / "j.sqlite")
    try:
        big = orch.create_task("big", func=big_with_spy)
        small = orch.create_task("small", func=small_with_spy)
        orch.start_execution()
        assert orch.wait_for_completion(30)
    finally:
        orch.stop_execution()
    assert big.result.data[0] == b"x" * 3_000_000 and small.result.data[0] == b"x" * 10
    assert REDUCED == ["pickled"]  # the small one only
    conn = sqlite3.connect(str(tmp_path / "j.sqlite"))
    rows = dict(conn.execute("SELECT name, error FROM results WHERE blob IS NULL"))
    conn.close()
    assert list(rows) == ["big"]
    assert "larger than the journal's size bound" in rows["big"]


def test_numpy_and_pandas_results_too_large_are_not_pickled(tmp_path, monkeypatch):
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    monkeypatch.setattr(journal_module, "MAX_BLOB", 1_000_000)
    pickled = []
    real = recorder_module.dumps
    monkeypatch.setattr(recorder_module, "dumps", lambda v: pickled.append(type(v)) or real(v))
    values = {"array": np.zeros(200_000), "frame": pd.DataFrame({"a": np.ones(200_000)}),
              "text": "é" * 1_200_000, "nested": {"k": [bytearray(1_100_000)]}}
    orch = TaskOrchestrator(1, journal=tmp_path / "j.sqlite")
    try:
        for name, value in values.items():
            orch.create_task(name, func=lambda v=value: v)
        orch.start_execution()
        assert orch.wait_for_completion(30)
    finally:
        orch.stop_execution()
    assert pickled == []


def test_the_size_floor_never_exceeds_the_pickled_size():
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    values = [b"abc" * 1000, "é" * 5000, "plain" * 100, bytearray(4000), 12, 3.5, None,
              [b"x" * 500] * 100, (b"y" * 100, {"k": "v" * 300}), {"a": [[b"z" * 50]]},
              np.arange(10_000), np.array([None] * 1000, dtype=object), np.arange(100)[::3],
              pd.DataFrame({"n": np.arange(5000), "s": ["same"] * 5000}),
              pd.Series([None] * 3000), pd.Series(np.ones(3000)), [None] * 10_000]
    for value in values:
        assert pickled_at_least(value) <= len(pickle.dumps(value, protocol=5)), repr(value)[:60]
    assert pickled_at_least(np.ones(100_000)) == 800_000
    assert pickled_at_least(b"x" * 10**6) == 10**6
