"""A newcomer's first hour (issue 21): the README's example shows its outcome, scripts
scale out without surprises, the package is ready to publish, the side-panel note and the
demo's chart tell the truth, and the demo leaves nothing behind.

Scripts run as real files in a fresh interpreter (this checkout first on the path), in
an empty temporary folder, as a user would run them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import mistune
import pytest

from tests.test_snippets import DOCUMENTS, _section, _tokens, code_blocks, run_in_kernel

ROOT = Path(__file__).resolve().parent.parent


def run_file(folder: Path, source: str, *args: str, env: dict | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``source`` as ``folder/script.py`` (or ``python -m`` when ``args`` say so)."""
    env = {**os.environ, **(env or {})}
    env.pop("CODOMYRMEX_JOURNAL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, *args]
    if source:
        (folder / "script.py").write_text(textwrap.dedent(source), encoding="utf-8")
        command.append("script.py")
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)


# -- item 1: the README's "In Python" example ----------------------------------------------------
def test_the_in_python_example_runs_in_an_empty_folder_and_says_what_happened(tmp_path):
    tokens = _section(_tokens(DOCUMENTS["README"].read_text(encoding="utf-8")), "In Python")
    example = next(b for b in code_blocks(tokens) if b.language == "python")
    done = run_file(tmp_path, example.source)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("all tasks completed; chart: "), done.stdout
    chart = Path(lines[-1].split("chart: ", 1)[1])
    assert chart.is_file() and chart.parent == tmp_path / "codo_outputs"
    for name in ("setup", "analyze", "visualize"):  # the per-task table printed above it
        assert re.search(rf"^\s*{name}\s+completed\b", done.stdout, re.M), done.stdout
    assert "retry" not in done.stderr.lower()


def test_every_wait_for_completion_in_the_docs_checks_its_result():
    """A bare ``orchestrator.wait_for_completion(...)`` line drops the True/False it returns."""
    for name, path in DOCUMENTS.items():
        for block in code_blocks(_tokens(path.read_text(encoding="utf-8"))):
            for line in block.source.splitlines():
                assert not re.match(r"\s*[\w.]+\.wait_for_completion\(", line), (
                    f"{name}: the result of {line.strip()!r} is not checked")


# -- item 3: scripts with processes or Dask, without the __main__ guard ------------------------
UNGUARDED = """
    import os
    from codomyrmex_nb import TaskOrchestrator

    print("body ran", __name__)

    class Point:
        def __init__(self, x):
            self.x = x

    def square(x):
        return Point(x * x)

    orchestrator = TaskOrchestrator(max_workers=2, executor="{executor}")
    tasks = [orchestrator.create_task(f"sq{{i}}", func=square, parameters={{"x": i}})
             for i in range(3)]
    orchestrator.start_execution()
    ok = orchestrator.wait_for_completion(timeout=60)
    for task in tasks:
        data = task.result.data
        print("RESULT", task.name, task.status.name, type(data) is Point and data.x)
    orchestrator.stop_execution()
    print("ok", ok)
"""


