"""What a click on a node shows: details, tracebacks with user frames first, short reprs."""

from __future__ import annotations

import threading

from codomyrmex_nb import ResourceType, TaskResource
from codomyrmex_nb.notebook.inspector import PACKAGE_DIR, detail_html, short_repr, user_frames_first

ENGINE = f"{PACKAGE_DIR}/core/invoke.py"

TRACEBACK = f"""Traceback (most recent call last):
  File "{ENGINE}", line 134, in execute
    value = self.call()
            ^^^^^^^^^^^
  File "{PACKAGE_DIR}/core/engine.py", line 10, in call
    return fn()
  File "/tmp/ipykernel_1/123.py", line 5, in load
    raise ValueError("bad row 42")
ValueError: bad row 42"""


def test_engine_frames_before_the_user_code_are_folded():
    text, hidden = user_frames_first(TRACEBACK)
    assert hidden == 2
    assert text.splitlines() == [
        "Traceback (most recent call last):",
        '  File "/tmp/ipykernel_1/123.py", line 5, in load',
        '    raise ValueError("bad row 42")',
        "ValueError: bad row 42"]


def test_a_traceback_of_engine_frames_only_is_kept_whole():
    only = f'Traceback (most recent call last):\n  File "{ENGINE}", line 1, in x\n    y()\nKeyError: 1'
    assert user_frames_first(only) == (only, 0)


def test_chained_tracebacks_are_folded_block_by_block():
    chained = TRACEBACK + "\n\nDuring handling of the above exception, another exception " \
        "occurred:\n\n" + TRACEBACK.replace("ValueError", "KeyError")
    text, hidden = user_frames_first(chained)
    assert hidden == 4 and text.count("ipykernel_1/123.py") == 2 and PACKAGE_DIR not in text


def test_short_repr_summarises():
    import pandas as pd

    assert short_repr(pd.DataFrame({"a": range(5), "b": range(5)})) == "DataFrame 5\u00d72"
    assert short_repr(None) == "None"
    assert len(short_repr("x" * 10_000)) < 210
    assert short_repr(list(range(100))).endswith("...]")

    class Broken:
        def __repr__(self):
            raise RuntimeError("nope")

    assert "Broken" in short_repr(Broken())  # reprlib falls back; the panel never breaks


def test_detail_of_a_failed_task_has_its_message_output_traceback_and_buttons(orch):
    def bad():
        print("reading rows from input.csv")
        raise ValueError("bad row 42")

    orch.create_task("prep", func=lambda: None)
    task = orch.create_task("bad", func=bad, dependencies=["prep"])
    orch.start_execution()
    orch.wait_for_completion(30)
    html = detail_html(orch.snapshot(), task.id, orch.get_task_result(task))
    assert "bad row 42" in html and "ValueError" in html
    assert "reading rows from input.csv" in html  # the captured output of the attempt
    assert "engine frame" in html and f"{PACKAGE_DIR}/core" not in html.split("traceback")[-1]
    assert "prep" in html and "attempts" in html and "failed" in html
    retry = html.split('data-codo-action="retry"')[1].split(">")[0]
    cancel = html.split('data-codo-action="cancel"')[1].split(">")[0]
    assert "disabled" not in retry and "disabled" in cancel  # ended: retry yes, cancel no


def test_detail_of_a_completed_task_shows_its_result(orch):
    task = orch.create_task("answer", func=lambda: {"value": 42})
    orch.start_execution()
    orch.wait_for_completion(30)
    html = detail_html(orch.snapshot(), task.id, orch.get_task_result(task))
    assert "{&#x27;value&#x27;: 42}" in html and "traceback" not in html


def test_detail_of_a_task_waiting_for_a_lock_names_the_holder(orch):
    gate = threading.Event()
    db = [TaskResource(type=ResourceType.CPU, identifier="db", mode="write")]
    orch.create_task("holder", func=lambda: gate.wait(30), resources=db)
    waiter = orch.create_task("waiter", func=lambda: None, resources=db)
    orch.start_execution()
    try:
        import time

        deadline = time.monotonic() + 10
        while orch.snapshot().by_id()[waiter.id].blocked_on is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        html = detail_html(orch.snapshot(), waiter.id, None)
        assert "for lock <b>cpu:db</b> (held by holder)" in html
        assert "cpu:db (write)" in html
    finally:
        gate.set()
    orch.wait_for_completion(30)


