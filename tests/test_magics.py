"""The magics in an in-process IPython shell: definitions, idempotent re-runs, errors, line magics.

Tasks are synchronised with ``%codo_wait`` / ``wait_for_completion`` and engine
events, never with sleeps.
"""

from __future__ import annotations

import _thread
import pickle
import re
import sqlite3
import sys
import threading
import time
import types

import pandas as pd
import pytest
from conftest import fresh_ip, wait_until_status
from IPython.core.error import UsageError

from codomyrmex_nb import TaskPriority, TaskStatus
from codomyrmex_nb.analysis.preview_frame import PreviewFrame
from codomyrmex_nb.default import get_task_orchestrator, reset_default
from codomyrmex_nb.notebook.cell_tasks import CellFunction, compile_cell
from codomyrmex_nb.notebook.display import BottlenecksFrame, ResultsFrame, StatsFrame
from codomyrmex_nb.notebook.magics import CodoMagics, current_orchestrator, strip_comment
from codomyrmex_nb.orchestrator import default_workers

S = TaskStatus
OUR_NAMES = ("factor", "later", "doubled", "result_var", "other_var", "x", "y", "data", "upstream",
             "results", "stats", "view", "gate", "report", "started", "go", "runs", "limit")


@pytest.fixture
def ip(shell):
    yield from fresh_ip(shell, OUR_NAMES)


def task(ip, line: str, cell: str) -> None:
    ip.run_cell_magic("codo_task", line, cell)


def orch():
    return current_orchestrator()


def attempts(name: str) -> int:
    return len(orch().get_task(name).attempts)


def redefine(ip, capsys, line: str, cell: str) -> str:
    """Run ``%%codo_task line`` again; what it printed (and only that)."""
    capsys.readouterr()
    task(ip, line, cell)
    return capsys.readouterr().out


def run_all(ip, timeout: float = 20) -> None:
    ip.run_line_magic("codo_run", f"--wait --timeout {timeout}")


def result(name: str):
    return orch().get_task(name).result.data


def three_tasks(ip) -> None:
    task(ip, "load", "data = [1, 2, 3]\ndata")
    task(ip, "double --after load --out doubled", "[x * 2 for x in load]")
    task(ip, "other", "'independent'")


# -- defining -------------------------------------------------------------------------------
def test_defining_prints_one_line_and_runs_nothing_until_run(ip, capsys):
    three_tasks(ip)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "codo_task 'load': defined, no dependencies (engine stopped: %codo_run starts it)",
        "codo_task 'double': defined, waits for 'load' (engine stopped: %codo_run starts it)",
        "codo_task 'other': defined, no dependencies (engine stopped: %codo_run starts it)",
    ]
    assert [t.status for t in orch().list_tasks()] == [S.READY, S.PENDING, S.READY]
    assert all(not t.attempts for t in orch().list_tasks())


def test_last_expression_is_the_result_and_upstream_is_visible_by_name(ip):
    three_tasks(ip)
    run_all(ip)
    assert result("load") == [1, 2, 3]
    assert result("double") == [2, 4, 6]
    assert result("other") == "independent"


def test_a_cell_without_final_expression_returns_none(ip):
    task(ip, "quiet", "x = 1")
    run_all(ip)
    assert orch().get_task("quiet").status is S.COMPLETED
    assert result("quiet") is None


def test_notebook_names_are_read_when_the_task_starts_and_assignments_do_not_leak(ip):
    ip.user_ns["factor"] = 10
    task(ip, "scale", "y = factor * later\nx = y + 1\nx")
    ip.user_ns["later"] = 3  # defined after the cell, before the run
    run_all(ip)
    assert result("scale") == 31
    assert "x" not in ip.user_ns and "y" not in ip.user_ns
    assert ip.user_ns["factor"] == 10


def test_functions_defined_in_the_cell_see_the_cells_names(ip):
    ip.user_ns["factor"] = 3
    task(ip, "fn", "base = 2\ndef f(v):\n    return v * base * factor\nf(5)")
    run_all(ip)
    assert result("fn") == 30


def test_names_that_are_not_identifiers_come_through_upstream(ip):
    task(ip, "load-data", "41")
    task(ip, "class", "1")
    task(ip, "use --after load-data class", "upstream['load-data'] + upstream['class']")
    run_all(ip)
    assert result("use") == 42


def test_upstream_results_shadow_notebook_names(ip):
    ip.user_ns["data"] = "notebook"
    task(ip, "data", "'task'")
    task(ip, "reader --after data", "data")
    run_all(ip)
    assert result("reader") == "task"


def test_task_defined_while_engine_runs_starts_when_ready(ip):
    ip.run_line_magic("codo_run", "")
    task(ip, "late", "7")
    ip.run_line_magic("codo_wait", "20")
    assert result("late") == 7


def test_options_reach_the_task(ip):
    task(ip, "opts --priority high --timeout 30 --retries 2 --retry-delay 0.5 "
         "--resource cpu:system_cpu --resource external_api:openai_api:exclusive "
         "--tag a --tag b", "1")
    t = orch().get_task("opts")
    assert t.priority is TaskPriority.HIGH
    assert (t.timeout, t.max_retries, t.retry_delay) == (30.0, 2, 0.5)
    assert [(r.key, r.mode) for r in t.resources] == [
        ("cpu:system_cpu", "read"), ("external_api:openai_api", "exclusive")]
    assert t.tags == ["a", "b"]


def test_priority_accepts_numbers_and_any_case(ip):
    task(ip, "p1 --priority 4", "1")
    task(ip, "p2 --priority LOW", "1")
    assert orch().get_task("p1").priority is TaskPriority.CRITICAL
    assert orch().get_task("p2").priority is TaskPriority.LOW


def test_resource_ids_may_hold_colons_when_the_mode_is_given(ip):
    task(ip, "f --resource file:/tmp/a:b:write", "1")
    assert [(r.key, r.mode) for r in orch().get_task("f").resources] == [("file:/tmp/a:b", "write")]


def test_quoted_values_lose_their_quotes_as_in_a_shell(ip, capsys):
    """A name, tag or resource with spaces is quoted as in a shell; the quotes are not kept."""
    task(ip, "\"with space\" --tag 'a b' --tag \"it's\" --resource \"file:my data.csv:write\"", "1")
    assert "codo_task 'with space': defined" in capsys.readouterr().out
    t = orch().get_task("with space")
    assert t.tags == ["a b", "it's"]
    assert [(r.key, r.mode) for r in t.resources] == [("file:my data.csv", "write")]
    task(ip, "uses --after 'with space'", "upstream['with space'] + 1")
    run_all(ip)
    assert result("uses") == 2
    capsys.readouterr()
    ip.run_line_magic("codo_status", '"with space"  # quoted here too')
    assert "with space" in capsys.readouterr().out


def test_backslashes_in_a_magic_line_are_kept(ip):
    task(ip, "w --watch C:\\data\\a.csv --watch 'D:\\my data\\b.csv'", "1")
    assert orch().get_task("w").watch == ["C:\\data\\a.csv", "D:\\my data\\b.csv"]


# -- --out ----------------------------------------------------------------------------------
def test_out_is_set_once_the_task_completes(ip):
    three_tasks(ip)
    assert "doubled" not in ip.user_ns
    run_all(ip)
    assert ip.user_ns["doubled"] == [2, 4, 6]


def test_out_arrives_through_the_event_without_running_a_cell(ip):
    task(ip, "v --out result_var", "'value'")
    seen = threading.Event()
    orch().subscribe(lambda e: e.status is S.COMPLETED and seen.set())  # runs after ours
    orch().start_execution()
    assert seen.wait(20)
    assert ip.user_ns["result_var"] == "value"


def test_out_is_not_pushed_again_over_the_users_own_assignment(ip):
    task(ip, "v --out result_var", "'value'")
    run_all(ip)
    ip.user_ns["result_var"] = "mine"
    ip.run_cell("pass")  # pre_run_cell syncs
    ip.run_line_magic("codo_wait", "5")
    assert ip.user_ns["result_var"] == "mine"


def test_changing_only_out_retargets_without_running(ip, capsys):
    task(ip, "v --out result_var", "'value'")
    run_all(ip)
    out = redefine(ip, capsys, "v --out other_var", "'value'")
    assert "unchanged" in out
    assert ip.user_ns["other_var"] == "value"
    assert attempts("v") == 1


# -- re-running cells -----------------------------------------------------------------------
def test_unchanged_cell_keeps_the_result_and_runs_nothing(ip, capsys):
    three_tasks(ip)
    run_all(ip)
    out = redefine(ip, capsys, "load", "data = [1, 2, 3]\ndata")
    assert out.strip() == "codo_task 'load': unchanged, keeping its result"
    ip.run_line_magic("codo_wait", "5")
    assert [attempts(n) for n in ("load", "double", "other")] == [1, 1, 1]
    assert orch().get_task("load").status is S.COMPLETED


def test_changed_cell_reruns_it_and_its_downstream_only(ip, capsys):
    three_tasks(ip)
    run_all(ip)
    load_id = orch().get_task("load").id
    out = redefine(ip, capsys, "load", "[10, 20]")
    assert out.strip() == (
        "codo_task 'load': changed; re-running it and 1 downstream ('double')")
    ip.run_line_magic("codo_wait", "20")
    assert [attempts(n) for n in ("load", "double", "other")] == [2, 2, 1]
    assert orch().get_task("load").id == load_id  # replaced in place
    assert ip.user_ns["doubled"] == [20, 40]
    assert len(orch().list_tasks()) == 3


