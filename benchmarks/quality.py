"""Schedule quality: how close to the best possible makespan each scheduler gets.

Overhead hardly matters here: random DAGs of 30-60 sleep tasks (10-100 ms)
on 4 workers, where what counts is which ready task goes first. No schedule can
beat max(critical path, total work / workers), so makespan / that bound is an
upper estimate of how far from optimal a run was (1.0 = optimal). The DAGs
come from fixed seeds so every run and every engine version sees the same ones.
"""

from __future__ import annotations

import functools
import random
import statistics
import time
from collections.abc import Callable

import dask.threaded
from common import Settings

from codomyrmex_nb import Task, TaskOrchestrator

SEEDS = (101, 202, 303, 404, 505, 606, 707, 808, 909, 1010,
         1111, 1212, 1313, 1414, 1515, 1616, 1717, 1818, 1919, 2020)
WORKERS = 4


def random_dag(seed: int, sizes: tuple[int, int]) -> tuple[list[float], list[list[int]]]:
    """Durations (s) and dependencies; each task waits for 0-3 of the 15 tasks before it."""
    rng = random.Random(seed)
    n = rng.randint(*sizes)
    durations = [rng.uniform(0.010, 0.100) for _ in range(n)]
    deps = [sorted(rng.sample(range(max(0, i - 15), i), min(i, rng.choice((0, 1, 1, 2, 2, 3)))))
            for i in range(n)]
    return durations, deps


def lower_bound(durations: list[float], deps: list[list[int]], workers: int) -> float:
    finish: list[float] = []
    for i, ups in enumerate(deps):  # indices are topologically ordered
        finish.append(durations[i] + max((finish[u] for u in ups), default=0.0))
    return max(max(finish), sum(durations) / workers)


def sleep_task(seconds: float, *_upstream: object) -> None:
    time.sleep(seconds)


def makespan_ours(durations: list[float], deps: list[list[int]]) -> float:
    orch = TaskOrchestrator(max_workers=WORKERS)
    tasks: list[Task] = []
    for i, ups in enumerate(deps):
        tasks.append(Task(name=f"t{i}", func=functools.partial(sleep_task, durations[i]),
                          dependencies=[tasks[u] for u in ups]))
    orch.add_tasks(tasks)
    try:
        start = time.perf_counter()
        orch.start_execution()
        if not orch.wait_for_completion(120):
            raise RuntimeError("a schedule-quality run did not finish")
        return time.perf_counter() - start
    finally:
        orch.stop_execution()


def makespan_dask(durations: list[float], deps: list[list[int]]) -> float:
    graph = {f"t{i}": (sleep_task, durations[i], *[f"t{u}" for u in ups])
             for i, ups in enumerate(deps)}
    start = time.perf_counter()
    dask.threaded.get(graph, list(graph), num_workers=WORKERS)
    return time.perf_counter() - start


def run(settings: Settings, log: Callable[[str], None] = print) -> dict:
    rows = []
    for seed in SEEDS[:settings.seeds]:
        durations, deps = random_dag(seed, settings.dag_tasks)
        bound = lower_bound(durations, deps, WORKERS)
        ours, theirs = makespan_ours(durations, deps), makespan_dask(durations, deps)
        rows.append({"seed": seed, "tasks": len(deps), "lower_bound_s": bound,
                     "ours_s": ours, "dask_s": theirs, "ours_ratio": ours / bound,
                     "dask_ratio": theirs / bound, "ours_vs_dask": ours / theirs})
        log(f"quality seed {seed}: {len(deps)} tasks, bound {bound:.3f} s, "
            f"ours {ours / bound:.3f}, dask {theirs / bound:.3f}")
    worst = max(rows, key=lambda r: r["ours_vs_dask"])
    summary = {"workers": WORKERS, "dags": len(rows),
               "ours_mean_ratio": statistics.fmean(r["ours_ratio"] for r in rows),
               "ours_max_ratio": max(r["ours_ratio"] for r in rows),
               "dask_mean_ratio": statistics.fmean(r["dask_ratio"] for r in rows),
               "dask_max_ratio": max(r["dask_ratio"] for r in rows),
               "worst_ours_vs_dask": worst["ours_vs_dask"], "worst_seed": worst["seed"]}
    return {"rows": rows, "summary": summary}


def table(result: dict) -> str:
    s = result["summary"]
    return "\n".join([
        f"{s['dags']} seeded DAGs (30-60 sleep tasks of 10-100 ms), {s['workers']} workers; "
        "ratio = makespan / max(critical path, total work / workers), 1.00 is optimal.",
        "",
        "| scheduler | mean ratio | max ratio |",
        "|---|---:|---:|",
        f"| ours | {s['ours_mean_ratio']:.3f} | {s['ours_max_ratio']:.3f} |",
        f"| dask.threaded.get | {s['dask_mean_ratio']:.3f} | {s['dask_max_ratio']:.3f} |",
        "",
        f"Worst seed for us against dask: seed {s['worst_seed']}, ours/dask makespan "
        f"{s['worst_ours_vs_dask']:.3f}.",
    ])
