"""Threads that print while the capture comes and goes: no crash, and no output given away.

CPython 3.11's ``print()`` borrows ``sys.stdout``: when the capture's stream
router was swapped out and freed while another thread was inside ``print()``,
the interpreter died with SIGSEGV (issue 17). The crash kills the whole
process, so those tests run their scenario in a subprocess (or a kernel) and
check that it lived. The second part checks where the output of a task's own
threads goes: into that task's logs while it runs, and into no task's logs
after it returned (the next task on the same worker included).
Task functions live at module level so that worker processes can import them.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path

import pytest

import codomyrmex_nb
from codomyrmex_nb import TaskOrchestrator
from codomyrmex_nb.core import capture

ROOT = Path(codomyrmex_nb.__file__).resolve().parents[1]  # the code under test, for children
CYCLES = 300


def child_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "CODOMYRMEX_JOURNAL": "off"}


def run_script(tmp_path: Path, code: str, timeout: float = 120) -> str:
    """Run ``code`` as a script; returns what it wrote to the file named by its first
    argument. Fails if it died. Its stdout is thrown away (threads flood it)."""
    script, verdict, errors = (tmp_path / name for name in ("scenario.py", "verdict", "stderr"))
    script.write_text(textwrap.dedent(code))
    with errors.open("wb") as err:
        done = subprocess.run([sys.executable, str(script), str(verdict)], cwd=tmp_path,
                              env=child_env(), stdout=subprocess.DEVNULL, stderr=err,
                              timeout=timeout, check=False)
    if done.returncode < 0:
        pytest.fail(f"the process died: {signal.Signals(-done.returncode).name}")
    with errors.open("rb") as err:  # its last words, without the flood
        err.seek(max(0, errors.stat().st_size - 20_000))
        said = [line for line in err.read().decode(errors="replace").splitlines()
                if line not in ("x", "y")]
    assert done.returncode == 0, f"exit code {done.returncode}: " + "\n".join(said[-15:])
    return verdict.read_text()


# -- no crash --------------------------------------------------------------------------------------
PRINTING_THREADS = f"""
import sys, threading, time
from codomyrmex_nb import TaskOrchestrator

def spin():
    while True:  # no pause: always inside print() somewhere
        print("x")
        print("y", file=sys.stderr)

sys.setswitchinterval(0.0005)  # threads take turns more often: quicker start / stop cycles
threading.Thread(target=spin, daemon=True).start()
before = sys.stdout, sys.stderr
o = TaskOrchestrator(journal=False)
for _ in range({CYCLES}):
    o.start_execution()
    o.stop_execution()
assert (sys.stdout, sys.stderr) == before, "the streams were not put back"
open(sys.argv[1], "w").write("lived")
"""


def test_threads_printing_without_pause_survive_300_engine_starts_and_stops(tmp_path):
    assert run_script(tmp_path, PRINTING_THREADS) == "lived"


LOGGING_THREAD = f"""
import logging, sys, threading
from codomyrmex_nb import TaskOrchestrator

def spin():
    own = logging.getLogger("spin.own")
    own.propagate = False
    own.addHandler(logging.StreamHandler(sys.stderr))  # made in the thread: the stream then
    bare = logging.getLogger("spin.bare")  # no handler: the last-resort one, on sys.stderr
    while True:
        own.warning("x")
        bare.warning("y")

def noisy():
    logging.getLogger("task").warning("from the task")
    return 1

threading.Thread(target=spin, daemon=True).start()
o = TaskOrchestrator(journal=False, max_workers=1)
for i in range({CYCLES}):
    task = o.create_task(f"t{{i}}", func=noisy)
    o.start_execution()
    assert o.wait_for_completion(30)
    o.stop_execution()
    assert "WARNING task: from the task" in task.result.logs, task.result.logs
open(sys.argv[1], "w").write("lived")
"""


def test_a_thread_logging_to_stderr_survives_300_engine_runs(tmp_path):
    """Logging holds the stream it writes to (no borrowed reference), so this one lived
    before the fix too; it guards the capture's logging hooks under the same churn."""
    assert run_script(tmp_path, LOGGING_THREAD) == "lived"


TASKS_LOGGING = f"""
import logging, sys, threading, time
from codomyrmex_nb import TaskOrchestrator

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

def chatty():
    while True:  # always inside a handler somewhere: a stop interrupts it there
        logging.getLogger("task").info("working")

for cycle in range({CYCLES // 3}):
    o = TaskOrchestrator(max_workers=2, journal=False)
    o.create_task("a", func=chatty)
    o.create_task("b", func=chatty)
    o.start_execution()
    time.sleep(0.01)
    o.stop_execution()
    probe = threading.Thread(target=lambda: logging.getLogger("probe").info("alive"), daemon=True)
    probe.start()
    probe.join(5)
    assert not probe.is_alive(), f"logging is deadlocked after stop {{cycle}}"
open(sys.argv[1], "w").write("lived")
"""


