"""Failures are said once, clearly (issue 19, item 6).

The cell that waited for a run lists each failed task on one line (at most ten,
then "and N more"); a NameError for a task's name or its --out variable gets
one added line with the task's state and error; the progress header counts
failed tasks apart from done ones; tracebacks of tasks defined in a cell say
"Cell In[N]" like IPython's own.
"""

from __future__ import annotations

import re

import pytest

from codomyrmex_nb.core import frame_names
from codomyrmex_nb.default import current_orchestrator
from codomyrmex_nb.notebook.text_status import summary_line
from codomyrmex_nb.notebook.tracker import Tracker


def cell_task(ip, line, body):
    ip.run_cell_magic("codo_task", line, body)


def run(ip, capsys):
    ip.run_line_magic("codo_run", "--journal off --wait --timeout 30")
    return capsys.readouterr().out


def test_the_waiting_cell_lists_each_failed_task_once(ipython, capsys):
    cell_task(ipython, "ok", "1")
    cell_task(ipython, "boom", "1 / 0")
    cell_task(ipython, "after --after boom", "boom + 1")
    out = run(ipython, capsys).splitlines()
    assert out[-1] == "boom: ZeroDivisionError: division by zero \u2014 %codo_logs boom"
    assert re.fullmatch(r"codo_wait: done in \d+\.\ds, 1 completed, but 1 failed, "
                        r"1 upstream failed:", out[-2]), out
    assert sum("boom" in line for line in out if line.startswith("codo_wait")) == 0  # once
    ipython.run_line_magic("codo_wait", "")
    assert capsys.readouterr().out.splitlines()[-1].startswith("boom: ZeroDivisionError")


def test_at_most_ten_lines_then_and_n_more(ipython, capsys):
    for i in range(13):
        cell_task(ipython, f"bad{i:02d}", f"raise ValueError('row {i}')")
    out = run(ipython, capsys).splitlines()
    listed = [line for line in out if re.match(r"bad\d\d: ValueError: row \d+ \u2014 ", line)]
    assert listed == [f"bad{i:02d}: ValueError: row {i} \u2014 %codo_logs bad{i:02d}"
                      for i in range(10)]
    assert out[-1].startswith("and 3 more"), out


def test_codo_results_says_what_failed_when_it_waited(ipython, capsys):
    ipython.user_ns["gate"] = gate = __import__("threading").Event()
    cell_task(ipython, "slow_fail", "gate.wait(10)\nraise KeyError('missing')")
    ipython.run_line_magic("codo_run", "--journal off")
    capsys.readouterr()
    gate.set()
    ipython.run_line_magic("codo_results", "")
    out = capsys.readouterr().out.splitlines()
    assert "slow_fail: KeyError: 'missing' \u2014 %codo_logs slow_fail" in out, out
    ipython.run_line_magic("codo_results", "")  # nothing waited for: nothing said again
    assert "slow_fail: KeyError" not in capsys.readouterr().out


def _name_error(ipython, capsys, code):
    result = ipython.run_cell(code)
    assert isinstance(result.error_in_exec, NameError)
    return capsys.readouterr().out, getattr(result.error_in_exec, "__notes__", [])


def test_a_name_error_for_an_out_variable_or_a_task_name_says_the_tasks_state(ipython, capsys):
    cell_task(ipython, "boom --out boomed", "x = 0\n1 / x")
    run(ipython, capsys)
    out, notes = _name_error(ipython, capsys, "boomed + 1")
    assert notes == ["boomed is the --out variable of task 'boom', which has no result: "
                     "NoResult('boom', state='failed', error='division by zero') \u2014 "
                     "%codo_logs boom"]
    assert "NameError: name 'boomed' is not defined" in out and notes[0] in out  # both shown
    assert "Traceback" in out or "----> 1" in out  # the normal traceback too
    out, notes = _name_error(ipython, capsys, "boom")
    assert notes == ["'boom' is a task, not a notebook variable: NoResult('boom', "
                     "state='failed', error='division by zero') \u2014 %codo_logs boom"]
    out, notes = _name_error(ipython, capsys, "no_such_thing_here")
    assert notes == [] and "NameError" in out


