"""What each attempt printed and what it cost, on every executor.

The first part tests ``core.capture`` on its own (per-thread routing, log
records whatever the levels, redraws, the cap, clean restore); the second runs
tasks on threads, processes, Dask and sync and reads ``result.logs``, the
attempts' logs and their ``cpu_time`` / ``peak_memory``; the last part runs a
real kernel (nbclient) to check that a task's output never lands in a cell.
Task functions live at module level so that worker processes can import them.
Timing bounds are generous: the machine may be busy.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import logging
import os
import signal
import sys
import threading
import time
import warnings

import pytest
from conftest import engine_threads, wait_until_status

from codomyrmex_nb import TaskStatus
from codomyrmex_nb.core import capture
from codomyrmex_nb.core.capture import Capture, StreamRouter, tidy

S = TaskStatus
EXECUTORS = ["threads", "processes", "dask", "sync"]


# -- task functions (module level: picklable by reference) -------------------------------------
def chatty(tag="task"):
    print(f"{tag}: hello")
    warnings.warn(f"{tag}: careful", UserWarning, stacklevel=1)
    logging.getLogger("codo.test").info("%s: loaded %d rows", tag, 3)
    logging.getLogger("codo.test").debug("%s: too detailed", tag)
    print(f"{tag}: to stderr", file=sys.stderr)
    return tag


def failing_after_output():
    print("before the failure")
    raise ValueError("bad input")


def print_write_and_segfault():
    print("printed, never flushed")  # no flush=True: the worker must not buffer it
    os.write(1, b"written with os.write\n")
    ctypes.string_at(0)  # SIGSEGV


def print_and_kill_self():
    print("last words")
    os.kill(os.getpid(), signal.SIGSEGV)


def allocate(megabytes):
    block = bytearray(megabytes * 1024 * 1024)  # zero-filled: every page is touched
    return len(block)


def spin_cpu(seconds):
    """Busy for ``seconds`` of this thread's CPU time, however loaded the machine is."""
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


def sleep(seconds):
    time.sleep(seconds)


def write_fd(fd, data):
    os.write(fd, data)


def c_puts(text):
    ctypes.CDLL(None).puts(text)


def progress_bar(steps=50):
    for i in range(steps + 1):
        sys.stdout.write(f"\rprogress {i * 100 // steps:3d}%")
    sys.stdout.write("\n")
    print("done")


def print_then_hang(seconds=20):
    print("started, now hanging")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)


# -- the capture itself ----------------------------------------------------------------------------
@pytest.fixture
def notebook_stream():
    """A stand-in for the notebook's stdout/stderr: what reaches it was not captured.

    Set in the test's body (pytest sets its own capture streams after fixtures run).
    Earlier tests' garbage is collected first: a finalizer's ResourceWarning (an event
    loop another test left unclosed) would otherwise land here, whoever wrote it.
    """
    @contextlib.contextmanager
    def streams():
        gc.collect()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
        try:
            yield sys.stdout, sys.stderr
        finally:
            sys.stdout, sys.stderr = saved
    return streams


def in_thread(fn, *args, **kwargs):
    box = {}

    def body():
        box["value"] = fn(*args, **kwargs)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join(30)
    return box["value"]


def captured(fn, *args, **options) -> str:
    with Capture(**options) as box:
        fn(*args)
    return box.text()


def test_thread_output_goes_to_its_capture_and_nothing_else_does(notebook_stream):
    with notebook_stream() as (out, err):
        check_routing(out, err)


def check_routing(out, err):
    started, release = threading.Event(), threading.Event()

    def task():
        with Capture() as box:
            print("task line 1")
            started.set()
            release.wait(10)
            print("task line 2")
            print("task error", file=sys.stderr)
        return box.text()

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("text", task()))
    thread.start()
    assert started.wait(10)
    assert isinstance(sys.stdout, StreamRouter)
    print("notebook line")  # the main thread, while the task captures
    print("notebook error", file=sys.stderr)
    release.set()
    thread.join(10)
    assert result["text"] == "task line 1\ntask line 2\ntask error\n"
    assert out.getvalue() == "notebook line\n" and err.getvalue() == "notebook error\n"
    assert sys.stdout is out and sys.stderr is err  # restored


