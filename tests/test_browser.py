"""End to end: notebooks in a real JupyterLab, driven in a real Chromium.

A JupyterLab server starts on 127.0.0.1 (free port, token, a temporary root
holding a copy of ``notebooks/01_quickstart.ipynb`` and of the package it
analyses, a side-panel notebook made here, and the README's "In a notebook"
example as written) with throwaway Jupyter config, data, runtime and settings
folders. Playwright drives Debian's ``/usr/bin/chromium`` (never ``playwright
install``). A sampler in the page records every live node's computed fill every
50 ms (the view recolours through CSS, so the ``fill`` attribute alone would not
show it). The tests check that

- quickstart, Run All: the live DAG appears, recolours while the engine runs and
  ends green; the stats table renders and no cell failed;
- quickstart uses ``%codo_run --side``: the DAG is in the side panel, the cell says so;
- ``live_view(orch, side=True)``, Run All: the DAG sits in the notebook's side panel
  that stays in sight (and recolours) while Run All scrolls the notebook to its
  end; a click on the failed node shows its error message and captured output; the
  panel is as wide as its drawing needs, the notebook narrows beside it, no scroll box
  holds the drawing, and the panel goes and comes back with its notebook's tab;
- the same in Notebook 7: the panel shows there, or the view is inline and live with
  one line saying why (never a claim with no panel);
- a kernel restarted from the menu: the view says it lost its kernel, and nothing
  counts on as if a task still ran;
- the README example, Run All, saved, the kernel shut down and the notebook
  opened again: the saved output shows the final coloured DAG and "3/3 done"
  (not the first frame), and in the dark theme dark shades on no white box; a copy
  someone else opens (untrusted: no styles, no inline SVG) shows the DAG as a PNG
  picture and the summary as one clean line;
- a mapped task of 20 items, one failed: one node with its counts and bar; a click
  lists the items, the failed one first, and a click on it shows its own error;
- ``jupyter nbconvert --execute --to html`` of the README example: the HTML shows
  the final coloured DAG and summary.

Screenshots go to ``test-artifacts/``; with ``CODO_UPDATE_SCREENSHOT=1`` the
finished quickstart DAG and the side panel with a failed node's details are
also copied to ``notebooks/img/`` (``live-dag.png``, ``side-panel.png``, ``map-node.png``), the
README's pictures. Every wait is on a condition, with generous timeouts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from codomyrmex_nb.palette import DARK, fill

pytestmark = [pytest.mark.browser, pytest.mark.needs_dot]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"
README = ROOT / "README.md"
ARTIFACTS = ROOT / "test-artifacts"
README_PICTURE = ROOT / "notebooks" / "img" / "live-dag.png"
SIDE_PICTURE = ROOT / "notebooks" / "img" / "side-panel.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TASKS = ("setup", "fetch_sources", "analyze", "visualize")
SIDE_TASKS = ("prepare", "load_0", "load_1", "load_2", "flaky", "report")
README_TASKS = ("load", "clean", "by_region")
MINUTE = 60_000  # playwright timeouts are in milliseconds
LIVE = ".codo-view svg g.node"           # nodes of a live view (the widget)
SIDE = ".codo-side-panel .codo-view"    # a live view in its notebook's side panel
STATIC = ".codo-static"                  # the static copy a saved notebook keeps
PNG_OUTPUT = ".jp-OutputArea-output[data-mime-type='image/png']"  # the copy's picture


def _rgb(hex_colour: str) -> str:
    """``#90ee90`` as a browser's computed style writes it: ``rgb(144, 238, 144)``."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


RUNNING, COMPLETED, FAILED = _rgb(fill("running")), _rgb(fill("completed")), _rgb(fill("failed"))

# Installed once in the page: every 50 ms, each live node's name (the first line of its hover
# text) and computed fill; and, per tick, whether the side panel's DAG was in sight while the
# notebook was scrolled away from its top.
SAMPLER = """
selector => {
  if (window.__codo) return;
  const codo = window.__codo = {samples: {}, ticks: 0, sideInSight: 0, scrolled: 0, both: []};
  const read = () => {
    codo.ticks += 1;
    for (const node of document.querySelectorAll(selector)) {
      const title = node.querySelector('title');
      const shape = node.querySelector('path, polygon, ellipse');
      if (!title || !shape) continue;
      const name = title.textContent.split('\\n')[0];
      const colour = getComputedStyle(shape).fill;
      const seen = codo.samples[name] || (codo.samples[name] = []);
      if (seen[seen.length - 1] !== colour) seen.push(colour);
    }
    const side = document.querySelector('.codo-side-panel .codo-view svg');
    const scroller = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
    const scrolled = scroller !== null && scroller.scrollTop > 300;
    let inSight = false;
    if (side) {
      const r = side.getBoundingClientRect();
      inSight = r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0
          && r.bottom <= innerHeight + 1 && r.right <= innerWidth + 1;
    }
    if (scrolled) codo.scrolled += 1;
    if (inSight) codo.sideInSight += 1;
    if (scrolled && inSight) {
      const running = [...document.querySelectorAll('.codo-side-panel ' + 'svg g.node')]
          .filter(n => getComputedStyle(n.querySelector('path')).fill === window.__codoRunning)
          .map(n => n.querySelector('title').textContent.split('\\n')[0]);
      if (running.length) codo.both.push(running);
    }
  };
  read();
  codo.timer = setInterval(read, 50);
}
"""

