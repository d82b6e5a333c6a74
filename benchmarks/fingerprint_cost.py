"""What fingerprints that see what the code uses cost: cache=True tasks reading module
attributes and a big global list.

The task function lives in a user module (written to a temporary folder, as a
project's own code would be) and reads ``helper.g`` (a function of another user
module), ``helper.K`` (a value of it) and ``BIG``, a global list of 100,000 ints:
each fingerprint hashes all three by content (``g`` by its code, ``K`` and ``BIG``
by their values), at definition (is it in the cache?) and again as each attempt
starts. Each run defines the tasks one ``create_task`` at a time, starts, waits and
stops (the last journal commit included), as the journal part does. Three runs:
the journal off (no fingerprint at all: the floor), the first run with
``cache=True`` (fingerprinted twice, computed, stored), and the cached re-run in a
new orchestrator on the same journal (fingerprinted once, every result restored).
Also: one fingerprint of the function alone (CPU time), mostly the cost of reading
``BIG``. Wall and process CPU time are both reported: on a busy machine the first
grows with the load, the second much less.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from common import Settings, median

from codomyrmex_nb import TaskOrchestrator
from codomyrmex_nb.core.fingerprint import code_fingerprint

HELPER = """
K = [3, 1, 4, 1, 5]

def g(x):
    return x * 2
"""

FLOW = """
import fp_bench_helper as helper

BIG = list(range({size}))

def work(i):
    return helper.g(i) + helper.K[0] + len(BIG)
"""

LIST_SIZE = 100_000


def _load(folder: Path) -> Callable[[int], int]:
    (folder / "fp_bench_helper.py").write_text(textwrap.dedent(HELPER))
    (folder / "fp_bench_flow.py").write_text(FLOW.format(size=LIST_SIZE))
    sys.path.insert(0, str(folder))
    for name in ("fp_bench_helper", "fp_bench_flow"):
        sys.modules.pop(name, None)
    return importlib.import_module("fp_bench_flow").work


def _run(n: int, func: Callable[[int], int], journal: Path | bool) -> tuple[float, float, int]:
    """(seconds, CPU seconds of the process, tasks restored at definition)."""
    orch = TaskOrchestrator(max_workers=4, journal=journal)
    cpu = time.process_time()
    began = time.perf_counter()
    tasks = [orch.create_task(f"t{i}", func=func, parameters={"i": i}, cache=journal is not False)
             for i in range(n)]
    restored = sum(1 for t in tasks if t.result is not None)
    orch.start_execution()
    if not orch.wait_for_completion(600):
        raise RuntimeError("the fingerprint run did not finish")
    orch.stop_execution()
    return time.perf_counter() - began, time.process_time() - cpu, restored


def run(settings: Settings, log: Callable[[str], None] = print) -> dict:
    n = settings.fingerprint_tasks
    rounds = max(1, settings.fingerprint_rounds)
    with tempfile.TemporaryDirectory() as folder:
        func = _load(Path(folder))
        try:
            singles = []
            for _ in range(max(20, rounds)):
                began = time.thread_time()
                code_fingerprint(func)
                singles.append(time.thread_time() - began)
            times: dict[str, list[float]] = {"off": [], "first": [], "cached": []}
            cpus: dict[str, list[float]] = {"off": [], "first": [], "cached": []}
            for rep in range(rounds):
                journal = Path(folder) / f"j{rep}.sqlite"
                for kind, path in (("off", False), ("first", journal), ("cached", journal)):
                    wall, cpu, restored = _run(n, func, path)
                    if kind == "cached" and restored != n:
                        raise RuntimeError(f"the cached re-run restored {restored} of {n} tasks")
                    times[kind].append(wall)
                    cpus[kind].append(cpu)
        finally:
            sys.path.remove(folder)
    us = {kind: median(values) / n * 1e6 for kind, values in times.items()}
    cpu_us = {kind: median(values) / n * 1e6 for kind, values in cpus.items()}
    result = {"tasks": n, "list_size": LIST_SIZE, "off_us_per_task": us["off"],
              "first_us_per_task": us["first"], "cached_us_per_task": us["cached"],
              "off_cpu_us_per_task": cpu_us["off"], "first_cpu_us_per_task": cpu_us["first"],
              "cached_cpu_us_per_task": cpu_us["cached"],
              "fingerprint_us": median(singles) * 1e6}
    log(f"fingerprint: {n} cache=True tasks reading helper.g, helper.K and a "
        f"{LIST_SIZE:,}-int global list: {us['first']:,.0f} µs/task first run, "
        f"{us['cached']:,.0f} µs/task cached re-run ({us['off']:,.0f} with the journal off); "
        f"CPU {cpu_us['first']:,.0f} / {cpu_us['cached']:,.0f} / {cpu_us['off']:,.0f} µs/task; "
        f"one fingerprint {result['fingerprint_us']:,.0f} µs of CPU")
    return result


def table(result: dict) -> str:
    n, size = result["tasks"], result["list_size"]
    return "\n".join([
        f"{n:,} `cache=True` tasks whose function reads `helper.g`, `helper.K` (a user "
        f"module's function and value) and a {size:,}-element global list, each hashed by "
        "content at definition and as the attempt starts; until the last commit.", "",
        "| run | µs per task | CPU µs per task |", "|---|---:|---:|",
        f"| journal off (no fingerprints) | {result['off_us_per_task']:,.0f} | "
        f"{result['off_cpu_us_per_task']:,.0f} |",
        f"| first run, `cache=True` | {result['first_us_per_task']:,.0f} | "
        f"{result['first_cpu_us_per_task']:,.0f} |",
        f"| cached re-run (all restored) | {result['cached_us_per_task']:,.0f} | "
        f"{result['cached_cpu_us_per_task']:,.0f} |",
        f"| one fingerprint of the function | | {result['fingerprint_us']:,.0f} |"])
