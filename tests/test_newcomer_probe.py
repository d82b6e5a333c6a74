"""A newcomer's first hour, attacked: the mistakes and interruptions a user makes early on
(a stop and a start again, a cell run twice, a misspelt option) each get an answer that
says what happened and what to do."""

from __future__ import annotations

import _thread
import re
import threading
import time
import tracemalloc
import warnings

import pytest
from conftest import fresh_ip
from IPython.core.error import UsageError

from codomyrmex_nb.default import current_orchestrator, get_task_orchestrator

NAMES = ("started", "go")


@pytest.fixture
def ip(shell):
    yield from fresh_ip(shell, NAMES)


def test_a_wait_after_a_stop_and_a_start_times_the_run_after_the_start(ip, capsys):
    """A stopped engine re-runs its interrupted task at the next %codo_run; the wait then says
    how long that took, not the time the engine sat stopped (nor the interrupted attempt)."""
    started, go = threading.Event(), threading.Event()
    ip.user_ns.update(started=started, go=go)
    ip.run_cell_magic("codo_task", "slow", "started.set()\nwhile not go.is_set():\n"
                      "    time.sleep(0.01)\n1")
    ip.run_cell("import time")
    ip.run_line_magic("codo_run", "")
    assert started.wait(20)
    get_task_orchestrator().stop_execution()
    time.sleep(1.5)  # the engine sits stopped
    go.set()
    capsys.readouterr()
    ip.run_line_magic("codo_run", "--wait --timeout 20")
    said = capsys.readouterr().out
    assert re.search(r"^codo_wait: the 1 task completed in 0\.[0-4]s$", said, re.M), said


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_a_huge_bytes_result_previews_without_copying_it(kind):
    """A task returning 300 MB of bytes: %codo_results, the inspector and repr(result) took
    seconds and as much memory again, rendering all of it to cut it to one line after."""
    from codomyrmex_nb.core.preview import safe_preview
    from codomyrmex_nb.core.task_result import TaskResult
    from codomyrmex_nb.notebook.display import summarize

    value = kind(b"x" * 20_000_000)
    for show in (safe_preview, summarize, lambda v: repr(TaskResult(True, v))):
        tracemalloc.start()
        try:
            text = show(value)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert "xxx" in text and len(text) < 400, text
        assert peak < 1_000_000, f"{show}: {peak:,} bytes allocated to preview it"


def test_a_python_cell_run_twice_warns_that_it_adds_its_tasks_again(make_orch):
    """The guide's create_task cell run twice in a notebook added every task a second time
    without a word; a dependency by name then failed pointing at ids."""
    orch = make_orch(journal=False)
    for _ in range(2):  # the same cell, run twice
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            orch.create_task("a", func=lambda: 1)
    assert [str(w.message) for w in said][0].startswith(
        "create_task: a task named 'a' is already defined (id "), said
    assert "a notebook cell run twice" in str(said[0].message)
    assert "rerun('a')" in str(said[0].message) and said[0].filename == __file__
    with pytest.raises(ValueError, match="run a second time, adds its tasks again"):
        orch.create_task("b", func=lambda upstream: 1, dependencies=["a"])


@pytest.mark.parametrize(("magic", "line", "said"), [
    ("codo_task", "a --priorty high", "unrecognized arguments: --priorty high (did you mean --priority?)"),
    ("codo_task", "a --retry 2", "could match --retry-delay, --retry-on (or did you mean --retries?)"),
    ("codo_task", "a --max-retries 2", "(did you mean --retries?)"),
    ("codo_task", "a --dependencies b", "(did you mean --after?)"),
    ("codo_task", "a --max_parallel 2", "(did you mean --max-parallel?)"),
    ("codo_run", "--worker 2 --execuor dask", "--execuor dask (did you mean --executor?)"),
])
def test_a_misspelt_option_says_which_one_was_meant(ip, magic, line, said):
    with pytest.raises(UsageError) as caught:
        if magic == "codo_task":
            ip.run_cell_magic(magic, line, "1")
        else:
            ip.run_line_magic(magic, line)
    assert str(caught.value).endswith(said), str(caught.value)
    assert get_task_orchestrator().list_tasks() == []  # nothing defined


def test_an_unknown_word_with_no_close_option_gets_no_guess(ip):
    with pytest.raises(UsageError, match=r"unrecognized arguments: --xyz$"):
        ip.run_cell_magic("codo_task", "a --xyz", "1")


def test_a_map_over_a_function_without_the_item_parameter_is_refused_at_definition(make_orch):
    """map=[...] with func=size(path): every item failed the same TypeError at run time;
    the definition now says which parameter is missing and how to bind the items."""
    orch = make_orch(journal=False)

    def size(path):
        return len(path)

    with pytest.raises(ValueError, match=r"map passes each item as 'item', but its function "
                       r".*size\(path\) has no parameter 'item': name a parameter 'item', or "
                       r"bind the items to one it has \(map=\{'path': \.\.\.\}\)"):
        orch.create_task("size", func=size, map=["a.csv", "b.csv"])
    assert orch.list_tasks() == []
    orch.create_task("size", func=size, map={"path": ["a.csv", "b.csv"]})  # as it says
    orch.create_task("kw", func=lambda **kw: kw["item"], map=[1])  # **kwargs: not checked
    orch.start_execution()
    assert orch.wait_for_completion(timeout=30)
    assert list(orch.get_task_result("size").data) == [5, 5]