def test_router_passes_attributes_through(notebook_stream):
    with notebook_stream() as (out, _):
        with Capture():
            assert isinstance(sys.stdout, StreamRouter) and sys.stdout.wrapped is out
            assert sys.stdout.getvalue() == ""  # any attribute of the wrapped stream
            assert sys.stdout.closed is False
            with pytest.raises(TypeError, match="must be str"):
                sys.stdout.write(b"bytes")
        assert sys.stdout is out


def test_log_records_at_info_whatever_the_root_level(notebook_stream, shown_warnings):
    root = logging.getLogger()
    assert root.level >= logging.WARNING  # as in Jupyter
    with notebook_stream() as (out, err):
        text = in_thread(captured, chatty, "t")
    assert "t: hello\n" in text and "t: to stderr\n" in text
    assert "INFO codo.test: t: loaded 3 rows" in text
    assert "UserWarning: t: careful" in text
    assert "too detailed" not in text
    lines = text.splitlines()
    assert lines.index("t: hello") < next(i for i, line in enumerate(lines) if "loaded" in line)
    assert out.getvalue() == "" and err.getvalue() == ""


def test_a_write_hook_like_ipythons_sees_only_what_is_not_captured(notebook_stream):
    seen: list[str] = []
    task_may_print, task_printed, release = threading.Event(), threading.Event(), threading.Event()

    def task():
        with Capture() as box:
            task_may_print.wait(10)
            print("from the task")
            task_printed.set()
            release.wait(10)
        return box.text()

    result: dict[str, str] = {}
    with notebook_stream() as (out, _):
        thread = threading.Thread(target=lambda: result.setdefault("text", task()))
        thread.start()
        while not isinstance(sys.stdout, StreamRouter):
            time.sleep(0.001)
        router = sys.stdout
        original = router.write

        def tee(text):  # what IPython 9 does around every cell
            seen.append(text)
            return original(text)

        router.write = tee
        print("cell output")
        task_may_print.set()
        assert task_printed.wait(10)
        router.write = original  # the cell ends: IPython puts the old write back
        print("after the cell")
        release.set()
        thread.join(10)
    assert result["text"] == "from the task\n"
    assert seen == ["cell output", "\n"]
    assert out.getvalue() == "cell output\nafter the cell\n"


def test_log_level_is_a_parameter(shown_warnings):
    text = in_thread(captured, chatty, "t", level=logging.DEBUG)
    assert "DEBUG codo.test: t: too detailed" in text
    text = in_thread(captured, chatty, "t", level=logging.ERROR)
    assert "loaded" not in text and "t: hello" in text


def test_records_made_only_for_the_capture_reach_no_handler():
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(f"{threading.current_thread().name}:{record.getMessage()}")

    handler = Keep()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        def task():
            with Capture() as box:
                logging.getLogger("codo.test").info("info from task")
                logging.getLogger("codo.test").warning("warning from task")
            return box.text()

        started = threading.Event()
        thread = threading.Thread(target=lambda: (started.set(), seen.append(task())), name="T")
        thread.start()
        started.wait(10)
        logging.getLogger("codo.test").info("info from main")  # not enabled, as before
        thread.join(10)
    finally:
        root.removeHandler(handler)
    assert "T:warning from task" in seen  # what the logger emits anyway still reaches handlers
    assert not any("info from" in s and s.startswith(("T:", "MainThread:")) for s in seen)
    text = seen[-1]
    assert "INFO codo.test: info from task" in text and "WARNING codo.test: warning from task" in text


def test_logging_setup_is_untouched_while_capturing(notebook_stream):
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogRecordFactory(),
              logging.Logger.isEnabledFor)
    started, release = threading.Event(), threading.Event()

    def task():
        with Capture():
            started.set()
            release.wait(10)

    thread = threading.Thread(target=task)
    thread.start()
    assert started.wait(10)
    try:
        assert root.handlers == before[0] and root.level == before[1]  # basicConfig still works
        saved, root.handlers = root.handlers, []  # pytest's own log capture, set aside
        try:
            with notebook_stream() as (_, err):
                logging.getLogger("codo.test").warning("main thread warning")  # last resort
        finally:
            root.handlers = saved
        assert "main thread warning" in err.getvalue()
    finally:
        release.set()
        thread.join(10)
    after = (list(root.handlers), root.level, logging.getLogRecordFactory(),
             logging.Logger.isEnabledFor)
    assert after == before


