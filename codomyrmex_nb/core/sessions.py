"""Sessions: the runs one process wrote, and whether that process still runs.

Each run records the process that wrote it: its pid and its start time (a pid alone
is reused; with its start time it names one process). The runs of one process form
a *session*. Resume (``resume_source``) restores from every run of each session
whose process is gone and whose last run did not finish (the kernel or the script
died mid-work, or exited with work left), newer than the last session that ended
cleanly: a script killed in its second stage gets its first stage back too. A
session whose process still runs (this process, the same notebook open in a second
kernel, the same script started twice) is never resumed from, and its open runs are
never pruned (``journal.py``). A run of an older journal, without a process, is a
session of its own.

The start time: on Linux ``/proc/<pid>/stat`` (clock ticks since boot, plus the boot
time of ``/proc/stat``); elsewhere ``psutil`` when it is importable (it is not
required); else, for this process, the time this module was first imported, and for
another pid only whether it exists: then it counts as alive (never resume from a
process that may still run).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Resume", "current", "is_alive", "resume_source", "start_time"]

TOLERANCE = 2.0  # seconds: the boot time Linux reports may move by a second
_IMPORTED = (os.getpid(), time.time())  # the portable fallback for this process's start
_current: tuple[int, float] | None = None
_boot: float | None = None


def current() -> tuple[int, float]:
    """(pid, start time) of this process (recomputed in a forked child)."""
    global _current
    pid = os.getpid()
    known = _current
    if known is None or known[0] != pid:
        started = start_time(pid)
        if started is None:
            started = _IMPORTED[1] if _IMPORTED[0] == pid else time.time()
        known = _current = (pid, started)
    return known


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), None if not known."""
    proc = _proc_stat(pid)
    if proc is not None:
        return proc[1]
    psutil = _psutil()
    if psutil is not None:
        try:
            return float(psutil.Process(pid).create_time())
        except Exception:  # noqa: BLE001 - gone, or not ours to look at
            return None
    return None


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether the process that wrote a run (``pid`` started at ``started``) still runs.

    No pid (a run of an older journal): False. When the start time of another
    process cannot be read, a process with that pid counts as alive.
    """
    if pid is None:
        return False
    me, my_start = current()
    if pid == me:
        return started is None or abs(started - my_start) <= TOLERANCE
    if _has_proc():
        proc = _proc_stat(pid)
        if proc is None or proc[0] in (b"Z", b"X"):  # gone, or a zombie not reaped yet
            return False
        return started is None or abs(proc[1] - started) <= TOLERANCE
    psutil = _psutil()
    if psutil is not None:
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            return started is None or abs(process.create_time() - started) <= TOLERANCE
        except psutil.NoSuchProcess:
            return False
        except Exception:  # noqa: BLE001 - access denied: it exists
            return True
    return _exists(pid)


def _has_proc() -> bool:
    return os.path.isdir("/proc/self")


def _proc_stat(pid: int) -> tuple[bytes, float] | None:
    """(state, start time) from ``/proc/<pid>/stat``; None without /proc or that pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
        fields = data[data.rindex(b")") + 2:].split()  # the name may hold spaces and ')'
        boot = _boot_time()
        if boot is None:
            return None
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22
    except (OSError, ValueError, IndexError):
        return None


def _boot_time() -> float | None:
    global _boot
    if _boot is None:
        try:
            with open("/proc/stat", "rb") as file:
                for line in file:
                    if line.startswith(b"btime "):
                        _boot = float(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            return None
    return _boot


_NO_PSUTIL = False  # an import of psutil failed once: not tried again


def _psutil() -> Any:
    """psutil if it is installed (optional), else None."""
    global _NO_PSUTIL
    module = sys.modules.get("psutil")
    if module is not None or _NO_PSUTIL:
        return module
    try:
        import psutil
    except ImportError:
        _NO_PSUTIL = True
        return None
    return psutil


def _exists(pid: int) -> bool:
    """Whether any process has this pid (no psutil, no /proc)."""
    if sys.platform == "win32":  # os.kill would terminate it there
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return not ok or code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # permission denied: it exists
        return True
    return True


@dataclass(frozen=True)
class Resume:
    """What to resume from: a session's runs (oldest first; empty: nothing), and when
    nothing is resumed although a run did not finish, one line saying why."""

    runs: tuple[Any, ...] = ()
    note: str | None = None


def resume_source(history: Iterable[Any], journal_name: str) -> Resume:
    """The runs to resume from, given the journal's runs newest first (``RunInfo``).

    Sessions are taken newest first. One whose process still runs is passed over
    (noted if its last run is open). One whose process is gone and whose last run
    did not finish gives all its runs, and the walk goes on to older ones (a process
    that died before it could restore must not hide an older crash); one whose last
    run finished ended cleanly: the walk stops there.
    """
    sessions: dict[Any, list[Any]] = {}
    for run in history:
        pid = getattr(run, "pid", None)
        key = ("run", run.run_id) if pid is None else (pid, run.process_started)
        sessions.setdefault(key, []).append(run)
    me = current()[0]
    found: list[Any] = []
    note = None
    for runs in sessions.values():  # newest session first (dicts keep insertion order)
        last = runs[0]
        pid = getattr(last, "pid", None)
        if is_alive(pid, last.process_started):
            if note is None and last.status != "finished" and pid != me:
                note = (f"run journal {journal_name}: its last run ({last.run_id}) is still "
                        f"running in process {pid}; nothing is resumed from a live process")
            continue
        if last.status == "finished":
            break
        found.extend(runs)
    return Resume(tuple(reversed(found)), None if found else note)