def test_a_map_over_one_number_says_an_int(make_orch):
    orch = make_orch(journal=False)
    orch.create_task("five", func=lambda: 5)
    orch.create_task("each", func=lambda item: item, map="five")
    orch.start_execution()
    assert not orch.wait_for_completion(timeout=30)
    assert orch.get_task_result("each").error_message.startswith(
        "cannot map over 'five': its result is an int, not a list")


def test_removing_a_task_one_other_depends_on_says_depends_in_the_singular(make_orch):
    orch = make_orch(journal=False)
    orch.create_task("a", func=lambda: 1)
    orch.create_task("b", func=lambda: 2, dependencies=["a"])
    with pytest.raises(ValueError, match=r"^task 'a' cannot be removed: 'b' depends on it; "
                       r"remove that first$"):
        orch.remove_task("a")
    orch.create_task("c", func=lambda: 3, dependencies=["a"])
    with pytest.raises(ValueError, match=r"'b', 'c' depend on it; remove those first$"):
        orch.remove_task("a")


def test_an_interrupted_wait_for_completion_says_the_tasks_keep_running(make_orch):
    """Ctrl-C in wait_for_completion() showed a bare KeyboardInterrupt in threading's
    internals; it now says that the tasks go on and how to wait again or stop them."""
    orch = make_orch(journal=False)
    go = threading.Event()
    orch.create_task("slow", func=lambda: go.wait(30))
    orch.start_execution()
    threading.Timer(0.3, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt) as caught:
        orch.wait_for_completion(timeout=20)
    assert caught.value.__notes__ == [
        "wait_for_completion: stopped waiting (interrupted); the 1 task not ended yet keeps "
        "running: wait_for_completion() waits again, stop_execution() stops them"]
    go.set()
    assert orch.wait_for_completion(timeout=20)


@pytest.mark.parametrize(("given", "hint"), [
    ({"name": "x"}, "build one with Task(...) or use create_task(...)"),
    ([], "for several tasks use add_tasks([...])"),
])
def test_add_task_given_something_else_names_add_task_and_the_fix(make_orch, given, hint):
    """add_task(...) said 'add_tasks expects Task objects': a function the user did not call."""
    orch = make_orch(journal=False)
    with pytest.raises(ValueError, match=r"^add_task expects a Task, got .*; " + re.escape(hint)):
        orch.add_task(given)


@pytest.mark.parametrize("source", ["[1,2,3]", "range(3)", "5"])
def test_a_cell_mapped_over_a_value_instead_of_a_name_says_to_name_it(ip, source):
    """--map 5 said 'set 5 = [...] in the notebook', which is no Python."""
    with pytest.raises(UsageError, match=re.escape(
            f"--map {source!r} is not a name: --map takes the name of a task or of a notebook "
            f"variable holding a list; set items = {source} in the notebook (a list) and "
            "write --map items")):
        ip.run_cell_magic("codo_task", f"sq --map {source}", "item * item")
    assert get_task_orchestrator().list_tasks() == []


def test_a_cell_after_a_task_whose_name_is_no_python_name_says_how_to_read_it(ip, capsys):
    """--after my-task, then `my_task + 1` in the body: a NameError at run time and no word
    at definition of how to reach that result."""
    ip.run_cell_magic("codo_task", "my-task", "1")
    capsys.readouterr()
    ip.run_cell_magic("codo_task", "down --after my-task", "upstream['my-task'] + 1")
    assert ("codo_task 'down': defined, waits for 'my-task' ('my-task' is not a Python name: "
            "the cell reads it as upstream['my-task'])") in capsys.readouterr().out


def test_a_cell_that_returns_its_result_says_to_end_with_the_value(ip):
    with pytest.raises(UsageError, match=re.escape(
            "syntax error in task 'ret' at line 3: 'return' outside function (a cell is not a "
            "function: its result is its last expression, so end it with the value itself "
            "rather than return it)")):
        ip.run_cell_magic("codo_task", "ret", "x = 5\nreturn x")
    assert get_task_orchestrator().list_tasks() == []


def test_codo_run_with_workers_as_the_first_run_records_one_run(ip, tmp_path, capsys):
    """Cells defined, then `%codo_run --workers 3`: the reconfiguration stopped the engine
    that never ran, which closed the journal's open run as "stopped"; the live view then
    said run 2 and %codo_history listed a run 1 with nothing completed."""
    orch = current_orchestrator()
    orch.use_journal(str(tmp_path / "runs.sqlite"))
    ip.run_cell_magic("codo_task", "a", "1")
    ip.run_line_magic("codo_run", "--workers 3 --wait --timeout 20")
    assert current_orchestrator() is orch and orch.max_workers == 3
    history = orch.history()
    assert list(history["status"]) == ["finished"], history
    assert list(history["run"]) == [orch.journal_run] == [1]


def test_a_stop_before_codo_run_records_one_run(ip, tmp_path):
    """Cells defined, stop_execution() before any %codo_run (twice, with a cell defined
    between), then `%codo_run --workers 3`: that stop ended the run the cells opened as
    "stopped"; %codo_history then listed a run 1 in which nothing ran, and the run shown
    was run 2."""
    orch = current_orchestrator()
    orch.use_journal(str(tmp_path / "runs.sqlite"))
    ip.run_cell_magic("codo_task", "a", "1")
    orch.stop_execution()
    ip.run_cell_magic("codo_task", "b", "2")
    orch.stop_execution()
    ip.run_line_magic("codo_run", "--workers 3 --wait --timeout 20")
    history = orch.history()
    assert list(history["status"]) == ["finished"], history
    assert list(history["run"]) == [orch.journal_run] == [1]
    assert list(history["completed"]) == [2]