def test_a_stream_replaced_meanwhile_is_left_alone(notebook_stream):
    with notebook_stream():
        box = Capture().start()
        other = io.StringIO()
        sys.stdout = other  # e.g. a %%capture cell or redirect_stdout in the notebook
        box.stop()
        assert sys.stdout is other


def test_nested_captures_and_live(notebook_stream):
    def task():
        with Capture() as outer:
            print("outer")
            with Capture(live=True) as inner:
                print("inner")  # kept by inner, passed on to outer
            with Capture() as quiet:
                print("quiet")
            print("outer again")
        return outer.text(), inner.text(), quiet.text()

    with notebook_stream() as (out, _):
        outer, inner, quiet = in_thread(task)
        assert outer == "outer\ninner\nouter again\n"
        assert (inner, quiet) == ("inner\n", "quiet\n")
        assert in_thread(captured, print, "shown", live=True) == "shown\n"
    assert out.getvalue() == "shown\n"  # live at the top: the stream that was there before


def test_carriage_return_redraws_collapse_to_their_last_state():
    assert tidy("\r 10%\r 50%\r100%\ndone\n") == "100%\ndone\n"
    assert tidy("a\r\nb\n") == "a\nb\n"
    box = Capture()
    for part in ["50%", "\r", "\n", "x\r", "y", "\r", "z\n"]:  # "\r" and "\n" in separate writes
        box.write(part)
    assert box.text() == "50%\nz\n"
    assert captured(progress_bar) == "progress 100%\ndone\n"


def test_cap_keeps_head_and_tail_and_says_what_was_dropped():
    text = "".join(f"line {i:05d}\n" for i in range(20_000))  # 220,000 characters
    kept = tidy(text, limit=10_000)
    assert len(kept) < 10_400
    assert kept.startswith("line 00000\n") and kept.endswith("line 19999\n")
    note = next(line for line in kept.splitlines() if line.startswith("[..."))
    assert "characters" in note and "dropped" in note and "lines" in note
    box = Capture(limit=1000)
    box.write("x" * 100_000)  # one huge line without a newline
    assert len(box.text()) < 1200 and box.dropped > 98_000


def test_limit_must_be_sane():
    with pytest.raises(ValueError, match="limit"):
        Capture(limit=0)


# -- on the executors ------------------------------------------------------------------------------
def run_all(orch, timeout: float = 60) -> bool:
    orch.start_execution()
    return orch.wait_for_completion(timeout)


@pytest.fixture
def shown_warnings(monkeypatch):
    """Warnings printed to stderr, as outside pytest (which records them instead)."""
    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", show)
        yield


@pytest.mark.parametrize("kind", EXECUTORS)
class TestEveryExecutor:
    def test_print_warning_and_log_record_are_kept_per_attempt(self, make, kind, shown_warnings):
        o = make()
        tasks = [o.create_task(f"t{i}", func=chatty, parameters={"tag": f"t{i}"}) for i in range(3)]
        bad = o.create_task("bad", func=failing_after_output, max_retries=1)
        assert run_all(o) is False
        for i, task in enumerate(tasks):
            logs = task.result.logs
            assert f"t{i}: hello\n" in logs and f"t{i}: to stderr\n" in logs
            assert f"INFO codo.test: t{i}: loaded 3 rows" in logs
            assert f"UserWarning: t{i}: careful" in logs
            assert "too detailed" not in logs
            others = {f"t{j}:" for j in range(3) if j != i}
            assert not any(other in logs for other in others), logs
            assert task.attempts[-1].logs == logs
        assert [a.logs for a in bad.attempts] == ["before the failure\n"] * 2
        assert bad.result.logs == "before the failure\n"
        view = next(v for v in o.snapshot().tasks if v.name == "bad")
        assert view.last_line == "before the failure"

    def test_cpu_time_is_measured(self, make, kind):
        o = make(1)
        busy = o.create_task("busy", func=spin_cpu, parameters={"seconds": 0.3})  # CPU seconds
        idle = o.create_task("idle", func=sleep, parameters={"seconds": 0.3})
        assert run_all(o)
        (b,), (i,) = busy.attempts, idle.attempts
        assert b.cpu_time is not None and i.cpu_time is not None
        assert 0.25 <= b.cpu_time < 5
        assert i.cpu_time < 0.15
        if kind == "processes" and sys.platform.startswith("linux"):
            assert b.peak_memory > 1_000_000
        else:
            assert b.peak_memory is None  # threads share one heap: not separable per task


