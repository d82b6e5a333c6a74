"""A task's display() output and shown figures stay with the task (issue 12).

Unit tests with a fake display publisher, a run through the orchestrator in
IPython's test shell, and a real kernel (nbclient): a task's DataFrame and
matplotlib figure land in ``result.displays``, never in a cell.
"""

from __future__ import annotations

import json
import os
import threading

import pytest

from codomyrmex_nb.core import capture
from codomyrmex_nb.notebook import display_capture
from codomyrmex_nb.notebook.logs_view import logs_text


class FakePublisher:
    def __init__(self):
        self.published: list[tuple] = []
        self.cleared: list[bool] = []

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
        self.published.append((data, metadata, transient, update))

    def clear_output(self, wait=False):
        self.cleared.append(wait)


class FakeShell:
    def __init__(self):
        self.display_pub = FakePublisher()


@pytest.fixture
def shell():
    shell = FakeShell()
    assert display_capture.install(shell) is True
    yield shell
    display_capture.uninstall(shell)


def in_thread(fn):
    """Run ``fn`` on a thread of its own under a capture; the capture, once stopped."""
    box = capture.Capture()

    def run():
        with box:
            fn()

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    return box


def test_a_display_from_a_capturing_thread_is_kept_and_not_published(shell):
    pub = shell.display_pub

    def task():
        pub.publish({"text/plain": "table", "text/html": "<table></table>"}, {"isolated": True})
        pub.clear_output(wait=True)
        print("printed")

    box = in_thread(task)
    assert box.displays == [({"text/plain": "table", "text/html": "<table></table>"},
                             {"isolated": True})]
    assert box.text() == "printed\n"
    assert pub.published == [] and pub.cleared == []


def test_other_threads_pass_through_unchanged(shell):
    pub = shell.display_pub
    pub.publish({"text/plain": "main"}, {"m": 1}, transient={"display_id": "x"}, update=True)
    pub.clear_output(True)
    t = threading.Thread(target=lambda: pub.publish({"text/plain": "other thread"}))
    t.start()
    t.join(10)
    assert pub.published == [({"text/plain": "main"}, {"m": 1}, {"display_id": "x"}, True),
                             ({"text/plain": "other thread"}, None, None, False)]
    assert pub.cleared == [True]


def test_an_update_replaces_the_bundle_of_its_display_id(shell):
    pub = shell.display_pub

    def task():
        pub.publish({"text/plain": "0%"}, transient={"display_id": "bar"})
        pub.publish({"text/plain": "other"})
        for pct in (50, 100):
            pub.publish({"text/plain": f"{pct}%"}, transient={"display_id": "bar"}, update=True)

    box = in_thread(task)
    assert [d["text/plain"] for d, _ in box.displays] == ["100%", "other"]
    assert pub.published == []


def test_install_is_idempotent_and_uninstall_restores_the_original():
    shell = FakeShell()
    pub = shell.display_pub
    original = pub.publish
    assert display_capture.install(shell) is True
    router = pub.publish
    assert display_capture.install(shell) is False and pub.publish is router
    assert display_capture.installed(shell)
    assert display_capture.uninstall(shell) is True
    assert "publish" not in vars(pub) and "clear_output" not in vars(pub)
    assert pub.publish == original and not display_capture.installed(shell)
    assert display_capture.uninstall(shell) is False
    # an instance attribute that was there before comes back
    mine = lambda *a, **k: None  # noqa: E731
    pub.publish = mine
    display_capture.install(shell)
    display_capture.uninstall(shell)
    assert pub.publish is mine


