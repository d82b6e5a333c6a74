"""The magics in a real Jupyter kernel (nbclient): what a notebook user sees.

One notebook, built here with nbformat, runs top to bottom: three task cells
with dependencies, ``%codo_run``, the results DataFrame, an unchanged cell
re-run (nothing runs), a changed cell (it and its downstream re-run, the
independent task does not), and bad arguments (one-line errors).

The kernel is ``python3`` from this interpreter's environment: the session
fixture installs the kernelspec into ``sys.prefix`` when it is missing, and the
first cell checks that the kernel runs this very interpreter.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator

import nbformat
import pytest
from nbclient import NotebookClient

from codomyrmex_nb.core.executors import EXECUTORS

pytestmark = pytest.mark.kernel

ATTEMPTS = ("import json\n"
            "from codomyrmex_nb.notebook.magics import current_orchestrator\n"
            "print(json.dumps({t.name: len(t.attempts) for t in current_orchestrator().list_tasks()}))")

CELLS = [
    ("code", "import sys\nprint(sys.executable)"),
    ("code", "%load_ext codomyrmex_nb"),
    ("code", "%%codo_task load\ndata = [1, 2, 3]\ndata"),
    ("code", "%%codo_task double --after load --out doubled\n[x * 2 for x in load]"),
    ("code", "%%codo_task other\n'independent'"),
    ("code", "%codo_run --wait --timeout 60"),
    ("code", "results = %codo_results\nprint(sorted(results['name']), doubled)\nresults"),
    ("code", "%%codo_task load\ndata = [1, 2, 3]\ndata"),           # unchanged
    ("code", "%codo_wait 60\n" + ATTEMPTS),
    ("code", "%%codo_task load\n[10, 20]"),                          # changed
    ("code", "%codo_wait 60\n" + ATTEMPTS + "\nprint(doubled)"),
    ("error", "%%codo_task oops --after lod\n1"),
    ("error", "%%codo_task oops --priority urgent\n1"),
    ("error", "%%codo_task oops\nx = (1,\n"),
    ("error", "%codo_run --executor rockets"),
    ("code", "%%codo_task fetch --after load\nimport asyncio\nawait asyncio.sleep(0)\nsum(load)"),
    ("code", "%codo_wait 60\nprint(current_orchestrator().get_task('fetch').result.data)\n"
             "print(sorted(t.name for t in current_orchestrator().list_tasks()))"),
    ("code", "%%codo_task boom --after load\nx = 1\n\nraise ValueError(x)"),
    ("code", "%codo_wait 60"),
    ("code", "%codo_status boom"),
]


@pytest.fixture(scope="module")
def notebook(kernel_name):
    nb = nbformat.v4.new_notebook()
    for kind, source in CELLS:
        cell = nbformat.v4.new_code_cell(source)
        if kind == "error":
            cell.metadata["tags"] = ["raises-exception"]
        nb.cells.append(cell)
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=120,
                            resources={"metadata": {"path": os.getcwd()}})
    client.execute()
    return nb


def text(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}\n")
        elif "text/plain" in out.get("data", {}):
            parts.append(out.data["text/plain"] + "\n")
    return "".join(parts)


def cell_of(nb, source_start: str, nth: int = 0):
    matches = [c for c in nb.cells if c.source.startswith(source_start)]
    return matches[nth]


def test_the_kernel_runs_this_interpreter(notebook):
    assert os.path.realpath(text(notebook.cells[0]).strip()) == os.path.realpath(sys.executable)


def test_definitions_print_one_line(notebook):
    assert text(notebook.cells[3]).strip() == (
        "codo_task 'double': defined, waits for 'load' (engine stopped: %codo_run starts it)")


def test_run_shows_the_live_view_and_waits(notebook):
    run = notebook.cells[5]
    assert any("application/vnd.jupyter.widget-view+json" in out.get("data", {})
               for out in run.outputs)
    assert "codo_wait: all 3 tasks completed" in text(run)


def test_results_dataframe(notebook):
    results = notebook.cells[6]
    assert "['double', 'load', 'other'] [2, 4, 6]" in text(results)
    assert any("text/html" in out.get("data", {}) for out in results.outputs)  # a table


def test_unchanged_cell_runs_nothing(notebook):
    assert text(notebook.cells[7]).strip() == "codo_task 'load': unchanged, keeping its result"
    counts = json.loads(text(notebook.cells[8]).strip().splitlines()[-1])
    assert counts == {"load": 1, "double": 1, "other": 1}


def test_changed_cell_reruns_it_and_its_downstream_only(notebook):
    assert "changed; re-running it and 1 downstream ('double')" in text(notebook.cells[9])
    lines = text(notebook.cells[10]).strip().splitlines()
    assert json.loads(lines[-2]) == {"load": 2, "double": 2, "other": 1}
    assert lines[-1] == "[20, 40]"


def test_bad_arguments_are_one_line_errors(notebook):
    expected = [
        "UsageError: %%codo_task: task 'oops': --after 'lod' is not a known task. Did you mean 'load'?",
        "UsageError: %%codo_task: task 'oops': bad --priority 'urgent': use one of low, normal, "
        "high, critical (or 1-4)",
        "UsageError: %%codo_task: syntax error in task 'oops' at line 2: '(' was never closed: x = (1,",
        "UsageError: %codo_run: argument --executor: invalid choice: 'rockets' "
        f"(choose from {', '.join(repr(e) for e in EXECUTORS)})",
    ]
    for index, message in zip(range(11, 15), expected, strict=True):
        assert text(notebook.cells[index]).strip() == message
        assert not any(out.output_type == "error" for out in notebook.cells[index].outputs)


def test_nothing_half_defined_and_async_cells_work(notebook):
    lines = text(notebook.cells[16]).strip().splitlines()
    assert lines[-2] == "30"
    assert lines[-1] == "['double', 'fetch', 'load', 'other']"


def test_a_failing_task_keeps_the_cells_line_numbers(notebook):
    assert "boom: ValueError: 1 \u2014 %codo_logs boom" in text(notebook.cells[18])
    status = text(notebook.cells[19])
    assert re.search(r"  Cell In\[\d+\], line 4, in <module>", status), status
    assert "raise ValueError(x)" in status and "ValueError: 1" in status


# -- cell ids, as JupyterLab 4 sends them ---------------------------------------------------------
# nbclient sends no cell id, so these requests are built by hand the way JupyterLab builds them:
# an execute_request whose metadata carries ``cellId`` (and ``deletedCells``, ``recordTiming``).
@pytest.fixture(scope="module")
def lab(kernel_name):
    """(kernel manager, client): the manager sends interrupts as JupyterLab's ■ does."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name=kernel_name, cwd=os.getcwd())
    try:
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def lab_kernel(lab):
    return lab[1]


