"""Seeing inside a running task: its output so far, its running time, and an inspector that
never sticks (issue 19, items 1 and 3)."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import view_threads, wait_until_status

from codomyrmex_nb import TaskStatus as S
from codomyrmex_nb.core.capture import Capture
from codomyrmex_nb.notebook import live_inspector
from codomyrmex_nb.notebook.live_view import LiveView
from codomyrmex_nb.notebook.logs_view import logs_text


def talker(printed: threading.Event, gate: threading.Event, lines: tuple[str, ...] = ("one",),
           more: threading.Event | None = None, later: tuple[str, ...] = ()):
    """Prints ``lines``, says so, then (if asked) waits for ``more`` and prints ``later``;
    then waits for ``gate`` in short waits (an interrupt reaches it between two)."""
    for line in lines:
        print(line)
    printed.set()
    if more is not None:
        while not more.wait(0.02):
            pass
        for line in later:
            print(line)
        printed.set()
    while not gate.wait(0.02):
        pass
    return "done"


def changed(view: LiveView, trait: str, test, timeout: float = 15.0) -> bool:
    """Wait (on the trait's change notifications, no polling) until ``test(value)`` holds."""
    hit = threading.Event()

    def seen(change):
        if test(change["new"]):
            hit.set()

    view.observe(seen, trait)
    try:
        return test(getattr(view, trait)) or hit.wait(timeout)
    finally:
        view.unobserve(seen, trait)


# -- capture: a cheap, thread-safe read while the attempt runs ----------------------------------------
def test_peek_reads_a_running_capture_from_another_thread():
    box = Capture()
    started, go_on, done = threading.Event(), threading.Event(), threading.Event()
    seen: list[str] = []

    def attempt():
        with box:
            print("first line")
            print("x" * 50, end="")  # an unfinished line is part of what it said so far
            started.set()
            go_on.wait(10)
            print("\nsecond line")
        done.set()

    threading.Thread(target=attempt).start()
    assert started.wait(10)
    seen.append(box.peek())
    seen.append(box.peek(20))
    go_on.set()
    assert done.wait(10)
    assert seen[0] == "first line\n" + "x" * 50
    assert seen[1] == "x" * 20  # the tail only
    assert box.peek().endswith("second line\n") and box.peek(0) == ""
    assert Capture().peek() == ""  # nothing written yet


def test_peek_tail_of_a_capped_capture_matches_its_text():
    box = Capture(limit=100)
    for i in range(50):
        box.write(f"line {i}\n")
    text = box.text()
    assert "dropped here" in text
    for n in (1, 7, 30, 60, 99, 500):
        assert box.peek(n) == text[-n:]


def test_peek_while_another_thread_writes_never_breaks():
    box = Capture(limit=1000)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            box.write(f"{i}\r{i}\n")
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(2000):
            tail = box.peek(50)
            assert len(tail) <= 50
    finally:
        stop.set()
        thread.join()


# -- the engine: output so far, without its lock --------------------------------------------------------
@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_output_so_far_of_a_running_attempt(make, kind):
    orch = make(1)
    printed, gate = threading.Event(), threading.Event()
    if kind == "processes":  # events do not cross processes: the worker's file is read
        task = orch.create_task("talk", func=_process_talker, parameters={"seconds": 60})
    else:
        task = orch.create_task("talk", func=talker, parameters={
            "printed": printed, "gate": gate, "lines": ("alpha", "beta")})
    orch.start_execution()
    try:
        assert wait_until_status(orch, task, S.RUNNING, timeout=60)
        so_far = _wait_for_output(orch, task.id, "beta")
        assert so_far.text.endswith("alpha\nbeta\n") and so_far.attempt == 1
        assert abs(so_far.started_at - time.time()) < 60
        # no engine lock: another thread holding it does not stop the read
        with orch._engine.lock:
            box: list = []
            reader = threading.Thread(target=lambda: box.append(orch.output_so_far(task.id)))
            reader.start()
            reader.join(5)
            assert box and box[0].text.endswith("beta\n")
        assert orch.output_so_far(task.id, limit=5).text == "beta\n"
    finally:
        gate.set()
        if kind == "processes":
            orch.cancel_task(task.id)
    orch.wait_for_completion(60)
    assert orch.output_so_far(task.id) is None  # no longer running


def _process_talker(seconds):
    print("alpha")
    print("beta", flush=True)
    time.sleep(seconds)


def _say(text):
    print(text)


def _wait_for_output(orch, task_id, text, timeout=60.0):
    """The output so far once it holds ``text`` (a process worker writes on its own schedule:
    this reads again each 50 ms, as an inspector would, until it is there)."""
    deadline = time.monotonic() + timeout
    while True:
        so_far = orch.output_so_far(task_id)
        if so_far is not None and so_far.text and text in so_far.text:
            return so_far
        assert time.monotonic() < deadline, so_far
        threading.Event().wait(0.05)


def test_a_process_attempt_never_shows_the_previous_attempts_output(make_orch):
    orch = make_orch(1, executor="processes")
    first = orch.create_task("first", func=_say, parameters={"text": "from the first"})
    orch.start_execution()
    assert orch.wait_for_completion(60)
    second = orch.create_task("second", func=_process_talker, parameters={"seconds": 60},
                              dependencies=[first.id])
    try:
        assert wait_until_status(orch, second, S.RUNNING, timeout=60)
        so_far = orch.output_so_far(second.id)
        assert so_far is not None and "from the first" not in (so_far.text or "")
        assert "beta" in _wait_for_output(orch, second.id, "beta").text
    finally:
        orch.cancel_task(second.id)


def test_on_dask_the_inspector_says_output_arrives_when_the_attempt_ends(make_orch, dask_client,
                                                                          views):
    orch = make_orch(1, executor="dask", client=dask_client)
    task = orch.create_task("remote", func=_process_talker, parameters={"seconds": 60})
    view = views(orch, interval=0.01)
    orch.start_execution()
    try:
        assert wait_until_status(orch, task, S.RUNNING, timeout=60)
        so_far = orch.output_so_far(task.id)
        assert so_far.text is None and "arrives when the attempt ends" in so_far.note
        view.select(task.id)
        assert "output so far" in view.detail
        assert "its output arrives when the attempt ends" in view.detail
        assert "(running: its output arrives when the attempt ends" in logs_text(orch, "remote")
    finally:
        orch.cancel_task(task.id)
    orch.wait_for_completion(60)


# -- %codo_logs ---------------------------------------------------------------------------------------
def test_codo_logs_of_a_running_task_shows_its_output_so_far(ipython, capsys):
    from codomyrmex_nb.default import current_orchestrator

    orch = current_orchestrator()
    printed, gate = threading.Event(), threading.Event()
    orch.create_task("busy", func=talker, parameters={
        "printed": printed, "gate": gate, "lines": ("loading part 1", "loading part 2")})
    orch.start_execution()
    try:
        assert printed.wait(30)
        capsys.readouterr()
        ipython.run_line_magic("codo_logs", "busy")
        out = capsys.readouterr().out
        assert "busy · running" in out
        assert "loading part 1\nloading part 2\n(running: its output so far)" in out
        assert "its output is kept when the attempt ends" not in out
    finally:
        gate.set()
    assert orch.wait_for_completion(30)
    ipython.run_line_magic("codo_logs", "busy")
    assert "(running" not in capsys.readouterr().out


def _inspect_a_running_talker(orch, views) -> tuple[object, LiveView, threading.Event,
                                                        threading.Event, threading.Event]:
    """A talker that printed its first line and waits (``more`` prints the next, ``gate``
    ends it), selected in a view: (task, view, printed, more, gate)."""
    printed, more, gate = threading.Event(), threading.Event(), threading.Event()
    task = orch.create_task("worker", func=talker, parameters={
        "printed": printed, "gate": gate, "lines": ("step 1 of 3",), "more": more,
        "later": ("step 2 of 3",)})
    view = views(orch, interval=0.01)
    orch.start_execution()
    assert printed.wait(30) and view.flush(30)
    printed.clear()
    view.select(task.id)
    return task, view, printed, more, gate


# -- the inspector of a running task ------------------------------------------------------------------
@pytest.mark.needs_dot
def test_inspector_of_a_running_task_shows_its_start_and_output_and_follows_it(orch, views,
                                                                               monkeypatch):
    task, view, printed, more, gate = _inspect_a_running_talker(orch, views)
    try:
        detail = view.detail
        attempt = orch.snapshot().by_id()[task.id].attempts[-1]
        assert f'data-codo-since="{attempt.started_at:.3f}"' in detail  # the browser counts on
        assert "output so far" in detail and "step 1 of 3" in detail
        assert 'class="codo-pre codo-tail"' in detail  # opened at its end by the front end
        assert 'data-codo-action="cancel"' in detail
        # ticks: the header's run start and the running node's start, for the browser
        ticks = view.ticks
        assert ticks["run"] is not None and len(ticks["nodes"]) == 1
        assert abs(next(iter(ticks["nodes"].values())) - attempt.started_at) < 0.05
        assert 'class="codo-elapsed"' in view.head
        # the task prints more: the open inspector shows it, no click, no event needed
        reads = []
        real = orch.output_so_far
        monkeypatch.setattr(orch, "output_so_far", lambda *a, **k: reads.append(
            time.monotonic()) or real(*a, **k))
        more.set()
        assert printed.wait(30)
        assert changed(view, "detail", lambda d: "step 2 of 3" in d)
        assert "step 1 of 3" in view.detail
        # ... reading that output at most twice a second
        quiet = threading.Event()
        quiet.wait(1.6)
        assert 2 <= len(reads) <= 5, reads
        gaps = [b - a for a, b in zip(reads, reads[1:], strict=False)]
        assert all(g >= 0.45 for g in gaps), gaps
    finally:
        gate.set()
    assert orch.wait_for_completion(30) and view.flush(30)
    assert changed(view, "detail", lambda d: "<code>&#x27;done&#x27;</code>" in d)
    assert "output so far" not in view.detail and "step 2 of 3" in view.detail
    assert view.ticks["run"] is None and view.ticks["nodes"] == {}
    reads.clear()
    quiet.wait(1.0)
    assert reads == []  # nothing runs: nothing is read any more


@pytest.mark.needs_dot
def test_the_inspector_of_a_running_map_item_follows_its_output(orch, views):
    """An item's panel, opened while the item runs, shows what it prints next without a
    click, as a task's does; once the item ends its panel shows the ending."""
    printed, more, gate = threading.Event(), threading.Event(), threading.Event()

    def item_talker(item):
        return talker(printed, gate, (f"item {item}: step 1",), more, (f"item {item}: step 2",))

    orch.create_task("parts", func=lambda: ["a"])
    work = orch.create_task("work", func=item_talker, map="parts")
    view = views(orch, interval=0.01)
    orch.start_execution()
    try:
        assert printed.wait(30) and view.flush(30)
        printed.clear()
        view.select(f"{work.id}[0]")
        assert "output so far" in view.detail and "item a: step 1" in view.detail
        more.set()
        assert printed.wait(30)
        assert changed(view, "detail", lambda d: "item a: step 2" in d)
        assert "item a: step 1" in view.detail
    finally:
        gate.set()
    assert orch.wait_for_completion(30) and view.flush(30)
    assert changed(view, "detail", lambda d: "output so far" not in d and "completed" in d)


def _failing_reads(monkeypatch, orch, where: str, times: int | None) -> list[str]:
    """The next ``times`` (None: all) reads of a running attempt's output fail ``where``:
    in the capture, in the executor's ``peek``, or in the orchestrator's read itself."""
    from codomyrmex_nb.core.executors import ThreadExecutor

    owner, name = {"capture": (Capture, "peek"), "executor": (ThreadExecutor, "peek"),
                   "orchestrator": (orch, "output_so_far")}[where]
    original, fired = getattr(owner, name), []

    def flaky(*args, **kwargs):
        if times is None or len(fired) < times:
            fired.append(name)
            raise OSError(5, "a transient read error")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return fired


def follow(view: LiveView) -> list[str]:
    """Every panel the view sends from now on."""
    panels: list[str] = []
    view.observe(lambda change: panels.append(change["new"]), "detail")
    return panels


@pytest.mark.needs_dot
@pytest.mark.parametrize("where", ["capture", "executor", "orchestrator"])
def test_a_read_of_the_output_that_failed_once_is_tried_again_at_the_next_tick(
        orch, views, monkeypatch, where):
    """It was taken for the task's end: the panel stopped following the output (or showed
    'cannot be read now' in its place) until the task's next status event."""
    _task, view, printed, more, gate = _inspect_a_running_talker(orch, views)
    try:
        assert "step 1 of 3" in view.detail
        panels = follow(view)
        fired = _failing_reads(monkeypatch, orch, where, times=1)
        threading.Event().wait(1.2)  # the next read (within 0.5 s) fails; no event comes
        assert fired
        more.set()
        assert printed.wait(30)
        assert changed(view, "detail", lambda d: "step 2 of 3" in d, timeout=5)
        assert panels and all("step 1 of 3" in p for p in panels)  # the output stayed
        assert not any("cannot be read" in p or "unavailable" in p for p in panels)
    finally:
        gate.set()
    assert orch.wait_for_completion(30) and view.flush(30)
    assert changed(view, "detail", lambda d: "output so far" not in d and "done" in d)


@pytest.mark.needs_dot
def test_an_output_that_cannot_be_read_is_said_under_the_last_one_read_and_the_end_still_shows(
        orch, views, monkeypatch):
    printed, gate = threading.Event(), threading.Event()
    task = orch.create_task("worker", func=talker, parameters={
        "printed": printed, "gate": gate, "lines": ("step 1 of 3",)})
    view = views(orch, interval=0.01)
    orch.start_execution()
    try:
        assert printed.wait(30) and view.flush(30)
        view.select(task.id)
        fired = _failing_reads(monkeypatch, orch, "capture", times=None)
        assert changed(view, "detail", lambda d: "output unavailable" in d, timeout=5)
        assert "step 1 of 3" in view.detail  # the output read last stays, the line below it
        assert "output unavailable: OSError: [Errno 5] a transient read error" in view.detail
        reads = len(fired)
        assert reads == live_inspector.READ_TRIES
        threading.Event().wait(1.2)
        assert len(fired) == reads  # bounded: no more reads until the task's next event
    finally:
        gate.set()
    assert orch.wait_for_completion(30) and view.flush(30)  # its end still redraws the panel
    assert changed(view, "detail", lambda d: "<code>&#x27;done&#x27;</code>" in d)
    assert "unavailable" not in view.detail and "step 1 of 3" in view.detail


@pytest.mark.needs_dot
def test_after_a_retry_the_inspector_shows_the_new_attempt_not_the_cancelled_one(orch, views):
    printed, gate = threading.Event(), threading.Event()
    runs = []

    def twice():
        runs.append(1)
        print(f"attempt {len(runs)} speaking")
        printed.set()
        while not gate.wait(0.02):
            pass

    task = orch.create_task("twice", func=twice)
    view = views(orch, interval=0.01)
    orch.start_execution()
    try:
        assert printed.wait(30)
        printed.clear()
        view.select(task.id)
        view._on_front_end_message(view, {"kind": "cancel", "task": task.id}, [])
        assert wait_until_status(orch, task, S.CANCELLED)
        # the cancelled attempt's output shows once its thread has come back
        assert changed(view, "detail", lambda d: "attempt 1 speaking" in d and "cancel" in d)
        assert "last output line" not in view.detail
        view._on_front_end_message(view, {"kind": "retry", "task": task.id}, [])
        assert printed.wait(30) and view.flush(30)
        assert changed(view, "detail", lambda d: "attempt 2 speaking" in d)
        assert "attempt 1 speaking" not in view.detail
        assert "output so far (attempt 2)" in view.detail
        # the header counts the new run from its start (not 0.0 s, not frozen)
        second = orch.snapshot().by_id()[task.id].attempts[-1].started_at
        assert view.ticks["run"] is not None and abs(view.ticks["run"] - second) < 0.5
    finally:
        gate.set()
    orch.wait_for_completion(30)


@pytest.mark.needs_dot
def test_a_cancelled_tasks_inspector_shows_its_captured_output(orch, views):
    printed = threading.Event()

    def slow_to_stop():
        print("read 10 of 200 rows")
        printed.set()
        try:
            while True:
                time.sleep(0.02)
        finally:  # cleaning up after the interrupt: its output arrives after the status
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                time.sleep(0.02)

    task = orch.create_task("stopped", func=slow_to_stop)
    view = views(orch, interval=0.01)
    orch.start_execution()
    assert printed.wait(30) and view.flush(30)
    view.select(task.id)  # the panel is open when Cancel is clicked in it
    view._on_front_end_message(view, {"kind": "cancel", "task": task.id}, [])
    assert wait_until_status(orch, task, S.CANCELLED)
    assert "once its code has returned from the interrupt" in view.detail  # says so, ...
    # ... and shows the captured output once its thread has come back, without a click
    assert changed(view, "detail", lambda d: "read 10 of 200 rows" in d)
    assert "read 10 of 200 rows" in view.detail and "cancel" in view.detail
    assert "output so far" not in view.detail


# -- the inspector never sticks ------------------------------------------------------------------------
@pytest.mark.needs_dot
def test_a_second_click_on_the_selected_node_sends_its_details_again(orch, views):
    gate = threading.Event()
    task = orch.create_task("long", func=lambda: gate.wait(30))
    view = views(orch, interval=0.01)
    orch.start_execution()
    try:
        assert wait_until_status(orch, task, S.RUNNING) and view.flush(30)
        node = view._painter.node_of(task.id)
        sent: list[dict] = []
        real_send = view.send_state

        def record(key=None):
            sent.append({"key": key})
            return real_send(key)

        view.send_state = record
        view._on_front_end_message(view, {"kind": "select", "node": node}, [])
        first, answer = view.detail, view.answer
        view._on_front_end_message(view, {"kind": "select", "node": node}, [])
        # the reply changes ``answer``: the front end redraws the panel (Cancel included)
        assert view.answer == answer + 1 and view.selected == node
        assert 'data-codo-action="cancel"' in view.detail and "disabled" not in \
            view.detail.split('data-codo-action="cancel"')[1].split(">")[0]
        assert view.detail.split("<table")[0] == first.split("<table")[0]
    finally:
        gate.set()
    orch.wait_for_completion(30)


def test_the_front_end_redraws_the_panel_on_each_answer_and_keeps_it_on_a_second_click():
    from codomyrmex_nb.notebook.frontend import ESM

    assert '["change:answer", drawDetail]' in ESM
    # a click on the selected node with details open keeps them (no "details follow" text)
    assert 'node.id === model.get("selected") && model.get("detail")' in ESM


def inspect_a_talker(orch, views, gate: threading.Event) -> LiveView:
    """A view whose inspector is on a running ``talker`` that has printed (held until ``gate``)."""
    printed = threading.Event()
    task = orch.create_task("w", func=talker, parameters={"printed": printed, "gate": gate})
    view = views(orch, interval=0.01)
    orch.start_execution()
    assert printed.wait(30)
    view.select(task.id)
    return view


def test_no_view_thread_outlives_close_while_an_inspector_watches(orch, views):
    gate = threading.Event()
    try:
        view = inspect_a_talker(orch, views, gate)
        assert view.thread is not None  # it reads the output again while the task runs
        view.close()
        assert view_threads() == []
    finally:
        gate.set()


def test_the_inspector_thread_ends_with_stop_execution(orch, views):
    gate = threading.Event()
    try:
        thread = inspect_a_talker(orch, views, gate).thread
        assert thread is not None
        gate.set()
        orch.stop_execution()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        gate.set()

