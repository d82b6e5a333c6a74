"""Live view cost: engine throughput with the view attached, against the same run without it.

The view must never slow the engine much: it draws on its own thread and paces
itself, but it shares the GIL with the workers. Each round runs every mode once,
in one process, so they meet the same load; medians over the rounds. Modes:
no subscriber; a do-nothing subscriber (the cost of event delivery alone); the
view opened after the tasks were defined (the usual notebook order); the view
open while the tasks are added (it lays out the new graph as it grows).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

from common import Settings, noop

from codomyrmex_nb import Task, TaskOrchestrator, live_view

MODES = ("without", "bare subscriber", "view, tasks defined first",
         "view, tasks added while watching")
WORK = {"no-op": 0.0, "1 ms sleep": 0.001}


def sleep_1ms() -> None:
    time.sleep(0.001)


def run_once(n: int, mode: str, body: Callable[[], None]) -> tuple[float, float | None]:
    """Tasks per second from start_execution() to the end, and frames drawn per second."""
    orch = TaskOrchestrator(max_workers=4)
    view = live_view(orch) if mode == "view, tasks added while watching" else None
    if mode == "bare subscriber":
        orch.subscribe(lambda event: None)
    orch.add_tasks(Task(name=f"t{i}", func=body) for i in range(n))
    if mode == "view, tasks defined first":
        view = live_view(orch)
    frames = view.frames if view is not None else 0
    gc.collect()  # no run pays for the garbage of the one before (common.timed does the same)
    start = time.perf_counter()
    orch.start_execution()
    ok = orch.wait_for_completion(300)
    elapsed = time.perf_counter() - start
    orch.stop_execution()
    if not ok:
        raise RuntimeError("a live-view run did not finish")
    if view is None:
        return n / elapsed, None
    view.flush(30)
    drawn = (view.frames - frames) / (time.perf_counter() - start)
    view.close()
    return n / elapsed, drawn


def throughput(body: Callable[[], None], n: int, rounds: int) -> dict[str, dict]:
    runs: dict[str, list[tuple[float, float | None]]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            runs[mode].append(run_once(n, mode, body))
    out = {}
    for mode, results in runs.items():
        fps = [f for _, f in results if f is not None]
        out[mode] = {"tasks_per_s": statistics.median(t for t, _ in results),
                     "frames_per_s": statistics.median(fps) if fps else None}
    base = out["without"]["tasks_per_s"]
    for values in out.values():
        values["kept"] = values["tasks_per_s"] / base
    return out


def run(settings: Settings, log: Callable[[str], None] = print) -> dict:
    from codomyrmex_nb.notebook.drawing import dot_available

    result: dict = {"tasks": settings.view_tasks, "rounds": settings.view_rounds, "workers": 4,
                    "dot": dot_available()}  # without dot the view draws no picture: cheaper
    for label, seconds in WORK.items():
        body = sleep_1ms if seconds else noop
        result[label] = throughput(body, settings.view_tasks, settings.view_rounds)
        log(f"view {label}: " + ", ".join(
            f"{m} {v['kept']:.0%}" for m, v in result[label].items()))
    return result


def table(result: dict) -> str:
    lines = [f"{result['tasks']:,} tasks, {result['workers']} workers, median of "
             f"{result['rounds']} rounds; kept = throughput / throughput without a subscriber"
             + ("." if result["dot"] else "; graphviz `dot` was missing (no drawing: too cheap)."),
             "",
             "| tasks | mode | tasks/s | kept | frames/s |",
             "|---|---|---:|---:|---:|"]
    for label in WORK:
        for mode, v in result[label].items():
            fps = "-" if v["frames_per_s"] is None else f"{v['frames_per_s']:.1f}"
            lines.append(f"| {label} | {mode} | {v['tasks_per_s']:,.0f} | {v['kept']:.0%} "
                         f"| {fps} |")
    return "\n".join(lines)
