"""Executors on CPU-bound work: which one actually uses both cores, and what it costs to start.

Six pure-Python loops (calibrated to ``cpu_seconds`` each) on 2 workers:
serially in this process, then through our orchestrator on each executor.
Wall time runs from ``start_execution`` to the end of ``wait_for_completion``;
start-up is the time from ``start_execution`` to the first loop starting, read
from the wall-clock stamp the loop itself returns (so it means the same thing
in a thread, a process or a Dask worker). Threads share the GIL and should stay
near 1x; worker processes (``processes``, the local cluster ``dask`` starts by
default, a cluster at ``address=``) can reach 2x.
The command-line cluster is started once, before the first round, and idles
while the other sides run.
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from collections.abc import Callable

import cloudpickle
from cluster import alive, dask_cli_cluster
from common import Settings

from codomyrmex_nb import TaskOrchestrator

TASKS, WORKERS = 6, 2

# Dask workers started from the command line cannot import this file: ship the loop by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def spin(loops: int) -> tuple[float, float]:
    """Pure-Python CPU work; returns its wall-clock start and end (comparable across processes)."""
    started = time.time()
    total = 0
    for i in range(loops):
        total += i * i % 7
    return started, time.time()


def calibrate(seconds: float) -> int:
    """Loop count for ``seconds`` of work, from the fastest of three ~0.2 s trials.

    The fastest, because a trial can only be slowed by other load, and a slowed
    trial would shrink every task (once, 10x: calibrated during a busy moment).
    """
    loops = 100_000
    while True:
        took = min(_trial(loops) for _ in range(3))
        if took > 0.2 or took > seconds:
            return max(1, int(loops * seconds / took))
        loops *= 4


def _trial(loops: int) -> float:
    start = time.perf_counter()
    spin(loops)
    return time.perf_counter() - start


def run_serial(loops: int) -> dict:
    start = time.perf_counter()
    for _ in range(TASKS):
        spin(loops)
    return {"wall_s": time.perf_counter() - start, "startup_s": 0.0}


def run_executor(loops: int, executor: str, address: str | None = None) -> dict:
    orch = TaskOrchestrator(max_workers=WORKERS, executor=executor, address=address)
    try:
        tasks = [orch.create_task(f"cpu{i}", func=functools.partial(spin, loops))
                 for i in range(TASKS)]
        began_wall, began = time.time(), time.perf_counter()
        orch.start_execution()
        ok = orch.wait_for_completion(600)
        wall = time.perf_counter() - began
        if not ok:
            errors = {t.name: (r.error_type, r.error_message) for t in tasks
                      if (r := orch.get_task_result(t.id)) is None or not r.success}
            raise RuntimeError(f"the {executor} run failed: {errors}")
        spans = sorted([round(a - began_wall, 3), round(b - began_wall, 3)]
                       for a, b in (orch.get_task_result(t.id).data for t in tasks))
        return {"wall_s": wall, "startup_s": spans[0][0], "spans_s": spans}
    finally:
        orch.stop_execution()


def run(settings: Settings, log: Callable[[str], None] = print) -> dict:
    """Rounds of every side in turn (load hits all alike); medians over the rounds."""
    loops = calibrate(settings.cpu_seconds)
    result: dict = {"tasks": TASKS, "workers": WORKERS, "task_seconds": settings.cpu_seconds,
                    "loops": loops, "rounds": settings.cpu_rounds}
    with dask_cli_cluster(WORKERS) as cluster:
        sides = {"serial": lambda: run_serial(loops),
                 **{name: functools.partial(run_executor, loops, name)
                    for name in ("threads", "processes", "dask")},
                 "dask, address=": lambda: run_executor(loops, "dask", cluster.address)}
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for _ in range(settings.cpu_rounds):
            for name, side in sides.items():
                runs[name].append(side())
                log(f"executors {name}: {runs[name][-1]['wall_s']:.2f} s")
        result["cluster_start_s"], pids = cluster.start_seconds, cluster.pids
    result["cluster_pids"], result["cluster_left_running"] = pids, alive(pids)
    serial = [r["wall_s"] for r in runs["serial"]]
    rows = result["rows"] = {}
    for name, done in runs.items():
        walls = [r["wall_s"] for r in done]
        middle = sorted(done, key=lambda r: r["wall_s"])[len(done) // 2]
        rows[name] = {"wall_s": statistics.median(walls), "walls_s": walls,
                      "startup_s": statistics.median(r["startup_s"] for r in done),
                      # per round: other load on the box changes between rounds more than within
                      "speedup": statistics.median(a / b for a, b in zip(serial, walls, strict=True)),
                      "spans_s": middle.get("spans_s")}
    log(f"executors: cluster processes left running: {result['cluster_left_running'] or 'none'}")
    return result


def table(result: dict) -> str:
    each = result["rows"]["serial"]["wall_s"] / result["tasks"]
    lines = [f"{result['tasks']} CPU-bound pure-Python tasks of {each:.2f} s each (serially) on "
             f"{result['workers']} workers, median of {result['rounds']} rounds (speed-up: of each "
             "round's serial / executor wall time). The command-line "
             f"cluster (`dask scheduler` + {result['workers']} x `dask worker --nthreads 1`) took "
             f"{result['cluster_start_s']:.1f} s to start, not counted.",
             "",
             "| executor | wall s | speed-up vs serial | start-up s |",
             "|---|---:|---:|---:|"]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | {row['wall_s']:.2f} | {row['speedup']:.2f}x "
                     f"| {row['startup_s']:.3f} |")
    return "\n".join(lines)