def test_changed_options_also_rerun(ip):
    three_tasks(ip)
    run_all(ip)
    task(ip, "double --after load --out doubled --priority high", "[x * 2 for x in load]")
    ip.run_line_magic("codo_wait", "20")
    assert [attempts(n) for n in ("load", "double", "other")] == [1, 2, 1]
    assert orch().get_task("double").priority is TaskPriority.HIGH


def test_new_dependencies_rewire_the_task(ip, capsys):
    three_tasks(ip)
    run_all(ip)
    out = redefine(ip, capsys, "double --after load other --out doubled",
                   "[other] + [x * 2 for x in load]")
    assert "now after 'load', 'other'" in out
    ip.run_line_magic("codo_wait", "20")
    assert ip.user_ns["doubled"] == ["independent", 2, 4, 6]
    assert [d.name for d in orch().dependencies_of("double")] == ["load", "other"]
    assert [attempts(n) for n in ("load", "double", "other")] == [1, 2, 1]


def test_changing_a_running_task_interrupts_it(ip):
    started = threading.Event()
    ip.user_ns["started"] = started
    task(ip, "spin", "started.set()\nwhile True:\n    pass")
    ip.run_line_magic("codo_run", "")
    assert started.wait(20)
    task(ip, "spin", "'done'")
    ip.run_line_magic("codo_wait", "20")
    t = orch().get_task("spin")
    assert (t.status, t.result.data) == (S.COMPLETED, "done")
    assert [a.outcome for a in t.attempts] == ["interrupted", "completed"]
    ip.user_ns.pop("started")


def test_changing_dependencies_of_a_running_task_cancels_and_rewires_it(ip):
    started = threading.Event()
    ip.user_ns["started"] = started
    task(ip, "base", "1")
    task(ip, "spin", "started.set()\nwhile True:\n    pass")
    ip.run_line_magic("codo_run", "")
    assert started.wait(20)
    task(ip, "spin --after base", "base + 1")
    ip.run_line_magic("codo_wait", "20")
    assert result("spin") == 2
    ip.user_ns.pop("started")


def test_unchanged_failed_cell_runs_again(ip, capsys):
    ip.user_ns["factor"] = 0
    task(ip, "div", "1 / factor")
    run_all(ip)
    assert orch().get_task("div").status is S.FAILED
    ip.user_ns["factor"] = 4
    out = redefine(ip, capsys, "div", "1 / factor")
    assert "unchanged but failed last time; queued again" in out
    ip.run_line_magic("codo_wait", "20")
    assert result("div") == 0.25


def test_redefining_a_python_task_from_a_cell_replaces_it(ip):
    o = get_task_orchestrator()
    o.create_task("py", func=lambda: 1)
    o.start_execution()
    o.wait_for_completion(10)
    task(ip, "py", "2")
    ip.run_line_magic("codo_wait", "20")
    assert result("py") == 2 and len(o.list_tasks()) == 1


# -- failures -------------------------------------------------------------------------------
def test_failure_traceback_keeps_the_cells_line_numbers(ip):
    task(ip, "boom", "x = 1\n\nraise ValueError('bad ' + str(x))\n")
    run_all(ip)
    res = orch().get_task("boom").result
    assert (res.error_type, res.error_message) == ("ValueError", "bad 1")
    assert re.search(r"  Cell In\[\d+\], line 4, in <module>", res.traceback), res.traceback
    assert "raise ValueError('bad ' + str(x))" in res.traceback
    assert isinstance(res.exception, ValueError)


def test_failure_in_the_last_expression_points_at_its_line(ip):
    task(ip, "boom2", "a = 0\n1 / a")
    run_all(ip)
    tb = orch().get_task("boom2").result.traceback
    assert re.search(r"Cell In\[\d+\], line 3", tb) and "1 / a" in tb


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "cell", "expected"), [
    ("x --bogus", "1", "%%codo_task: unrecognized arguments: --bogus"),
    ("x --after lod", "1", "%%codo_task: task 'x': --after 'lod' is not a known task. "
                           "Did you mean 'load'?"),
    ("x --after nothing_like_it", "1", "is not a known task. Run its cell first."),
    ("x --priority urgent", "1", "bad --priority 'urgent': use one of low, normal, high, critical"),
    ("x --resource cpu:a:rwite", "1", "unknown mode 'rwite'; use one of read, write, exclusive"),
    ("x --resource gpuu:a", "1", "unknown type 'gpuu'"),
    ("x --resource cpu", "1", "write TYPE:ID[:MODE]"),
    ("x --timeout -1", "1", "timeout must be a positive number"),
    ("x --timeout soon", "1", "argument --timeout: invalid float value: 'soon'"),
    ("x --retries -1", "1", "max_retries must be a whole number >= 0"),
    ("x --out 1abc", "1", "--out '1abc' is not a valid variable name"),
    ("", "1", "the following arguments are required: NAME"),
    ('""', "1", "%%codo_task: a task needs a name: %%codo_task NAME [options]"),
    ("--after load x", "1", "put NAME first"),
    ('x --watch "my data.csv', "1", "%%codo_task: unbalanced quote in 'x --watch \"my data.csv': "
                                    "close it (a value with spaces goes in \"...\" or '...')"),
    ("x", "y = (1,\n", "%%codo_task: syntax error in task 'x' at line 2: '(' was never closed"),
    ("x", "  1", "syntax error in task 'x' at line 2: unexpected indent"),
])
def test_bad_cells_are_one_line_usage_errors_and_define_nothing(ip, line, cell, expected):
    task(ip, "load", "1")
    with pytest.raises(UsageError) as info:
        task(ip, line, cell)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert [t.name for t in orch().list_tasks()] == ["load"]


def test_a_bad_redefinition_leaves_the_task_as_it_was(ip):
    task(ip, "load", "1")
    t = orch().get_task("load")
    before = (t.func, dict(t.metadata), t.priority, list(t.dependencies))
    for line, cell in [("load --priority nope", "2"), ("load", "2 +"), ("load --after nope", "2")]:
        with pytest.raises(UsageError):
            task(ip, line, cell)
    assert (t.func, t.metadata, t.priority, t.dependencies) == before
    run_all(ip)
    assert result("load") == 1


def test_a_cycle_is_refused_with_its_path(ip):
    task(ip, "a", "1")
    task(ip, "b --after a", "a")
    task(ip, "c --after b", "b")
    with pytest.raises(UsageError, match=r"would close a dependency cycle \(a -> b -> c -> a\)"):
        task(ip, "a --after c", "1")
    with pytest.raises(UsageError, match="cannot run --after itself"):
        task(ip, "a --after a", "1")
    assert orch().dependencies_of("a") == []


def test_usage_errors_show_one_line_without_traceback(ip, capsys):
    ip.run_cell("%%codo_task x --after nope\n1")
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "UsageError: %%codo_task: task 'x': --after 'nope' is not a known task. Run its cell first."]


def test_help_is_real(ip, capsys):
    ip.run_cell("%codo_task?")
    out = capsys.readouterr().out
    assert "%%codo_task NAME [--after TASK [TASK ...]]" in out
    assert "--resource TYPE:ID[:MODE]" in out and "--out VAR" in out


def test_the_usage_of_codo_task_names_every_option(ip, capsys):
    """The usage is written by hand (argparse's would wrap badly): it must keep up."""
    ip.run_cell("%codo_task?")
    usage = capsys.readouterr().out.split("%%codo_task NAME", 1)[1].split("\n\n", 1)[0]
    options = [flag for action in CodoMagics.codo_task.parser._actions
               for flag in action.option_strings]
    assert "--trigger" in options
    assert [flag for flag in options if f"[{flag} " not in usage and f"[{flag}]" not in usage] == []


@pytest.mark.parametrize("magic", ["codo_task", "codo_run", "codo_wait", "codo_results", "codo_stats",
                                   "codo_status", "codo_cancel", "codo_retry", "codo_reset",
                                   "codo_dag", "codo_remove", "codo_logs", "codo_bottlenecks",
                                   "codo_history"])
def test_help_is_plain_text(ip, capsys, magic):
    """`?` prints docstrings as they are: no reST blocks, <METAVAR> brackets or ``literals``."""
    ip.run_cell(f"%{magic}?")
    out = capsys.readouterr().out
    assert f"%{magic}" in out or magic in ("codo_dag", "codo_stats")
    assert "::" not in out and "``" not in out and "<" not in out.replace("<=", "")


def test_line_form_of_codo_task_explains_itself(ip):
    with pytest.raises(UsageError, match="start the cell with %%codo_task NAME"):
        ip.run_line_magic("codo_task", "x")


# -- line magics ------------------------------------------------------------------------------
def test_results_and_stats_return_dataframes(ip):
    three_tasks(ip)
    run_all(ip)
    results = ip.run_line_magic("codo_results", "")
    stats = ip.run_line_magic("codo_stats", "")
    assert isinstance(results, pd.DataFrame) and isinstance(stats, pd.DataFrame)
    assert set(results["name"]) == {"load", "double", "other"}
    ip.run_cell("res = %codo_results")
    assert isinstance(ip.user_ns.pop("res"), pd.DataFrame)