def test_stopping_tasks_that_log_never_leaves_a_logging_lock_held(tmp_path):
    """The interrupt (an asynchronous exception) can land in a handler between its lock's
    acquire and the ``try`` that releases it: the lock then stayed held by a thread that
    was gone, and every later log call in the process blocked for ever."""
    assert run_script(tmp_path, TASKS_LOGGING, timeout=90) == "lived"


PROCESS_WORKER = f"""
import os, sys, threading
from codomyrmex_nb import TaskOrchestrator

def spin(printed):
    while True:  # print() without file= is the one that borrows sys.stdout
        print("x")
        print("y", file=sys.stderr)
        printed[0] += 1

def start_printers():
    sys.printed = [0]  # the worker's, not a copy shipped with each function
    threading.Thread(target=spin, args=(sys.printed,), daemon=True, name="printer").start()
    print("printers started")
    return os.getpid()

def quiet(i):
    return i

def still_printing():
    before = sys.printed[0]
    while sys.printed[0] < before + 100:  # the printer thread is alive and printing
        pass
    return os.getpid(), [t.name for t in threading.enumerate()]

if __name__ == "__main__":
    o = TaskOrchestrator(journal=False, executor="processes", max_workers=1)
    names = ["printers", *(f"q{{i}}" for i in range({CYCLES})), "check"]
    o.create_task("printers", func=start_printers)
    for i in range({CYCLES}):
        o.create_task(f"q{{i}}", func=quiet, parameters={{"i": i}}, dependencies=[names[i]])
    o.create_task("check", func=still_printing, dependencies=[names[-2]])
    o.start_execution()
    o.wait_for_completion(60)
    o.stop_execution()
    tasks = [o.get_task(name) for name in names]
    failed = [(t.name, t.result.error_message if t.result else t.status.value)
              for t in tasks if t.status.value != "completed"]
    leaked = [t.name for t in tasks[1:] if "x" in ((t.result and t.result.logs) or "")]
    open(sys.argv[1], "w").write(repr((failed[:2], leaked[:2], tasks[0].result.data,
                                       tasks[-1].result and tasks[-1].result.data)))
"""


def test_a_process_worker_survives_a_tasks_thread_that_keeps_printing(tmp_path):
    failed, leaked, first_pid, last = eval(run_script(tmp_path, PROCESS_WORKER))
    assert failed == []  # a dead worker fails the task running then
    last_pid, threads = last
    assert last_pid == first_pid and "printer" in threads  # one worker, printing throughout
    assert leaked == []  # the printer's lines stayed out of the later tasks' output


KERNEL_CELL = f"""
import sys, threading
from codomyrmex_nb import TaskOrchestrator

stop = threading.Event()
def spin():
    while not stop.is_set():  # empty writes: as often as possible, and the cell stays small
        print("", end="")
        print("", end="", file=sys.stderr)

sys.setswitchinterval(0.0005)
threading.Thread(target=spin, daemon=True).start()
o = TaskOrchestrator(journal=False)
for _ in range({CYCLES}):
    o.start_execution()
    o.stop_execution()
stop.set()
sys.setswitchinterval(0.005)
print("lived")
"""


