"""Children never outlive the kernel: worker processes exit when their parent is SIGKILLed.

A notebook kernel can die without running any cleanup (killed, out of memory),
so ``atexit`` hooks and ``shutdown()`` never run. Each test starts a real
parent process (a script, as a kernel would be), keeps its workers busy with
tasks that sleep for a minute, kills the parent with SIGKILL and checks that
every process it had started is gone within ten seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

REPO = Path(__file__).resolve().parents[1]

PARENT = """
    import os, sys, time

    def hold(path):
        Path(path).write_text(str(os.getpid()))  # where this task runs
        time.sleep(60)

    from pathlib import Path

    if __name__ == "__main__":
        from codomyrmex_nb import TaskOrchestrator

        kind, out = sys.argv[1], Path(sys.argv[2])
        o = TaskOrchestrator(max_workers=2, executor=kind)
        for i in range(2):
            o.create_task(f"hold{i}", func=hold, parameters={"path": str(out / f"task{i}.pid")})
        o.start_execution()
        o.wait_for_completion(600)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped
    except psutil.NoSuchProcess:
        return True


def _kill_parent_and_watch_children(tmp_path: Path, kind: str) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(PARENT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(REPO), os.environ.get("PYTHONPATH")]))}
    log = (tmp_path / "parent.log").open("w")
    parent = subprocess.Popen([sys.executable, str(script), kind, str(tmp_path)], cwd=tmp_path,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    children: list[int] = []
    try:
        pid_files = [tmp_path / f"task{i}.pid" for i in range(2)]
        deadline = time.monotonic() + 60
        while not all(p.exists() and p.read_text() for p in pid_files):  # both workers busy
            assert parent.poll() is None, (tmp_path / "parent.log").read_text()
            assert time.monotonic() < deadline, "the tasks did not start"
            time.sleep(0.05)
        task_pids = {int(p.read_text()) for p in pid_files}
        children = [p.pid for p in psutil.Process(parent.pid).children(recursive=True)]
        print(f"{kind}: parent {parent.pid}, tasks in {sorted(task_pids)}, "
              f"children {sorted(children)}")
        assert len(task_pids) == 2 and parent.pid not in task_pids
        assert task_pids <= set(children)  # the tasks really run in the parent's children

        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [pid for pid in children if not _gone(pid)]
        assert survivors == [], f"still running 10 s after the parent was killed: {survivors}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in children:  # never leak a process from a failed test
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


@pytest.mark.timeout(120)
def test_process_pool_workers_exit_when_the_parent_is_killed(tmp_path):
    _kill_parent_and_watch_children(tmp_path, "processes")


@pytest.mark.timeout(120)
def test_local_dask_cluster_workers_exit_when_the_parent_is_killed(tmp_path):
    pytest.importorskip("distributed")
    _kill_parent_and_watch_children(tmp_path, "dask")
