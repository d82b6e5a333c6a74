"""Overhead per task: our engine, dask's threaded scheduler and the bare floor on no-op tasks.

Every run is timed end to end from the same dependency lists: ours defines the
tasks (one ``create_task`` per task as users write it, or Task objects and one
``add_tasks``), starts and waits, with shipped defaults; dask builds its task
dict and calls ``dask.threaded.get``; the floor (floor.py) builds its arrays and
runs. Runs of one case alternate so that all sides meet the same machine load.

Some cases grow faster than linearly today, so each runner's time at the next
size is extrapolated from the sizes before it (log-log slope, at least linear);
a case expected to exceed the budget is recorded as not run instead of hanging.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import dask
import dask.threaded
from common import SHAPES, Deps, Settings, median, noop, timed
from floor import run_floor

from codomyrmex_nb import Task, TaskOrchestrator

DEFINES = ("create_task", "add_tasks")


def run_ours(deps: Deps, workers: int, define: str, timeout: float,
             journal: bool | None = None) -> None:
    """Shipped defaults (journal None: as it ships, on); ``journal=False`` is the labelled
    variant that shows what the run journal costs on no-op tasks."""
    orch = TaskOrchestrator(max_workers=workers, journal=journal)
    try:
        tasks: list[Task] = []
        if define == "create_task":
            for i, ups in enumerate(deps):
                tasks.append(orch.create_task(f"t{i}", func=noop,
                                              dependencies=[tasks[u] for u in ups]))
        else:
            for i, ups in enumerate(deps):
                tasks.append(Task(name=f"t{i}", func=noop, dependencies=[tasks[u] for u in ups]))
            orch.add_tasks(tasks)
        orch.start_execution()
        if not orch.wait_for_completion(timeout):
            raise RuntimeError(f"our engine did not finish {len(deps)} tasks in {timeout:.0f} s")
    finally:
        orch.stop_execution()


def run_dask(deps: Deps, workers: int) -> None:
    graph = {f"t{i}": (noop, *[f"t{u}" for u in ups]) for i, ups in enumerate(deps)}
    dask.threaded.get(graph, list(graph), num_workers=workers)


def extrapolate(history: list[tuple[int, float]], n: int) -> float | None:
    """Seconds expected at ``n`` tasks from earlier (size, seconds) points; None without any."""
    if not history:
        return None
    (n1, t1) = history[-1]
    slope = 1.0
    if len(history) > 1:
        n0, t0 = history[-2]
        slope = math.log(t1 / t0) / math.log(n1 / n0) if t0 > 0 and n1 != n0 else 1.0
    return t1 * (n / n1) ** min(max(slope, 1.0), 3.0)


def measure_case(runners: dict[str, Callable[[], None]], n: int, settings: Settings,
                 history: dict[str, list[tuple[int, float]]]) -> dict[str, dict]:
    """Median seconds per runner, interleaved; ``history[name]`` gets this size's result."""
    wanted = 1 if n > settings.single_above else settings.repeat
    plans: dict[str, dict] = {}
    for name in runners:
        est = extrapolate(history[name], n)
        if est is not None and est > settings.budget:
            plans[name] = {"repeats": 0, "note": f"not run: too slow (est. {est:,.0f} s)"}
        else:
            fits = wanted if est is None else max(1, min(wanted, int(settings.budget // est)))
            plans[name] = {"repeats": fits, "times": []}
    for rep in range(wanted):
        for name, run in runners.items():
            plan = plans[name]
            if rep < plan["repeats"]:
                times = plan["times"]
                times.append(timed(run))
                if sum(times) + times[-1] > settings.budget:  # slower than extrapolated
                    plan["repeats"] = len(times)
    for name, plan in plans.items():
        if plan["repeats"]:
            plan["seconds"] = median(plan.pop("times"))
            history[name].append((n, plan["seconds"]))
    return plans


def runners_for(deps: Deps, w: int, settings: Settings) -> dict[str, Callable[[], None]]:
    """The four sides of one case, by the column name they fill."""
    timeout = 10 * settings.budget
    return {"floor": lambda: run_floor(deps, w, noop),
            "dask": lambda: run_dask(deps, w),
            "ours_create_task": lambda: run_ours(deps, w, "create_task", timeout),
            "ours_add_tasks": lambda: run_ours(deps, w, "add_tasks", timeout),
            "ours_create_task_journal_off": lambda: run_ours(deps, w, "create_task", timeout,
                                                             journal=False)}


def run(settings: Settings, log: Callable[[str], None] = print) -> dict:
    rows = []
    history: dict[str, list[tuple[int, float]]] = {}  # "shape/workers/side" -> (size, s)
    for n in settings.sizes:
        for shape, make in SHAPES.items():
            deps = make(n)
            for w in settings.workers:
                runners = runners_for(deps, w, settings)
                past = {k: history.setdefault(f"{shape}/{w}/{k}", []) for k in runners}
                plans = measure_case(runners, n, settings, past)
                row = {"tasks": n, "shape": shape, "workers": w}
                for key, plan in plans.items():
                    row[f"{key}_us"] = plan["seconds"] / n * 1e6 if plan["repeats"] else None
                    row[f"{key}_repeats"] = plan["repeats"]
                    if "note" in plan:
                        row[f"{key}_note"] = plan["note"]
                for define in (*DEFINES, "create_task_journal_off"):
                    ours = row[f"ours_{define}_us"]
                    for peer in ("dask", "floor"):
                        theirs = row[f"{peer}_us"]
                        row[f"{define}_vs_{peer}"] = ours / theirs if ours and theirs else None
                rows.append(row)
                log(f"overhead {n:,} {shape} x{w}: "
                    + ", ".join(f"{k} {_us(row[k + '_us'])}" for k in runners))
    return {"rows": rows, "summary": summarize(rows)}


def summarize(rows: list[dict]) -> dict:
    """Worst (largest) ours/dask and ours/floor ratio per way of defining, over the cases run."""
    out = {}
    for define in DEFINES:
        for peer in ("dask", "floor"):
            ratios = [r[f"{define}_vs_{peer}"] for r in rows if r[f"{define}_vs_{peer}"]]
            out[f"{define}_worst_vs_{peer}"] = max(ratios) if ratios else None
        out[f"{define}_not_run"] = sum(1 for r in rows if r[f"ours_{define}_us"] is None)
    return out


def _us(value: float | None) -> str:
    return "not run" if value is None else f"{value:.1f} us"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(result: dict) -> str:
    lines = ["| tasks | shape | workers | floor µs | dask µs | ours create_task µs | ours add_tasks µs "
             "| create/dask | add/dask | create/floor | add/floor "
             "| create, journal off µs | create, journal off/dask |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        cells = [f"{r['tasks']:,}", r["shape"], str(r["workers"])]
        for key in ("floor", "dask", "ours_create_task", "ours_add_tasks"):
            value = r[f"{key}_us"]
            cells.append(r.get(f"{key}_note", "not run") if value is None else f"{value:.1f}")
        cells += [_ratio(r[k]) for k in ("create_task_vs_dask", "add_tasks_vs_dask",
                                          "create_task_vs_floor", "add_tasks_vs_floor")]
        off = r.get("ours_create_task_journal_off_us")
        cells += [r.get("ours_create_task_journal_off_note", "-") if off is None else f"{off:.1f}",
                  _ratio(r.get("create_task_journal_off_vs_dask"))]
        lines.append("| " + " | ".join(cells) + " |")
    s = result["summary"]
    lines.append("")
    lines.append(f"Worst ours/dask: create_task {_ratio(s['create_task_worst_vs_dask'])}, "
                 f"add_tasks {_ratio(s['add_tasks_worst_vs_dask'])}; worst ours/floor: "
                 f"create_task {_ratio(s['create_task_worst_vs_floor'])}, "
                 f"add_tasks {_ratio(s['add_tasks_worst_vs_floor'])} "
                 f"(cases not run: create_task {s['create_task_not_run']}, "
                 f"add_tasks {s['add_tasks_not_run']}).")
    return "\n".join(lines)