def test_threads_timed_out_attempt_keeps_its_output(make_orch):
    o = make_orch(1)
    t = o.create_task("hang", func=print_then_hang, timeout=0.3)
    assert run_all(o) is False
    assert t.result.error_type == "TimeoutError"
    o.flush_events(5)
    deadline = time.monotonic() + 10  # the attempt's thread returns after the interrupt
    while t.attempts[0].logs is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert t.attempts[0].logs == "started, now hanging\n"


@pytest.mark.parametrize("crash", [print_write_and_segfault, print_and_kill_self])
def test_processes_crashed_attempt_keeps_the_lines_written_before(make_orch, crash):
    o = make_orch(1, executor="processes")
    t = o.create_task("crash", func=crash)
    assert run_all(o) is False
    assert t.result.error_type == "WorkerCrashedError"
    assert "signal 11" in t.result.error_message
    logs = t.attempts[-1].logs
    assert logs is not None and t.result.logs == logs
    if crash is print_write_and_segfault:
        assert logs.startswith("printed, never flushed\nwritten with os.write\n")
        assert "Segmentation fault" in logs  # faulthandler's dump follows
        assert "print_write_and_segfault" in logs
    else:
        assert logs.startswith("last words\n")
    after = o.create_task("after", func=chatty, parameters={"tag": "after"})
    o.wait_for_completion(60)
    assert after.result.logs.startswith("after: hello\n")  # a fresh file for a fresh worker


def test_processes_capture_output_below_python(make_orch):
    o = make_orch(1, executor="processes")
    t = o.create_task("c", func=write_fd, parameters={"fd": 2, "data": b"raw to fd 2\n"})
    libc = o.create_task("libc", func=c_puts, parameters={"text": b"from C's puts"})
    assert run_all(o)
    assert t.result.logs == "raw to fd 2\n"
    assert libc.result.logs == "from C's puts\n"


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux only")
def test_processes_peak_memory_is_per_attempt(make_orch):
    o = make_orch(1, executor="processes")  # one worker: the small task runs where the big one did
    big = o.create_task("big", func=allocate, parameters={"megabytes": 200})
    small = o.create_task("small", func=allocate, parameters={"megabytes": 1}, dependencies=[big])
    assert run_all(o)
    assert big.attempts[0].worker == small.attempts[0].worker
    big_peak, small_peak = big.attempts[0].peak_memory, small.attempts[0].peak_memory
    assert big_peak > 200 * 1024 * 1024
    assert small_peak < big_peak - 150 * 1024 * 1024
    view = {v.name: v for v in o.snapshot().tasks}
    assert view["big"].peak_memory == big_peak


def test_hooks_are_removed_once_no_task_runs(make_orch, shown_warnings):
    before = (sys.stdout, sys.stderr, logging.getLogRecordFactory(), logging.Logger.isEnabledFor)
    o = make_orch(2)
    for i in range(20):
        o.create_task(f"t{i}", func=chatty, parameters={"tag": str(i)})
    assert run_all(o)
    o.stop_execution()
    assert (sys.stdout, sys.stderr, logging.getLogRecordFactory(),
            logging.Logger.isEnabledFor) == before
    assert capture._users == 0 and not capture._active
    assert not engine_threads()