@pytest.mark.kernel
@pytest.mark.timeout(180)
def test_a_kernel_with_printing_threads_survives_300_engine_starts_and_stops(kernel_name,
                                                                            tmp_path):
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel(env=child_env(), cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        msg_id = kc.execute(KERNEL_CELL)
        text, deadline = [], time.monotonic() + 120
        while True:  # until the cell's reply, or the kernel's death (no waiting for a timeout)
            try:
                msg = kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                if not km.is_alive():
                    code = km.provisioner.process.poll() if km.provisioner else None
                    pytest.fail(f"the kernel died (exit code {code})")
                assert time.monotonic() < deadline, "the cell did not finish"
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                text.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                pytest.fail(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert "".join(text) == "lived\n"
        assert km.is_alive()
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
        km.cleanup_resources()


# -- a task's own threads ----------------------------------------------------------------------------
# State shared by a task, the thread it starts and the next task; one worker process or
# this process, depending on the executor (the next task runs on the same worker).
_signals: dict[str, threading.Event] = {}


def parent_task():
    """Starts a thread that prints and logs while this task runs and goes on after it."""
    for name in ("during", "after", "after_done", "stop"):
        _signals[name] = threading.Event()

    def grandchild():
        print("GRANDCHILD during")

    def child():
        log = logging.getLogger("codo.child")
        for i in range(3):
            print(f"CHILD during {i}")
            print(f"CHILD stderr {i}", file=sys.stderr)
            log.info("CHILD log %d", i)
        helper = threading.Thread(target=grandchild)
        helper.start()
        helper.join()
        _signals["during"].set()
        _signals["after"].wait(30)  # set by the next task: this one has ended for sure
        for i in range(3):
            print(f"CHILD after {i}")
            print(f"CHILD stderr after {i}", file=sys.stderr)
            log.warning("CHILD log after %d", i)
        _signals["after_done"].set()
        _signals["stop"].wait(30)

    threading.Thread(target=child, daemon=True, name="child-of-parent").start()
    assert _signals["during"].wait(30)
    print("PARENT done")
    return "parent"


def next_task():
    """Runs after ``parent_task`` on the same worker while its thread still prints."""
    _signals["after"].set()
    assert _signals["after_done"].wait(30)
    print("NEXT done")
    _signals["stop"].set()
    return "next"


def run_parent_and_next(executor: str) -> tuple[str, str]:
    o = TaskOrchestrator(max_workers=1, executor=executor, journal=False)
    try:
        parent = o.create_task("parent", func=parent_task)
        after = o.create_task("next", func=next_task, dependencies=["parent"])
        o.start_execution()
        assert o.wait_for_completion(60)
        assert parent.attempts[0].worker == after.attempts[0].worker
        return parent.result.logs, after.result.logs
    finally:
        o.stop_execution()


def check_parent_logs(logs: str) -> None:
    for i in range(3):
        assert f"CHILD during {i}\n" in logs and f"CHILD stderr {i}\n" in logs
        assert f"INFO codo.child: CHILD log {i}" in logs
    assert "GRANDCHILD during\n" in logs and logs.endswith("PARENT done\n")
    assert "after" not in logs


def test_threads_a_tasks_thread_writes_to_its_task_then_to_the_notebook():
    out, err = io.StringIO(), io.StringIO()  # the notebook's streams
    saved = sys.stdout, sys.stderr
    start = threading.Thread.start
    sys.stdout, sys.stderr = out, err
    try:
        parent_logs, next_logs = run_parent_and_next("threads")
    finally:
        sys.stdout, sys.stderr = saved
    assert next_logs == "NEXT done\n"  # nothing of the other task's thread
    check_parent_logs(parent_logs)
    assert [f"CHILD after {i}" for i in range(3)] == out.getvalue().splitlines()
    assert [f"CHILD stderr after {i}" for i in range(3)] == \
        [line for line in err.getvalue().splitlines() if "stderr" in line]
    assert "CHILD during" not in out.getvalue() + err.getvalue()
    assert threading.Thread.start is start  # the hook is gone with the engine
    assert capture.current() is None


def test_processes_a_tasks_thread_writes_to_its_task_never_to_the_next(capfd):
    parent_logs, next_logs = run_parent_and_next("processes")
    assert next_logs == "NEXT done\n"  # the same worker, while the thread still printed
    check_parent_logs(parent_logs)
    out, err = capfd.readouterr()  # the worker's own stdout and stderr: this process's
    assert all(f"CHILD after {i}\n" in out for i in range(3))
    assert all(f"CHILD stderr after {i}\n" in err for i in range(3))
    assert "CHILD during" not in out + err


def test_a_thread_belongs_to_the_capture_active_where_it_is_started():
    box = capture.Capture()
    seen: list[object] = []
    outside = threading.Thread(target=lambda: seen.append(capture.current()))
    with box:
        inside = threading.Thread(target=lambda: seen.append(capture.current()))
        inside.start()
        inside.join(10)
        outside.start()  # made before, started inside: started by the task, so the task's
        outside.join(10)
    late = threading.Thread(target=lambda: seen.append(capture.current()))
    late.start()
    late.join(10)
    assert seen == [box, box, None]
    assert not capture._owners and "run" not in vars(inside)  # nothing kept behind


def test_what_the_capture_puts_in_sys_stdout_is_never_freed_and_is_reused():
    """The root of the crash: a router taken out of ``sys.stdout`` must stay alive (a thread
    may be inside ``print()`` with it), and the next install reuses it: no growth."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    try:
        with capture.Capture():
            routers = weakref.ref(sys.stdout), weakref.ref(sys.stderr)
        gc.collect()
        assert routers[0]() is not None and routers[1]() is not None
        for _ in range(50):
            with capture.Capture():
                assert (sys.stdout, sys.stderr) == (routers[0](), routers[1]())
    finally:
        sys.stdout, sys.stderr = saved
