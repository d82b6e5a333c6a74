"""Readable layout and tables: rank order in the DAG, the critical path in a grouped grid,
captions that match the colours, theme-aware header chips, and ``tasks_frame()``'s
dtypes and display."""

from __future__ import annotations

import json

import pytest

from codomyrmex_nb import Task, TaskOrchestrator
from codomyrmex_nb.notebook.drawing import build_drawing


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