def execute(client, code: str, cell_id: str | None = None) -> str:
    """Send ``code`` to run as notebook cell ``cell_id``; returns the request's id."""
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    metadata = {"deletedCells": [], "recordTiming": False}
    if cell_id is not None:
        metadata["cellId"] = cell_id
    msg = client.session.msg("execute_request", content, metadata=metadata)
    client.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def outputs(client, msg_id: str) -> Iterator[tuple[str, dict]]:
    """(kind, content) of each output of request ``msg_id``, until the kernel is idle."""
    while True:
        reply = client.get_iopub_msg(timeout=120)
        if reply["parent_header"].get("msg_id") != msg_id:
            continue
        kind, body = reply["msg_type"], reply["content"]
        if kind == "status" and body["execution_state"] == "idle":
            return
        yield kind, body


def shell_reply(client, msg_id: str) -> dict:
    """The shell channel's reply to request ``msg_id``."""
    while True:
        reply = client.get_shell_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def run_in_cell(client, code: str, cell_id: str | None) -> str:
    """Execute ``code`` as notebook cell ``cell_id``; returns what it printed and raised."""
    msg_id = execute(client, code, cell_id)
    shell_reply(client, msg_id)
    parts = []
    for kind, body in outputs(client, msg_id):
        if kind == "stream":
            parts.append(body["text"])
        elif kind == "error":
            parts.append(f"{body['ename']}: {body['evalue']}\n")
    return "".join(parts)


NAMES = ("from codomyrmex_nb.notebook.magics import current_orchestrator\n"
         "print([t.name for t in current_orchestrator().list_tasks()])")


