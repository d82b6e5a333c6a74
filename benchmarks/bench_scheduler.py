"""Scheduler overhead: codomyrmex-nb's engine against dask's threaded scheduler, same run.

10,000 no-op tasks in three shapes (independent, one chain, a layered random
DAG). Each side's time covers building its graph and running it to the end:
for us Task objects + add_tasks + start + wait_for_completion; for dask the
task dict + ``dask.threaded.get``. Prints microseconds per task and the ratio
(ours / dask; below 1.0 means we are faster): the median of ``--repeat``
runs, the two sides alternating so that both meet the same machine load.

    python benchmarks/bench_scheduler.py [--tasks 10000] [--workers N] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Callable

import dask
import dask.threaded

from codomyrmex_nb import Task, TaskOrchestrator


def noop(*_args: object) -> None:
    return None


def shape_independent(n: int) -> list[list[int]]:
    return [[] for _ in range(n)]


def shape_chain(n: int) -> list[list[int]]:
    return [[i - 1] if i else [] for i in range(n)]


def shape_layered(n: int, width: int = 100, fan_in: int = 3, seed: int = 7) -> list[list[int]]:
    """Layers of ``width`` tasks; each depends on up to ``fan_in`` tasks of the layer above."""
    rng = random.Random(seed)
    deps: list[list[int]] = []
    for i in range(n):
        layer = i // width
        if layer == 0:
            deps.append([])
            continue
        above = range((layer - 1) * width, layer * width)
        deps.append(sorted(rng.sample(above, k=min(fan_in, len(above)))))
    return deps


def run_ours(deps: list[list[int]], workers: int) -> float:
    orch = TaskOrchestrator(max_workers=workers)
    start = time.perf_counter()
    tasks: list[Task] = []
    for i, ups in enumerate(deps):
        tasks.append(Task(name=f"t{i}", func=noop, dependencies=[tasks[u] for u in ups]))
    orch.add_tasks(tasks)
    orch.start_execution()
    ok = orch.wait_for_completion(timeout=600)
    elapsed = time.perf_counter() - start
    orch.stop_execution()
    assert ok, "benchmark run did not complete"
    return elapsed


def run_dask(deps: list[list[int]], workers: int) -> float:
    start = time.perf_counter()
    graph = {f"t{i}": (noop, *[f"t{u}" for u in ups]) for i, ups in enumerate(deps)}
    dask.threaded.get(graph, list(graph), num_workers=workers)
    return time.perf_counter() - start


def interleaved(ours: Callable[[], float], theirs: Callable[[], float],
                repeat: int) -> tuple[float, float]:
    """Median times, the two sides alternating so that both see the same machine load."""
    a, b = [], []
    for _ in range(repeat):
        gc.collect()
        a.append(ours())
        gc.collect()
        b.append(theirs())
    return statistics.median(a), statistics.median(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    shapes = {"independent": shape_independent, "chain": shape_chain, "layered": shape_layered}
    print(f"{args.tasks} no-op tasks, {args.workers} workers, median of {args.repeat}; "
          f"python {sys.version.split()[0]}, dask {dask.__version__}")
    print(f"{'shape':<12} {'ours us/task':>13} {'dask us/task':>13} {'ratio':>7}")
    worst = 0.0
    for name, make in shapes.items():
        deps = make(args.tasks)
        ours, theirs = interleaved(lambda deps=deps: run_ours(deps, args.workers),
                                   lambda deps=deps: run_dask(deps, args.workers), args.repeat)
        ratio = ours / theirs
        worst = max(worst, ratio)
        print(f"{name:<12} {ours / args.tasks * 1e6:>13.1f} {theirs / args.tasks * 1e6:>13.1f} "
              f"{ratio:>7.2f}")
    print(f"worst ratio {worst:.2f} ({'at least as fast as' if worst <= 1 else 'slower than'} dask)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
