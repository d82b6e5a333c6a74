"""Every notebook snippet in the docs runs as written, in a real kernel.

The ```python blocks of README.md's "In a notebook" section and of
notebooks/MAGICS.md are read from the markdown itself (mistune, the parser
nbconvert uses), never copied here, so a doc edit is tested as it is published.
Each document's blocks run, unedited and in order, as the cells of one
notebook in a fresh ``python3`` kernel (this environment's interpreter) whose
working directory is an empty temporary folder: a snippet may only rely on
what earlier snippets made.

A block that cannot run here (say, it needs a Dask cluster's address) is
preceded in the markdown by ``<!-- not-run: why -->``; it is skipped, and the
reason is required.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import mistune
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAGICS = ROOT / "notebooks" / "MAGICS.md"
README_SECTION = "In a notebook"
NOT_RUN = re.compile(r"<!--\s*not-run\s*(?::\s*(?P<why>.*?))?\s*-->", re.S)

# Appended after a document's snippets (the test's own cell, not a doc snippet):
# what ``results`` holds, next to the tasks that were defined.
RESULTS_CHECK = """
import json
from codomyrmex_nb.notebook.magics import current_orchestrator
print(json.dumps({"tasks": sorted(t.name for t in current_orchestrator().list_tasks()),
                  "rows": sorted(results["name"]),
                  "states": sorted(set(results["state"].astype(str)))}))
"""


# -- reading the markdown ------------------------------------------------------------------------
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


def python_blocks(tokens: list[dict]) -> list[tuple[str, str | None]]:
    """Each ```python block in document order as (source, why it is not run, or None)."""
    found: list[tuple[str, str | None]] = []
    previous: dict | None = None
    for token in tokens:
        if token["type"] == "blank_line":
            continue
        if token["type"] == "block_code" and token.get("style") == "fenced":
            info = (token.get("attrs") or {}).get("info", "").split()
            if info[:1] == ["python"]:
                marker = None
                if previous is not None and previous["type"] == "block_html":
                    marker = NOT_RUN.search(previous["raw"])
                why = None if marker is None else (marker.group("why") or "")
                found.append((token["raw"], why))
        elif token.get("children"):
            found.extend(python_blocks(token["children"]))
        previous = token
    return found


def readme_blocks() -> list[tuple[str, str | None]]:
    return python_blocks(_section(_tokens(README.read_text(encoding="utf-8")), README_SECTION))


def magics_blocks() -> list[tuple[str, str | None]]:
    return python_blocks(_tokens(MAGICS.read_text(encoding="utf-8")))


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


@pytest.mark.parametrize("blocks", [readme_blocks, magics_blocks], ids=["README", "MAGICS"])
def test_the_docs_have_snippets_and_every_skip_says_why(blocks):
    found = blocks()
    assert len(found) >= 4
    assert any("results = %codo_results" in source for source, _ in found)
    for source, why in found:
        assert why is None or why.strip(), f"<!-- not-run --> needs a reason: {source!r}"


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


def _runnable(blocks: list[tuple[str, str | None]]) -> list[str]:
    return [source for source, why in blocks if why is None]


@pytest.mark.kernel
@pytest.mark.parametrize("blocks", [readme_blocks, magics_blocks], ids=["README", "MAGICS"])
def test_the_snippets_run_as_written(tmp_path, kernel_name, blocks):
    """No ``--wait`` added: ``results = %codo_results`` after ``%codo_run`` has a row per task."""
    nb = run_in_kernel([*_runnable(blocks()), RESULTS_CHECK], tmp_path, kernel_name)
    seen = json.loads(_stdout(nb.cells[-1]).strip().splitlines()[-1])
    assert seen["tasks"], "the example defines no task"
    assert seen["rows"] == seen["tasks"]
    assert seen["states"] == ["completed"]
