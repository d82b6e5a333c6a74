"""Clicks answered while the main thread waits (core.waiting, notebook.busy_clicks), no kernel.

A helper thread plays ipykernel's shell-channel thread: it asks the view's comm
where a front-end message goes (``_reply_subshell_for``), as ipykernel 7.4 does
for every comm message, while the main thread (pytest's) sits in
``wait_for_completion``. The real kernel and browser are in
``test_busy_clicks_kernel.py`` and ``test_browser_busy.py``.
"""

from __future__ import annotations

import threading
import time

import pytest

from codomyrmex_nb import Task
from codomyrmex_nb.core import waiting
from codomyrmex_nb.notebook import busy_clicks


@pytest.fixture(autouse=True)
def chore_restored():
    saved = waiting._chore
    yield
    waiting.set_chore(saved)


def _after(seconds: float, action) -> threading.Thread:
    """Run ``action`` on another thread once ``seconds`` have passed."""
    done = threading.Event()
    thread = threading.Thread(target=lambda: (done.wait(seconds), action()), daemon=True)
    thread.start()
    return thread


def _gated(orch) -> tuple[threading.Event, str]:
    gate = threading.Event()
    task = orch.add_task(Task(name="slow", func=lambda: gate.wait(30)))
    orch.start_execution()
    return gate, task


def test_a_poke_runs_the_chore_in_the_waiting_thread_outside_the_engine_lock(orch):
    gate, task = _gated(orch)
    ran: list[tuple[str, str, float]] = []

    def chore() -> None:  # takes the engine lock: would deadlock if run under it
        status = orch.get_task(task).status.value
        ran.append((threading.current_thread().name, status, time.monotonic()))
        gate.set()

    waiting.set_chore(chore)
    poked = time.monotonic() + 0.3
    _after(0.3, waiting.poke)
    assert orch.wait_for_completion(10)
    assert len(ran) == 1, ran
    name, status, at = ran[0]
    assert name == threading.current_thread().name and status == "running"
    assert at - poked < 0.5


def test_a_failing_chore_does_not_end_the_wait(orch):
    gate, _ = _gated(orch)

    def chore() -> None:
        raise RuntimeError("broken chore")

    waiting.set_chore(chore)
    _after(0.2, waiting.poke)
    _after(0.6, gate.set)
    began = time.monotonic()
    assert orch.wait_for_completion(10)
    assert time.monotonic() - began >= 0.5  # waited for the task, not ended by the chore


def test_waiting_names_the_threads_inside_a_wait(orch):
    gate, _ = _gated(orch)
    seen: list[bool] = []
    main = threading.current_thread()
    _after(0.2, lambda: (seen.append(waiting.waiting(main)), gate.set()))
    assert not waiting.waiting(main)
    assert orch.wait_for_completion(10)
    assert seen == [True] and not waiting.waiting(main)


def _click(content: dict) -> dict:
    return {"method": "custom", "content": content}


@pytest.mark.needs_dot
def test_without_a_subshell_the_wait_answers_the_click_and_the_copy_is_dropped(orch, views):
    gate, task = _gated(orch)
    view = views(orch)
    route = view.comm._reply_subshell_for
    cancel = {"kind": "cancel", "task": task, "token": "tok-1"}
    routed: list[str | None] = []
    _after(0.3, lambda: routed.append(route(_click(cancel), None)))
    began = time.monotonic()
    orch.wait_for_completion(10)  # the clicked Cancel ends the wait
    assert time.monotonic() - began < 2
    assert routed == [None]  # still delivered to the main shell, as addressed
    assert orch.get_task(task).status.value == "cancelled"
    assert view.answer == 1
    # After the cell, the main shell receives the same message: it is not answered again.
    view._on_front_end_message(view, cancel, [])
    assert view.answer == 1
    gate.set()


@pytest.mark.needs_dot
def test_clicks_for_a_subshell_or_without_token_or_wait_are_left_to_their_shell(orch, views):
    gate, task = _gated(orch)
    view = views(orch)
    route = view.comm._reply_subshell_for
    select = {"kind": "select", "node": "", "token": "tok-2"}
    assert route(_click(select), None) is None  # no wait in progress: the main shell answers
    results: list[str | None] = []

    def during_wait() -> None:
        results.append(route(_click(select | {"token": "tok-3"}), "sub-1"))  # to a subshell
        results.append(route(_click({"kind": "select", "node": ""}), None))  # no token
        results.append(route("not a dict", None))
        gate.set()

    _after(0.3, during_wait)
    assert orch.wait_for_completion(10)
    assert results == ["sub-1", None, None]
    assert view.answer == 0  # none of them was answered by the wait
    for content in (select, select | {"token": "tok-3"}, {"kind": "select", "node": ""}):
        view._on_front_end_message(view, content, [])  # each answered by its own shell
    assert view.answer == 3


@pytest.mark.needs_dot
def test_a_click_handed_to_a_wait_that_ended_first_is_answered_once_by_the_main_shell(
        orch, views):
    gate, task = _gated(orch)
    view = views(orch)
    route = view.comm._reply_subshell_for
    select = {"kind": "select", "node": "", "token": "tok-4"}

    def late() -> None:  # the click arrives, the wait ends before its chore runs
        waiting.set_chore(None)
        route(_click(select), None)
        gate.set()

    _after(0.2, late)
    assert orch.wait_for_completion(10)
    assert "tok-4" in busy_clicks._early and view.answer == 0
    view._on_front_end_message(view, select, [])  # the main shell, after the cell
    assert view.answer == 1 and "tok-4" not in busy_clicks._early
    busy_clicks._answer_early()  # a later wait's chore finds nothing left to answer
    assert view.answer == 1
