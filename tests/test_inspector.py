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


def test_detail_of_an_unknown_task():
    from codomyrmex_nb import TaskOrchestrator

    assert "no longer" in detail_html(TaskOrchestrator(max_workers=1).snapshot(), "nope")