# -- in a real kernel ----------------------------------------------------------------------------------
KERNEL_CELLS = [
    # 0: start tasks that print for a while, on worker threads
    """
import logging, time, warnings
from codomyrmex_nb import TaskOrchestrator

def chatter(n, k):
    for i in range(n):
        print(f"TASK-PRINT {k} {i}")
        logging.getLogger("chatter").info("TASK-LOG %d", i)
        time.sleep(0.05)
    warnings.warn(f"TASK-WARNING {k}")
    return n

orch = TaskOrchestrator(max_workers=2)
tasks = [orch.create_task(f"chat{k}", func=chatter, parameters={"n": 30, "k": k})
         for k in range(2)]
orch.start_execution()
print("cell 0 done")
""",
    # 1: a later cell that runs (and prints) while the tasks print
    """
for i in range(10):
    print(f"cell 1 line {i}")
    time.sleep(0.1)
""",
    # 2: wait, then show what was kept
    """
assert orch.wait_for_completion(60)
logs = tasks[0].result.logs
print(logs.count("TASK-PRINT 0"), logs.count("TASK-LOG"), "TASK-WARNING 0" in logs,
      "TASK-PRINT 1" in logs)
orch.stop_execution()
""",
]


@pytest.mark.kernel
def test_a_tasks_output_never_lands_in_a_cell():
    nbformat = pytest.importorskip("nbformat")
    import subprocess

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:  # as in test_magics_kernel: this environment's interpreter
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"],
                       check=True, capture_output=True)

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source.strip()) for source in KERNEL_CELLS]
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": os.getcwd()}}).execute()

    def text(cell):
        return "".join(out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
                       for out in cell.outputs)

    first, later, last = (text(cell) for cell in nb.cells)
    assert first.strip() == "cell 0 done"
    assert later.splitlines() == [f"cell 1 line {i}" for i in range(10)]
    assert last.strip() == "30 30 True False"
    for output in (first, later, last):
        assert "TASK-" not in output


# -- %codo_logs text --------------------------------------------------------------------------------
def flaky_printer(counter):
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    print(f"attempt {n} starts")
    if n == 1:
        inner_failure(n)
    return n


def inner_failure(n):
    raise ConnectionError(f"attempt {n} lost its connection")


def test_logs_text_shows_each_attempt_and_the_traceback_user_frames_first(make_orch, tmp_path):
    from codomyrmex_nb.notebook.logs_view import logs_text

    o = make_orch(1)
    o.create_task("flaky", func=flaky_printer, parameters={"counter": tmp_path / "n"},
                  max_retries=1)
    o.create_task("broken", func=inner_failure, parameters={"n": 7})
    assert run_all(o) is False
    text = logs_text(o, "flaky")
    lines = text.splitlines()
    assert lines[0].startswith("flaky · completed · 2 attempts · CPU ")
    assert lines[1].startswith("── attempt 1 of 2 · worker 1 · failed after ")
    assert lines[2] == "attempt 1 starts"
    assert lines[3].startswith("── attempt 2 of 2 · worker 1 · completed after ")
    assert lines[4] == "attempt 2 starts" and len(lines) == 5
    broken = logs_text(o, o.get_task("broken").id)  # an id works too
    assert broken.splitlines()[2] == "(no output)"
    assert "── why it failed" in broken
    tb = broken.split("why it failed", 1)[1]
    first_frame = next(line for line in tb.splitlines() if line.startswith('  File "'))
    assert "test_capture.py" in first_frame and "inner_failure" in first_frame
    assert "codomyrmex_nb" not in tb.split("ConnectionError")[0]  # engine frames folded away
    assert "frame" in tb.splitlines()[-1] and "hidden" in tb.splitlines()[-1]
    with pytest.raises(KeyError, match="did you mean 'broken'"):
        logs_text(o, "brokn")


