"""Every code block of the docs runs as written, in order, in an empty folder.

The code blocks of README.md, notebooks/MAGICS.md and PYPI.md (the package
page) are read from the markdown itself (mistune, the parser nbconvert uses),
never copied here, so a doc edit is tested as it is published. Per document:

- ``python`` blocks in a section (the text under a heading, down to the next
  heading) that has a block written in IPython syntax (``%magic``,
  ``%%codo_task``, ``x = %codo_results``) are notebook cells: they run,
  unedited and in order, as the cells of one notebook in a fresh ``python3``
  kernel (this environment's interpreter) whose working directory is an empty
  temporary folder;
- every other ``python`` block runs, unedited and in order, as one script in a
  fresh interpreter in an empty temporary folder (no ``CODOMYRMEX_JOURNAL``
  set, as on a user's machine): a snippet may rely only on what earlier
  snippets of its document made, and must import what it uses.

A block that is not meant to run (shell commands, output, a listing, code that
needs a Dask cluster's address) is preceded in the markdown by
``<!-- not-run: why -->``; it is skipped and the reason is required. Any other
block, of whatever language, must run: an unmarked ``bash`` block fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mistune
import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAGICS = ROOT / "notebooks" / "MAGICS.md"
PYPI = ROOT / "PYPI.md"
DOCUMENTS = {"README": README, "MAGICS": MAGICS, "PYPI": PYPI}
NOT_RUN = re.compile(r"<!--\s*not-run\s*(?::\s*(?P<why>.*?))?\s*-->", re.S)

# Appended after a document's notebook cells (the test's own cell, not a doc snippet): it
# waits for every task, the last cells' too (they may define or change tasks after the
# document's last ``results = %codo_results``), then gives how each task ended and what that
# ``results`` holds.
RESULTS_CHECK = """
%codo_wait 120
import json
from codomyrmex_nb.notebook.magics import current_orchestrator
print(json.dumps({"ended": {v.name: v.state for v in current_orchestrator().snapshot().tasks},
                  "rows": sorted(results["name"]),
                  "states": sorted(set(results["state"].astype(str)))}))