def test_status_prints_counts_and_one_line_per_task(ip, capsys):
    three_tasks(ip)
    run_all(ip)
    capsys.readouterr()
    ip.run_line_magic("codo_status", "")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("3/3 done · 3 completed")
    assert len(out) == 4 and "double" in out[2]


def test_status_of_one_task_shows_its_traceback(ip, capsys):
    task(ip, "a", "1")
    task(ip, "boom --after a", "x = 1\nraise KeyError(x)")
    run_all(ip)
    capsys.readouterr()
    ip.run_line_magic("codo_status", "boom")
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[1:3] == ["boom", "failed"]
    assert "after: a" in out
    assert re.search(r"Cell In\[\d+\], line 3", out) and "raise KeyError(x)" in out


def test_dag_returns_the_live_view(ip):
    three_tasks(ip)
    view = ip.run_line_magic("codo_dag", "")
    assert view is ip.run_line_magic("codo_dag", "")  # one view, not one per call
    assert "0/3 done" in view.summary()
    from codomyrmex_nb.notebook.drawing import dot_available

    if dot_available():
        assert "<svg" in view.svg and "double" in view.svg


def test_run_displays_the_live_view(ip, capsys):
    three_tasks(ip)
    capsys.readouterr()
    ip.run_line_magic("codo_run", "--wait")
    out = capsys.readouterr().out
    assert "done" in out and "codo_wait: all 3 tasks completed" in out


def test_run_reconfigures_workers_when_idle_and_refuses_while_busy(ip, capsys):
    ip.run_line_magic("codo_run", "--workers 3")
    assert orch().max_workers == 3
    started = threading.Event()
    ip.user_ns["started"] = started
    task(ip, "spin", "started.set()\nwhile True:\n    pass")
    assert started.wait(20)
    with pytest.raises(UsageError, match="cannot change the default orchestrator's settings"):
        ip.run_line_magic("codo_run", "--workers 2")
    ip.run_line_magic("codo_cancel", "spin")
    ip.user_ns.pop("started")


def test_run_without_options_keeps_the_current_settings(ip):
    ip.run_line_magic("codo_run", "--workers 3")
    task(ip, "t", "1")
    ip.run_line_magic("codo_run", "--wait")
    assert orch().max_workers == 3


def test_wait_reports_failures_and_timeouts(ip, capsys):
    ip.user_ns["factor"] = 0
    task(ip, "bad", "1 / factor")
    task(ip, "after_bad --after bad", "bad")
    run_all(ip)
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"codo_wait: done in \d+\.\ds, 0 completed, but 1 failed, 1 upstream "
                        r"failed:", out[-2]), out
    assert out[-1] == "bad: ZeroDivisionError: division by zero \u2014 %codo_logs bad"
    started = threading.Event()
    ip.user_ns["started"] = started
    task(ip, "spin", "started.set()\nwhile True:\n    pass")
    assert started.wait(20)
    ip.run_line_magic("codo_wait", "0.05")
    assert "codo_wait: gave up after 0.05s" in capsys.readouterr().out
    ip.run_line_magic("codo_cancel", "spin")
    ip.user_ns.pop("started")


def test_wait_with_a_stopped_engine_is_a_usage_error(ip):
    task(ip, "t", "1")
    with pytest.raises(UsageError, match="call start_execution"):
        ip.run_line_magic("codo_wait", "1")


def test_cancel_and_retry(ip, capsys):
    task(ip, "a", "1")
    task(ip, "b --after a", "a + 1")
    ip.run_line_magic("codo_cancel", "a")
    assert "cancelled 'a'" in capsys.readouterr().out
    assert orch().get_task("b").status is S.SKIPPED
    ip.run_line_magic("codo_cancel", "a")
    assert "already cancelled; nothing to cancel" in capsys.readouterr().out
    ip.run_line_magic("codo_retry", "--failed")
    assert "codo_retry: re-queued 'a' and its downstream" in capsys.readouterr().out
    run_all(ip)
    assert result("b") == 2
    ip.run_line_magic("codo_retry", "--failed")
    assert "nothing failed" in capsys.readouterr().out
    ip.run_line_magic("codo_retry", "b")
    ip.run_line_magic("codo_wait", "20")
    assert (attempts("a"), attempts("b")) == (1, 2)


@pytest.mark.parametrize(("magic", "line", "expected"), [
    ("codo_cancel", "nope", "%codo_cancel: no task named 'nope'"),
    ("codo_cancel", "", "the following arguments are required: NAME"),
    ("codo_retry", "", "give a task NAME or --failed"),
    ("codo_retry", "a --failed", "give a task NAME or --failed"),
    ("codo_retry", "aa", "did you mean 'a'?"),
    ("codo_wait", "soon", "%codo_wait: argument TIMEOUT: invalid float value: 'soon'"),
    ("codo_status", '"a', "%codo_status: unbalanced quote in '\"a': close it"),
    ("codo_wait", "'5 # x", "%codo_wait: unbalanced quote in \"'5 # x\": close it"),
    ("codo_run", "--executor rockets", "invalid choice: 'rockets'"),
    ("codo_run", "--workers 0", "--workers must be a whole number >= 1, got 0"),
    ("codo_reset", "--everything", "unrecognized arguments: --everything"),
    ("codo_status", "x", "%codo_status: no task named 'x'"),
    ("codo_dag", "x", "%codo_dag takes no arguments"),
    ("codo_stats", "x # y", "%codo_stats takes no arguments, got 'x'"),
    ("codo_results", "x", "%codo_results: argument TIMEOUT: invalid float value: 'x'"),
    ("codo_results", "-1", "%codo_results: TIMEOUT must be >= 0, got -1"),
    ("codo_remove", "", "the following arguments are required: NAME"),
    ("codo_remove", "nope", "%codo_remove: no task named 'nope'"),
    ("codo_logs", "", "the following arguments are required: NAME"),
    ("codo_logs", "aa", "%codo_logs: no task named 'aa'; did you mean 'a'?"),
    ("codo_bottlenecks", "--top 0", "%codo_bottlenecks: --top must be >= 1, got 0"),
    ("codo_bottlenecks", "x", "unrecognized arguments: x"),
    ("codo_history", "x", "%codo_history takes no arguments, got 'x'"),
    ("codo_reset", "--journal x", "unrecognized arguments: x"),
    ("codo_run", "--journal", "argument --journal: expected one argument"),
])
def test_bad_line_magic_arguments_are_one_line_usage_errors(ip, magic, line, expected):
    task(ip, "a", "1")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic(magic, line)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("line", "expected"), [
    ("", ""),
    ("   # start the engine", ""),
    ("# all of it", ""),
    ("5 # x", "5"),
    ("--wait --timeout 600 # ... and block", "--wait --timeout 600"),
    ("task#1", "task#1"),
    ("a #b", "a"),
    ('"task # 1"  # quoted', '"task # 1"'),
    ("'it''s # here' # gone", "'it''s # here'"),
    ('"unclosed # x', '"unclosed # x'),
])
def test_strip_comment(line, expected):
    assert strip_comment(line) == expected


def _started(ip, out):
    return orch().is_running


# One case per line magic (and the %%codo_task line): the source is a real cell, so
# IPython's own transformation (``x = %magic ...``) hands the magic the comment.
COMMENTED = {
    "codo_run": ("%codo_run   # start the engine", _started),
    "codo_run_wait": ("%codo_run --wait --timeout 600 # ... and block",
                      lambda ip, out: "codo_wait: all 3 tasks completed" in out),
    "codo_wait": ("%codo_wait 5 # x", lambda ip, out: "codo_wait: all 3 tasks completed" in out),
    "codo_results": ("results = %codo_results  # x", lambda ip, out: len(ip.user_ns["results"]) == 3),
    "codo_stats": ("stats = %codo_stats # x", lambda ip, out: len(ip.user_ns["stats"]) == 1),
    "codo_status": ("%codo_status double  # one task", lambda ip, out: "double" in out.splitlines()[0]),
    "codo_dag": ("view = %codo_dag  # the live view",
                 lambda ip, out: ip.user_ns["view"].flush() and "3/3 done" in ip.user_ns["view"].summary()),
    "codo_cancel": ("%codo_cancel other # x",
                    lambda ip, out: orch().get_task("other").status is S.CANCELLED),
    "codo_retry": ("%codo_retry other # again", lambda ip, out: "re-queued 'other'" in out),
    "codo_reset": ("%codo_reset # x", lambda ip, out: "forgot 3 tasks" in out),
    "codo_remove": ("%codo_remove other  # gone", lambda ip, out: orch().get_task("other") is None),
    "codo_logs": ("%codo_logs other # what it printed", lambda ip, out: out.strip() != ""),
    "codo_bottlenecks": ("report = %codo_bottlenecks --top 2  # why slow",
                         lambda ip, out: isinstance(ip.user_ns["report"], BottlenecksFrame)),
    "codo_run_side": ("%codo_run --side  # side panel", _started),
    "codo_task": ("%%codo_task more --after load  # a comment\nsum(load)",
                  lambda ip, out: [d.name for d in orch().dependencies_of("more")] == ["load"]),
}