FILLS = """
selector => {
  const fills = {};
  for (const node of document.querySelectorAll(selector)) {
    const title = node.querySelector('title');
    if (!title) continue;
    fills[title.textContent.split('\\n')[0]] =
        getComputedStyle(node.querySelector('path, polygon, ellipse')).fill;
  }
  return fills;
}
"""

CELLS_DONE = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const prompts = [...(panel || document).querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
  return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}
"""

KERNEL_READY = """
async token => {
  const reply = await fetch('/api/kernels', {headers: {Authorization: 'token ' + token}});
  const kernels = reply.ok ? await reply.json() : [];
  return kernels.length === 1 && kernels[0].execution_state === 'idle'
      && kernels[0].connections > 0;
}
"""

FRONTEND_IDLE = """
() => {
  const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const bar = document.querySelector('#jp-main-statusbar');
  return status !== null && status.dataset.status === 'idle'
      && bar !== null && /\\| Idle/.test(bar.textContent);
}
"""

FIRST_CELL_STARTED = """
() => /\\[(\\*|\\d+)\\]/.test(
    document.querySelector('.jp-CodeCell .jp-InputPrompt')?.textContent || '')
"""

STATS_TABLE = """
() => [...document.querySelectorAll('.jp-OutputArea-output table')].some(
    t => t.textContent.includes('total_tasks') && t.textContent.includes('critical_path'))
"""

# A notebook made for the side panel: a DAG with a shared lock and a failing task that prints,
# the view opened in the side panel, then long outputs so that Run All scrolls far down while
# the tasks run, and a last cell that waits for them.
SIDE_CELLS = [
    """
import time
from codomyrmex_nb import TaskOrchestrator, TaskResource, ResourceType, live_view

orch = TaskOrchestrator(max_workers=3)
db = [TaskResource(type=ResourceType.CPU, identifier="db", mode="write")]

def slow(seconds):
    time.sleep(seconds)
    return seconds

def flaky():
    print("reading rows from input.csv")
    raise ValueError("bad row 42")

orch.create_task("prepare", func=slow, parameters={"seconds": 1.0})
for i in range(3):
    orch.create_task(f"load_{i}", func=slow, parameters={"seconds": 0.8},
                     dependencies=["prepare"], resources=db)
orch.create_task("flaky", func=flaky, dependencies=["prepare"])
orch.create_task("report", func=slow, parameters={"seconds": 0.3},
                 dependencies=["load_0", "load_1", "load_2"])
view = live_view(orch, side=True)
view
""",
    "orch.start_execution()",
    *[f'print("\\n".join(f"filler {n}.{{i}}" for i in range(30)))' for n in range(8)],
    "assert not orch.wait_for_completion(60)  # flaky fails\nprint('all ended')",
]


# A task that prints a line every 0.1 s for a minute, the live view inline, the run started;
# the kernel is idle while the task runs (clicks are answered at once).
RUNNING_CELLS = [
    """
import time
from codomyrmex_nb import TaskOrchestrator, live_view

orch = TaskOrchestrator(max_workers=2)

def chatty():
    for i in range(600):
        print(f"chatty line {i}", flush=True)
        time.sleep(0.1)

orch.create_task("chatty", func=chatty)
live_view(orch)
""",
    "orch.start_execution()",
]

MAP_CELLS = [
    """
import time
from codomyrmex_nb import TaskOrchestrator, live_view

orch = TaskOrchestrator(max_workers=2)

def measure(item):
    time.sleep(0.05)
    if item == 3:
        raise ValueError(f"bad item {item}")
    return item

orch.create_task("numbers", func=lambda: list(range(20)))
orch.create_task("measure", func=measure, map="numbers", tolerate=1)
orch.create_task("total", func=lambda upstream: sum(upstream["measure"]),
                 dependencies=["measure"])
live_view(orch)
""",
    "orch.start_execution()\nassert orch.wait_for_completion(60)",
]


# One item of a mapped task prints a line every 0.1 s for a minute; the view inline.
MAP_RUNNING_CELLS = [
    """
import time
from codomyrmex_nb import TaskOrchestrator, live_view

orch = TaskOrchestrator(max_workers=2)

def chatty_item(item):
    for i in range(600):
        print(f"item {item} line {i}", flush=True)
        time.sleep(0.1)