"""
TASK_CELL = re.compile(r"\s*%%codo_task\s+(\S+)")


def defined_tasks(sources: list[str]) -> set[str]:
    """The task names that these ``%%codo_task`` cells define."""
    return {m.group(1) for m in map(TASK_CELL.match, sources) if m}


# -- reading the markdown ------------------------------------------------------------------------
@dataclass
class Block:
    """One fenced or indented code block of a document."""

    source: str
    language: str  # the fence's first word ("python", "bash"), "" for none
    why: str | None  # why it is not run (``<!-- not-run: why -->``), None if it runs
    section: int  # which section (heading) of the document it sits in
    notebook: bool = False  # a notebook cell (its section uses IPython syntax), else script

    @property
    def ipython(self) -> bool:
        return TransformerManager().transform_cell(self.source) != self.source


def _text(token: dict) -> str:
    if "raw" in token:
        return token["raw"]
    return "".join(_text(child) for child in token.get("children", ()))


def _tokens(markdown: str) -> list[dict]:
    return mistune.create_markdown(renderer=None)(markdown)


def _section(tokens: list[dict], title: str) -> list[dict]:
    """The tokens under the heading ``title``, up to the next heading of its level or above."""
    for i, token in enumerate(tokens):
        if token["type"] == "heading" and _text(token).strip() == title:
            level = token["attrs"]["level"]
            rest = tokens[i + 1:]
            end = next((j for j, t in enumerate(rest)
                        if t["type"] == "heading" and t["attrs"]["level"] <= level), len(rest))
            return rest[:end]
    raise AssertionError(f"no section {title!r}")


def code_blocks(tokens: list[dict]) -> list[Block]:
    """Every code block in document order, each with its section; python blocks of a
    section that uses IPython syntax are marked as notebook cells."""
    found: list[Block] = []
    state = {"section": 0}

    def walk(tokens: list[dict]) -> None:
        previous: dict | None = None
        for token in tokens:
            if token["type"] == "blank_line":
                continue
            if token["type"] == "heading":
                state["section"] += 1
            elif token["type"] == "block_code":
                info = (token.get("attrs") or {}).get("info", "").split()
                marker = None
                if previous is not None and previous["type"] == "block_html":
                    marker = NOT_RUN.search(previous["raw"])
                why = None if marker is None else (marker.group("why") or "")
                found.append(Block(token["raw"], info[0] if info else "", why,
                                   state["section"]))
            elif token.get("children"):
                walk(token["children"])
            previous = token

    walk(tokens)
    notebook_sections = {b.section for b in found
                         if b.language == "python" and b.why is None and b.ipython}
    for block in found:
        block.notebook = block.section in notebook_sections
    return found


def python_blocks(tokens: list[dict]) -> list[tuple[str, str | None]]:
    """Each ```python block in document order as (source, why it is not run, or None)."""
    return [(b.source, b.why) for b in code_blocks(tokens) if b.language == "python"]


def document_blocks(name: str) -> list[Block]:
    return code_blocks(_tokens(DOCUMENTS[name].read_text(encoding="utf-8")))


def test_the_reader_finds_python_blocks_and_not_run_markers():
    markdown = """# Doc

## Here

```python
a = 1
```

```text
not python
```

<!-- not-run: needs a Dask cluster -->
```python
b = 2
```

- a list item:

  ```python
  c = 3
  ```

## Elsewhere

```python
d = 4
```
"""
    blocks = python_blocks(_section(_tokens(markdown), "Here"))
    assert blocks == [("a = 1\n", None), ("b = 2\n", "needs a Dask cluster"), ("c = 3\n", None)]


def test_sections_with_ipython_syntax_are_notebook_cells_the_rest_a_script():
    markdown = """# Doc

```python
import os
```

## Notebook

```python
x = 1
```

```python
%load_ext codomyrmex_nb
```

## Script

<!-- not-run: shell commands -->
```bash
make test
```

```python
y = 2
```

    indented = True
"""
    blocks = code_blocks(_tokens(markdown))
    assert [(b.language, b.notebook, b.why) for b in blocks] == [
        ("python", False, None), ("python", True, None), ("python", True, None),
        ("bash", False, "shell commands"), ("python", False, None), ("", False, None)]


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_block_runs_or_says_why_not(name):
    """An unmarked block of another language (shell, output) would not run: it must be marked."""
    blocks = document_blocks(name)
    assert any(b.language == "python" and b.why is None for b in blocks)
    for block in blocks:
        assert block.why is None or block.why.strip(), (
            f"{name}: <!-- not-run --> needs a reason: {block.source!r}")
        assert block.why is not None or block.language == "python", (
            f"{name}: a {block.language or 'plain'} block runs nowhere; make it a python block "
            f"or precede it with <!-- not-run: why -->:\n{block.source}")


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_each_document_has_notebook_cells_and_a_script(name):
    blocks = [b for b in document_blocks(name) if b.language == "python" and b.why is None]
    cells = [b.source for b in blocks if b.notebook]
    assert any("results = %codo_results" in source for source in cells)
    assert any(not b.notebook for b in blocks) or name == "MAGICS"


# -- running them ---------------------------------------------------------------------------------
def run_in_kernel(sources: list[str], folder: Path, kernel_name: str) -> nbformat.NotebookNode:
    """Run ``sources`` as the cells of one notebook; a cell that raises fails the test."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys\nprint(sys.executable)")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=120,
                            resources={"metadata": {"path": str(folder)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback
    for cell in nb.cells:
        for out in cell.outputs:
            # UsageError fails the cell too; this names the snippet should that ever change.
            assert not (out.output_type == "stream" and "UsageError" in out.text), (
                f"{out.text}\nin the snippet:\n{cell.source}")
    kernel_python = _stdout(nb.cells[0]).strip()
    assert Path(kernel_python).resolve() == Path(sys.executable).resolve()
    return nb


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(out.text for out in cell.outputs
                   if out.output_type == "stream" and out.name == "stdout")


def _script(blocks: list[Block]) -> tuple[str, list[int]]:
    """The script blocks joined in order, and the script line each block starts at."""
    lines: list[str] = []
    starts: list[int] = []
    for block in blocks:
        starts.append(len(lines) + 1)
        lines += block.source.rstrip("\n").split("\n") + [""]
    return "\n".join(lines) + "\n", starts


def run_script(blocks: list[Block], folder: Path, timeout: float = 240) -> str:
    """Run ``blocks`` as one script in ``folder``; its stdout, or fail naming the block."""
    text, starts = _script(blocks)
    script = folder / "snippets.py"
    script.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CODOMYRMEX_JOURNAL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, script.name], cwd=folder, env=env, text=True,
                          capture_output=True, timeout=timeout)
    if done.returncode != 0:
        lines = [int(m) for m in re.findall(rf'File ".*{script.name}", line (\d+)', done.stderr)]
        failed = max((i for i, start in enumerate(starts) if lines and start <= lines[-1]),
                     default=None)
        where = "" if failed is None else f"block {failed + 1}:\n{blocks[failed].source}\n"
        pytest.fail(f"the script exited with {done.returncode}; {where}{done.stderr[-4000:]}")
    return done.stdout


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_the_python_blocks_run_as_one_script(tmp_path, name):
    """In an empty folder, in order, as printed: exit code 0."""
    blocks = [b for b in document_blocks(name)
              if b.language == "python" and b.why is None and not b.notebook]
    if blocks:
        run_script(blocks, tmp_path)
    else:
        assert name == "MAGICS", f"{name} has no script blocks"


@pytest.mark.kernel
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_the_notebook_cells_run_as_written(tmp_path, kernel_name, name):
    """No ``--wait`` added: ``results = %codo_results`` after ``%codo_run`` has a row per task
    defined by then; and once the last cell has run, every task completes (a later example
    that replaced a task, or failed, would leave it or its downstream failed)."""
    cells = [b.source for b in document_blocks(name)
             if b.language == "python" and b.why is None and b.notebook]
    nb = run_in_kernel([*cells, RESULTS_CHECK], tmp_path, kernel_name)
    seen = json.loads(_stdout(nb.cells[-1]).strip().splitlines()[-1])
    assert seen["ended"], "the example defines no task"
    not_completed = {task: state for task, state in seen["ended"].items() if state != "completed"}
    assert not not_completed, (f"{name}: once its last cell has run, these tasks did not "
                               f"complete: {not_completed}\n{_stdout(nb.cells[-1])}")
    last = max(i for i, source in enumerate(cells) if "results = %codo_results" in source)
    later = defined_tasks(cells[last + 1:]) - defined_tasks(cells[:last + 1])
    assert seen["rows"] == sorted(set(seen["ended"]) - later)
    assert seen["states"] == ["completed"]