@pytest.mark.parametrize("case", list(COMMENTED))
def test_a_trailing_comment_is_ignored(ip, capsys, case):
    source, check = COMMENTED[case]
    three_tasks(ip)
    if case not in ("codo_run", "codo_run_wait", "codo_cancel", "codo_run_side"):
        run_all(ip)
    capsys.readouterr()
    outcome = ip.run_cell(source)
    out = capsys.readouterr().out
    assert outcome.success, outcome.error_in_exec
    assert check(ip, out), out


def _gated(ip, monkeypatch):
    """A task that ends when the gate opens; the gate opens as %codo_results starts waiting."""
    gate = threading.Event()
    ip.user_ns["gate"] = gate
    task(ip, "quick", "1")
    task(ip, "slow", "gate.wait(20)\n'slow done'")
    ip.run_line_magic("codo_run", "")
    wait = orch().wait_for_completion

    def open_and_wait(timeout=None):
        gate.set()
        return wait(timeout)

    monkeypatch.setattr(orch(), "wait_for_completion", open_and_wait)
    return gate


def test_results_wait_for_unfinished_tasks_and_say_so(ip, capsys, monkeypatch):
    _gated(ip, monkeypatch)
    capsys.readouterr()
    ip.run_cell("results = %codo_results")
    out = capsys.readouterr().out
    results = ip.user_ns["results"]
    assert sorted(results["name"]) == ["quick", "slow"]
    assert results.set_index("name").loc["slow", "data"] == "slow done"
    assert "codo_results: waiting for " in out and "not ended" not in out


def test_results_zero_gives_the_results_so_far(ip, capsys):
    gate = threading.Event()
    ip.user_ns["gate"] = gate
    task(ip, "slow", "gate.wait(20)\n1")
    ip.run_line_magic("codo_run", "")
    capsys.readouterr()
    results = ip.run_line_magic("codo_results", "0")
    out = capsys.readouterr().out
    gate.set()
    assert len(results) == 0
    assert out.splitlines() == ["codo_results: 1 task not ended yet, so no row"]


def test_results_with_a_timeout_give_up_and_say_so(ip, capsys):
    gate = threading.Event()
    ip.user_ns["gate"] = gate
    task(ip, "slow", "gate.wait(20)\n1")
    ip.run_line_magic("codo_run", "")
    capsys.readouterr()
    results = ip.run_line_magic("codo_results", "0.05")
    out = capsys.readouterr().out.splitlines()
    gate.set()
    assert len(results) == 0
    assert "(at most 0.05s)" in out[0] and out[1] == "codo_results: 1 task not ended yet, so no row"


def test_results_with_a_stopped_engine_do_not_wait(ip, capsys):
    three_tasks(ip)
    capsys.readouterr()
    results = ip.run_line_magic("codo_results", "")
    assert len(results) == 0
    assert capsys.readouterr().out.splitlines() == [
        "codo_results: 3 tasks not ended yet, so no row (engine stopped: %codo_run starts it)"]


def _interrupt_the_next_wait(monkeypatch) -> None:
    """The next wait on the orchestrator gets a real interrupt (``interrupt_main``, what the
    kernel's ■ sends) once it has started waiting."""
    wait = orch().wait_for_completion

    def interrupted(timeout=None):
        monkeypatch.setattr(orch(), "wait_for_completion", wait)  # once
        threading.Timer(0.05, _thread.interrupt_main).start()
        return wait(timeout)

    monkeypatch.setattr(orch(), "wait_for_completion", interrupted)


def _interrupted_while_waiting(ip, monkeypatch) -> threading.Event:
    """A task that runs until its gate opens, and an interrupt for the next wait."""
    gate = threading.Event()
    ip.user_ns["gate"] = gate
    task(ip, "quick", "1")
    task(ip, "slow", "gate.wait(20)\n'slow done'")
    ip.run_line_magic("codo_run", "")
    _interrupt_the_next_wait(monkeypatch)
    return gate


@pytest.mark.parametrize(("source", "expected"), [
    ("%codo_wait", "codo_wait: stopped waiting (interrupted); the 1 task not ended yet keeps "
                   "running: %codo_wait waits again"),
    ("%codo_run --wait", "codo_run: stopped waiting (interrupted); the 1 task not ended yet "
                         "keeps running: %codo_wait waits again"),
    ("results = %codo_results", "codo_results: stopped waiting (interrupted), so it returned "
     "nothing (x = %codo_results left x as it was); the 1 task not ended yet keeps running: "
     "%codo_results waits again, %codo_results 0 gives the results so far"),
])
def test_an_interrupted_wait_says_so_in_one_line_and_the_tasks_keep_running(
        ip, capsys, monkeypatch, source, expected):
    gate = _interrupted_while_waiting(ip, monkeypatch)
    capsys.readouterr()
    outcome = ip.run_cell(source)
    out, err = capsys.readouterr()
    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)  # the cell ends interrupted:
    # Run All stops there, as on any interrupt
    assert out.splitlines()[-1] == expected, out + err  # after what the magic printed before
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, out + err
    assert "results" not in ip.user_ns
    assert orch().get_task("slow").status is S.RUNNING  # only the wait stopped
    gate.set()
    ip.run_line_magic("codo_wait", "20")
    assert result("slow") == "slow done"


def test_an_interrupted_wait_on_the_sync_executor_says_the_run_stopped_too(
        ip, capsys, monkeypatch):
    """The sync executor runs tasks in the waiting cell: the interrupt reaches them."""
    ip.run_line_magic("codo_run", "--executor sync")
    task(ip, "spin", "import time\nwhile True:\n    time.sleep(0.01)")
    _interrupt_the_next_wait(monkeypatch)
    capsys.readouterr()
    outcome = ip.run_cell("%codo_wait")
    out, err = capsys.readouterr()
    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)
    assert out.splitlines()[-1] == (
        "codo_wait: interrupted; the sync executor runs tasks in the waiting cell, so the run "
        "stopped too; the 1 task not ended yet runs at the next wait: %codo_wait waits again"
    ), out + err
    assert "Traceback" not in out + err
    assert orch().get_task("spin").status is S.READY  # neither failed nor retried: it waits


@pytest.mark.parametrize("line", ["-5", "nan"])
def test_a_wait_refuses_a_negative_timeout_in_one_line(ip, line):
    task(ip, "t", "1")
    ip.run_line_magic("codo_run", "")
    with pytest.raises(UsageError, match=r"^%codo_wait: a timeout is seconds >= 0, got"):
        ip.run_line_magic("codo_wait", line)


def test_a_wait_after_a_quick_rerun_times_that_run_alone(ip, capsys):
    """Run All: the edited cell's task runs again within milliseconds of the run before it
    ending; the wait times the re-run, not both runs."""
    task(ip, "slow", "import time\ntime.sleep(0.4)\n1")
    task(ip, "after --after slow", "slow + 1")
    run_all(ip)
    capsys.readouterr()
    task(ip, "after --after slow", "slow + 2")  # at once, as Run All does
    ip.run_line_magic("codo_wait", "10")
    again = capsys.readouterr().out
    assert re.search(r"^codo_wait: all 2 tasks completed \(the last one ran in 0\.[01]s\)$",
                     again, re.M), again


def test_retry_of_several_tasks_says_their_downstream(ip, capsys):
    task(ip, "a", "1")
    task(ip, "b", "2")
    ip.run_line_magic("codo_cancel", "a")
    ip.run_line_magic("codo_cancel", "b")
    capsys.readouterr()
    ip.run_line_magic("codo_retry", "--failed")
    assert capsys.readouterr().out.startswith("codo_retry: re-queued 'a', 'b' and their downstream")


def test_wait_says_the_1_task_completed_in_the_singular(ip, capsys):
    task(ip, "only", "1")
    run_all(ip)
    assert re.search(r"^codo_wait: the 1 task completed in \d", capsys.readouterr().out, re.M)


def test_a_wait_after_a_cell_was_edited_times_that_run_not_the_pause_before_it(ip, capsys):
    task(ip, "slow", "import time\ntime.sleep(0.3)\n1")
    task(ip, "after --after slow", "slow + 1")
    run_all(ip)
    first = capsys.readouterr().out
    assert re.search(r"^codo_wait: all 2 tasks completed in 0\.[3-9]s$", first, re.M), first
    time.sleep(1.5)  # the user reads, edits the cell
    task(ip, "after --after slow", "slow + 2")
    ip.run_line_magic("codo_wait", "10")
    again = capsys.readouterr().out
    assert re.search(r"^codo_wait: all 2 tasks completed \(the last one ran in 0\.[01]s\)$",
                     again, re.M), again
    assert orch().get_execution_stats()["makespan"] > 1.5  # the session's, as documented


def test_retry_of_a_running_task_is_refused(ip):
    started = threading.Event()
    ip.user_ns["started"] = started
    task(ip, "spin", "started.set()\nwhile True:\n    pass")
    ip.run_line_magic("codo_run", "")
    assert started.wait(20)
    with pytest.raises(UsageError, match="'spin' is running; nothing to retry"):
        ip.run_line_magic("codo_retry", "spin")
    ip.run_line_magic("codo_cancel", "spin")
    ip.user_ns.pop("started")


