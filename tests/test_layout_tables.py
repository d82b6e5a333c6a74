"""Readable layout and tables: rank order in the DAG, the critical path in a grouped grid,
captions that match the colours, theme-aware header chips, and ``tasks_frame()``'s
dtypes and display."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from codomyrmex_nb import Task, TaskOrchestrator
from codomyrmex_nb.analysis.frames import TASK_COLUMNS
from codomyrmex_nb.notebook import drawing as drawing_mod
from codomyrmex_nb.notebook.drawing import build_drawing
from codomyrmex_nb.notebook.frontend import CSS, ESM
from codomyrmex_nb.notebook.painter import Painter
from codomyrmex_nb.notebook.tracker import Tracker
from codomyrmex_nb.palette import CRITICAL, DARK, theme_css


def noop() -> None:
    return None


def snapshot_of(tasks: list[Task]):
    """The tasks defined one after another, as cells define them (a batch given to
    ``add_tasks`` is added in dependency order instead)."""
    orch = TaskOrchestrator(max_workers=1)
    for task in tasks:
        orch.add_tasks([task])
    return orch.snapshot()


def positions(tasks: list[Task], **kwargs) -> dict[str, tuple[float, float]]:
    """Task name -> (x, y) of its node centre as ``dot`` lays the drawing out (y grows up)."""
    snap = snapshot_of(tasks)
    d = build_drawing(snap, prefix="p", **kwargs)
    laid = json.loads(d.graph.pipe(format="json", engine="dot"))
    names = {t.id: t.name for t in snap.tasks}
    out = {}
    for obj in laid["objects"]:
        task = d.nodes.get(obj.get("name", ""))
        if task in names:
            x, y = (float(v) for v in obj["pos"].split(","))
            out[names[task]] = (round(x), round(y))
    return out


def columns_out_of_order(tasks: list[Task], pos: dict[str, tuple[float, float]]
                         ) -> list[list[str]]:
    """The ranks (columns of the left-to-right drawing) whose tasks, read top to bottom,
    are not in definition order."""
    order = {t.name: i for i, t in enumerate(tasks)}
    columns: dict[float, list[str]] = {}
    for name, (x, _) in pos.items():
        columns.setdefault(x, []).append(name)
    bad = []
    for names in columns.values():
        top_down = sorted(names, key=lambda n: -pos[n][1])
        if top_down != sorted(names, key=order.__getitem__):
            bad.append(top_down)
    return bad


def uneven_chains(n: int = 20) -> list[Task]:
    """``load_i`` followed by ``i % 4`` steps, all feeding one report."""
    tasks, ends = [], []
    for i in range(n):
        tasks.append(Task(name=f"load_{i}", func=noop))
        last = f"load_{i}"
        for j in range(i % 4):
            tasks.append(Task(name=f"step{j}_{i}", func=noop, dependencies=[last]))
            last = f"step{j}_{i}"
        ends.append(last)
    return tasks + [Task(name="report", func=noop, dependencies=ends)]


def crossed_chains(n: int = 20) -> list[Task]:
    """``load_i`` -> ``check_i``, each check also reading a load seven further on."""
    return ([Task(name=f"load_{i}", func=noop) for i in range(n)]
            + [Task(name=f"check_{i}", func=noop, dependencies=[f"load_{i}", f"load_{(i + 7) % n}"])
               for i in range(n)])


def fan_out() -> list[Task]:
    """One source, six workers, each worker's two children defined out of worker order."""
    return ([Task(name="source", func=noop)]
            + [Task(name=f"work_{i}", func=noop, dependencies=["source"]) for i in range(6)]
            + [Task(name=f"child_{i}", func=noop, dependencies=[f"work_{(i * 5) % 6}"])
               for i in range(12)])


@pytest.mark.needs_dot
@pytest.mark.parametrize("make", [uneven_chains, crossed_chains, fan_out])
def test_each_rank_lists_its_tasks_in_definition_order(make):
    tasks = make()
    pos = positions(tasks)
    assert columns_out_of_order(tasks, pos) == []
    loads = [t.name for t in tasks if t.name.startswith(("load_", "work_"))]
    assert len({pos[n][0] for n in loads}) == 1  # the first layer is one column


# -- the critical path: visible in a grid and in groups, and said only when drawn -------------
def node_body(svg: str, node_id: str) -> str:
    match = re.search(rf'<g id="{node_id}" class="node[^"]*">(.*?)</g>', svg, re.S)
    assert match is not None, f"no node {node_id} in the SVG"
    return match.group(1)


def outlined_blue(svg: str, node_id: str) -> bool:
    return f'stroke="{CRITICAL[0]}"' in node_body(svg, node_id)


