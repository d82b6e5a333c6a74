"""What every part of the suite shares: graph shapes, the three runners' inputs, timing.

A graph is a list of dependency lists (``deps[i]`` = indices of the tasks that
task ``i`` waits for, all smaller than ``i``), so that every runner (ours, dask,
the bare floor) is handed exactly the same graph and builds its own structures
from it inside its timed region.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Deps = list[list[int]]


def noop(*_upstream: object) -> None:
    """The task body of the overhead runs: all cost measured is scheduling."""
    return None


def independent(n: int) -> Deps:
    return [[] for _ in range(n)]


def chain(n: int) -> Deps:
    return [[i - 1] if i else [] for i in range(n)]


def layered(n: int, layers: int = 20, seed: int = 20_26) -> Deps:
    """``layers`` equal layers; each task waits for 2-3 random tasks of the layer above."""
    rng = random.Random(seed)
    width = max(1, math.ceil(n / layers))
    deps: Deps = []
    for i in range(n):
        layer = i // width
        if layer == 0:
            deps.append([])
            continue
        above = range((layer - 1) * width, layer * width)
        deps.append(sorted(rng.sample(above, k=min(rng.randint(2, 3), len(above)))))
    return deps


SHAPES: dict[str, Callable[[int], Deps]] = {
    "independent": independent, "chain": chain, "layered": layered}


def timed(run: Callable[[], object]) -> float:
    """Seconds one call takes, after a full collection so no run pays for its predecessor's garbage."""
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class Settings:
    """Sizes of every part; ``full`` is what ``make bench`` runs, ``quick`` a few-minute look."""

    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    workers: tuple[int, ...] = (4, 2)
    repeat: int = 3           # interleaved repetitions below ``single_above`` tasks
    single_above: int = 50_000
    budget: float = 120.0     # seconds one overhead case may take, all repetitions together
    seeds: int = 20           # random DAGs of the schedule-quality part
    dag_tasks: tuple[int, int] = (30, 60)
    memory_tasks: int = 100_000
    pipeline_tasks: int = 30  # the memory budget's pipeline: a chain of large results
    pipeline_mb: int = 30
    pipeline_budget_mb: int = 200
    view_tasks: int = 5_000
    view_rounds: int = 5
    cpu_seconds: float = 1.5  # one CPU-bound task, calibrated
    cpu_rounds: int = 3
    journal_tasks: int = 10_000
    journal_rounds: int = 3
    fingerprint_tasks: int = 1_000
    fingerprint_rounds: int = 3
    map_items: int = 100_000  # the map part: one mapped task against dask, same count
    map_rounds: int = 3

    @classmethod
    def quick(cls) -> Settings:
        return cls(sizes=(1_000,), seeds=5, memory_tasks=10_000, view_tasks=1_000,
                   view_rounds=3, cpu_seconds=0.3, cpu_rounds=1, journal_tasks=2_000,
                   journal_rounds=1, fingerprint_rounds=1, map_items=10_000, map_rounds=1)


def engine_source() -> dict[str, object]:
    """Which engine was measured: its folder, the commit checked out there, local edits to it."""
    import codomyrmex_nb

    folder = Path(codomyrmex_nb.__file__).resolve().parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"path": str(folder), "commit": git("rev-parse", "--short", "HEAD") or None,
            "edited": bool(git("status", "--porcelain", "--", "."))}


def environment() -> dict[str, object]:
    import dask

    return {"python": platform.python_version(), "dask": dask.__version__,
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:],
            "load_1min": os.getloadavg()[0],  # other work on the box skews the absolute figures
            "engine": engine_source()}