def test_reset_forgets_tasks_and_reset_all_drops_the_orchestrator(ip, capsys):
    ip.run_line_magic("codo_run", "--workers 3")
    three_tasks(ip)
    first = orch()
    ip.run_line_magic("codo_reset", "")
    assert "forgot 3 tasks" in capsys.readouterr().out
    assert orch() is first and first.list_tasks() == []
    ip.run_line_magic("codo_reset", "--all")
    assert orch() is not first and orch().max_workers == default_workers()
    task(ip, "v --out result_var", "5")  # bindings follow the new orchestrator
    run_all(ip)
    assert ip.user_ns["result_var"] == 5


def test_unload_removes_the_magics(ip):
    ip.run_line_magic("unload_ext", "codomyrmex_nb")
    try:
        assert ip.find_cell_magic("codo_task") is None
        assert ip.find_line_magic("codo_run") is None
    finally:
        ip.run_line_magic("load_ext", "codomyrmex_nb")
    assert ip.find_cell_magic("codo_task") is not None


# -- async cells ----------------------------------------------------------------------------
def test_top_level_await_makes_an_async_task(ip):
    task(ip, "aw", "import asyncio\nawait asyncio.sleep(0)\nv = await asyncio.sleep(0, result=5)\nv * 2")
    run_all(ip)
    assert result("aw") == 10


def test_an_awaited_last_expression(ip):
    task(ip, "aw2", "import asyncio\nawait asyncio.sleep(0, result='x')")
    run_all(ip)
    assert result("aw2") == "x"


def test_asyncio_run_in_a_sync_cell_needs_no_patch(ip):
    task(ip, "ar", "import asyncio\nasync def f():\n    return 3\nasyncio.run(f())")
    run_all(ip)
    assert result("ar") == 3


def test_asyncio_run_inside_an_async_cell_is_nested(ip):
    cell = ("import asyncio\nasync def f():\n    return 4\n"
            "await asyncio.sleep(0)\nasyncio.run(f())")
    task(ip, "nested", cell)
    run_all(ip)
    t = orch().get_task("nested")
    assert t.status is S.COMPLETED, t.result.traceback
    assert result("nested") == 4


def test_timeout_fails_a_task(ip):
    task(ip, "slow --timeout 0.2", "while True:\n    pass")
    run_all(ip)
    assert orch().get_task("slow").result.error_type == "TimeoutError"


# -- the cell function on its own -------------------------------------------------------------
def test_cell_function_pickles_with_the_names_it_reads():
    cloudpickle = pytest.importorskip("cloudpickle")
    ns = {"factor": 3, "unrelated": threading.Lock()}  # a lock cannot be pickled
    fn = CellFunction(compile_cell("p", "factor * upstream['a']"), ns)
    copy = pickle.loads(cloudpickle.dumps(fn))
    assert copy.namespace == {"factor": 3}
    assert copy(upstream={"a": 2}) == 6


def test_compiled_cell_facts():
    plain = compile_cell("t", "x = 1\nx")
    assert not plain.is_async and not plain.needs_nesting
    aw = compile_cell("t", "import asyncio\nawait asyncio.sleep(0)")
    assert aw.is_async and not aw.needs_nesting
    nested = compile_cell("t", "import asyncio\nawait asyncio.sleep(0)\nasyncio.run(g())")
    assert nested.is_async and nested.needs_nesting


# -- what %codo_results, %codo_stats and %codo_bottlenecks display -------------------------------
def shown(ip, value) -> tuple[str, str]:
    """What the notebook shows for ``value``: (text/plain, text/html).

    The terminal test shell formats text only; a notebook front end asks for HTML too.
    """
    data, _ = ip.display_formatter.format(value)
    return data["text/plain"], value._repr_html_()


def test_results_show_names_first_summaries_and_ids_last(ip):
    ip.user_ns["pd"] = pd
    task(ip, "frame", "pd.DataFrame({'region': ['n'] * 500, 'sales': range(500)})")
    task(ip, "boom", "1 / 0")
    task(ip, "n", "3")
    run_all(ip)
    ip.user_ns.pop("pd")
    results = ip.run_line_magic("codo_results", "")
    assert type(results) is ResultsFrame
    assert list(results.columns)[:2] == ["id", "name"]  # the frame itself is results_frame()
    assert isinstance(results.set_index("name").loc["frame", "data"], pd.DataFrame)
    text, html = shown(ip, results)
    header, _, *rows = text.splitlines()
    assert header.split()[:2] == ["state", "result"] and header.split()[-1] == "id"
    assert [r.split()[0] for r in rows[:3]] == ["frame", "boom", "n"]
    assert "DataFrame 500×2 (region, sales)" in text and "DataFrame 500×2 (region, sales)" in html
    assert "ZeroDivisionError: division by zero" in text
    bare_text, bare_html = text, html  # random hex task ids may hold "499" by chance
    for t in orch().list_tasks():
        bare_text, bare_html = bare_text.replace(t.id, ""), bare_html.replace(t.id, "")
    assert "499" not in bare_text and "499" not in bare_html  # no frame repr crammed in a cell
    assert orch().get_task("n").id in rows[2].split()[-1]


def test_results_add_a_short_id_only_where_names_clash(ip):
    o = orch()
    first = o.create_task("same", func=lambda: 1)
    with pytest.warns(UserWarning, match="a task named 'same' is already defined"):
        second = o.create_task("same", func=lambda: 2)
    o.create_task("alone", func=lambda: 3)
    run_all(ip)
    results = ip.run_line_magic("codo_results", "")
    labels = [f"same [{first.id[:4]}]", f"same [{second.id[:4]}]", "alone"]
    assert list(results.summary().index) == labels
    text, _ = shown(ip, results)
    assert [line[:len(label)] for line, label in zip(text.splitlines()[2:5], labels, strict=True)] == labels


def test_frames_derived_from_results_display_as_plain_pandas(ip):
    three_tasks(ip)
    run_all(ip)
    results = ip.run_line_magic("codo_results", "")
    part = results[["name", "state", "execution_time"]]
    assert type(part) is PreviewFrame  # pandas' display; result objects are shown bounded
    assert shown(ip, part)[0] == repr(part) == repr(pd.DataFrame(part))


def test_stats_are_shown_vertically_rounded_with_units(ip):
    three_tasks(ip)
    run_all(ip)
    stats = ip.run_line_magic("codo_stats", "")
    assert type(stats) is StatsFrame and len(stats) == 1  # still stats_frame()'s row
    assert stats["total_tasks"].iloc[0] == 3
    text, html = shown(ip, stats)
    lines = text.splitlines()
    assert lines[0].split() == ["value"] and lines[1].split() == ["statistic"]
    assert lines[2].startswith("makespan") and lines[2].rstrip().endswith("s")
    assert lines[3].startswith("critical path length") and lines[4].startswith("critical path ")
    assert any(line.startswith("tasks ") and line.rstrip().endswith(" 3") for line in lines)
    assert any(line.startswith("worker utilisation") and line.rstrip().endswith("%") for line in lines)
    assert "…" not in text and "..." not in text
    assert "critical path length" in html


def test_bottlenecks_detail_is_never_cut(ip):
    ip.user_ns["time"] = __import__("time")
    long = "unit_test_with_a_rather_long_name"
    for i in (1, 2):
        task(ip, f"{long}_{i} --resource file:shared.db:exclusive", "time.sleep(0.05)\n1")
    run_all(ip)
    ip.user_ns.pop("time")
    report = ip.run_line_magic("codo_bottlenecks", "")
    assert type(report) is BottlenecksFrame
    waits = report[report["kind"] == "resource_wait"]
    assert len(waits) == 1
    detail = waits["detail"].iloc[0]
    assert f"held by {long}_" in detail and len(detail) > 50
    text, html = shown(ip, report)
    assert detail in text and detail in html
    assert " ms" in text or " s " in text


# -- renamed cells: one task per notebook cell ----------------------------------------------
def cell(ip, source: str, cell_id: str | None, capsys=None) -> str:
    """Run ``source`` as the notebook cell ``cell_id`` (as ipykernel does for JupyterLab)."""
    outcome = ip.run_cell(source, cell_id=cell_id)
    assert outcome.success, outcome.error_in_exec
    return capsys.readouterr().out if capsys is not None else ""


def names() -> list[str]:
    return [t.name for t in orch().list_tasks()]


def test_a_renamed_cell_renames_its_task_in_place(ip, capsys):
    cell(ip, "%%codo_task load\n[1, 2]", "c1")
    cell(ip, "%%codo_task use --after load\nsum(load)", "c2")
    cell(ip, "%%codo_task other\n'x'", "c3")
    run_all(ip)
    load_id = orch().get_task("load").id
    capsys.readouterr()
    out = cell(ip, "%%codo_task source\n[1, 2]", "c1", capsys)
    assert out.startswith("codo_task 'source': renamed from 'load' (same cell); re-running it "
                          "and 1 downstream ('use')")
    assert "change 'load' to 'source' in the --after and body of 'use'" in out
    assert names() == ["source", "use", "other"]
    assert orch().get_task("source").id == load_id
    assert [d.name for d in orch().dependencies_of("use")] == ["source"]
    ip.run_line_magic("codo_wait", "20")
    assert orch().get_task("use").status is S.FAILED  # its body still reads `load`
    cell(ip, "%%codo_task use --after source\nsum(source)", "c2")
    ip.run_line_magic("codo_wait", "20")
    assert result("use") == 3 and attempts("other") == 1
    assert orch().snapshot().stats["total_tasks"] == 3