def flaky_drawer(counter):
    n = counter[0] = counter[0] + 1
    capture.active().add_display({"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    if n == 1:
        raise RuntimeError("first attempt fails")
    capture.active().add_display({"text/html": "<table></table>", "text/plain": "frame"})
    return n


def test_each_attempt_keeps_its_own_and_logs_text_counts_them(make_orch):
    orch = make_orch(1)
    orch.create_task("flaky", func=flaky_drawer, parameters={"counter": [0]}, max_retries=1)
    orch.start_execution()
    assert orch.wait_for_completion(30)
    first, second = orch.get_task("flaky").attempts
    assert len(first.displays) == 1 and len(second.displays) == 2
    assert orch.get_task_result("flaky").displays == second.displays
    lines = logs_text(orch, "flaky").splitlines()
    assert lines[2] == "[1 rich output kept (image/png): see the node inspector or the task's " \
        "result.displays]"
    assert lines[-1].startswith("[2 rich outputs kept (image/png, text/html): ")


def test_a_display_from_a_thread_the_task_started_is_kept_with_the_task(shell, make_orch):
    """A task's own helper thread displays while the task runs: kept, never published."""
    pub = shell.display_pub

    def fan_out():
        t = threading.Thread(target=lambda: pub.publish({"text/plain": "from my thread"}))
        t.start()
        t.join(10)
        return "done"

    orch = make_orch(1)
    orch.create_task("helper_thread", func=fan_out)
    orch.start_execution()
    assert orch.wait_for_completion(30)
    assert orch.get_task_result("helper_thread").displays == [({"text/plain": "from my thread"},
                                                               {})]
    assert pub.published == []


# -- through the orchestrator, in IPython's test shell --------------------------------------------


def test_a_task_display_is_kept_on_its_result_in_an_ipython_shell(ipython, capsys):
    from codomyrmex_nb.notebook.inspector import detail_html
    from codomyrmex_nb.notebook.magics import current_orchestrator

    assert display_capture.installed(ipython)
    ipython.run_cell_magic(
        "codo_task", "shown",
        "from IPython.display import display\n"
        "display({'text/html': '<b>TASK-HTML</b>', 'text/plain': 'TASK-TEXT'}, raw=True)\n"
        "display({'k': 'TASK-DICT'})\n"
        "print('TASK-PRINT')\n"
        "7")
    capsys.readouterr()
    ipython.run_line_magic("codo_run", "--wait --timeout 30")
    from IPython.display import display

    display("MAIN-DISPLAY")  # the notebook's own display: published as before
    out = capsys.readouterr().out
    assert "MAIN-DISPLAY" in out and "TASK-" not in out
    orch = current_orchestrator()
    result = orch.get_task_result("shown")
    assert result.success and result.data == 7
    assert result.logs == "TASK-PRINT\n"
    kinds = [sorted(data) for data, _ in result.displays]
    assert kinds == [["text/html", "text/plain"], ["text/plain"]]
    assert result.displays[0][0]["text/html"] == "<b>TASK-HTML</b>"
    assert "TASK-DICT" in result.displays[1][0]["text/plain"]
    task = orch.get_task("shown")
    assert task.attempts[-1].displays == result.displays
    html = detail_html(orch.snapshot(), task.id, result)
    assert "display output (2)" in html and "&lt;b&gt;TASK-HTML&lt;/b&gt;" in html
    assert "[2 rich outputs kept (text/html, text/plain)" in logs_text(orch, "shown")


# -- in a real kernel ---------------------------------------------------------------------------------
KERNEL_CELLS = [
    "%load_ext codomyrmex_nb\n%matplotlib inline\nimport matplotlib.pyplot as plt\n"
    "import pandas as pd\nfrom codomyrmex_nb.notebook.magics import current_orchestrator",
    # the task: a table, a shown figure, a print; it waits so that a later cell runs meanwhile
    "%%codo_task draw\nimport time\nimport pandas as pd\nimport matplotlib.pyplot as plt\n"
    "time.sleep(0.5)\n"
    "display(pd.DataFrame({'TASKCOL': [1, 2], 'b': [3, 4]}))\n"
    "plt.plot([1, 3, 2])\nplt.title('TASK-FIGURE')\nplt.show()\n"
    "print('TASK-PRINT')\n'done'",
    "%codo_run",
    "import time\nfor i in range(8):\n    print('later', i)\n    time.sleep(0.2)",
    "%codo_wait 60",
    "import json\nr = current_orchestrator().get_task_result('draw')\n"
    "print(json.dumps({'data': r.data, 'logs': r.logs, "
    "'kinds': [sorted(d) for d, m in r.displays], "
    "'html': any('TASKCOL' in d.get('text/html', '') for d, m in r.displays)}))",
    "plt.plot([1, 2])\nplt.show()",  # the notebook's own figure still shows in its cell
]


@pytest.mark.kernel
def test_a_tasks_table_and_figure_stay_out_of_the_cells_in_a_real_kernel(kernel_name):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("matplotlib")
    pytest.importorskip("pandas")
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in KERNEL_CELLS]
    NotebookClient(nb, kernel_name=kernel_name, timeout=120,
                   resources={"metadata": {"path": os.getcwd()}}).execute()

    def rich(cell) -> list[str]:
        return [mime for out in cell.outputs for mime in out.get("data", {})
                if "codomyrmex" not in out.get("metadata", {})  # the DAG's own picture
                and (mime == "image/png" or "TASKCOL" in str(out["data"].get(mime, "")))]

    def text(cell) -> str:
        return "".join(out.get("text", "") for out in cell.outputs)

    *cells, report, own = nb.cells
    for cell in cells:
        assert rich(cell) == [], cell.source
        assert "TASK-" not in text(cell)
    assert text(nb.cells[3]).splitlines() == [f"later {i}" for i in range(8)]
    kept = json.loads(text(report))
    assert kept["data"] == "done" and kept["logs"] == "TASK-PRINT\n"
    assert ["image/png", "text/plain"] in kept["kinds"]
    assert ["text/html", "text/plain"] in kept["kinds"] and kept["html"]
    assert rich(own) == ["image/png"]
