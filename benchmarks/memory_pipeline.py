"""One pipeline of large results, run in a process of its own: its peak RSS is its own.

    python memory_pipeline.py JOURNAL TASKS MB LIMIT   # LIMIT: a memory_limit, or "none"

A chain of TASKS tasks, each reading its upstream array and returning a new one of
MB megabytes, on two workers with the journal in JOURNAL. Prints one JSON line: the
peak RSS above the RSS before the run (Linux ``VmHWM``, reset first; elsewhere
``ru_maxrss``, from process start), seconds, the budget's counters at the end of
the run, and whether every result reads back equal to what was computed (and how
many of them were read back from the journal for that).
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import time

import numpy as np

from codomyrmex_nb import Task, TaskOrchestrator


def _status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as file:
            return next(int(line.split()[1]) * 1024 for line in file if line.startswith(key))
    except (OSError, StopIteration):
        return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


def step(i: int, mb: int, upstream: dict) -> np.ndarray:
    prev = next(iter(upstream.values()), None)
    out = np.empty(mb * 2**20 // 8)
    out[:] = i if prev is None else prev[1] + 1  # uses its upstream value
    out[0] = i
    return out


def main(journal: str, tasks: int, mb: int, limit: str) -> dict:
    orch = TaskOrchestrator(max_workers=2, journal=journal,
                            memory_limit=None if limit == "none" else limit)
    chain: list[Task] = []
    for i in range(tasks):
        chain.append(Task(name=f"t{i}", func=functools.partial(step, i, mb),
                          dependencies=chain[-1:]))
    orch.add_tasks(chain)
    exact = _reset_peak()
    before = _status("VmRSS") if exact else 0
    began = time.perf_counter()
    orch.start_execution()
    ok = orch.wait_for_completion(3600)
    seconds = time.perf_counter() - began
    peak = _status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    orch.stop_execution()
    stats = orch.memory_stats()
    equal = all(bool((d := orch.get_task_result(t.name).data)[0] == i and d[1] == i
                     and d.nbytes == mb * 2**20) for i, t in enumerate(chain))
    return {"ok": ok, "peak_above_mb": (peak - (before or 0)) / 2**20, "seconds": seconds,
            "exact_peak": exact, "all_equal": equal, **stats,
            "read_backs": orch.memory_stats()["read_backs"]}  # checking every result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