def test_logs_text_for_a_crashed_process_and_a_running_task(make_orch):
    from codomyrmex_nb.notebook.logs_view import logs_text

    o = make_orch(1, executor="processes")
    o.create_task("crash", func=print_write_and_segfault)
    assert run_all(o) is False
    text = logs_text(o, "crash")
    assert "printed, never flushed\nwritten with os.write" in text
    assert "WorkerCrashedError: the worker process running task 'crash' died" in text
    o.stop_execution()
    t = make_orch(1)
    hang = t.create_task("hang", func=print_then_hang, parameters={"seconds": 20})
    t.start_execution()
    assert wait_until_status(t, hang, S.RUNNING)
    assert "(running:" in logs_text(t, "hang")  # its output so far: test_inspector_live.py
    t.cancel_task(hang.id)


def test_acquire_keeps_the_hooks_until_release(notebook_stream):
    with notebook_stream() as (out, _):
        capture.acquire()
        try:
            assert isinstance(sys.stdout, StreamRouter)
            assert in_thread(captured, print, "inside") == "inside\n"
            assert isinstance(sys.stdout, StreamRouter)  # still held
            print("not captured")
        finally:
            capture.release()
        assert sys.stdout is out
        capture.release()  # an extra release does nothing
        assert sys.stdout is out
    assert out.getvalue() == "not captured\n"


def test_a_warning_record_without_handlers_is_kept_once():
    root = logging.getLogger()
    saved, root.handlers = root.handlers, []  # as in Jupyter: no handler at all
    try:
        text = in_thread(captured, logging.getLogger("codo.test").warning, "only once")
    finally:
        root.handlers = saved
    assert text.count("only once") == 1 and "WARNING codo.test: only once" in text


def test_a_capture_that_wrote_nothing_gives_empty_text():
    box = Capture().start()
    assert box.stop() == "" and box.text() == "" and box.dropped == 0 and box.displays is None
    assert Capture().text() == ""


def test_a_capture_outlives_the_holder_and_the_hooks_go_when_it_ends(notebook_stream):
    """An attempt still running when its engine stops (a stuck thread) keeps capturing."""
    with notebook_stream() as (out, _):
        early = Capture().start()  # before acquire
        capture.acquire()
        started, go_on, done = threading.Event(), threading.Event(), threading.Event()
        result = {}

        def task():
            with Capture() as box:  # while held
                started.set()
                go_on.wait(10)
                print("after the release")
            result["text"] = box.text()
            done.set()

        thread = threading.Thread(target=task)
        thread.start()
        assert started.wait(10)
        capture.release()
        print("early, after the release")
        assert isinstance(sys.stdout, StreamRouter)  # two captures still on
        assert early.stop() == "early, after the release\n"
        assert isinstance(sys.stdout, StreamRouter)  # the thread's still on
        go_on.set()
        assert done.wait(10)
        thread.join(10)
        assert result["text"] == "after the release\n"
        assert sys.stdout is out
        print("the notebook's")
    assert out.getvalue() == "the notebook's\n"
    assert capture._users == 0 and not capture._active


def test_captures_stopped_out_of_order_leave_nothing_behind(notebook_stream):
    with notebook_stream() as (out, _):
        outer = Capture().start()
        inner = Capture().start()
        outer.stop()
        inner.stop()  # does not bring the stopped outer capture back
        assert sys.stdout is out
        print("not captured")
    assert out.getvalue() == "not captured\n"
    assert capture.active() is None