def fan_run(orch, width: int = 30, slow: int = 7) -> None:
    """source -> width workers (``work_<slow>`` takes 0.2 s) -> sink, run to the end."""
    orch.create_task("source", func=noop)
    for i in range(width):
        orch.create_task(f"work_{i}", func=(lambda: time.sleep(0.2)) if i == slow else noop,
                         dependencies=["source"])
    orch.create_task("sink", func=noop, dependencies=[f"work_{i}" for i in range(width)])
    orch.start_execution()
    assert orch.wait_for_completion(30)


def painted(orch, threshold: int = 200) -> Painter:
    painter = Painter("cv", threshold, 40, 1.0)
    painter.paint([], orch.snapshot(), orch.snapshot)
    return painter


@pytest.mark.needs_dot
def test_the_critical_member_of_a_fan_out_grid_is_outlined_in_blue(orch):
    fan_run(orch)
    painter = painted(orch)
    assert painter.drawing.bundles  # the 30 workers are wrapped into a grid
    svg = painter.standalone()
    node = {orch.get_task(t).name: n for n, t in painter.drawing.nodes.items()}
    blue = [name for name, n in node.items() if outlined_blue(svg, n)]
    assert blue == ["source", "work_7", "sink"]
    assert "critical path in blue" in painter.header()


@pytest.mark.needs_dot
def test_a_grouped_drawing_marks_the_groups_and_names_the_tasks_on_the_critical_path(orch):
    fan_run(orch, width=40)
    painter = painted(orch, threshold=20)  # 42 tasks above 20: drawn as groups
    grouping = painter.grouping
    assert grouping is not None and set(grouping.members) == {"source", "work", "sink"}
    svg = painter.standalone()
    node = {key: n for n, key in painter.drawing.nodes.items()}
    assert all(outlined_blue(svg, node[key]) for key in ("source", "work", "sink"))
    looks = painter.looks()
    assert "on the critical path: work_7" in looks[node["work"]].tip
    assert painter.hot == set(painter.drawing.edges)  # source -> work -> sink, both blue
    assert f'stroke="{CRITICAL[0]}"' in re.sub(r'<g id="cvn\d+" class="node.*?</g>', "", svg,
                                               flags=re.S)
    head = painter.header()
    assert "3 groups of 42 tasks" in head and "groups on the critical path in blue" in head


@pytest.mark.needs_dot
def test_the_caption_says_blue_only_when_something_is_blue(orch, monkeypatch):
    orch.create_task("solo", func=noop)  # a one-task path: no edge to colour
    orch.start_execution()
    assert orch.wait_for_completion(10)
    painter = painted(orch)
    svg, head = painter.standalone(), painter.header()
    assert "critical path in blue" in head
    assert outlined_blue(svg, next(iter(painter.drawing.nodes)))
    # without dot there is no drawing, and no caption about its colours
    monkeypatch.setattr(drawing_mod, "dot_available", lambda: False)
    blind = painted(orch)
    assert "apt install graphviz" in blind.static_html()
    assert "blue" not in blind.header()


# -- the header's chips follow the theme ---------------------------------------------------------
def test_header_chips_take_the_theme_colours(orch):
    orch.create_task("ok", func=noop)
    orch.create_task("bad", func=lambda: 1 / 0)
    orch.start_execution()
    assert orch.wait_for_completion(10) is not None
    tracker = Tracker()
    tracker.reset(orch.snapshot(), None)
    head = tracker.header_html()
    chips = re.findall(r'<span style="(background:[^"]*)" title=', head)
    assert len(chips) == 2
    for chip in chips:  # colours through the theme's variables, light fallbacks only
        assert re.fullmatch(r"background:var\(--codo-[a-z-]+,#[0-9a-f]{6}\);"
                            r"color:var\(--codo-[a-z-]+-text,#[0-9a-f]{6}\);.*", chip), chip
    # the dark theme defines those variables on the scope's element ...
    css = theme_css("cv")
    dark = re.search(r'body\[data-jp-theme-light="false"\] \.cv\{([^}]*)\}', css).group(1)
    assert f"--codo-completed:{DARK['completed'][0]}" in dark
    assert f"--codo-failed-text:{DARK['failed'][1]}" in dark
    # ... which the live widget carries, header included (it sits outside the drawing's div)
    assert re.search(r'box\.classList\.add\([^)]*"codo-live-" \+ scope, scope\)', ESM)
    assert "--jp-ui-font-color1" in CSS and "--jp-layout-color1" in CSS


# -- tasks_frame(): numeric columns, name first, a display without empty columns ----------------
SECONDS_COLUMNS = ("wait_dependencies", "wait_resources", "wait_worker", "execution_time",
                   "cpu_time")