def test_after_a_stop_an_interrupted_task_says_it_runs_at_the_next_start(orch, views):
    """A task a stop sent back to READY shows when its attempt ended (not "-> now", as if
    it still ran) and that it runs again when the engine starts; a task that ended keeps
    the retry note."""
    import time

    gate = threading.Event()

    def slow_body():
        while not gate.wait(0.02):  # short waits: the stop's interrupt lands between two
            pass

    slow = orch.create_task("slow", func=slow_body)
    done = orch.create_task("done", func=lambda: 1)
    orch.start_execution()
    try:
        deadline = time.monotonic() + 10
        while slow.status.value != "running" or done.status.value != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        orch.stop_execution()
    finally:
        gate.set()
    view = views(orch)
    view.select(slow.id)
    assert "\u2192 now" not in view.detail and "interrupted" in view.detail
    assert "this task runs when it starts again" in view.detail
    assert "Its attempt was interrupted when the engine stopped." in view.detail
    view.select(done.id)
    assert "a retried task waits for" in view.detail


def test_detail_of_an_unknown_task():
    from codomyrmex_nb import TaskOrchestrator

    assert "no longer" in detail_html(TaskOrchestrator(max_workers=1).snapshot(), "nope")


def test_detail_shows_the_rich_output_a_task_displayed(orch):
    from codomyrmex_nb.core import capture

    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

    def draw():
        box = capture.active()
        box.add_display({"image/png": png, "text/plain": "<Figure size 640x480 with 1 Axes>"})
        box.add_display({"text/html": "<table><tr><td>7</td></tr></table>", "text/plain": "frame"})
        box.add_display({"text/plain": "<b>not html</b>"})
        box.add_display({"image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg'/>"})
        return 1

    task = orch.create_task("draw", func=draw)
    orch.start_execution()
    orch.wait_for_completion(30)
    html = detail_html(orch.snapshot(), task.id, orch.get_task_result(task))
    section = html.split("display output", 1)[1]
    assert section.startswith(" (4) <span") and "the first 3 of 4" in section
    assert f'<img src="data:image/png;base64,{png}"' in section and "max-width:100%" in section
    assert '<iframe sandbox="" srcdoc="&lt;table&gt;&lt;tr&gt;&lt;td&gt;7' in section
    assert "&lt;b&gt;not html&lt;/b&gt;" in section and "<b>not html</b>" not in section
    assert "image/svg+xml" not in section  # the fourth is left out of the panel


def test_displays_html_takes_bytes_and_svg():
    from codomyrmex_nb.notebook.inspector import displays_html

    html = displays_html([({"image/png": b"\x89PNG"}, {}), ({"image/svg+xml": "<svg/>"}, {})])
    assert 'src="data:image/png;base64,iVBORw=="' in html
    assert 'src="data:image/svg+xml;base64,PHN2Zy8+"' in html
    assert displays_html(None) == "" and displays_html([]) == ""


def test_a_task_id_is_escaped_and_a_huge_error_is_bounded(orch):
    from codomyrmex_nb import Task

    def loud():
        raise ValueError("m" * 2_000_000)

    hostile = 'x"><img src=x onerror="window.__pwned=1">'
    task = Task(name="by_id", func=loud, id=hostile)
    orch.add_task(task)
    orch.start_execution()
    orch.wait_for_completion(30)
    html = detail_html(orch.snapshot(), task.id, orch.get_task_result(task))
    assert "<img" not in html and 'data-codo-task="x&quot;&gt;&lt;img' in html
    assert len(html) < 40_000  # the message and traceback are cut, not sent whole
    assert "\u2026" in html and "ValueError" in html
    assert '<span class="codo-title">' in html  # a long name wraps; the buttons stay visible


def test_terminal_colours_in_output_are_dropped_not_shown_raw(orch):
    task = orch.create_task("coloured", func=lambda: print("\x1b[31mRED\x1b[0m plain"))
    orch.start_execution()
    orch.wait_for_completion(30)
    html = detail_html(orch.snapshot(), task.id, orch.get_task_result(task))
    assert "RED plain" in html and "[31m" not in html and "\x1b" not in html


def test_a_task_waiting_for_its_given_up_attempt_says_so(make_orch):
    """Redefined while its body sat in a C call (which no interrupt reaches), the task is
    ready but held until that body returns: its details and its status line say why."""
    import time

    from codomyrmex_nb import TaskStatus
    from codomyrmex_nb.notebook.text_status import status_table

    orch = make_orch(2)
    began = threading.Event()

    def stuck():
        began.set()
        time.sleep(1.5)  # in C: the interrupt lands only once it returns
        return "old"

    task = orch.create_task("stuck", func=stuck)
    orch.start_execution()
    assert began.wait(10)
    orch.redefine("stuck", func=lambda: "new")
    snap = orch.snapshot()
    (view,) = [v for v in snap.tasks if v.name == "stuck"]
    assert view.state == "ready" and view.parked
    assert "for the code of its attempt given up on to return" in detail_html(snap, task.id)
    assert "waits for its attempt given up on to return" in status_table(snap)
    assert orch.wait_for_completion(10) and task.result.data == "new"
    assert task.status is TaskStatus.COMPLETED and not orch.snapshot().tasks[0].parked
