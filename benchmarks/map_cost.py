"""Map: 100,000 no-op items of one mapped task against dask running 100,000 no-op tasks.

The map issue's target: a map of 100,000 no-op items, with the shipped defaults
(journal on, output captured per attempt), timed end to end (``create_task`` of
the mapped task over a 100,000-element list, ``start_execution``,
``wait_for_completion`` and ``stop_execution``, which commits the journal's last
rows) at most a quarter of the time ``dask.threaded.get`` takes for the same
number of independent no-op tasks (building its graph counted), in the same
process, the sides alternating. Beside them, for scale: the map with the
journal off (labelled), and the same number of plain tasks defined by one
``add_tasks`` (an item should cost no more than a plain task). Wall time and
the process's CPU time (every thread: the journal's writer included) per item.

Then the memory a pending item holds: tracemalloc, after a full collection,
around a map whose items are known but not run (``max_parallel=1`` and the
first item waiting on an event), relative to just before ``create_task`` (the
list mapped over is the caller's and is not counted). Target: under 300 bytes.
"""

from __future__ import annotations

import gc
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import dask
import dask.threaded
from common import Settings, median, noop

from codomyrmex_nb import Task, TaskOrchestrator

WORKERS = 4  # the overhead part's first case; dask gets as many


def item_noop(item: object) -> None:
    return None


_BEGAN, _GATE = threading.Event(), threading.Event()  # globals: a closure over them would
# make the items unhashable, so no fingerprints would be made (and counted)


def first_waits(item: int) -> None:
    """The memory map's items: the first one waits, so the others stay pending."""
    _BEGAN.set()
    _GATE.wait(600)


def run_map(items: list[int], journal: Path | bool) -> None:
    orch = TaskOrchestrator(max_workers=WORKERS, journal=journal)
    try:
        orch.create_task("noop", func=item_noop, map=items)
        orch.start_execution()
        if not orch.wait_for_completion(3600):
            raise RuntimeError(f"the map of {len(items)} items did not finish")
    finally:
        orch.stop_execution()


def run_plain(n: int, journal: Path) -> None:
    orch = TaskOrchestrator(max_workers=WORKERS, journal=journal)
    try:
        orch.add_tasks([Task(name=f"t{i}", func=noop) for i in range(n)])
        orch.start_execution()
        if not orch.wait_for_completion(3600):
            raise RuntimeError(f"{n} plain tasks did not finish")
    finally:
        orch.stop_execution()


def run_dask(n: int) -> None:
    graph = {f"t{i}": (noop,) for i in range(n)}
    dask.threaded.get(graph, list(graph), num_workers=WORKERS)


def _timed(run: Callable[[], None]) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call, after a full collection."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def pending_bytes(n: int, folder: str) -> float:
    """Bytes held per item of an ``n``-item map whose items are known but not run."""
    items = list(range(n))
    _BEGAN.clear()
    _GATE.clear()
    gc.collect()
    tracemalloc.start()
    orch = None
    try:
        base = tracemalloc.get_traced_memory()[0]
        orch = TaskOrchestrator(max_workers=WORKERS, journal=Path(folder) / "memory.sqlite")
        orch.create_task("held", func=first_waits, map=items, max_parallel=1)
        orch.start_execution()
        if not _BEGAN.wait(600):
            raise RuntimeError("the memory map's first item never started")
        orch._engine.recorder.journal.flush(600)  # the expansion's rows are on disk, not queued
        state = orch._engine.sched.lookup("held").mapping
        if state.fps is None or len(state.fps) != n:
            raise RuntimeError("the memory map's items were not fingerprinted: not as shipped")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        _GATE.set()
        if orch is not None:
            orch.stop_execution()
    return held / n


def run(settings: Settings, log: Callable[[str], None] = print) -> dict:
    n = settings.map_items
    items = list(range(n))
    times: dict[str, list[tuple[float, float]]] = {"dask": [], "map": [], "map_journal_off": [],
                                                   "plain": []}
    with tempfile.TemporaryDirectory() as folder:
        for rep in range(settings.map_rounds):
            sides: dict[str, Callable[[], None]] = {
                "dask": lambda: run_dask(n),
                "map": lambda rep=rep: run_map(items, Path(folder) / f"map{rep}.sqlite"),
                "map_journal_off": lambda: run_map(items, False),
                "plain": lambda rep=rep: run_plain(n, Path(folder) / f"plain{rep}.sqlite")}
            for name, side in sides.items():
                times[name].append(_timed(side))
            log(f"map {n:,} items, round {rep + 1}: " + ", ".join(
                f"{name} {times[name][-1][0] / n * 1e6:.1f} us" for name in sides))
        per_item = pending_bytes(n, folder)
    result: dict = {"items": n, "workers": WORKERS, "rounds": settings.map_rounds}
    for name, runs in times.items():
        result[f"{name}_us"] = median([w for w, _ in runs]) / n * 1e6
        result[f"{name}_cpu_us"] = median([c for _, c in runs]) / n * 1e6
    for name in ("map", "map_journal_off", "plain"):
        result[f"{name}_vs_dask"] = result[f"{name}_us"] / result["dask_us"]
        result[f"{name}_cpu_vs_dask"] = result[f"{name}_cpu_us"] / result["dask_cpu_us"]
    result["pending_bytes_per_item"] = per_item
    log(f"map: {result['map_us']:.1f} us/item, {result['map_vs_dask']:.2f}x dask "
        f"(CPU {result['map_cpu_vs_dask']:.2f}x); {per_item:,.0f} bytes per pending item")
    return result


def table(result: dict) -> str:
    n = result["items"]
    rows = [("dask.threaded.get, independent no-op tasks", "dask", None),
            ("ours: one mapped task (shipped defaults)", "map", "map"),
            ("ours: the map, journal off", "map_journal_off", "map_journal_off"),
            ("ours: plain tasks, one `add_tasks`", "plain", "plain")]
    lines = [f"{n:,} no-op items (or tasks) on {result['workers']} workers, median of "
             f"{result['rounds']} alternating rounds; CPU is the process's, every thread.", "",
             "| run | µs per item | CPU µs per item | / dask | CPU / dask |",
             "|---|---:|---:|---:|---:|"]
    for label, key, ratio in rows:
        wall = "-" if ratio is None else f"{result[f'{ratio}_vs_dask']:.2f}"
        cpu = "-" if ratio is None else f"{result[f'{ratio}_cpu_vs_dask']:.2f}"
        lines.append(f"| {label} | {result[f'{key}_us']:.1f} | {result[f'{key}_cpu_us']:.1f} "
                     f"| {wall} | {cpu} |")
    lines += ["", f"Target: the map at most 0.25x dask's time. Memory held per pending item "
              f"(expanded, not run): {result['pending_bytes_per_item']:,.0f} bytes (target: "
              "under 300)."]
    return "\n".join(lines)
