"""The live view in a real ipykernel: updates made on the view thread reach the front end.

ipykernel 7 changed how messages from background threads are routed
(ipykernel #1451, ipywidgets #4001). nbclient plays the front end here: it
records every widget state update that arrives on iopub, so the stored
widget state shows whether the view thread's updates got out of the kernel.
"""

from __future__ import annotations

import nbformat
import pytest

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from nbclient import NotebookClient  # noqa: E402

from codomyrmex_nb.palette import fill  # noqa: E402

pytestmark = [pytest.mark.kernel, pytest.mark.needs_dot]

CELLS = [
    """
import threading, time
from IPython.display import display
from codomyrmex_nb import TaskOrchestrator, Task, live_view
orch = TaskOrchestrator(max_workers=2)
orch.add_tasks([Task(name=f"t{i}", func=lambda: time.sleep(0.02),
                     dependencies=[f"t{i - 1}"] if i % 4 else []) for i in range(12)])
view = live_view(orch)
display(view)
""",
    """
drawn = []
orig = view._frame
def spy(*args, **kwargs):
    drawn.append(threading.current_thread().name)
    return orig(*args, **kwargs)
view._frame = spy
orch.start_execution()
assert orch.wait_for_completion(60)
assert view.flush(30)
assert drawn and all(name.startswith("codo-view") for name in drawn), drawn
print("frames from", sorted(set(drawn)), view.summary())
""",
    """
orch.stop_execution()
view.thread.join(30) if view.thread else None
assert view.thread is None
print(view.summary())
""",
]


def _run_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.strip()) for src in CELLS]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True)
    client.execute()
    return nb


def test_view_thread_updates_reach_the_front_end():
    nb = _run_notebook()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            assert out.get("name") != "stderr", out.get("text")
    widget, static = nb.cells[0].outputs[:2]
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    assert "frames from ['codo-view-" in nb.cells[1].outputs[0]["text"]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    views = [m["state"] for m in state.values() if m["state"].get("_model_name") == "AnyModel"]
    assert len(views) == 1  # set on the view thread only
    view = views[0]
    assert view["picture"].count(f'fill="{fill("completed")}"') >= 12
    assert "<b>12/12</b> done" in view["head"]
    # The static copy beside the widget was updated in place when the run settled: a saved
    # notebook (and nbconvert's HTML) shows the final DAG, not the first frame.
    assert set(static["data"]) >= {"text/html", "text/plain"}
    assert "12/12 done" in static["data"]["text/plain"], static["data"]["text/plain"]
    assert "<b>12/12</b> done" in static["data"]["text/html"]
    assert static["data"]["text/html"].count(f'fill="{fill("completed")}"') >= 12
    picture = nb.cells[0].outputs[2]  # and its picture, for renderers that drop inline SVG
    assert "image/png" in picture["data"] and "12/12 done" in picture["data"]["text/plain"]