def test_many_threads_capture_while_holders_come_and_go(notebook_stream):
    """Every capture keeps its own output and nothing reaches the notebook, whatever the
    interleaving of captures starting and stopping with ``acquire`` / ``release``."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    failures: list[str] = []
    try:
        with notebook_stream() as (out, err):
            stop = threading.Event()

            def worker(k):
                for i in range(300):
                    with Capture() as outer:
                        print(f"{k}.{i}")
                        with Capture() as inner:
                            print("inner")
                        print("again")
                    if (outer.text(), inner.text()) != (f"{k}.{i}\nagain\n", "inner\n"):
                        failures.append(f"{outer.text()!r} {inner.text()!r}")

            def holder():
                while not stop.is_set():
                    capture.acquire()
                    capture.release()

            holding = threading.Thread(target=holder)
            workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            holding.start()
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join(60)
            stop.set()
            holding.join(10)
            assert sys.stdout is out and sys.stderr is err
    finally:
        sys.setswitchinterval(interval)
    assert not failures, failures[:3]
    assert out.getvalue() == "" and err.getvalue() == ""
    assert capture._users == 0 and not capture._active


def test_threads_writing_the_first_text_at_once_lose_nothing():
    box = Capture()
    barrier = threading.Barrier(4)

    def write(k):
        barrier.wait(10)
        for i in range(200):
            box.write(f"{k}:{i}\n")

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(box.text().splitlines()) == sorted(f"{k}:{i}" for k in range(4) for i in range(200))


class _Interleaved(dict):
    """``capture._active`` that runs ``step`` once, just before or just after one change of it:
    what another thread may do between two steps of a capture starting or stopping."""

    def __init__(self, step, when):
        super().__init__()
        self.step, self.when = step, when

    def _around(self, change):
        step, self.step = self.step, None
        if step is not None and self.when == "before":
            step()
        result = change()
        if step is not None and self.when == "after":
            step()
        return result

    def __setitem__(self, key, value):
        return self._around(lambda: super(_Interleaved, self).__setitem__(key, value))

    def pop(self, *args):
        return self._around(lambda: super(_Interleaved, self).pop(*args))


def release_elsewhere():
    thread = threading.Thread(target=capture.release)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "release waited for the capture starting or stopping"


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_release_between_the_steps_of_start_or_stop_leaves_the_hooks_right(
        notebook_stream, monkeypatch, when):
    """The interleavings that ``Capture.start`` / ``stop`` reason about (they take no lock
    while the hooks are held): whatever ``release`` does in between, the capture captures,
    and the hooks go when neither a holder nor a capture is left."""
    with notebook_stream() as (out, _):
        capture.acquire()
        monkeypatch.setattr(capture, "_active", _Interleaved(release_elsewhere, when))
        box = Capture().start()  # the holder lets go as this capture registers
        print("captured")
        assert box.stop() == "captured\n"
        assert sys.stdout is out
        capture.acquire()
        box = Capture().start()
        capture._active.step = release_elsewhere  # now as it unregisters
        print("captured again")
        assert box.stop() == "captured again\n"
        assert sys.stdout is out
        print("the notebook's")
    assert out.getvalue() == "the notebook's\n"
    assert capture._users == 0 and not capture._active


def test_a_capped_output_keeps_whole_lines_around_the_dropped_part():
    """1,000 short lines over a 2,000-character cap: the note stands between whole lines
    (it split one line in the head and one in the tail before)."""
    box = Capture(limit=2_000)
    for i in range(1_000):
        box.write(f"line {i:04d} of the output\n")
    kept = box.text().split("\n")
    note = [i for i, line in enumerate(kept) if line.startswith(capture.DROPPED)]
    assert len(note) == 1
    around = kept[:note[0]] + [line for line in kept[note[0] + 1:] if line]
    assert all(line.startswith("line ") and line.endswith(" of the output") for line in around)
    assert kept[0] == "line 0000 of the output" and around[-1] == "line 0999 of the output"
    dropped = int(kept[note[0]].split("(")[1].split(" lines")[0].replace(",", ""))
    assert dropped + len(around) == 1_000  # every line is kept or counted as dropped


def test_a_huge_line_is_still_cut_to_the_cap():
    box = Capture(limit=2_000)
    box.write("x" * 50_000 + "\n")
    assert len(box.text()) < 2_200 and capture.DROPPED in box.text()


def test_status_of_a_capped_output_says_its_middle_was_dropped():
    from codomyrmex_nb import Task, TaskOrchestrator
    from codomyrmex_nb.notebook.text_status import task_detail

    box = Capture(limit=2_000)
    for i in range(1_000):
        box.write(f"line {i}\n")
    orch = TaskOrchestrator(max_workers=1, journal=False)
    try:
        task = orch.add_task(Task(name="huge", func=lambda: None))
        text = task_detail(orch.snapshot(), task, logs=box.text())
    finally:
        orch.stop_execution()
    kept = box.text().rstrip("\n").count("\n")  # lines kept, the note's line not counted
    assert f"(last 20 of the {kept:,} lines kept (its middle was dropped);" in text
