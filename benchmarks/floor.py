"""The practical floor: the least a pull scheduler on Python threads can cost per task.

No states, events, timestamps, retries or results frames: an array of
unfinished-dependency counts, one heap of ready task indices and one
condition. A worker that finishes a task does the bookkeeping and pops its
next task in the same lock hold (the design our engine follows), so the gap
between our engine and this is what our bookkeeping costs; the gap between
this and dask is the price of dask's scheduling-loop hand-off.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable

from common import Deps


def run_floor(deps: Deps, workers: int, body: Callable[[], object]) -> list[object]:
    """Run ``body`` once per task of ``deps`` on ``workers`` threads; returns the results."""
    n = len(deps)
    waiting = [len(ups) for ups in deps]
    dependents: list[list[int]] = [[] for _ in range(n)]
    for i, ups in enumerate(deps):
        for up in ups:
            dependents[up].append(i)
    ready = [i for i in range(n) if not waiting[i]]  # indices are already in heap order
    results: list[object] = [None] * n
    cond = threading.Condition()
    left = n

    def worker() -> None:
        nonlocal left
        done, value = -1, None
        while True:
            with cond:
                if done >= 0:
                    results[done] = value
                    left -= 1
                    for down in dependents[done]:
                        waiting[down] -= 1
                        if not waiting[down]:
                            heapq.heappush(ready, down)
                            cond.notify()
                    if not left:
                        cond.notify_all()
                while not ready and left:
                    cond.wait()
                if not ready:
                    return
                done = heapq.heappop(ready)
            value = body()

    threads = [threading.Thread(target=worker, name=f"floor-{k}") for k in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
