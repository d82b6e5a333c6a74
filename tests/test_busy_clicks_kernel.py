"""Clicks on the live view while the kernel's main shell is busy, in a real ipykernel.

jupyter_client plays JupyterLab: it sends the widget's click messages as the
front end does, to a kernel subshell (``commsOverSubshells``, JupyterLab's
default) or, with that setting off, to the main shell; and it reads the
widget's updates on iopub. The first click during a busy cell must be answered
at once (busy_clicks); without a subshell, our own wait answers it but never
runs the next queued cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from typing import Any

import pytest

pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client")
from tests.test_capture_threads import child_env  # noqa: E402

pytestmark = [pytest.mark.kernel, pytest.mark.needs_dot]

SETUP = """
import threading, time
from IPython.display import display
from codomyrmex_nb import Task, live_view
from codomyrmex_nb.default import get_task_orchestrator
%load_ext codomyrmex_nb
orch = get_task_orchestrator(max_workers=2)  # the one the magics use
gate = threading.Event()
slow = orch.add_task(Task(name="slow", func=lambda: gate.wait(60)))
quick = orch.add_task(Task(name="quick", func=lambda: time.sleep(0.5)))
view = live_view(orch)
display(view)
print(view.comm.comm_id, slow, view._painter.node_of(slow))
"""


class Kernel:
    """A kernel and a client that records every iopub message with its arrival time."""

    def __init__(self, kernel_name: str, cwd: str) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name=kernel_name)
        self.km.start_kernel(env=child_env(), cwd=cwd)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    msg = self.kc.get_iopub_msg(timeout=0.2)
                except queue.Empty:
                    continue
                with self._lock:
                    self.messages.append((time.monotonic(), msg))
                    self._lock.notify_all()
        finally:  # the event loop jupyter_client made for this thread: closed with it
            with contextlib.suppress(RuntimeError):
                asyncio.get_event_loop_policy().get_event_loop().close()

    def wait_for(self, test, timeout: float) -> tuple[float, dict[str, Any]] | None:
        """The first message (from the start) that passes ``test``; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for item in self.messages:
                    if test(item[1]):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute ``code`` and return its stdout; fail on an error."""
        msg_id = self.kc.execute(code)
        idle = self.wait_for(lambda m: _is(m, msg_id, "status")
                             and m["content"]["execution_state"] == "idle", timeout)
        assert idle is not None, f"cell did not finish: {code}"
        with self._lock:
            mine = [m for _, m in self.messages if m["parent_header"].get("msg_id") == msg_id]
        for m in mine:
            assert m["msg_type"] != "error", m["content"]["traceback"]
        return "".join(m["content"]["text"] for m in mine
                       if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")

    def subshell(self) -> str:
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        reply = self.kc.control_channel.get_msg(timeout=10)
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply["content"]["subshell_id"]

    def click(self, comm_id: str, content: dict[str, Any], subshell: str | None) -> str:
        """Send one widget message as JupyterLab does; returns its msg_id."""
        data = {"method": "custom", "content": content}
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        if subshell is not None:
            msg["header"]["subshell_id"] = subshell
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def close(self) -> None:
        self._stop.set()
        self._reader.join(5)
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=True)
        self.km.cleanup_resources()


def _is(msg: dict[str, Any], parent: str, msg_type: str) -> bool:
    return msg["msg_type"] == msg_type and msg["parent_header"].get("msg_id") == parent


def _detail(comm_id: str, needle: str):
    """A test for a widget update whose inspector panel contains ``needle``."""
    def test(msg: dict[str, Any]) -> bool:
        if msg["msg_type"] != "comm_msg" or msg["content"].get("comm_id") != comm_id:
            return False
        state = msg["content"].get("data", {}).get("state", {})
        return needle in state.get("detail", "")
    return test


@pytest.fixture
def kernel(kernel_name, tmp_path):
    k = Kernel(kernel_name, str(tmp_path))
    yield k
    k.close()


def _setup(kernel: Kernel) -> tuple[str, str, str]:
    comm_id, slow, node = kernel.run(SETUP).split()
    return comm_id, slow, node


def _busy(kernel: Kernel, code: str) -> str:
    """Start ``code`` in a cell and return its msg_id once the kernel runs it."""
    msg_id = kernel.kc.execute(code)
    assert kernel.wait_for(lambda m: _is(m, msg_id, "execute_input"), 30)
    time.sleep(0.3)  # well inside the cell
    return msg_id


@pytest.mark.timeout(180)
def test_first_click_during_a_busy_cell_is_answered_on_the_subshell(kernel):
    comm_id, slow, node = _setup(kernel)
    kernel.run("orch.start_execution()")
    subshell = kernel.subshell()  # what JupyterLab opens for the widget comm target
    busy = _busy(kernel, "time.sleep(30)")
    sent = time.monotonic()
    kernel.click(comm_id, {"kind": "select", "node": node, "token": "t1"}, subshell)
    shown = kernel.wait_for(_detail(comm_id, "slow"), 5)
    assert shown is not None and shown[0] - sent < 1.0, "details waited for the busy cell"
    sent = time.monotonic()
    kernel.click(comm_id, {"kind": "cancel", "task": slow, "token": "t2"}, subshell)
    cancelled = kernel.wait_for(_detail(comm_id, "cancelled"), 5)
    assert cancelled is not None and cancelled[0] - sent < 1.0, "Cancel waited for the busy cell"
    kernel.km.interrupt_kernel()  # end the sleep
    assert kernel.wait_for(lambda m: _is(m, busy, "status")
                           and m["content"]["execution_state"] == "idle", 30)
    assert kernel.run("print(orch.get_task(slow).status.value, view.answer)").split() == \
        ["cancelled", "2"]


@pytest.mark.timeout(180)
def test_without_a_subshell_our_wait_answers_clicks_but_runs_no_queued_cell(kernel):
    comm_id, slow, node = _setup(kernel)
    kernel.run("orch.start_execution()")
    waiting = _busy(kernel, "%codo_wait")
    after = kernel.kc.execute("print('next cell')")  # queued behind the wait, as in Run All
    sent = time.monotonic()
    kernel.click(comm_id, {"kind": "select", "node": node, "token": "t1"}, None)
    shown = kernel.wait_for(_detail(comm_id, "slow"), 5)
    assert shown is not None and shown[0] - sent < 1.0, "details waited for %codo_wait"
    time.sleep(0.6)  # `quick` ends during the wait: the wait goes on
    sent = time.monotonic()
    kernel.click(comm_id, {"kind": "cancel", "task": slow, "token": "t2"}, None)
    cancelled = kernel.wait_for(_detail(comm_id, "cancelled"), 5)
    assert cancelled is not None and cancelled[0] - sent < 1.0, "Cancel waited for %codo_wait"
    done = kernel.wait_for(lambda m: _is(m, waiting, "status")
                           and m["content"]["execution_state"] == "idle", 5)
    assert done is not None, "the wait did not end when its task was cancelled"
    assert done[0] > cancelled[0]  # the clicks were answered while the wait went on
    # The queued cell ran only after the wait, never inside it.
    started = kernel.wait_for(lambda m: _is(m, after, "execute_input"), 10)
    assert started is not None and started[0] >= done[0]
    assert not [m for t, m in kernel.messages
                if t < done[0] and m["parent_header"].get("msg_id") == after]
    # Each click was answered once, though the main shell received it again after the wait.
    out = kernel.run("print(orch.get_task(slow).status.value, orch.get_task(quick).status.value,"
                     " view.answer)")
    assert out.split() == ["cancelled", "completed", "2"]
