"""End to end: a click on the live DAG and its Cancel while a cell keeps the kernel busy.

In a real JupyterLab and Chromium (the server and browser of ``test_browser``):
during Run All the kernel's main shell sits in ``time.sleep(30)`` or in
``%codo_wait`` (a task finishing meanwhile); the first click on a running node
shows its details and its Cancel recolours the node, each within 1 s:

- with JupyterLab's default settings (widget messages go to a kernel subshell);
- with ``commsOverSubshells`` disabled (they go to the busy main shell, where
  ``%codo_wait`` answers the view's own clicks, never running the next cell).
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from codomyrmex_nb.palette import fill
from tests import test_browser as tb

pytestmark = [pytest.mark.browser, pytest.mark.needs_dot]

lab = tb.lab          # the same fixtures (a JupyterLab for this module, a Chromium)
browser = tb.browser
CANCELLED = tb._rgb(fill("cancelled"))
SETTINGS = "/lab/api/settings/@jupyterlab/apputils-extension:kernels-settings"

SETUP = """
import threading, time
from codomyrmex_nb import live_view
from codomyrmex_nb.default import get_task_orchestrator
%load_ext codomyrmex_nb

orch = get_task_orchestrator(max_workers=2)  # the orchestrator %codo_wait waits for
gate = threading.Event()
orch.create_task("slow", func=lambda: gate.wait(120))
orch.create_task("quick", func=lambda: time.sleep(2))
live_view(orch)
"""


def _cells(busy: str) -> list[str]:
    # The last cell says how many subshells the front end opened in the kernel.
    return [SETUP, "orch.start_execution()", busy,
            "subshells = get_ipython().kernel.shell_channel_thread.manager.list_subshell()\n"
            "print(f'after the busy cell, subshells: {len(subshells)}')"]


CELL_PROMPT_DONE = """
i => /\\[\\d+\\]/.test(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')[i]?.textContent || '')
"""

ANSWERED = """
sel => { const panel = document.querySelector(sel);
  if (!panel || panel.textContent.includes('details follow')) return false;
  const b = [...panel.querySelectorAll('button')].find(x => x.textContent === 'Cancel');
  return b !== undefined && !b.disabled; }
"""


def _comms_over_subshells(lab, value: str | None) -> None:
    """Set JupyterLab's ``commsOverSubshells`` (None: back to its default) for pages opened
    later."""
    raw = json.dumps({} if value is None else {"commsOverSubshells": value})
    request = urllib.request.Request(f"{lab[0]}{SETTINGS}", method="PUT",
                                     data=json.dumps({"raw": raw}).encode(),
                                     headers={"Authorization": f"token {lab[1]}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status in (200, 204), reply.status


def _timed(page, script: str, arg, what: str) -> float:
    """Seconds until ``script(arg)`` holds in the page (fails after 20 s, naming ``what``)."""
    began = time.monotonic()
    try:
        page.wait_for_function(script, arg=arg, polling=20, timeout=20_000)
    except Exception as exc:
        raise AssertionError(f"{what}: not within 20 s") from exc
    return time.monotonic() - began


def _check_click_and_cancel(lab, page, name: str, busy: str, subshells: bool = True) -> None:
    tb._write_notebook(lab[3] / "notebooks" / name, _cells(busy))
    tb._open_notebook(page, lab, name)
    tb._run_all_cells(page)
    tb._wait_for_names(page, tb.LIVE, ["slow", "quick"])
    page.wait_for_function(CELL_PROMPT_DONE, arg=1, timeout=tb.MINUTE)  # the busy cell runs
    if busy == "%codo_wait":  # a task ends during the wait, which goes on
        tb._fills_are(page, tb.LIVE, {"quick": tb.COMPLETED})
    tb._fills_are(page, tb.LIVE, {"slow": tb.RUNNING})
    assert not page.evaluate(CELL_PROMPT_DONE, 2), "the busy cell ended before the clicks"

    node = page.locator(tb.LIVE, has=page.locator("title", has_text="slow"))
    node.click()
    shown = _timed(page, ANSWERED, ".codo-view .codo-inspect", "the details of the first click")
    cancel = page.locator(".codo-view .codo-inspect button", has_text="Cancel")
    cancel.click()
    gone = _timed(page, "([sel, want]) => { const n = [...document.querySelectorAll(sel)].find("
                  "x => x.querySelector('title').textContent.split('\\n')[0] === 'slow');"
                  " return n && getComputedStyle(n.querySelector('path, polygon, ellipse'))"
                  ".fill === want; }", [tb.LIVE, CANCELLED], "Cancel")
    still_busy = not page.evaluate(CELL_PROMPT_DONE, 2)
    assert shown < 1.0 and gone < 1.0, f"details after {shown:.2f} s, cancelled after {gone:.2f} s"
    if busy == "time.sleep(30)":
        assert still_busy, "the sleep ended before the clicks were answered"
        return
    # The cancelled task ends the wait; the next cell runs after it, and nothing failed.
    page.wait_for_function(tb.CELLS_DONE, timeout=tb.MINUTE)
    tb._no_failed_cells(page)
    said = page.locator(".jp-OutputArea-output", has_text="after the busy cell")
    said.wait_for()
    assert ("subshells: 0" not in said.text_content()) == subshells, said.text_content()


@pytest.mark.parametrize("busy", ["time.sleep(30)", "%codo_wait"])
def test_first_click_and_cancel_while_a_cell_is_busy(lab, browser, busy):
    page = tb._new_page(browser, width=1280, height=720)
    name = "busy_sleep.ipynb" if busy.startswith("time") else "busy_wait.ipynb"
    with tb._kept_on_failure(lab, page, "busy-" + name.split(".")[0]):
        _check_click_and_cancel(lab, page, name, busy)


def test_click_and_cancel_during_codo_wait_without_subshells(lab, browser):
    _comms_over_subshells(lab, "disabled")
    page = tb._new_page(browser, width=1280, height=720)
    try:
        with tb._kept_on_failure(lab, page, "busy-no-subshells"):
            _check_click_and_cancel(lab, page, "busy_wait_no_subshells.ipynb", "%codo_wait",
                                    subshells=False)
    finally:
        _comms_over_subshells(lab, None)
