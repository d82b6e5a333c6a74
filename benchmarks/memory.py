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
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

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
    return result


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
    ])
