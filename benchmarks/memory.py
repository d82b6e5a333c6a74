"""Memory held per task: what a large notebook workflow keeps alive in the kernel.

tracemalloc counts the Python allocations still reachable after a full
collection, relative to just before the orchestrator was built, for the
layered shape (so edges are counted): once with every task defined but not
started, once with every task finished with a small int result and the engine
stopped (what a notebook holds after a run). The dependency lists the tasks are
built from are allocated before tracing starts and are not counted. Then, untraced,
how long reading those 100,000 finished tasks back takes: ``get_execution_stats()``
(kept as the tasks change, so it should not depend on their number) and
``tasks_frame()``.

Then the memory budget (``memory_pipeline.py``, a process each): the peak RSS of a
chain of large results (30 tasks of 30 MB: 900 MB of results) with a 200 MB budget
and without one, each with its journal in a fresh temporary folder.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from common import Settings, layered, median, timed

from codomyrmex_nb import Task, TaskOrchestrator


def small_result() -> int:
    return 1


def _held() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def run(settings: Settings, log: Callable[[str], None] = print) -> dict:
    n = settings.memory_tasks
    deps = layered(n)
    gc.collect()
    tracemalloc.start()
    try:
        base = _held()
        orch = TaskOrchestrator(max_workers=4)
        tasks: list[Task] = []
        for i, ups in enumerate(deps):
            tasks.append(Task(name=f"t{i}", func=small_result,
                              dependencies=[tasks[u] for u in ups]))
        orch.add_tasks(tasks)
        del tasks
        pending = _held() - base
        orch.start_execution()
        ok = orch.wait_for_completion(3600)
        orch.stop_execution()
        if not ok:
            raise RuntimeError("the memory run did not finish")
        finished = _held() - base
    finally:
        tracemalloc.stop()
    # Reading them back, untraced: the guide's monitoring loop calls the stats every second.
    stats_s = median([timed(orch.get_execution_stats) for _ in range(21)])
    frame_s = median([timed(orch.tasks_frame) for _ in range(3)])
    result = {"tasks": n, "shape": "layered", "pending_bytes_per_task": pending / n,
              "finished_bytes_per_task": finished / n, "stats_ms": stats_s * 1e3,
              "tasks_frame_s": frame_s}
    log(f"memory {n:,} tasks: pending {pending / n:,.0f} B/task, "
        f"finished {finished / n:,.0f} B/task; stats {stats_s * 1e3:.3f} ms, "
        f"tasks_frame {frame_s:.2f} s")
    result["pipeline"] = pipeline(settings, log)
    return result


def pipeline(settings: Settings, log: Callable[[str], None] = print) -> dict:
    """Peak RSS of the large-results chain, with the budget and without one."""
    tasks, mb, budget = settings.pipeline_tasks, settings.pipeline_mb, settings.pipeline_budget_mb
    script = Path(__file__).resolve().parent / "memory_pipeline.py"
    out = {"tasks": tasks, "mb": mb, "budget_mb": budget}
    for key, limit in (("with_budget", f"{budget}MiB"), ("without", "none")):
        folder = tempfile.mkdtemp(prefix="codo-bench-pipeline-")
        try:
            done = subprocess.run(
                [sys.executable, str(script), os.path.join(folder, "j.sqlite"), str(tasks),
                 str(mb), limit], capture_output=True, text=True, timeout=3600, check=False)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if done.returncode != 0:
            raise RuntimeError(f"the memory pipeline failed: {done.stderr[-2000:]}")
        run = json.loads(done.stdout.strip().splitlines()[-1])
        if not (run["ok"] and run["all_equal"]):
            raise RuntimeError(f"the memory pipeline ({key}) lost or changed results: {run}")
        out[key] = run
        log(f"pipeline {tasks} x {mb} MB, {key.replace('_', ' ')}: peak "
            f"{run['peak_above_mb']:,.0f} MB above the start, {run['seconds']:.1f} s, "
            f"{run['drops']} dropped, {run['read_backs']} read back")
    return out


def table(result: dict) -> str:
    return "\n".join([
        f"{result['tasks']:,} tasks ({result['shape']} shape), bytes held per task "
        "(tracemalloc, after gc):",
        "",
        "| state | bytes per task |",
        "|---|---:|",
        f"| pending (defined, not started) | {result['pending_bytes_per_task']:,.0f} |",
        f"| finished (int result, engine stopped) | {result['finished_bytes_per_task']:,.0f} |",
        "",
        "Reading the finished tasks back (median of 21 calls and of 3):",
        "",
        "| call | time | target |",
        "|---|---:|---:|",
        f"| `get_execution_stats()` | {result['stats_ms']:.3f} ms | 1 ms |",
        f"| `tasks_frame()` | {result['tasks_frame_s']:.2f} s | 1 s |",
        *_pipeline_table(result.get("pipeline")),
    ])


def _pipeline_table(run: dict | None) -> list[str]:
    if not run:
        return []
    rows = ["", f"The memory budget: a chain of {run['tasks']} tasks each returning "
            f"{run['mb']} MB ({run['tasks'] * run['mb']:,} MB of results), peak RSS above "
            "the process's RSS before the run (its own process; the journal on disk):", "",
            "| memory_limit | peak RSS above start | time | results dropped | read back to check them |",
            "|---|---:|---:|---:|---:|"]
    for key, label in (("with_budget", f"{run['budget_mb']} MiB"), ("without", "none")):
        side = run[key]
        rows.append(f"| {label} | {side['peak_above_mb']:,.0f} MB | {side['seconds']:.1f} s | "
                    f"{side['drops']} | {side['read_backs']} |")
    return rows