def test_a_second_rename_names_what_each_dependent_cell_still_says(ip, capsys):
    cell(ip, "%%codo_task a\n[1, 2]", "c1")
    cell(ip, "%%codo_task x --after a\nsum(a)", "c2")
    cell(ip, "%%codo_task b\n[1, 2]", "c1")  # x's cell still says a
    cell(ip, "%%codo_task y --after b\nlen(b)", "c3")  # written after the first rename
    capsys.readouterr()
    out = cell(ip, "%%codo_task c\n[1, 2]", "c1", capsys)
    assert out.startswith("codo_task 'c': renamed from 'b' (same cell)")
    assert "change 'a' to 'c' in the --after and body of 'x'; 'b' to 'c' in the --after and " \
        "body of 'y'" in out
    cell(ip, "%%codo_task x --after c\nsum(c)", "c2")  # x's cell follows
    out = cell(ip, "%%codo_task a\n[1, 2]", "c1", capsys)
    assert "'c' to 'a' in the --after and body of 'x'" in out and "'b' to 'a'" in out
    cell(ip, "%%codo_task y --after a\nlen(a)", "c3")
    out = cell(ip, "%%codo_task b\n[1, 2]", "c1", capsys)
    assert "'c' to 'b' in the --after and body of 'x'" in out and "of 'y'" in out


def test_renaming_back_to_the_name_a_dependent_cell_says_asks_nothing_of_it(ip, capsys):
    cell(ip, "%%codo_task a\n[1, 2]", "c1")
    cell(ip, "%%codo_task x --after a\nsum(a)", "c2")
    cell(ip, "%%codo_task b\n[1, 2]", "c1")
    capsys.readouterr()
    out = cell(ip, "%%codo_task a\n[1, 2]", "c1", capsys)
    assert out.startswith("codo_task 'a': renamed from 'b' (same cell)")
    assert "still say" not in out
    ip.run_line_magic("codo_run", "")
    ip.run_line_magic("codo_wait", "20")
    assert result("x") == 3


def test_renaming_back_and_again(ip, capsys):
    for name in ("a", "b", "a", "c"):
        cell(ip, f"%%codo_task {name}\n1", "c1")
    assert names() == ["c"]


def test_without_a_cell_id_a_new_name_is_a_new_task(ip):
    cell(ip, "%%codo_task a\n1", None)
    cell(ip, "%%codo_task b\n1", None)
    assert names() == ["a", "b"]


def test_a_cell_that_defines_tasks_from_python_renames_nothing(ip):
    source = "for n in ('p', 'q'):\n    get_ipython().run_cell_magic('codo_task', n, '1')"
    cell(ip, source, "c1")
    assert names() == ["p", "q"]


def test_renaming_onto_another_cells_task_takes_it_over(ip, capsys):
    cell(ip, "%%codo_task a\n'from c1'", "c1")
    cell(ip, "%%codo_task b\n'from c2'", "c2")
    out = cell(ip, "%%codo_task b\n'from c1'", "c1", capsys)
    assert "removed 'a', this cell's task before" in out
    assert names() == ["b"]
    run_all(ip)
    assert result("b") == "from c1"


def test_renaming_onto_another_task_is_refused_while_the_old_one_has_dependents(ip, capsys):
    cell(ip, "%%codo_task a\n1", "c1")
    cell(ip, "%%codo_task x --after a\na", "c2")
    cell(ip, "%%codo_task b\n2", "c3")
    capsys.readouterr()
    ip.run_cell("%%codo_task b\n1", cell_id="c1")
    err = capsys.readouterr().err
    assert "this cell's task before, 'a', cannot be removed: 'x' run --after it" in err
    assert names() == ["a", "x", "b"]


def test_a_renamed_cell_cannot_run_after_its_old_name(ip, capsys):
    cell(ip, "%%codo_task a\n1", "c1")
    ip.run_cell("%%codo_task b --after a\n1", cell_id="c1")
    assert "cannot run --after 'a': that is this cell's own task" in capsys.readouterr().err
    assert names() == ["a"]


# -- %codo_remove -------------------------------------------------------------------------------
def test_remove_a_task(ip, capsys):
    three_tasks(ip)
    run_all(ip)
    capsys.readouterr()
    ip.run_line_magic("codo_remove", "other")
    assert capsys.readouterr().out.strip() == "codo_remove: removed 'other'"
    assert names() == ["load", "double"]
    task(ip, "other", "'independent'")  # its cell defines it again
    assert names() == ["load", "double", "other"]


def test_remove_refuses_while_tasks_depend_on_it_and_names_them(ip):
    three_tasks(ip)
    task(ip, "triple --after load", "load * 3")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("codo_remove", "load")
    assert str(info.value) == ("%codo_remove: 'double', 'triple' run --after 'load': remove or change "
                               "them first, or %codo_remove load --downstream")
    assert names() == ["load", "double", "other", "triple"]


def test_remove_downstream_removes_the_whole_branch(ip, capsys):
    three_tasks(ip)
    task(ip, "last --after double", "double")
    capsys.readouterr()
    ip.run_line_magic("codo_remove", "load --downstream")
    out = capsys.readouterr().out.strip()
    assert out == "codo_remove: removed 'load', 'double', 'last'"
    assert names() == ["other"]


def test_remove_a_running_task_cancels_it(ip, capsys):
    started = threading.Event()
    ip.user_ns["started"] = started
    task(ip, "spin", "started.set()\nwhile True:\n    pass")
    ip.run_line_magic("codo_run", "")
    assert started.wait(20)
    capsys.readouterr()
    ip.run_line_magic("codo_remove", "spin")
    assert capsys.readouterr().out.strip() == "codo_remove: removed 'spin' (cancelled while running)"
    assert names() == []


# -- captured output: %codo_logs and %codo_status NAME ----------------------------------------------
def test_logs_without_the_logs_view_print_the_captured_output(ip, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "codomyrmex_nb.notebook.logs_view", None)  # import fails
    three_tasks(ip)
    run_all(ip)
    orch().get_task("load").result.logs = "reading\ndone\n"
    capsys.readouterr()
    ip.run_line_magic("codo_logs", "load")
    assert capsys.readouterr().out == "reading\ndone\n"
    ip.run_line_magic("codo_logs", "other")
    assert capsys.readouterr().out.strip() == "codo_logs: 'other': no output captured"


def test_logs_use_the_logs_view_when_there_is_one(ip, capsys, monkeypatch):
    module = types.ModuleType("codomyrmex_nb.notebook.logs_view")
    module.logs_text = lambda orch, name: f"logs of {name} from {type(orch).__name__}"
    monkeypatch.setitem(sys.modules, "codomyrmex_nb.notebook.logs_view", module)
    three_tasks(ip)
    capsys.readouterr()
    ip.run_line_magic("codo_logs", "load")
    assert capsys.readouterr().out.strip() == "logs of load from TaskOrchestrator"


def test_status_of_one_task_shows_its_last_output_lines(ip, capsys):
    task(ip, "boom", "raise KeyError(1)")
    task(ip, "quiet", "1")
    run_all(ip)
    orch().get_task("boom").result.logs = "".join(f"line {i}\n" for i in range(1, 31))
    capsys.readouterr()
    ip.run_line_magic("codo_status", "boom")
    out = capsys.readouterr().out
    assert "    output (last 20 of 30 lines; %codo_logs boom for all):" in out
    assert "    | line 11\n" in out and "line 10\n" not in out and "    | line 30\n" in out
    assert out.index("line 30") < out.index("Traceback")
    ip.run_line_magic("codo_status", "quiet")
    assert "output" not in capsys.readouterr().out


# -- %codo_run --side -------------------------------------------------------------------------------
def test_run_side_passes_side_to_the_live_view(ip, capsys, monkeypatch):
    import codomyrmex_nb.notebook.live_view as live_view_module

    calls = []

    def live_view(orchestrator=None, *, side=False, **options):
        calls.append((orchestrator, side))
        return types.SimpleNamespace(side=True)  # it shows itself in the panel

    monkeypatch.setattr(live_view_module, "live_view", live_view)
    three_tasks(ip)
    capsys.readouterr()
    ip.run_line_magic("codo_run", "--side --wait")
    out = capsys.readouterr().out
    assert calls == [(orch(), True)]
    # Only the front end may say the view is in the panel, once it is there: not the magic.
    assert "side panel" not in out
    assert "codo_wait: all 3 tasks completed" in out


def test_run_side_without_a_side_panel_says_nothing_false(ip, capsys, monkeypatch):
    """The live view falls back inline and says why itself; the magic claims no panel."""
    import codomyrmex_nb.notebook.live_view as live_view_module

    def live_view(orchestrator=None, *, side=False, **options):
        print("codomyrmex: no side panel (no widget front end here); the live view shows inline.")
        return types.SimpleNamespace(side=False)

    shown_views = []
    monkeypatch.setattr(live_view_module, "live_view", live_view)
    monkeypatch.setattr("codomyrmex_nb.notebook.run_magics.display", shown_views.append)
    three_tasks(ip)
    capsys.readouterr()
    ip.run_line_magic("codo_run", "--side")
    out = capsys.readouterr().out
    assert "no side panel" in out and "is in the side panel" not in out
    assert shown_views == []  # the live view displayed itself


