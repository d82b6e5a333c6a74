"""Spill files on disk: where they live, whose they are, and sweeping those of dead processes.

The memory budget spills a result over the journal's per-result cap to a file of its
own in ``<journal stem>.spill/`` beside the journal (``memory_budget.spill``), and
removes it when the result is forgotten or the process exits. A process that is
killed (out of memory, SIGKILL, a kernel restart that kills it) removes nothing, and
its files, often the largest things in the folder, would stay for ever: nothing but
that process can read them (their MACs lived in its memory). So each file is named
after the process that wrote it, ``<pid>.<start time>-<task id>-<n>.pkl`` (pid and
start time, as ``sessions.py`` names a process), and ``sweep`` removes the files of
processes that no longer run: when a journal opens, and on every explicit removal
(``%codo_journal --prune`` / ``--clear-cache``, ``%codo_reset --journal``). A file of
an earlier version, named after its pid alone, is its writer's while a process with
that pid runs that started before the file was written.
"""

from __future__ import annotations

import os
from pathlib import Path

from .sessions import TOLERANCE, current, is_alive, start_time

__all__ = ["spill_folder", "spill_name", "spill_space", "sweep"]


def spill_folder(journal: Path) -> Path:
    """The folder of a journal file's spill files (``j.sqlite``: ``j.spill``)."""
    return journal.with_name(f"{journal.stem}.spill")


def spill_name(task_id: str, seq: int) -> str:
    """A new spill file's name: this process (pid and start time), the task, a number."""
    pid, started = current()
    return f"{pid}.{int(started)}-{task_id}-{seq}.pkl"


def _files(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if e.name.endswith(".pkl") and e.is_file()]
    except OSError:  # no folder yet (nothing ever spilled), or unreadable
        return []


def _writer_gone(entry: os.DirEntry[str], alive: dict[tuple[int, float | None], bool]) -> bool:
    """Whether the process that wrote this file no longer runs (unknown names: never)."""
    head = entry.name.split("-", 1)[0]
    pid_text, _, start_text = head.partition(".")
    try:
        pid = int(pid_text)
        started = float(start_text) if start_text else None
    except ValueError:
        return False
    key = (pid, started)
    if key not in alive:
        alive[key] = is_alive(pid, started)
    if not alive[key]:
        return True
    if started is None:  # an older name: a process with this pid started after the file
        began = start_time(pid)
        try:
            return began is not None and began > entry.stat().st_mtime + TOLERANCE
        except OSError:
            return False
    return False


def spill_space(folder: Path) -> tuple[int, int]:
    """(spill files, their bytes) in ``folder``, of every process."""
    count = size = 0
    for entry in _files(folder):
        try:
            size += entry.stat().st_size
            count += 1
        except OSError:
            pass
    return count, size


def sweep(folder: Path, dry_run: bool = False) -> tuple[int, int]:
    """Remove the spill files in ``folder`` whose process no longer runs (``dry_run``: only
    count them); returns (files, bytes). Never a file of a live process, this one included."""
    alive: dict[tuple[int, float | None], bool] = {}
    count = size = 0
    for entry in _files(folder):
        if not _writer_gone(entry, alive):
            continue
        try:
            bytes_ = entry.stat().st_size
            if not dry_run:
                os.unlink(entry.path)
        except OSError:  # gone meanwhile (another process swept it), or not ours
            continue
        count += 1
        size += bytes_
    return count, size