def test_a_renamed_cell_replaces_its_task_in_a_real_kernel(lab_kernel):
    run_in_cell(lab_kernel, "%load_ext codomyrmex_nb\n%codo_reset", "setup")
    run_in_cell(lab_kernel, "%%codo_task load\n[1, 2]", "cell-load")
    run_in_cell(lab_kernel, "%%codo_task total --after load\nsum(load)", "cell-total")
    run_in_cell(lab_kernel, "%codo_run --wait --timeout 60", "run")
    out = run_in_cell(lab_kernel, "%%codo_task numbers\n[1, 2]", "cell-load")
    assert out.startswith("codo_task 'numbers': renamed from 'load' (same cell)")
    assert run_in_cell(lab_kernel, NAMES, "look").strip() == "['numbers', 'total']"
    run_in_cell(lab_kernel, "%%codo_task total --after numbers\nsum(numbers)", "cell-total")
    done = run_in_cell(lab_kernel, "%codo_wait 60", "wait")
    assert "codo_wait: all 2 tasks completed" in done
    # a cell run without an id (an older front end) defines a new task, as before
    run_in_cell(lab_kernel, "%%codo_task other\n1", None)
    run_in_cell(lab_kernel, "%%codo_task other2\n1", None)
    assert run_in_cell(lab_kernel, NAMES, "look").strip() == "['numbers', 'total', 'other', 'other2']"


def test_remove_and_logs_in_a_real_kernel(lab_kernel):
    run_in_cell(lab_kernel, "%load_ext codomyrmex_nb\n%codo_reset", "setup")  # run alone too
    run_in_cell(lab_kernel, "%%codo_task a\n1", "ca")
    run_in_cell(lab_kernel, "%%codo_task b --after a\na", "cb")
    refused = run_in_cell(lab_kernel, "%codo_remove a  # not while b needs it", "rm")
    assert refused.strip() == ("UsageError: %codo_remove: 'b' runs --after 'a': remove or change "
                               "it first, or %codo_remove a --downstream")
    assert run_in_cell(lab_kernel, "%codo_remove b", "rm").strip() == "codo_remove: removed 'b'"
    assert run_in_cell(lab_kernel, NAMES, "look").strip() == "['a']"
    assert run_in_cell(lab_kernel, "%codo_logs a", "logs").strip() != ""


# -- an interrupt (■) during a wait ----------------------------------------------------------------
def run_and_interrupt(lab, code: str, when: str) -> tuple[str, list[dict], str]:
    """Execute ``code``, interrupt the kernel once it has printed ``when`` (and started to
    wait); returns what it printed, its error outputs, and the reply's status."""
    manager, client = lab
    msg_id = execute(client, code)
    parts: list[str] = []
    errors: list[dict] = []
    interrupted = False
    for kind, body in outputs(client, msg_id):
        if kind == "stream":
            parts.append(body["text"])
        elif kind == "error":
            errors.append(body)
        if not interrupted and when in "".join(parts):
            time.sleep(0.5)  # well inside the wait
            manager.interrupt_kernel()
            interrupted = True
    return "".join(parts), errors, shell_reply(client, msg_id)["content"]["status"]


def test_an_interrupted_wait_is_one_line_and_the_tasks_keep_running(lab):
    _, client = lab
    run_in_cell(client, "%load_ext codomyrmex_nb\n%codo_reset\nimport threading\n"
                "go = threading.Event()", "setup")
    run_in_cell(client, "%%codo_task slow\ngo.wait(60)\n'done'", "cell-slow")
    run_in_cell(client, "%codo_run", "run")
    waits = [("print('waiting')\n%codo_wait", "waiting",
              "codo_wait: stopped waiting (interrupted); the 1 task not ended yet keeps running: "
              "%codo_wait waits again"),
             ("results = %codo_results", "codo_results: waiting for 1 task",
              "codo_results: stopped waiting (interrupted), so it returned nothing "
              "(x = %codo_results left x as it was); the 1 task not ended yet keeps running: "
              "%codo_results waits again, %codo_results 0 gives the results so far")]
    for code, when, line in waits:
        printed, errors, status = run_and_interrupt(lab, code, when)
        assert [e["traceback"] for e in errors] == [[line]], (printed, errors)
        assert "Traceback" not in printed and status == "error"  # Run All stops here
    state = ("print(current_orchestrator().get_task('slow').status.value, "
             "'results' in globals())")
    assert run_in_cell(client, NAMES.split("\n")[0] + "\n" + state, "look").split() == \
        ["running", "False"]
    done = run_in_cell(client, "go.set()\n%codo_wait 60", "wait")
    assert "codo_wait: the 1 task completed" in done  # the task ended on its own
