"""Nothing lost, in a real Jupyter kernel: SIGKILL it mid-run, start another, run the same cells.

The notebook's cells (``CELLS``): the extension, a cell defining ``note`` (each task body
appends its name to a log file as it starts) and ``hold`` (a body waits while a
``hold-NAME`` file exists in the work folder), five ``%%codo_task`` cells with
``--after`` (``slow`` and ``d`` can be held), then ``%codo_run``. The kernel's
environment points ``CODOMYRMEX_JOURNAL`` at a file of the test's own.

At each kill point the test polls the journal read-only (sqlite3) until the results it
waits for are committed (or, for the random point, sleeps a random moment while the
tasks finish one by one), SIGKILLs the kernel process, and reads the journal again for
exactly what was committed by then. A new kernel runs the same cells with the holds
released: every committed completion comes back restored (its body does not append to
the log again) and every other task runs once; ``%codo_run`` says what it restored.
"""

from __future__ import annotations

import json
import marshal
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from codomyrmex_nb.core import journal_tables

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

TASKS = ("a", "b", "c", "slow", "d")
SETUP = '''
import os, sys, time
WORK = {work!r}
def note(name):  # each task takes a little while, so that kills land while tasks finish
    with open(os.path.join(WORK, "ran.log"), "a") as log:
        log.write(name + "\\n")
    time.sleep(0.08)
def hold(name):
    while os.path.exists(os.path.join(WORK, "hold-" + name)):
        time.sleep(0.005)
print(sys.executable)
'''
CELLS = [
    "%load_ext codomyrmex_nb",
    SETUP,
    '%%codo_task a\nnote("a")\n[1, 2, 3]',
    '%%codo_task b --after a\nnote("b")\nsum(a)',
    '%%codo_task c  # independent of the others\nnote("c")\n"independent"',
    '%%codo_task slow --after b\nnote("slow")\nhold("slow")\nb * 10',
    '%%codo_task d --after slow c\nnote("d")\nhold("d")\n[slow, c]',
]
REPORT = ("import json\nfrom codomyrmex_nb.notebook.magics import current_orchestrator\n"
          "tasks = current_orchestrator().list_tasks()\n"
          "print(json.dumps({t.name: [t.status.value, len(t.attempts), t.result.data,\n"
          "                           bool(t.result.metadata.get('restored'))] for t in tasks}))")
EXPECTED = {"a": [1, 2, 3], "b": 6, "c": "independent", "slow": 60, "d": [60, "independent"]}


class Kernel:
    """One kernel started with the journal at ``journal``, its cwd the work folder."""

    def __init__(self, kernel_name: str, work: Path, journal: Path) -> None:
        self.km = KernelManager(kernel_name=kernel_name)
        env = {**os.environ, "CODOMYRMEX_JOURNAL": str(journal)}
        env.pop("JPY_SESSION_NAME", None)
        self.km.start_kernel(env=env, cwd=str(work))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str) -> str:
        """Execute one cell; returns its text output (streams and errors)."""
        parts: list[str] = []

        def hook(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                parts.append(content["text"])
            elif kind == "error":
                parts.append(f"{content['ename']}: {content['evalue']}\n")

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=120)
        text = "".join(parts)
        assert reply["content"]["status"] == "ok", text
        return text

    def kill(self) -> None:
        """SIGKILL the kernel process, as the OOM killer would."""
        pid = self.km.provisioner.process.pid
        os.kill(pid, signal.SIGKILL)
        self.km.provisioner.process.wait(30)
        self.close()

    def close(self) -> None:
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=True)
        self.km.cleanup_resources()