def test_a_processes_script_without_the_guard_runs_its_body_once(tmp_path):
    done = run_file(tmp_path, UNGUARDED.format(executor="processes"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out.count("body ran __main__") == 1 and not [x for x in out if "__mp_main__" in x]
    assert [x for x in out if x.startswith("RESULT")] == [
        "RESULT sq0 COMPLETED 0", "RESULT sq1 COMPLETED 1", "RESULT sq2 COMPLETED 4"]
    assert out[-1] == "ok True"


def test_a_dask_script_without_the_guard_fails_at_once_naming_the_guard(tmp_path):
    pytest.importorskip("distributed")
    done = run_file(tmp_path, UNGUARDED.format(executor="dask"), timeout=60)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: ") and 'if __name__ == "__main__":' in last, last
    source = textwrap.dedent(UNGUARDED).splitlines()
    line = source.index("orchestrator.start_execution()") + 1
    assert f"script.py, line {line}," in last  # where the script started it
    assert "Nanny failed" not in done.stderr and "RESULT" not in done.stdout


def test_the_guard_check_reads_where_the_script_is_running(tmp_path):
    """Unguarded body: flagged with its line; under the guard (directly or through a function
    it calls): not; a ``python -c`` program: never (spawn does not re-run it)."""
    done = run_file(tmp_path, """
        from codomyrmex_nb.core.script_guard import unguarded_line

        def check():
            return unguarded_line()

        print("body", unguarded_line())
        if "__main__" == __name__:
            print("guard", unguarded_line(), check())
    """)
    assert done.returncode == 0, done.stderr
    body, guard = done.stdout.splitlines()
    assert body.endswith("script.py', 7)") and guard == "guard None None"
    inline = run_file(tmp_path, "", "-c", "from codomyrmex_nb.core.script_guard import "
                      "unguarded_line; print(unguarded_line())")
    assert inline.stdout.strip() == "None", inline.stderr


# -- item 4: ready to publish ---------------------------------------------------------------------
def _links_and_images(markdown: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def walk(tokens: list[dict]) -> None:
        for token in tokens:
            if token["type"] in ("link", "image"):
                found.append((token["type"], token["attrs"]["url"]))
            walk(token.get("children") or [])

    walk(mistune.create_markdown(renderer=None)(markdown))
    found += [("image", m) for m in re.findall(r"<img\b[^>]*>", markdown, re.I)]
    found += [("link", m) for m in re.findall(r"<a\s[^>]*href=[\"']([^\"']+)", markdown, re.I)]
    return found


def test_the_reader_of_links_and_images_finds_them():
    assert _links_and_images("![x](img/a.png) [b](docs/b.md) [c](https://c.org) <img src=d>") \
        == [("image", "img/a.png"), ("link", "docs/b.md"), ("link", "https://c.org"),
            ("image", "<img src=d>")]


def test_the_wheel_carries_the_license_and_a_package_page_without_relative_links(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "LICENSE", "PYPI.md", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "codomyrmex_nb", source / "codomyrmex_nb",
                    ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                            "-q", "-w", str(tmp_path / "dist")],
                           capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("codomyrmex_nb-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        text = archive.read(licence).decode()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert text.startswith("MIT License") and "2026 the codomyrmex-nb authors" in text
    headers, _, description = metadata.decode().partition("\n\n")
    assert "License-Expression: MIT" in headers and "License-File: LICENSE" in headers
    assert "Description-Content-Type: text/markdown" in headers
    assert description.strip().startswith("# codomyrmex-nb")
    relative = [(kind, url) for kind, url in _links_and_images(description)
                if kind == "image" or not re.match(r"https?://", url)]
    assert relative == [], "the package page has images or links that only work on GitHub"
    assert len(description) < len((ROOT / "README.md").read_text(encoding="utf-8")) / 3


def test_no_reference_to_a_design_document_the_repo_does_not_contain():
    files = [*ROOT.glob("*.md"), *ROOT.glob("notebooks/*.md"), *ROOT.glob("benchmarks/*.md"),
             *ROOT.rglob("codomyrmex_nb/**/*.py"), *ROOT.glob("benchmarks/*.py"),
             *ROOT.glob("tests/*.py"), *ROOT.glob("notebooks/*.ipynb")]
    pattern = re.compile(r"\b(DESIGN\.md|design document|design doc)\b", re.I)
    needle = "DESIGN" + ".md"  # not spelled out here, or this file would name it
    offending = [f"{path.relative_to(ROOT)}: {m.group(0)}" for path in files
                 if path.name != Path(__file__).name
                 for m in pattern.finditer(path.read_text(encoding="utf-8"))
                 if not (m.group(0) == needle and (ROOT / needle).exists())]
    assert offending == []


def test_side_panels_only_where_jupyterlab_started_the_kernel(monkeypatch):
    from codomyrmex_nb.notebook import view_context

    monkeypatch.setattr(view_context, "has_widget_frontend", lambda: True)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not view_context.has_side_panels()  # nbconvert, nbclient, classic tools
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/analysis.ipynb")
    assert view_context.has_side_panels()  # JupyterLab, Notebook 7
    monkeypatch.setattr(view_context, "has_widget_frontend", lambda: False)
    assert not view_context.has_side_panels()  # a terminal, a script


@pytest.mark.kernel
def test_codo_run_side_under_nbclient_says_it_shows_the_view_inline(tmp_path, kernel_name,
                                                                    monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)  # as nbconvert starts a kernel
    nb = run_in_kernel(["%load_ext codomyrmex_nb",
                        "%%codo_task one\n1",
                        "%codo_run --side --wait"], tmp_path, kernel_name)
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    assert "no side panel" in out and "shows inline" in out, out
    assert "is in the side panel" not in out
    shown = [o for o in nb.cells[-1].outputs if o.output_type == "display_data"]
    assert any("codo-static" in o["data"].get("text/html", "") for o in shown)
    assert any("application/vnd.jupyter.widget-view+json" in o["data"] for o in shown)


def _bar_sizes(figure) -> list[float]:
    """Each drawn bar's area on the page, in pixels (bars of one chart share a thickness)."""
    from matplotlib.patches import Rectangle

    figure.canvas.draw()
    return [box.width * box.height for ax in figure.axes for patch in ax.patches
            if isinstance(patch, Rectangle) and patch.get_visible()
            for box in [patch.get_window_extent()]]


def test_a_chart_of_lines_and_an_average_shows_both(tmp_path, monkeypatch):
    """13,629 lines and an average of 4.0 on one linear axis: the 4.0 bar is 0.03% long."""
    from matplotlib.figure import Figure

    from codomyrmex_nb.actions.data_visualization import create_bar_chart

    saved = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig",
                        lambda self, *a, **k: (saved.append(self), original(self, *a, **k))[1])
    totals = {"lines": 13629, "files": 55, "average_complexity": 4.0, "syntax_errors": 0}
    result = create_bar_chart(totals, title="Code Quality", output_dir=tmp_path)
    assert Path(result["path"]).is_file() and result["values"] == list(totals.values())
    (figure,) = saved
    texts = {t.get_text() for ax in figure.axes for t in ax.texts}
    assert {"13629", "55", "4", "0"} <= texts  # every value is written on its bar
    sizes = [size for size in _bar_sizes(figure) if size > 0]  # the 0 has no bar
    assert len(sizes) == 3 and min(sizes) > 0.1 * max(sizes), sizes


def test_the_demo_leaves_no_temporary_folder_behind(tmp_path):
    temp, work = tmp_path / "tmp", tmp_path / "work"
    temp.mkdir()
    work.mkdir()
    done = run_file(work, "", "-m", "codomyrmex_nb.demo", env={"TMPDIR": str(temp)})
    assert done.returncode == 0, done.stderr
    assert list(temp.iterdir()) == []
    chart = Path(done.stdout.strip().splitlines()[-1].removeprefix("chart: "))
    assert chart.is_file() and chart.parent == work / "codo_outputs"
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == [
        "codo_outputs", f"codo_outputs/{chart.name}"]
    assert "analyze    completed" in done.stdout and "average_complexity=" in done.stdout


TOUR = sorted((ROOT / "notebooks").glob("0*.ipynb"))


@pytest.mark.parametrize("notebook", TOUR, ids=[p.stem for p in TOUR])
def test_each_tour_notebook_runs_alone_in_an_empty_folder(notebook, tmp_path, kernel_name,
                                                          monkeypatch):
    """A notebook copied on its own (downloaded, opened on Binder) runs as it does in the
    repository: no cell raises, and no task works on a path that only exists beside the
    repository's notebooks folder (the tour once analysed ``../codomyrmex_nb``, so an
    analysis task failed, or quietly showed a failure, anywhere else)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("CODOMYRMEX_JOURNAL", raising=False)
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(nb, kernel_name=kernel_name, timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    said = "\n".join(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
                     + str(out.get("evalue", "")) + str(out.get("data", {}).get("text/html", ""))
                     for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "does not exist (looked in" not in said, said[:4000]
    assert "FileNotFoundError" not in said, said[:4000]


# -- the Makefile: each target installs the system packages it needs, and no more ----------------
def _make(tmp_path: Path, *args: str) -> list[str]:
    """Run ``make ARGS`` on this repository's Makefile as root on a Debian machine without
    graphviz or chromium, where apt-get only notes what it is asked; the venv is a stand-in
    whose python and jupyter do nothing. Returns the packages apt-get was asked to install."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    scripts = {bin_dir / "apt-get": f'echo "$*" >> {log}', bin_dir / "id": "echo 0",
               venv / "bin" / "python": "exit 0", venv / "bin" / "jupyter": "exit 0"}
    for path, body in scripts.items():
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    stamp = venv / ".installed"  # installed: newer than pyproject.toml
    stamp.touch()
    newer = (ROOT / "pyproject.toml").stat().st_mtime + 60
    os.utime(stamp, (newer, newer))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}  # no `dot`; no MAKEFLAGS of a caller
    done = subprocess.run([make, "-s", "-C", str(ROOT), *args,
                           f"VENV={os.path.relpath(venv, ROOT)}", "CHROMIUM=/nonexistent"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    return [word for call in calls if call.startswith("install")
            for word in call.split() if not word.startswith("-") and word != "install"]


@pytest.mark.parametrize(("target", "packages"), [
    (["demo"], ["graphviz"]),
    (["lab"], ["graphviz"]),
    (["test"], ["graphviz", "chromium"]),
    (["test", "SKIP_BROWSER=1"], ["graphviz"]),
])
def test_only_make_test_installs_chromium(tmp_path, target, packages):
    assert _make(tmp_path, *target) == packages