def test_run_side_with_an_old_live_view_shows_it_inline(ip, capsys, monkeypatch):
    import codomyrmex_nb.notebook.live_view as live_view_module

    shown_views = []
    monkeypatch.setattr(live_view_module, "live_view", lambda orchestrator=None, **options: "VIEW")
    monkeypatch.setattr("codomyrmex_nb.notebook.run_magics.display", shown_views.append)
    three_tasks(ip)
    capsys.readouterr()
    ip.run_line_magic("codo_run", "--side")
    assert capsys.readouterr().out.strip() == (
        "codo_run: no side panel in this version of the live view; showing it here")
    assert shown_views == ["VIEW"]


def test_the_cell_id_falls_back_to_the_kernels_parent_header(ip, monkeypatch):
    """Without pre_run_cell's info.cell_id, the execute request's metadata.cellId is used."""
    parent = {"metadata": {"cellId": "c9"}, "content": {"code": "%%codo_task a\n1"}}
    kernel = types.SimpleNamespace(get_parent=lambda: parent)
    monkeypatch.setattr(ip, "kernel", kernel, raising=False)
    task(ip, "a", "1")
    parent["content"]["code"] = "%%codo_task b\n1"
    task(ip, "b", "1")
    assert names() == ["b"]
    parent["content"]["code"] = "x = 1"  # not a %%codo_task cell: the id is not used
    task(ip, "c", "1")
    assert names() == ["b", "c"]


# -- the run journal: resume, --fresh, --journal, --cache, %codo_history, %codo_reset --journal ----
@pytest.fixture
def journal(monkeypatch, tmp_path):
    """The journal on, in a file of this test's own (conftest turns it off for the others); the
    default orchestrator is built on first use, so after this fixture it keeps its runs here."""
    path = tmp_path / "j.sqlite"
    monkeypatch.setenv("CODOMYRMEX_JOURNAL", str(path))
    monkeypatch.chdir(tmp_path)  # ``--journal on`` makes ./.codomyrmex/ here
    return path


def flush_journal() -> None:
    """Commit what the default orchestrator's journal has queued (reads see commits only)."""
    assert orch()._engine.recorder.journal.flush(10)


GATED = "import time\nwhile not go.is_set():\n    time.sleep(0.005)\na + 1"


def die_mid_run(ip) -> None:
    """'a' completes and is committed, 'b' waits for the gate; then the 'kernel' goes away
    (the default orchestrator is dropped: its run is left unfinished in the journal, and
    its runs are made to look written by another process, gone: this one's own runs are
    never resumed from)."""
    ip.user_ns["go"] = threading.Event()
    task(ip, "a", "40 + 1")
    task(ip, "b --after a", GATED)
    ip.run_line_magic("codo_run", "")
    assert orch().wait_for_completion(0.5) is False  # b waits for the gate
    assert orch().get_task("a").status is S.COMPLETED
    flush_journal()
    path = orch()._engine.recorder.path
    reset_default()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE runs SET pstarted = pstarted - 3600")  # same pid, another start
    conn.close()