def committed(journal: Path) -> set[str]:
    """Task names with a committed result blob in the journal's last run (read-only)."""
    if not journal.exists():
        return set()
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT name FROM results WHERE blob IS NOT NULL AND run_id = "
                            "(SELECT max(run_id) FROM runs)").fetchall()
        # a small result lives in its run's packed "tasks" row (journal format 4)
        for run, blob in conn.execute("SELECT run_id, rows FROM packed WHERE kind = 'tasks' "
                                      "AND run_id = (SELECT max(run_id) FROM runs)"):
            rows += [(name,) for _, _, name, _, _, _ in
                     journal_tables.task_rows(run, marshal.loads(blob), "results")]
    except sqlite3.OperationalError:  # the schema is not there yet
        return set()
    finally:
        conn.close()
    return {name for (name,) in rows}


def wait_committed(journal: Path, wanted: set[str], timeout: float = 60) -> set[str]:
    """Poll until ``wanted`` are committed; returns what is."""
    deadline = time.monotonic() + timeout
    while True:
        done = committed(journal)
        if done >= wanted:
            return done
        assert time.monotonic() < deadline, f"only {sorted(done)} committed"
        time.sleep(0.005)


# kill point -> (tasks held in the first kernel, results to see committed before the kill;
# a number: a random moment within that many seconds of %codo_run, whatever is committed)
KILL_POINTS = {
    "random": (("d",), 0.4),                      # while a, c, b, slow finish, one by one
    "middle": (("slow", "d"), {"a", "b", "c"}),   # slow is held mid-attempt
    "late": (("d",), {"a", "b", "c", "slow"}),    # d is held mid-attempt
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_killed_kernel_resumes_exactly_what_it_committed(kernel_name, tmp_path, point):
    held, wanted = KILL_POINTS[point]
    journal = tmp_path / "journal.sqlite"
    log = tmp_path / "ran.log"
    cells = [c.format(work=str(tmp_path)) if c is SETUP else c for c in CELLS]
    for name in held:
        (tmp_path / f"hold-{name}").touch()

    first = Kernel(kernel_name, tmp_path, journal)
    try:
        outputs = [first.run(cell) for cell in cells]
        assert os.path.realpath(outputs[1].strip()) == os.path.realpath(sys.executable)
        first.run("%codo_run")
        delay = None
        if isinstance(wanted, float):
            delay = random.uniform(0, wanted)
            time.sleep(delay)
        else:
            wait_committed(journal, wanted)
    finally:
        first.kill()
    saved = committed(journal)  # exactly what the dead kernel had committed
    assert isinstance(wanted, float) or saved >= wanted
    assert not saved & set(held)  # a held task never completed
    ran_before = log.read_text().split()

    for name in held:
        (tmp_path / f"hold-{name}").unlink()
    second = Kernel(kernel_name, tmp_path, journal)
    try:
        defined = "".join(second.run(cell) for cell in cells)
        started = second.run("%codo_run --wait --timeout 60")
        report = json.loads(second.run(REPORT).strip().splitlines()[-1])
    finally:
        second.close()

    for name in TASKS:  # each cell said what became of its task
        came_back = f"codo_task '{name}': restored from the unfinished run of "
        assert (came_back in defined) == (name in saved), defined
    restored_lines = [x for x in started.splitlines() if x.startswith("codo_run: restored")]
    assert len(restored_lines) == (1 if saved else 0), started
    for line in restored_lines:
        assert line.startswith(f"codo_run: restored {len(saved)} finished task"), line
        assert "from the unfinished run of 20" in line
        assert all(f"'{name}'" in line for name in saved), line
    assert f"codo_wait: all {len(TASKS)} tasks completed" in started

    ran_again = log.read_text().split()[len(ran_before):]
    context = f"killed {delay:.3f} s after %codo_run" if delay is not None else point
    assert sorted(ran_again) == sorted(set(TASKS) - saved), context  # the rest, once each
    for name in TASKS:
        status, attempts, data, restored = report[name]
        assert status == "completed" and data == EXPECTED[name]  # nothing lost or corrupted
        assert (restored, attempts) == ((True, 0) if name in saved else (False, 1))
