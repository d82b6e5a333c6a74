"""What the run journal costs: throughput with it on (as shipped) against off, same run.

Each run defines the tasks one ``create_task`` at a time, starts, waits, and
stops: ``stop_execution`` commits what the journal still holds, so the time
counts until the last commit. Two kinds of task, both returning a non-None
result (so every result is fingerprinted, pickled and stored): *short* tasks
(1 ms of sleep, a task that does something) and *no-op* tasks (the worst case:
nothing to hide the bookkeeping behind). Runs alternate off / on.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import Settings, median

from codomyrmex_nb import TaskOrchestrator


def short_task(i: int) -> int:
    time.sleep(0.001)
    return i * 2


def noop_task(i: int) -> int:
    return i * 2


def _run(n: int, func: Callable[[int], int], journal: Path | bool) -> float:
    gc.collect()  # as every part: no run pays for the previous run's garbage
    orch = TaskOrchestrator(max_workers=4, journal=journal)
    began = time.perf_counter()
    for i in range(n):
        orch.create_task(f"t{i}", func=func, parameters={"i": i})
    orch.start_execution()
    if not orch.wait_for_completion(600):
        raise RuntimeError("the journal run did not finish")
    orch.stop_execution()  # commits the journal's last rows
    return time.perf_counter() - began


def run(settings: Settings, log: Callable[[str], None] = print) -> dict:
    n = settings.journal_tasks
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kind, func in (("short (1 ms)", short_task), ("no-op", noop_task)):
            times: dict[str, list[float]] = {"off": [], "on": []}
            for rep in range(settings.journal_rounds):
                times["off"].append(_run(n, func, False))
                times["on"].append(_run(n, func, Path(folder) / f"j{rep}-{len(rows)}.sqlite"))
            off, on = median(times["off"]), median(times["on"])
            row = {"kind": kind, "tasks": n, "off_tasks_per_s": n / off,
                   "on_tasks_per_s": n / on, "cost": 1 - off / on}
            rows.append(row)
            log(f"journal {kind}: {row['off_tasks_per_s']:,.0f} tasks/s off, "
                f"{row['on_tasks_per_s']:,.0f} on ({row['cost']:.0%} of throughput)")
    return {"rows": rows}


def table(result: dict) -> str:
    lines = ["Throughput until the last commit, journal off vs on (as shipped), "
             "tasks returning a result; target: under 10% on short tasks.", "",
             "| tasks | kind | off tasks/s | on tasks/s | cost |", "|---:|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['tasks']:,} | {r['kind']} | {r['off_tasks_per_s']:,.0f} | "
                     f"{r['on_tasks_per_s']:,.0f} | {r['cost']:.0%} |")
    return "\n".join(lines)
