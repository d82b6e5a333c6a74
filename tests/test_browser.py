"""End to end: the quickstart notebook in a real JupyterLab, driven in a real Chromium.

A JupyterLab server starts on 127.0.0.1 (free port, token, a temporary root
holding a copy of ``notebooks/01_quickstart.ipynb`` and of the package it
analyses) with throwaway Jupyter config, data, runtime and settings folders.
Playwright drives Debian's ``/usr/bin/chromium`` (never ``playwright install``):
open the notebook, Run > Run All Cells, then check in the page that

- the live view's DAG SVG appears;
- its nodes change colour while the engine runs (a sampler in the page records
  every node's computed fill every 50 ms: the view recolours through CSS, so
  the ``fill`` attribute alone would not show it) and all end green;
- the stats table renders and no cell failed.

Screenshots go to ``test-artifacts/`` (mid-run, the finished stats table, and
``live-dag.png``: the finished DAG); with ``CODO_UPDATE_SCREENSHOT=1`` the last is
also copied to ``notebooks/img/live-dag.png``, the README's picture.
Every wait is on a condition, with generous timeouts.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from codomyrmex_nb.palette import fill

pytestmark = [pytest.mark.browser, pytest.mark.needs_dot]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
README_PICTURE = ROOT / "notebooks" / "img" / "live-dag.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TASKS = ("setup", "fetch_sources", "analyze", "visualize")
MINUTE = 60_000  # playwright timeouts are in milliseconds


def _rgb(hex_colour: str) -> str:
    """``#90ee90`` as a browser's computed style writes it: ``rgb(144, 238, 144)``."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


RUNNING, COMPLETED = _rgb(fill("running")), _rgb(fill("completed"))

# Installed once in the page: every 50 ms, each live-view node's name and computed fill.
SAMPLER = """
() => {
  if (window.__codo) return;
  const codo = window.__codo = {samples: {}, ticks: 0};
  const read = () => {
    codo.ticks += 1;
    for (const node of document.querySelectorAll('.jp-OutputArea-output svg g.node')) {
      const text = node.querySelector('text');
      const shape = node.querySelector('path, polygon, ellipse');
      if (!text || !shape) continue;
      const label = text.textContent;
      const name = label.slice(label.indexOf(' ') + 1).trim();
      const colour = getComputedStyle(shape).fill;
      const seen = codo.samples[name] || (codo.samples[name] = []);
      if (seen[seen.length - 1] !== colour) seen.push(colour);
    }
  };
  read();
  codo.timer = setInterval(read, 50);
}
"""

ALL_GREEN = """
([names, green]) => {
  const nodes = [...document.querySelectorAll('.jp-OutputArea-output svg g.node')];
  const fills = {};
  for (const node of nodes) {
    const label = node.querySelector('text').textContent;
    fills[label.slice(label.indexOf(' ') + 1).trim()] =
        getComputedStyle(node.querySelector('path, polygon, ellipse')).fill;
  }
  return names.every(n => fills[n] === green);
}
"""

CELLS_DONE = """
() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
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
    """A root with the quickstart in ``notebooks/`` and the package it analyses beside it."""
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOK, root / "notebooks" / NOTEBOOK.name)
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
    notes.mkdir(parents=True)
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
    """A running JupyterLab: yields (base URL, token, log path); shut down afterwards."""
    _require_programs()
    base = tmp_path_factory.mktemp("lab")
    root, env = _lab_root(base), _lab_env(base)
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
           "--ServerApp.open_browser=False", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    base_url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(proc, f"{base_url}/api/status?token={token}", log)
        yield base_url, token, log
    finally:
        _stop(proc, base_url, token)


@pytest.fixture()
def lab_page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            # Sized (and at 2x) for the README picture: the DAG must read well.
            context = browser.new_context(viewport={"width": 1000, "height": 560},
                                          device_scale_factor=2)
            yield context.new_page()
        finally:
            browser.close()


def _run_all_cells(page) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def _scroll_to_live_view(page) -> None:
    """Scroll the notebook so that the live view sits just below the toolbar."""
    page.locator(".jp-OutputArea-output:has(svg g.node)").first.evaluate("""out => {
        out.scrollIntoView({block: 'start'});
        let box = out.parentElement;
        while (box && box.scrollHeight <= box.clientHeight) box = box.parentElement;
        if (box) box.scrollBy(0, -40);
    }""")


def test_quickstart_live_dag_in_jupyterlab(lab, lab_page):
    page = lab_page
    try:
        _check_quickstart(lab, page)
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "quickstart-failure.png"), full_page=True)
        shutil.copy(lab[2], ARTIFACTS / "jupyterlab.log")
        raise


def _check_quickstart(lab, page) -> None:
    base_url, token, log = lab
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_default_timeout(2 * MINUTE)
    page.goto(f"{base_url}/lab/tree/notebooks/{NOTEBOOK.name}?token={token}&reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell")
    # The notebook's kernel is up and the page knows it (status bar "| Idle") before Run All:
    # a Run All sent while the page is still connecting can leave every cell unrun.
    page.wait_for_function(KERNEL_READY, arg=token, polling=250, timeout=3 * MINUTE)
    page.wait_for_function(FRONTEND_IDLE, timeout=3 * MINUTE)
    page.keyboard.press("Control+b")  # hide the file browser: the notebook gets the width
    page.evaluate(SAMPLER)
    _run_all_cells(page)
    page.wait_for_function(FIRST_CELL_STARTED, timeout=MINUTE)

    # The DAG SVG appears in the live view's output, with every task of the example.
    page.wait_for_function(
        "names => { const t = [...document.querySelectorAll("
        "'.jp-OutputArea-output svg g.node text')].map(x => x.textContent);"
        " return names.every(n => t.some(s => s.endsWith(' ' + n))); }",
        arg=list(TASKS), timeout=3 * MINUTE)

    # Some node is drawn in the running colour while the engine works (fetch_sources takes
    # 2.5 s), and later every node is green.
    page.wait_for_function("running => Object.values(window.__codo.samples)"
                           ".some(seen => seen.includes(running))", arg=RUNNING,
                           timeout=3 * MINUTE)
    _scroll_to_live_view(page)
    page.screenshot(path=str(ARTIFACTS / "quickstart-running.png"))
    page.wait_for_function(ALL_GREEN, arg=[list(TASKS), COMPLETED], timeout=3 * MINUTE)
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
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_text_contents() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks
    # (text_content, not inner_text: JupyterLab skips rendering cells scrolled out of view.)
    header = page.locator(".jp-OutputArea-output:has(svg g.node) .widget-html").first
    assert f"{len(TASKS)}/{len(TASKS)} done" in header.text_content(), header.text_content()

    page.locator(".jp-OutputArea-output:has(table)").last.evaluate(
        "out => out.scrollIntoView({block: 'end'})")
    page.screenshot(path=str(ARTIFACTS / "quickstart-finished.png"))  # the stats table
    picture = ARTIFACTS / "live-dag.png"
    _scroll_to_live_view(page)
    page.screenshot(path=str(picture))
    if os.environ.get("CODO_UPDATE_SCREENSHOT") == "1":
        shutil.copy(picture, README_PICTURE)