def test_the_name_error_hook_chains_and_unloads(ipython, capsys):
    seen = []

    def mine(shell, etype, value, tb, tb_offset=None):
        seen.append(etype)
        return ["handled by mine"]

    ipython.run_line_magic("unload_ext", "codomyrmex_nb")
    assert frame_names._namers == []
    before = ipython.custom_exceptions
    ipython.set_custom_exc((ValueError,), mine)
    try:
        ipython.run_line_magic("load_ext", "codomyrmex_nb")
        cell_task(ipython, "t --out tv", "raise RuntimeError('x')")
        run(ipython, capsys)
        ipython.run_cell("raise ValueError('v')")
        assert seen == [ValueError]  # the earlier handler still gets its exceptions
        _, notes = _name_error(ipython, capsys, "tv")
        assert notes and "NoResult('t', state='failed'" in notes[0]
        ipython.run_line_magic("unload_ext", "codomyrmex_nb")
        assert ipython.custom_exceptions == (ValueError,)  # ours gone, the earlier one back
        _, notes = _name_error(ipython, capsys, "tv")
        assert notes == []
    finally:
        ipython.set_custom_exc(before, None) if before else ipython.set_custom_exc((), None)
        ipython.run_line_magic("load_ext", "codomyrmex_nb")


def test_the_progress_header_counts_failed_tasks_apart(make_orch):
    orch = make_orch(2, journal=False)
    orch.create_task("ok", func=lambda: 1)
    orch.create_task("bad", func=lambda: 1 / 0)
    orch.create_task("after", func=lambda: 2, dependencies=["bad"])
    orch.start_execution()
    orch.wait_for_completion(20)
    snap = orch.snapshot()
    line = summary_line(snap)
    assert line.startswith("1/3 done · 1 failed · 1 completed, 1 upstream failed · "), line
    tracker = Tracker()
    tracker.reset(snap, None)
    assert tracker.summary().startswith("1/3 done · 1 failed ("), tracker.summary()
    assert "<b>1/3</b> done · 1 failed" in tracker.header_html()


def test_a_function_task_defined_in_a_cell_says_cell_in(ipython, capsys):
    ipython.run_cell("def divide():\n    x = 0\n    return 1 / x\n", store_history=True)
    number = ipython.execution_count - 1
    ipython.run_cell("from codomyrmex_nb.default import current_orchestrator as _co\n"
                     "_co().create_task('divide', func=divide)", store_history=True)
    run(ipython, capsys)
    tb = current_orchestrator().get_task("divide").result.traceback
    assert f"  Cell In[{number}], line 3, in divide\n    return 1 / x" in tb, tb
    assert "ipython-input" not in tb and "ipykernel_" not in tb


def test_a_live_view_names_cells_without_the_magics(ipython, capsys):
    """The Python API in a notebook (no %load_ext): a live view shown there names the cells."""
    ipython.run_line_magic("unload_ext", "codomyrmex_nb")
    try:
        ipython.run_cell("def halve():\n    return 1 / 0\n", store_history=True)
        number = ipython.execution_count - 1
        ipython.run_cell("from codomyrmex_nb import TaskOrchestrator, live_view\n"
                         "_o = TaskOrchestrator(1, journal=False)\n"
                         "_o.create_task('halve', func=halve)\n_v = live_view(_o)\n"
                         "_o.start_execution()\n_o.wait_for_completion(20)\n", store_history=True)
        orch = ipython.user_ns["_o"]
        tb = orch.get_task("halve").result.traceback
        assert f"  Cell In[{number}], line 2, in halve" in tb, tb
        orch.stop_execution()
        ipython.user_ns["_v"].close()
    finally:
        ipython.run_line_magic("load_ext", "codomyrmex_nb")


def test_a_codo_task_cell_traceback_says_cell_in(ipython, capsys):
    ipython.run_cell("%%codo_task failing\ny = 2\n\nraise ValueError(y)", store_history=True)
    number = ipython.execution_count - 1
    run(ipython, capsys)
    tb = current_orchestrator().get_task("failing").result.traceback
    assert f"  Cell In[{number}], line 4, in <module>\n    raise ValueError(y)" in tb, tb
    ipython.run_line_magic("codo_status", "failing")
    status = capsys.readouterr().out
    assert f"Cell In[{number}], line 4" in status and "engine frame" in status  # ours first


@pytest.fixture(autouse=True)
def _no_leftover_names(ipython):
    yield
    for name in ("gate",):
        ipython.user_ns.pop(name, None)