LIST_COLUMNS = ("tags", "dependencies", "resources")


def mixed_run(orch) -> None:
    """One task completes, one fails, one is never run (its upstream failed)."""
    orch.create_task("good", func=lambda: 1)
    orch.create_task("bad", func=lambda: 1 / 0)
    orch.create_task("after", func=noop, dependencies=["bad"])
    orch.start_execution()
    orch.wait_for_completion(10)


def test_tasks_frame_columns_are_typed_with_name_first(orch):
    mixed_run(orch)
    frame = orch.tasks_frame()
    assert list(frame.columns[:2]) == ["name", "id"]
    for column in SECONDS_COLUMNS:  # missing times are NaN, never None in an object column
        assert frame[column].dtype == "float64", column
    for column in ("attempts", "retries", "priority_value"):
        assert pd.api.types.is_integer_dtype(frame[column].dtype), column
    assert str(frame["peak_memory"].dtype) == "Int64"
    for column in frame.columns:  # no object column mixes numbers with None
        if frame[column].dtype == object:
            kinds = {type(v) for v in frame[column] if v is not None}
            assert kinds <= ({list} if column in LIST_COLUMNS else {str}), (column, kinds)
    rows = frame.set_index("name")
    assert rows.loc["after", "attempts"] == 0 and pd.isna(rows.loc["after", "started_at"])
    assert pd.isna(rows.loc["after", "cpu_time"])  # never measured: NaN


def test_tasks_frame_display_hides_empty_columns_and_shows_units(orch):
    mixed_run(orch)
    frame = orch.tasks_frame()
    html = frame._repr_html_()
    headings = re.findall(r"<th>([^<]*)</th>", html.split("</thead>")[0])
    for empty in ("module", "action", "tags", "resources", "blocked_on", "last_line"):
        assert empty not in headings, empty  # empty in every row: left out ...
        assert empty in frame.columns  # ... of the display only
    assert "empty in every row, not shown: module, action, tags" in html
    for shown in ("name", "state", "execution_time", "error_type", "wait_worker"):
        assert shown in headings
    assert headings.index("name") < headings.index("state")
    cells = re.findall(r"<td>([^<]*)</td>", html)
    assert "ZeroDivisionError" in cells
    assert any(re.fullmatch(r"[\d.]+ (µs|ms|s)", c) for c in cells)  # times with their unit
    text = repr(frame)
    assert "module" not in text.splitlines()[0] and re.search(r"\d (µs|ms|s)\b", text)
    # the data stays whole, and a derived frame displays as pandas does
    assert frame.shape[1] == len(TASK_COLUMNS)
    derived = frame[["name", "module"]]
    assert type(derived) is pd.DataFrame and "module" in derived._repr_html_()


# -- tour notebook 04 says what its failure recipe does --------------------------------------------
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def cell_text(cell) -> str:
    return "".join(out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
                   for out in cell.get("outputs", []))


@pytest.mark.kernel
def test_notebook_04_describes_what_its_failure_recipe_does(kernel_name):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    path = NOTEBOOKS / "04_failures_retries_cancel.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    recipe = next(i for i, c in enumerate(cells) if "task.can_retry()" in c.source)
    text = cells[recipe - 1].source
    assert text.startswith("### Handle task failures")
    assert "only reports them" not in text  # what it said before: the recipe re-queues them
    assert "re-queues both" in text and "fails again" in text
    NotebookClient(nb, kernel_name=kernel_name, timeout=120,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    reported = cell_text(nb.cells[recipe])
    assert "Task render failed" in reported and "Task parse failed" in reported
    after = {line.split()[0]: line.split()[1:] for line in cell_text(nb.cells[recipe + 1])
             .splitlines()}
    # as the text says: both re-queued, both failed again the same way, report skipped again
    assert after["render"] == ["failed", "attempts=2"]
    assert after["parse"] == ["failed", "attempts=2"]
    assert after["report"][0] == "skipped"
    final = cell_text(nb.cells[recipe + 3])  # after the fix: rerun(parse), then the table
    assert re.search(r"parse\s+completed", final) and re.search(r"report\s+completed", final)


def test_a_long_tasks_frame_displays_a_few_rows_and_says_how_many(orch):
    orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(500)])
    frame = orch.tasks_frame()
    text = repr(frame)
    assert len(text.splitlines()) <= pd.get_option("display.min_rows") + 4  # as pandas: head, tail
    assert "t0 " in text and "t499" in text and "500 rows" in text
    html = frame._repr_html_()
    assert html.count("<tr>") <= pd.get_option("display.min_rows") + 3
    assert len(frame) == 500  # the data is whole