def test_a_cell_restored_from_an_unfinished_run_says_so_and_codo_run_says_from_when(
        ip, journal, capsys):
    die_mid_run(ip)
    capsys.readouterr()
    task(ip, "a", "40 + 1")
    task(ip, "b --after a", GATED)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("codo_task")]
    assert re.fullmatch(r"codo_task 'a': restored from the unfinished run of \d{4}-\d\d-\d\d "
                        r"\d\d:\d\d:\d\d, not run", lines[0]), lines
    assert lines[1] == "codo_task 'b': defined, waits for 'a' (engine stopped: %codo_run starts it)"
    ip.user_ns["go"].set()
    ip.run_line_magic("codo_run", "--wait --timeout 20  # resume")
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("codo_run:"))
    assert re.fullmatch(r"codo_run: restored 1 finished task from the unfinished run of "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \('a'\); --fresh .*", line), line
    assert "codo_wait: all 2 tasks completed" in out
    assert (attempts("a"), attempts("b")) == (0, 1)
    assert (result("a"), result("b")) == (41, 42)
    assert orch().get_task("a").result.metadata["restored"] is True
    ip.run_line_magic("codo_run", "")  # said once: nothing new was restored since
    assert "restored" not in capsys.readouterr().out


def test_run_fresh_reruns_what_was_restored_and_resumes_no_more(ip, journal, capsys):
    die_mid_run(ip)
    task(ip, "a", "40 + 1")
    task(ip, "b --after a", GATED)
    capsys.readouterr()
    ip.user_ns["go"].set()
    ip.run_line_magic("codo_run", "--fresh --wait --timeout 20")
    out = capsys.readouterr().out
    assert ("codo_run: --fresh: re-running 1 task restored from the journal ('a') and its "
            "downstream") in out
    assert "restored 1" not in out and "codo_wait: all 2 tasks completed" in out
    assert (attempts("a"), attempts("b")) == (1, 1)
    assert not orch().get_task("a").result.metadata.get("restored")
    task(ip, "c", "3")  # no longer resuming that run
    ip.run_line_magic("codo_run", "--fresh --wait --timeout 20")
    assert "nothing was restored from the journal; every task runs" in capsys.readouterr().out


def test_run_journal_switches_files_turns_it_off_and_on(ip, journal, tmp_path, capsys,
                                                      monkeypatch):
    # a kernel's __main__ (IPython's user module) names no script; pytest's would
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    other = tmp_path / "other.sqlite"
    ip.run_cell(f"%codo_run --journal {other}  # a file of its own")
    assert f"codo_run: journal {other}" in capsys.readouterr().out
    assert orch().journal_path == str(other)
    ip.run_line_magic("codo_run", f"--journal {other}")  # the same file: nothing to say
    assert "journal" not in capsys.readouterr().out
    ip.run_line_magic("codo_run", "--journal off")
    assert "codo_run: journal off; results will not survive a restart" in capsys.readouterr().out
    assert orch().journal_path is None
    ip.run_line_magic("codo_run", "--journal on")
    assert orch().journal_path == str(tmp_path / ".codomyrmex" / "folder.sqlite")
    capsys.readouterr()
    ip.run_line_magic("codo_run", "--journal on  # again: nothing changes")
    assert "journal" not in capsys.readouterr().out
    task(ip, "t", "1")
    run_all(ip)
    flush_journal()
    assert len(ip.run_line_magic("codo_history", "")) == 1


def test_run_journal_resumes_tasks_not_started_from_the_new_file(
        ip, journal, tmp_path, capsys, monkeypatch):
    die_mid_run(ip)  # into j.sqlite
    monkeypatch.setenv("CODOMYRMEX_JOURNAL", str(tmp_path / "empty.sqlite"))
    task(ip, "a", "40 + 1")
    task(ip, "b --after a", GATED)
    assert orch().get_task("a").status is S.READY  # nothing to resume in that one
    capsys.readouterr()
    ip.user_ns["go"].set()
    ip.run_line_magic("codo_run", f"--journal {journal} --wait --timeout 20")
    out = capsys.readouterr().out
    assert f"codo_run: journal {journal}" in out
    assert "codo_run: restored 1 finished task from the unfinished run of" in out
    assert (attempts("a"), attempts("b")) == (0, 1)


def test_run_journal_is_refused_while_tasks_are_in_flight(ip, journal, tmp_path):
    ip.user_ns["go"] = threading.Event()
    task(ip, "a", "1")
    task(ip, "b --after a", GATED)
    ip.run_line_magic("codo_run", "")
    assert wait_until_status(orch(), orch().get_task("b"), S.RUNNING)
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("codo_run", f"--journal {tmp_path / 'x.sqlite'}")
    assert str(info.value) == ("%codo_run: cannot switch the journal while 1 task is in flight: "
                               "%codo_wait (or %codo_cancel) first")
    assert orch().journal_path == str(journal)
    with pytest.raises(UsageError, match="cannot clear the journal while 1 task is in flight"):
        ip.run_line_magic("codo_reset", "--journal")
    ip.user_ns["go"].set()
    ip.run_line_magic("codo_wait", "20")


def test_history_lists_runs_newest_first_and_reset_journal_clears_it(ip, journal, capsys):
    task(ip, "a", "1")
    run_all(ip)
    task(ip, "a", "2")  # changed: a second run
    task(ip, "bad", "raise ValueError('no')")
    run_all(ip)
    flush_journal()
    ip.run_cell("runs = %codo_history  # every run")
    runs = ip.user_ns["runs"]
    assert isinstance(runs, pd.DataFrame)
    assert list(runs.columns) == ["run", "started", "ended", "status", "tasks", "completed",
                                  "failed", "makespan"]
    assert list(runs["run"]) == sorted(runs["run"], reverse=True) and len(runs) == 2
    assert list(runs["status"]) == ["finished", "finished"]
    assert (runs["completed"].iloc[0], runs["failed"].iloc[0]) == (1, 1)
    capsys.readouterr()
    ip.run_cell("%codo_reset --journal  # forget them")
    assert (f"codo_reset: cleared the run journal (2 runs forgotten): {journal}"
            in capsys.readouterr().out.splitlines())
    assert ip.run_line_magic("codo_history", "").empty
    assert [t.name for t in orch().list_tasks()] == ["a", "bad"]  # the tasks stay


def test_history_and_reset_journal_with_the_journal_off(ip, capsys):
    runs = ip.run_line_magic("codo_history", "")
    assert runs.empty and list(runs.columns)[:2] == ["run", "started"]
    assert "codo_history: the run journal is off" in capsys.readouterr().out
    task(ip, "a", "1")
    capsys.readouterr()
    ip.run_line_magic("codo_reset", "--journal")
    assert "codo_reset: the run journal is off; nothing to clear" in capsys.readouterr().out
    ip.run_line_magic("codo_reset", "--journal --all")
    assert "default orchestrator stopped and dropped" in capsys.readouterr().out


def test_cache_reaches_the_task_and_changing_it_alone_reruns_nothing(ip, capsys):
    task(ip, "a --cache", "1")
    assert orch().get_task("a").cache is True
    run_all(ip)
    capsys.readouterr()
    task(ip, "a", "1")
    assert ("codo_task 'a': unchanged, keeping its result; --cache now off"
            in capsys.readouterr().out.splitlines())
    assert orch().get_task("a").cache is False and attempts("a") == 1
    task(ip, "a --cache  # keep it", "1")
    assert ("codo_task 'a': unchanged, keeping its result; --cache now on"
            in capsys.readouterr().out.splitlines())
    assert orch().get_task("a").cache is True and attempts("a") == 1
    task(ip, "a --cache", "2")  # changed text: re-runs, still cached
    run_all(ip)
    assert orch().get_task("a").cache is True and (attempts("a"), result("a")) == (2, 2)
    task(ip, "a", "3")
    assert orch().get_task("a").cache is False


def test_a_cached_cell_comes_back_after_a_finished_run_and_the_others_recompute(
        ip, journal, capsys):
    ip.user_ns["limit"] = 5
    task(ip, "load --cache", "list(range(limit))")
    task(ip, "total --after load", "sum(load)")
    run_all(ip)
    flush_journal()
    reset_default()  # a new kernel, after a run that finished
    capsys.readouterr()
    task(ip, "load --cache", "list(range(limit))")
    task(ip, "total --after load", "sum(load)")
    assert "codo_task 'load': restored from the cache, not run" in capsys.readouterr().out
    run_all(ip)
    assert "codo_run: restored 1 finished task from the cache ('load')" in capsys.readouterr().out
    assert (attempts("load"), attempts("total"), result("total")) == (0, 1, 10)
    flush_journal()
    reset_default()
    ip.user_ns["limit"] = 4  # a notebook name the cell reads changed: it runs
    task(ip, "load --cache", "list(range(limit))")
    task(ip, "total --after load", "sum(load)")
    run_all(ip)
    assert (attempts("load"), result("total")) == (1, 6)


def test_adding_cache_after_a_finished_run_restores_that_runs_result(ip, journal):
    task(ip, "load", "list(range(5))")
    run_all(ip)
    flush_journal()
    reset_default()
    task(ip, "load --cache", "list(range(5))")
    assert orch().get_task("load").status is S.COMPLETED


def test_watch_puts_a_files_content_into_what_the_cache_restores(ip, journal, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("1,2,3")
    cell = 'sum(int(v) for v in open("data.csv").read().split(","))'

    def new_kernel_run(options: str = "--cache --watch data.csv --watch env:CODO_TEST_W") -> int:
        flush_journal()
        reset_default()
        task(ip, f"total {options}", cell)
        run_all(ip)
        return attempts("total")

    task(ip, "total --cache --watch data.csv --watch env:CODO_TEST_W", cell)
    assert orch().get_task("total").watch == ["data.csv", "env:CODO_TEST_W"]
    run_all(ip)
    assert (attempts("total"), result("total")) == (1, 6)
    assert new_kernel_run() == 0  # unchanged: restored
    data.write_text("1,2,4")
    assert new_kernel_run() == 1 and result("total") == 7  # the file changed: it runs
    assert new_kernel_run() == 0 and result("total") == 7
    assert new_kernel_run("--cache") == 1  # without the watch it is another fingerprint


def test_a_quoted_watched_file_with_a_space_in_its_name_reruns_the_cached_cell_when_it_changes(
        ip, journal, tmp_path):
    """Without the quotes removed the file would be watched as missing, and a new kernel
    would restore the stale result after the file changed."""
    data = tmp_path / "my data.csv"
    data.write_text("1,2,3")
    line = 'total --cache --watch "my data.csv"'
    cell = 'sum(int(v) for v in open("my data.csv").read().split(","))'

    def new_kernel_run() -> int:
        flush_journal()
        reset_default()
        task(ip, line, cell)
        run_all(ip)
        return attempts("total")

    task(ip, line, cell)
    run_all(ip)
    assert (attempts("total"), result("total")) == (1, 6)
    assert new_kernel_run() == 0 and result("total") == 6  # unchanged: restored
    data.write_text("1,2,4")
    assert new_kernel_run() == 1 and result("total") == 7  # the file changed: it runs


def test_changing_watch_reruns_the_cell(ip, capsys):
    task(ip, "a", "1")
    run_all(ip)
    out = redefine(ip, capsys, "a --watch data.csv", "1")
    assert "codo_task 'a': changed; re-running it" in out
    assert orch().get_task("a").watch == ["data.csv"]


def test_a_cached_cell_sees_a_change_in_a_user_module_it_reads(ip, journal, tmp_path):
    import importlib
    import sys

    helper = tmp_path / "cell_helper_mod.py"
    helper.write_text("def g(x):\n    return x + 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        ip.user_ns["cell_helper_mod"] = importlib.import_module("cell_helper_mod")
        task(ip, "g --cache", "cell_helper_mod.g(1)")
        run_all(ip)
        flush_journal()
        reset_default()
        task(ip, "g --cache", "cell_helper_mod.g(1)")
        assert attempts("g") == 0  # unchanged: restored
        helper.write_text("def g(x):\n    return x + 2\n")
        sys.modules.pop("cell_helper_mod")
        importlib.invalidate_caches()
        ip.user_ns["cell_helper_mod"] = importlib.import_module("cell_helper_mod")
        flush_journal()
        reset_default()
        task(ip, "g --cache", "cell_helper_mod.g(1)")
        run_all(ip)
        assert (attempts("g"), result("g")) == (1, 3)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cell_helper_mod", None)


@pytest.mark.parametrize(("source", "expected"), [
    ("%codo_run --fresh  # recompute", "codo_run: --fresh: nothing was restored"),
    ("%codo_run --journal off  # none", "codo_run: journal off"),
    ("runs = %codo_history  # past runs", None),
    ("%codo_reset --journal  # forget", "codo_reset: cleared the run journal (1 run forgotten)"),
    ("%%codo_task more --cache  # cached\n1", "codo_task 'more': defined"),
])
def test_journal_options_take_a_trailing_comment(ip, journal, capsys, source, expected):
    task(ip, "a", "1")
    run_all(ip)
    flush_journal()
    capsys.readouterr()
    outcome = ip.run_cell(source)
    assert outcome.success, outcome.error_in_exec
    out = capsys.readouterr().out
    if expected is None:
        assert list(ip.user_ns["runs"]["status"]) == ["finished"]
    else:
        assert expected in out, out


def test_retry_runs_a_restored_task_again(ip, journal, capsys):
    die_mid_run(ip)
    task(ip, "a", "40 + 1")
    task(ip, "b --after a", GATED)
    ip.user_ns["go"].set()
    run_all(ip)
    assert attempts("a") == 0 and orch().get_task("a").result.metadata["restored"] is True
    capsys.readouterr()
    ip.run_line_magic("codo_retry", "a  # really compute it")
    assert "codo_retry: re-queued 'a'" in capsys.readouterr().out
    ip.run_line_magic("codo_wait", "20")
    assert (attempts("a"), attempts("b"), result("b")) == (1, 2, 42)
    assert not orch().get_task("a").result.metadata.get("restored")


# -- the memory budget ------------------------------------------------------------------------
def test_codo_run_memory_limit_sets_the_budget_and_refuses_a_bad_size(ip, capsys):
    task(ip, "load", "1")
    ip.run_line_magic("codo_run", "--memory-limit 500MB --wait")
    assert orch().memory_limit == 500 * 1000**2
    assert "memory budget 500 MB for results" in capsys.readouterr().out  # not MiB
    ip.run_line_magic("codo_run", "--memory-limit off --wait")
    assert orch().memory_limit is None
    assert "no memory budget" in capsys.readouterr().out
    with pytest.raises(UsageError, match=r"--memory-limit: memory_limit 'lots' is not a size"):
        ip.run_line_magic("codo_run", "--memory-limit lots --workers 3")
    assert orch().memory_limit is None and orch().max_workers != 3  # nothing half-applied


def test_codo_reset_journal_says_which_runs_it_kept_for_dropped_results(ip, journal, capsys):
    ip.run_cell("import numpy as np")
    task(ip, "a --cache", "np.full(40_000, 1.0)")  # 320 KB each: one is dropped
    task(ip, "b --cache", "np.full(40_000, 2.0)")
    ip.run_line_magic("codo_run", "--memory-limit 300KB --wait --timeout 20")
    flush_journal()
    assert orch().memory_stats()["dropped"] >= 1
    run = orch().journal_run
    capsys.readouterr()
    ip.run_line_magic("codo_reset", "--journal")
    said = capsys.readouterr().out
    assert (f"cleared the run journal (0 runs forgotten; kept run {run} (holds results dropped "
            "from memory))" in said), said
    assert result("a")[0] == 1.0 and result("b")[0] == 2.0