orch.create_task("parts", func=lambda: ["a"])
orch.create_task("talk", func=chatty_item, map="parts")
live_view(orch)
""",
    "orch.start_execution()",
]

def readme_notebook_cells() -> list[str]:
    """The ```python blocks of the README's "## In a notebook" section, as written."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## In a notebook\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "no python blocks in the README's In a notebook section"
    return [b.rstrip("\n") for b in blocks]


def _write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.strip("\n")) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nbformat.write(nb, path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _require_programs() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the browser test needs Debian's Chromium at {CHROMIUM}: "
                    "apt-get install chromium (or run `make system`)", pytrace=False)
    if shutil.which("dot") is None:
        pytest.fail("the browser test needs graphviz's `dot` program: apt-get install graphviz "
                    "(or run `make system`)", pytrace=False)


def _lab_root(base: Path) -> Path:
    """A root with the notebooks in ``notebooks/`` and the package the quickstart analyses."""
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOK, root / "notebooks" / NOTEBOOK.name)
    _write_notebook(root / "notebooks" / "side_panel.ipynb", SIDE_CELLS)
    _write_notebook(root / "notebooks" / "readme_example.ipynb", readme_notebook_cells())
    _write_notebook(root / "notebooks" / "running_task.ipynb", RUNNING_CELLS)
    _write_notebook(root / "notebooks" / "map_view.ipynb", MAP_CELLS)
    _write_notebook(root / "notebooks" / "map_running.ipynb", MAP_RUNNING_CELLS)
    shutil.copytree(ROOT / "codomyrmex_nb", root / "codomyrmex_nb",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _lab_env(base: Path) -> dict[str, str]:
    """Jupyter folders of our own: no user kernels, settings, workspaces or news pop-ups."""
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython"),
                     ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                     ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")):
        (base / sub).mkdir(exist_ok=True)
        env[var] = str(base / sub)
    notes = base / "settings" / "@jupyterlab" / "apputils-extension"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "notification.jupyterlab-settings").write_text(json.dumps(
        {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}))
    env.pop("JUPYTER_PATH", None)
    env["MPLBACKEND"] = "Agg"
    return env


def _wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> None:
    """Poll the server's status endpoint until it answers (fail fast if the server died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            proc.wait(0.25)  # a short wait on the process itself, not a blind sleep
        except subprocess.TimeoutExpired:
            pass
    pytest.fail(f"JupyterLab did not answer at {url} within {timeout}s:\n"
                f"{log.read_text()[-3000:]}")


def _api(base_url: str, token: str, path: str, method: str = "GET") -> object:
    request = urllib.request.Request(f"{base_url}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        body = reply.read()
    return json.loads(body) if body else None


def _shutdown_kernels(base_url: str, token: str) -> None:
    """End every session and kernel (a notebook opened later starts a fresh one)."""
    try:
        for session in _api(base_url, token, "/api/sessions"):  # type: ignore[union-attr]
            _api(base_url, token, f"/api/sessions/{session['id']}", "DELETE")
        for kernel in _api(base_url, token, "/api/kernels"):  # type: ignore[union-attr]
            _api(base_url, token, f"/api/kernels/{kernel['id']}", "DELETE")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass


def _stop(proc: subprocess.Popen, base_url: str, token: str) -> None:
    """Shut the server down cleanly (it stops its kernels), then make sure it is gone."""
    request = urllib.request.Request(f"{base_url}/api/shutdown", method="POST",
                                     headers={"Authorization": f"token {token}"})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab: yields (base URL, token, log path, root); shut down afterwards."""
    yield from _server(tmp_path_factory, "jupyterlab",
                       "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory):
    """A running Jupyter Notebook 7 (the same folders as ``lab``): yields the same tuple."""
    pytest.importorskip("notebook", minversion="7")
    yield from _server(tmp_path_factory, "notebook")


def _server(tmp_path_factory, module: str, *options: str):
    _require_programs()
    base = tmp_path_factory.mktemp(module)
    root, env = _lab_root(base), _lab_env(base)
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "jupyterlab.log"
    cmd = [sys.executable, "-m", module, "--no-browser",
           "--ServerApp.open_browser=False", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *options]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    base_url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(proc, f"{base_url}/api/status?token={token}", log)
        yield base_url, token, log, root
    finally:
        _stop(proc, base_url, token)


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _new_page(browser, width: int = 1000, height: int = 560):
    # Sized (and at 2x) for the README pictures: the DAG must read well.
    context = browser.new_context(viewport={"width": width, "height": height},
                                  device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(2 * MINUTE)
    return page


@pytest.fixture()
def lab_page(lab, browser):
    page = _new_page(browser)
    yield page
    _shutdown_kernels(lab[0], lab[1])


def _artifacts_on_failure(lab, page, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}-failure.png"), full_page=True)
    except Exception:  # the page may be gone; the log still helps
        pass
    shutil.copy(lab[2], ARTIFACTS / "jupyterlab.log")


@contextlib.contextmanager
def _kept_on_failure(lab, page, name: str):
    """A failure inside keeps its screenshot and the server's log; the kernels end either way."""
    try:
        yield
    except BaseException:
        _artifacts_on_failure(lab, page, name)
        raise
    finally:
        _shutdown_kernels(lab[0], lab[1])


def _open_notebook(page, lab, name: str) -> None:
    """Open ``notebooks/<name>`` and wait until its kernel is idle and the page knows it."""
    base_url, token = lab[0], lab[1]
    page.goto(f"{base_url}/lab/tree/notebooks/{name}?token={token}&reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell")
    # A Run All sent while the page is still connecting can leave every cell unrun.
    page.wait_for_function(KERNEL_READY, arg=token, polling=250, timeout=3 * MINUTE)
    page.wait_for_function(FRONTEND_IDLE, timeout=3 * MINUTE)
    page.keyboard.press("Control+b")  # hide the file browser: the notebook gets the width


def _run_all_cells(page) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(FIRST_CELL_STARTED, timeout=MINUTE)


def _open_in_notebook7(page, server, name: str) -> None:
    """Open ``notebooks/<name>`` in Notebook 7 and wait until its kernel is idle and the
    page knows it (a Run All sent earlier can be lost)."""
    base_url, token = server[0], server[1]
    page.goto(f"{base_url}/notebooks/notebooks/{name}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell")
    page.wait_for_function(KERNEL_READY, arg=token, polling=250, timeout=3 * MINUTE)
    page.wait_for_function("() => document.querySelector('.jp-Notebook-ExecutionIndicator')"
                           "?.dataset.status === 'idle'", timeout=3 * MINUTE)


def _run_all_until_started(page) -> None:
    """Run All, again if needed: one sent while Notebook 7's page still settles can be lost."""
    for attempt in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            page.wait_for_function(FIRST_CELL_STARTED, timeout=20_000)
            return
        except Exception:
            if attempt == 2:
                raise


def _no_failed_cells(page) -> None:
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_text_contents() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks


def _scroll_to_live_view(page) -> None:
    """Scroll the notebook so that the live view sits just below the toolbar."""
    page.locator(".jp-OutputArea-output:has(.codo-view svg g.node)").first.evaluate("""out => {
        out.scrollIntoView({block: 'start'});
        let box = out.parentElement;
        while (box && box.scrollHeight <= box.clientHeight) box = box.parentElement;
        if (box) box.scrollBy(0, -40);
    }""")


def _wait_for_names(page, selector: str, names) -> None:
    page.wait_for_function(
        "([sel, names]) => { const t = [...document.querySelectorAll(sel + ' title')]"
        ".map(x => x.textContent.split('\\n')[0]); return names.every(n => t.includes(n)); }",
        arg=[selector, list(names)], timeout=3 * MINUTE)


def _fills_are(page, selector: str, expected: dict[str, str]) -> None:
    page.wait_for_function(
        "([sel, want]) => { const got = (" + FILLS + ")(sel);"
        " return Object.entries(want).every(([n, c]) => got[n] === c); }",
        arg=[selector, expected], timeout=3 * MINUTE)


# -- quickstart: inline view, Run All ------------------------------------------------------
def test_quickstart_live_dag_in_jupyterlab(lab, lab_page):
    try:
        _check_quickstart(lab, lab_page)
    except BaseException:
        _artifacts_on_failure(lab, lab_page, "quickstart")
        raise


def _check_quickstart(lab, page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _open_notebook(page, lab, NOTEBOOK.name)
    page.evaluate(SAMPLER, LIVE)
    _run_all_cells(page)

    # The DAG SVG appears in the live view, in the side panel (%codo_run --side), with every
    # task of the example; the cell says so once it is there.
    _wait_for_names(page, f"{SIDE} svg g.node", TASKS)
    page.locator(".codo-where", has_text="The live DAG is in the side panel").wait_for(
        state="attached", timeout=MINUTE)

    # Some node is drawn in the running colour while the engine works (fetch_sources takes
    # 2.5 s), and later every node is green.
    page.wait_for_function("running => Object.values(window.__codo.samples)"
                           ".some(seen => seen.includes(running))", arg=RUNNING,
                           timeout=3 * MINUTE)
    page.screenshot(path=str(ARTIFACTS / "quickstart-running.png"))
    _fills_are(page, LIVE, {name: COMPLETED for name in TASKS})
    page.wait_for_function(  # ... and the sampler has seen it too (it reads every 50 ms)
        "([names, green]) => names.every(n => (window.__codo.samples[n] || []).at(-1) === green)",
        arg=[list(TASKS), COMPLETED], timeout=MINUTE)
    samples = page.evaluate("window.__codo.samples")
    for name in TASKS:
        assert samples.get(name, [])[-1:] == [COMPLETED], (name, samples)
    changed = [name for name in TASKS if len(samples[name]) >= 2]
    assert changed, f"no node changed colour while the engine ran: {samples}"
    assert RUNNING in samples["fetch_sources"], samples
    assert samples["fetch_sources"].index(RUNNING) < samples["fetch_sources"].index(COMPLETED)

    # Every cell ran, the stats table rendered, nothing failed.
    page.wait_for_function(CELLS_DONE, timeout=3 * MINUTE)
    page.wait_for_function(STATS_TABLE, timeout=MINUTE)
    _no_failed_cells(page)
    # (text_content, not inner_text: JupyterLab skips rendering cells scrolled out of view.)
    header = page.locator(".codo-view .codo-headbox").first
    assert f"{len(TASKS)}/{len(TASKS)} done" in header.text_content(), header.text_content()
    # While the live widget is on the page, its static copy (for saved notebooks) is hidden.
    assert page.locator(STATIC).count() >= 1 and not page.locator(STATIC).first.is_visible()

    page.locator(".jp-OutputArea-output:has(table)").last.evaluate(
        "out => out.scrollIntoView({block: 'end'})")
    page.screenshot(path=str(ARTIFACTS / "quickstart-finished.png"))  # the stats table
    picture = ARTIFACTS / "live-dag.png"  # the side panel stays in sight: no scrolling
    page.screenshot(path=str(picture))
    if os.environ.get("CODO_UPDATE_SCREENSHOT") == "1":
        shutil.copy(picture, README_PICTURE)


# -- the side panel: Run All keeps the DAG in sight; a click shows a failure -----------------
def test_side_panel_stays_in_sight_and_a_click_shows_the_failure(lab, browser):
    page = _new_page(browser, width=1280, height=720)
    with _kept_on_failure(lab, page, "side-panel"):
        _check_side_panel(lab, page)


def _check_side_panel(lab, page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _open_notebook(page, lab, "side_panel.ipynb")
    page.evaluate(f"window.__codoRunning = {json.dumps(RUNNING)}")
    page.evaluate(SAMPLER, f"{SIDE} svg g.node")
    _run_all_cells(page)
    _wait_for_names(page, f"{SIDE} svg g.node", SIDE_TASKS)

    # The lock tasks run one at a time: some node is seen running while the notebook has been
    # scrolled far down by Run All and the side panel's DAG is entirely in the viewport.
    page.wait_for_function("() => window.__codo.both.length > 0", timeout=3 * MINUTE)
    page.screenshot(path=str(ARTIFACTS / "side-panel-running.png"))
    final = {name: COMPLETED for name in SIDE_TASKS} | {"flaky": FAILED}
    _fills_are(page, f"{SIDE} svg g.node", final)
    page.wait_for_function(CELLS_DONE, timeout=3 * MINUTE)
    _no_failed_cells(page)
    samples = page.evaluate("window.__codo.samples")
    assert RUNNING in samples["load_1"] and samples["load_1"][-1] == COMPLETED, samples
    codo = page.evaluate("({both: window.__codo.both.length, scrolled: window.__codo.scrolled})")
    assert codo["both"] > 0 and codo["scrolled"] > 0, codo
    side_head = page.locator(f"{SIDE} .codo-headbox")
    n = len(SIDE_TASKS)  # 'flaky' failed: counted apart from the done ones
    assert f"{n - 1}/{n} done · 1 failed" in side_head.text_content(), side_head.text_content()
    # The cell keeps one line pointing to the panel, written by the front end once the panel
    # is there (and a hidden static copy for saved notebooks).
    where = page.locator(".codo-where")
    assert where.count() == 1
    assert where.first.text_content().startswith("The live DAG is in the side panel")
    assert not page.locator(STATIC).first.is_visible()

    # Hover text names the task and its error; a click opens its details beside the drawing.
    flaky = page.locator(f"{SIDE} svg g.node", has=page.locator("title", has_text="flaky"))
    assert "bad row 42" in flaky.locator("title").text_content()
    flaky.click()
    inspector = page.locator(f"{SIDE} .codo-inspect")
    inspector.locator(".codo-error", has_text="bad row 42").wait_for(timeout=MINUTE)
    inspector.locator(".codo-pre", has_text="reading rows from input.csv").first.wait_for(
        timeout=MINUTE)
    text = inspector.text_content()
    assert "ValueError" in text and "attempts" in text, text
    assert inspector.locator("button", has_text="Retry").is_enabled()
    page.screenshot(path=str(ARTIFACTS / "side-panel.png"))
    if os.environ.get("CODO_UPDATE_SCREENSHOT") == "1":
        shutil.copy(ARTIFACTS / "side-panel.png", SIDE_PICTURE)

    # A Retry clicked in this view: the cell's static copy (closed when the run ended) follows
    # the run it starts, and is redrawn in place when the retried task has ended again.
    page.evaluate("() => document.querySelectorAll('.codo-static').forEach(c => c.__old = 1)")
    inspector.locator("button", has_text="Retry").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.codo-static')].some(c => !c.__old)", timeout=MINUTE)

    # The panel is as wide as its drawing needs (not half the screen), the notebook narrows
    # beside it, and the drawing is in no scroll box of its own.
    sizes = page.evaluate(SIDE_SIZES)
    assert sizes["panel"] <= max(300, sizes["drawing"] + 40), sizes
    assert sizes["panel"] < 0.45 * sizes["notebook"], sizes
    assert sizes["cells_right"] <= sizes["panel_left"] + 1, sizes
    assert sizes["dag_hidden"] <= 1, sizes

    # Another notebook in front: the first one's DAG is not beside it; back again, it is.
    _open_second_notebook(page, "readme_example.ipynb")
    page.locator(".codo-side-panel").wait_for(state="hidden", timeout=MINUTE)
    assert not page.locator(f"{SIDE} svg").first.is_visible()
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="side_panel.ipynb").click()
    page.locator(".codo-side-panel").wait_for(state="visible", timeout=MINUTE)
    assert page.locator(f"{SIDE} svg").first.is_visible()

    # The same view where no side panel can be (an output view outside the notebook): inline,
    # live, with one line saying why; the notebook's panel stays.
    page.locator(".codo-where").first.click(button="right")
    page.locator(".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('Create New View for Cell Output'))"
                 ).click()
    linked = page.locator(".jp-LinkedOutputView")
    linked.locator(".codo-where", has_text="No side panel here (").wait_for(timeout=MINUTE)
    assert linked.locator(".codo-view svg g.node").first.is_visible()
    assert "inline" in linked.locator(".codo-where").first.text_content()


# The side panel's width, the drawing's natural width, the notebook's, and how much of the
# drawing is hidden in a scroll box of its own (its scroll height beyond its height).
SIDE_SIZES = """
() => {
  const panel = document.querySelector('.codo-side-panel');
  const nb = panel.parentElement;
  const dag = panel.querySelector('.codo-dag');
  const box = panel.getBoundingClientRect();
  return {panel: box.width, panel_left: box.left,
          drawing: dag.querySelector('svg').width.baseVal.value,
          notebook: nb.getBoundingClientRect().width,
          cells_right: nb.querySelector('.jp-NotebookPanel-notebook').getBoundingClientRect().right,
          dag_hidden: dag.scrollHeight - dag.clientHeight};
}
"""


def _open_second_notebook(page, name: str) -> None:
    """Open ``notebooks/<name>`` beside the current one, from the file browser."""
    page.keyboard.press("Control+b")  # the file browser again
    item = page.locator(".jp-DirListing-item", has_text=name)
    item.wait_for(timeout=MINUTE)
    item.dblclick()
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current", has_text=name).wait_for(
        timeout=MINUTE)
    page.keyboard.press("Control+b")


# -- Notebook 7: the side panel is there, or the view is inline and live, never a false claim ----
def test_notebook7_side_panel_or_inline_live_view_never_a_frozen_copy(notebook7, browser):
    page = _new_page(browser, width=1280, height=720)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    with _kept_on_failure(notebook7, page, "notebook7-side"):
        _open_in_notebook7(page, notebook7, "side_panel.ipynb")
        _run_all_until_started(page)
        # The live DAG (the widget, not a static copy) shows every task and recolours to the end.
        _wait_for_names(page, LIVE, SIDE_TASKS)
        final = {name: COMPLETED for name in SIDE_TASKS} | {"flaky": FAILED}
        _fills_are(page, LIVE, final)
        page.wait_for_function(CELLS_DONE, timeout=3 * MINUTE)
        where = page.locator(".codo-where").first.text_content()
        if where.startswith("The live DAG is in the side panel"):  # claimed: it is there
            assert page.locator(f"{SIDE} svg").first.is_visible()
        else:  # no panel: inline and live, with one line saying why
            assert where.startswith("No side panel here (") and page.locator(
                f".jp-OutputArea-output {LIVE}").first.is_visible(), where
        assert not any("Could not create a view" in text for text in console), console
        page.screenshot(path=str(ARTIFACTS / "notebook7-side.png"))


# -- a mapped task: one node with counts; a click lists its items, each opens -------------
def test_a_mapped_task_is_one_node_with_counts_and_its_items_open_from_a_click(lab, browser):
    page = _new_page(browser, width=1280, height=720)
    with _kept_on_failure(lab, page, "map-view"):
        _check_map_view(lab, page)


def _check_map_view(lab, page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _open_notebook(page, lab, "map_view.ipynb")
    _run_all_cells(page)
    page.wait_for_function(CELLS_DONE, timeout=3 * MINUTE)
    _no_failed_cells(page)
    _wait_for_names(page, LIVE, ["numbers", "measure", "total"])
    node = page.locator(LIVE, has=page.locator("title", has_text="measure"))
    page.wait_for_function(  # one node for 20 items, its counts drawn in the browser
        "sel => [...document.querySelectorAll(sel)].some(n => /measure\\s+\u00d720\\s+"
        "\u271319\\s+\u27171/.test(n.textContent.replace(/\\s+/g, ' ')))",
        arg=LIVE, timeout=MINUTE)
    assert page.locator(LIVE).count() == 3  # never a node per item
    page.screenshot(path=str(ARTIFACTS / "map-node.png"))

    # A click lists the items, the failed one first; a click on it shows its own error.
    node.click()
    inspector = page.locator(".codo-view .codo-inspect")
    items = inspector.locator("button.codo-item")
    items.first.wait_for(timeout=MINUTE)
    assert "measure[3]" in items.first.text_content(), items.first.text_content()
    assert items.count() == 20
    items.first.click()
    inspector.locator(".codo-error", has_text="bad item 3").first.wait_for(timeout=MINUTE)
    picture = ARTIFACTS / "map-item.png"
    page.locator(".jp-OutputArea-output:has(.codo-view svg g.node)").first.screenshot(
        path=str(picture))
    if os.environ.get("CODO_UPDATE_SCREENSHOT") == "1":
        shutil.copy(picture, ROOT / "notebooks" / "img" / "map-node.png")


def test_a_running_map_items_inspector_follows_its_output(lab, browser):
    page = _new_page(browser, width=1280, height=720)
    with _kept_on_failure(lab, page, "running-item"):
        _check_running_item(lab, page)


def _check_running_item(lab, page) -> None:
    _open_notebook(page, lab, "map_running.ipynb")
    _run_all_cells(page)
    _wait_for_names(page, LIVE, ["parts", "talk"])
    page.wait_for_function(CELLS_DONE, timeout=3 * MINUTE)
    node = page.locator(LIVE, has=page.locator("title", has_text="talk"))
    node.click()
    inspector = page.locator(".codo-view .codo-inspect")
    item = inspector.locator("button.codo-item")
    item.first.wait_for(timeout=MINUTE)
    item.first.click()  # the running item's own panel: its output so far, then more of it
    output = inspector.locator("pre.codo-tail", has_text="item a line")
    output.wait_for(timeout=MINUTE)
    found = re.findall(r"item a line (\d+)", output.text_content())
    line = int(found[-1]) if found else -1
    assert line >= 0, output.text_content()
    page.wait_for_function(  # more lines while it still runs (its panel then says "so far")
        "([sel, n]) => { const panel = document.querySelector('.codo-view .codo-inspect');"
        " const m = [...document.querySelector(sel).textContent"
        ".matchAll(/item a line (\\d+)/g)]; return panel.textContent.includes('output so far')"
        " && m.length && +m[m.length - 1][1] >= n + 5; }",
        arg=[".codo-view .codo-inspect pre.codo-tail", line], timeout=30_000)
    inspector.locator("button", has_text="Cancel").click()  # the item, and so the run, ends


# -- a running task: its time ticks, its output shows, a second click refreshes -----------
def test_running_task_inspector_ticks_shows_output_and_a_second_click_refreshes(lab, browser):
    page = _new_page(browser, width=1280, height=720)
    with _kept_on_failure(lab, page, "running-task"):
        _check_running_task(lab, page)


def _line_number(text: str) -> int:
    found = re.findall(r"chatty line (\d+)", text)
    return int(found[-1]) if found else -1


def _check_running_task(lab, page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    _open_notebook(page, lab, "running_task.ipynb")
    _run_all_cells(page)
    _wait_for_names(page, LIVE, ["chatty"])
    _fills_are(page, LIVE, {"chatty": RUNNING})
    page.wait_for_function(CELLS_DONE, timeout=3 * MINUTE)
    node = page.locator(LIVE, has=page.locator("title", has_text="chatty"))
    head = page.locator(".codo-view .codo-headbox .codo-elapsed").first

    # The header's elapsed time and the node's hover text count on in the browser.
    first = float(head.text_content().split()[0])
    page.wait_for_function(
        "([sel, t]) => parseFloat(document.querySelector(sel).textContent) >= t + 1.0",
        arg=[".codo-view .codo-headbox .codo-elapsed", first], timeout=MINUTE)
    assert "running for" in node.locator("title").text_content()
    assert re.fullmatch(r"\d+s", node.locator("tspan.s").text_content().strip())  # ▶ chatty 3s

    # A click: the inspector's running time ticks and its output grows while the task runs.
    node.click()
    inspector = page.locator(".codo-view .codo-inspect")
    tick = inspector.locator(".codo-tick")
    tick.wait_for(timeout=MINUTE)
    output = inspector.locator("pre.codo-tail")
    output.wait_for(timeout=MINUTE)
    seconds = tick.text_content()
    page.wait_for_function("([sel, s]) => document.querySelector(sel).textContent !== s",
                           arg=[".codo-view .codo-inspect .codo-tick", seconds], timeout=MINUTE)
    line = _line_number(output.text_content())
    assert line >= 0, output.text_content()
    page.wait_for_function(
        "([sel, n]) => { const m = [...document.querySelector(sel).textContent"
        ".matchAll(/chatty line (\\d+)/g)]; return m.length && +m[m.length - 1][1] >= n + 5; }",
        arg=[".codo-view .codo-inspect pre.codo-tail", line], timeout=MINUTE)
    # long output opens at its end
    assert output.evaluate("pre => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8")
    page.screenshot(path=str(ARTIFACTS / "running-task-inspector.png"))

    # A second click on the selected node: the details stay, refreshed, with their Cancel.
    node.click()
    cancel = inspector.locator("button", has_text="Cancel")
    cancel.wait_for(timeout=MINUTE)
    assert "details follow" not in inspector.text_content()
    page.wait_for_function(  # the kernel's answer has come and the panel still has Cancel
        "sel => { const b = [...document.querySelectorAll(sel)].find("
        "x => x.textContent === 'Cancel'); return b && !b.disabled; }",
        arg=".codo-view .codo-inspect button", timeout=MINUTE)
    assert cancel.is_enabled()

    # Cancel: the cancelled task's details keep what it printed.
    cancel.click()
    _fills_are(page, LIVE, {"chatty": _rgb(fill("cancelled"))})
    inspector.locator(".codo-pre", has_text="chatty line").first.wait_for(timeout=MINUTE)
    assert "output so far" not in inspector.text_content()


# -- a kernel restarted or shut down: the view says it lost its kernel ----------------------
@pytest.mark.parametrize(("command", "confirm", "name"), [
    ("Restart Kernel\u2026", True, "kernel-lost"),
    ("Shut Down Kernel", False, "kernel-shut-down"),  # no kernel after it: the toolbar
])                                                     # says "unknown"
def test_a_view_that_lost_its_kernel_says_so_and_shows_nothing_running(lab, browser, command,
                                                                       confirm, name):
    page = _new_page(browser, width=1280, height=720)
    with _kept_on_failure(lab, page, name):
        _open_notebook(page, lab, "running_task.ipynb")
        _run_all_cells(page)
        _lost_kernel_is_said(page, command, confirm, name)


def test_notebook7_a_view_whose_kernel_was_shut_down_says_so(notebook7, browser):
    """Notebook 7's page has the same execution indicator as JupyterLab's: a kernel shut down
    from its Kernel menu is told as lost there too."""
    page = _new_page(browser, width=1280, height=720)
    with _kept_on_failure(notebook7, page, "notebook7-kernel-shut-down"):
        _open_in_notebook7(page, notebook7, "running_task.ipynb")
        _run_all_until_started(page)
        _lost_kernel_is_said(page, "Shut Down Kernel", False, "notebook7-kernel-shut-down")


def _lost_kernel_is_said(page, command: str, confirm: bool, name: str) -> None:
    """The running notebook's kernel goes (``command`` from the Kernel menu): its view says
    it lost its kernel, greys its drawing and counts nothing on."""
    _wait_for_names(page, LIVE, ["chatty"])
    _fills_are(page, LIVE, {"chatty": RUNNING})
    page.wait_for_function(CELLS_DONE, timeout=3 * MINUTE)
    page.get_by_role("menuitem", name="Kernel", exact=True).click()
    page.locator(f".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('{command}'))").click()
    if confirm:
        page.locator(".jp-Dialog .jp-mod-accept").click()  # "Restart"
    note = page.locator(".codo-view .codo-lost-note")
    note.wait_for(state="visible", timeout=MINUTE)
    assert "lost its kernel" in note.text_content()
    view = page.locator(".codo-view").first
    assert view.evaluate("v => getComputedStyle(v.querySelector('.codo-dag')).filter")\
        .startswith("grayscale")
    # Nothing counts on as if the task still ran.
    elapsed = page.locator(".codo-view .codo-headbox .codo-elapsed").first.text_content()
    suffix = page.locator(LIVE, has=page.locator("title", has_text="chatty")).locator(
        "tspan.s").text_content()
    page.wait_for_timeout(1500)
    assert page.locator(".codo-view .codo-headbox .codo-elapsed").first.text_content() \
        == elapsed
    assert page.locator(LIVE, has=page.locator("title", has_text="chatty")).locator(
        "tspan.s").text_content() == suffix
    assert "running for" not in page.locator(LIVE).first.locator("title").text_content()
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


# -- the README example: saved, reopened ---------------------------------------------------
def test_readme_example_saved_and_reopened_shows_the_final_dag(lab, browser):
    page = _new_page(browser)
    with _kept_on_failure(lab, page, "readme-reopened"):
        _check_saved_and_reopened(lab, page, browser)


def _check_saved_and_reopened(lab, page, browser) -> None:
    root: Path = lab[3]
    path = root / "notebooks" / "readme_example.ipynb"
    _open_notebook(page, lab, path.name)
    _run_all_cells(page)
    page.wait_for_function(CELLS_DONE, timeout=3 * MINUTE)
    _fills_are(page, LIVE, {name: COMPLETED for name in README_TASKS})
    _no_failed_cells(page)
    page.keyboard.press("Control+s")
    # The saved outputs: the static copy was updated when the run settled (not the first frame).
    deadline = time.monotonic() + 60
    while True:
        saved = path.read_text(encoding="utf-8")
        if f"{len(README_TASKS)}/{len(README_TASKS)} done" in saved or time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    nb = nbformat.reads(saved, as_version=4)
    htmls = ["".join(out["data"]["text/html"]) for cell in nb.cells
             for out in cell.get("outputs", []) if "codo-static" in str(out.get("data", {}))]
    assert htmls, "no static copy in the saved notebook"
    assert "<b>3/3</b> done" in htmls[-1] and "0/0 done" not in htmls[-1]
    assert htmls[-1].count(f'fill="{fill("completed")}"') >= 3

    # Reopened later: no kernel has the widget any more; the static copy shows the final DAG.
    _shutdown_kernels(lab[0], lab[1])
    page.close()
    again = _new_page(browser)
    _open_notebook(again, lab, path.name)
    _fills_are(again, f"{STATIC} svg g.node", {name: COMPLETED for name in README_TASKS})
    copy = again.locator(STATIC).last
    copy.scroll_into_view_if_needed()
    assert copy.is_visible() and "3/3 done" in copy.inner_text(), copy.inner_text()
    for dead in ("Loading widget", "Error displaying widget"):  # the dead widget steps aside
        shown = again.locator(f".jp-OutputArea-output:has-text('{dead}')")
        assert shown.count() == 0 or not shown.first.is_visible(), dead
    # Trusted, the inline SVG shows (it follows the theme); its PNG twin steps aside.
    png = again.locator(PNG_OUTPUT)
    assert png.count() >= 1 and not png.first.is_visible()
    again.screenshot(path=str(ARTIFACTS / "readme-reopened.png"))

    # In JupyterLab's dark theme the DAG follows: dark shades on no white background.
    _theme(again, "JupyterLab Dark")
    try:
        again.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
        _fills_are(again, f"{STATIC} svg g.node",
                   {name: _rgb(DARK["completed"][0]) for name in README_TASKS})
        background = again.locator(f"{STATIC} svg g.graph > polygon").first
        assert background.count() == 0 or background.get_attribute("fill") in (
            "transparent", "none")
        again.wait_for_selector("#jupyterlab-splash", state="detached")
        again.screenshot(path=str(ARTIFACTS / "readme-dark.png"))
    finally:
        _theme(again, "JupyterLab Light")
        again.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'")

    # Someone else opens a copy (not trusted: its signature does not match). JupyterLab strips
    # the copy's <style> and inline SVG; the DAG still shows, as a picture, and the summary
    # as one clean line, with no claim about a side panel.
    _shutdown_kernels(lab[0], lab[1])
    again.close()
    nb = nbformat.read(path, as_version=4)
    nb.metadata["copied_by"] = "someone else"
    nbformat.write(nb, path.with_name("readme_untrusted.ipynb"))
    other = _new_page(browser)
    _open_notebook(other, lab, "readme_untrusted.ipynb")
    picture = other.locator(PNG_OUTPUT + " img").last
    picture.wait_for(timeout=MINUTE)
    picture.scroll_into_view_if_needed()
    assert picture.is_visible()
    assert picture.evaluate("img => img.complete && img.naturalWidth > 100 && img.naturalHeight > 20")
    line = other.locator(".jp-OutputArea-output[data-mime-type='text/html']",
                         has_text="3/3 done").last
    text = line.inner_text().strip()
    assert text.startswith("3/3 done") and "\n" not in text, text
    assert "by_region" not in text  # no node labels run on from a stripped SVG
    outputs = " ".join(other.locator(".jp-OutputArea-output").all_inner_texts())
    assert "side panel" not in outputs, outputs
    other.screenshot(path=str(ARTIFACTS / "readme-untrusted.png"))


def _theme(page, name: str) -> None:
    page.get_by_role("menuitem", name="Settings", exact=True).click()
    page.locator(".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('Theme'))").hover()
    page.locator(f".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('{name}'))").click()


# -- the README example through nbconvert --------------------------------------------------
def test_nbconvert_execute_html_shows_the_final_dag(lab, browser, tmp_path):
    workdir = tmp_path / "nbconvert"
    workdir.mkdir()
    source = workdir / "readme_example.ipynb"
    _write_notebook(source, readme_notebook_cells())
    env = _lab_env(tmp_path)
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--execute", "--to",
                           "html", source.name], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    html = workdir / "readme_example.html"
    page = _new_page(browser)
    try:
        page.goto(html.as_uri())
        _fills_are(page, f"{STATIC} svg g.node", {name: COMPLETED for name in README_TASKS})
        copy = page.locator(STATIC).last
        assert copy.is_visible() and "3/3 done" in copy.inner_text(), copy.inner_text()
        page.screenshot(path=str(ARTIFACTS / "readme-nbconvert.png"), full_page=True)
    except BaseException:
        _artifacts_on_failure(lab, page, "nbconvert")
        raise
