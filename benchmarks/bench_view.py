"""Live view costs: one layout, one recolour, frame sizes, and the engine's throughput with the view.

Run: ``python benchmarks/bench_view.py`` (needs graphviz's ``dot``).

- layout: ``build_drawing`` + ``dot`` + ``Template.parse`` (what a structure change costs);
- recolour: one status event folded into the view (``Tracker.apply``), the looks of every node,
  and the ``<style>`` frame a browser receives; plus re-rendering the standalone ``svg``;
- layouts counted over a run with two structure changes (one per change expected).

The engine's throughput with the view attached is the suite's ``view`` part (view_cost.py).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codomyrmex_nb.core import Event, Task, TaskOrchestrator, TaskStatus  # noqa: E402
from codomyrmex_nb.notebook import drawing  # noqa: E402
from codomyrmex_nb.notebook.live_view import LiveView  # noqa: E402
from codomyrmex_nb.notebook.svg_patch import Template, style_frame  # noqa: E402


def dag(n: int, seed: int = 1, prefix: str = "step") -> list[Task]:
    rng = random.Random(seed)
    tasks: list[Task] = []
    for i in range(n):
        deps = rng.sample(tasks[max(0, i - 40):], min(i, rng.randint(0, 2))) if i else []
        tasks.append(Task(name=f"{prefix}_{i}", func=lambda: None, dependencies=deps))
    return tasks


def best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def layout_and_recolour(n: int) -> dict[str, float]:
    orch = TaskOrchestrator(max_workers=2)
    orch.add_tasks(dag(n))
    view = LiveView(orch, threshold=10_000)  # one node per task, even at 500
    snap = orch.snapshot()

    def lay() -> None:
        d = drawing.build_drawing(snap, threshold=10_000, prefix="b")
        Template.parse(drawing.layout(d.graph))

    target = snap.tasks[n // 2]
    flip = iter(range(10**9))

    def recolour() -> None:  # what the view thread does for one status change
        status = TaskStatus.RUNNING if next(flip) % 2 else TaskStatus.COMPLETED
        painter.tracker.apply([Event("status", target.id, target.name, status)])
        painter.style_rules(painter.looks())
        painter.tracker.changed.clear()

    painter = view._painter
    looks = painter.looks()
    full_css = painter.template.render(looks, painter.hot, css=True)
    first = next(iter(looks))
    one, every = style_frame({first: looks[first]}), style_frame(looks)
    out = {"layout_s": best(lay, 3), "recolour_ms": best(recolour, 50) * 1e3,
           "svg_ms": best(painter.standalone, 20) * 1e3,
           "full_kb": len(full_css.encode()) / 1e3, "one_kb": len(one.encode()) / 1e3,
           "every_kb": len(every.encode()) / 1e3}
    view.close()
    return out


def count_layouts() -> tuple[int, int]:
    """Two batches added to a running engine: layouts versus structure versions."""
    orch = TaskOrchestrator(max_workers=4)
    view = LiveView(orch)
    versions = {orch.structure_version}
    orch.start_execution()
    for batch in range(2):
        orch.add_tasks(dag(100, seed=batch, prefix=f"b{batch}"))
        versions.add(orch.structure_version)
        orch.wait_for_completion(60)
        view.flush(10)
    orch.stop_execution()
    view.flush(10)
    layouts = view.layouts
    view.close()
    return layouts, len(versions)


def grouped_layout(n: int) -> float:
    orch = TaskOrchestrator(max_workers=2)
    orch.add_tasks(dag(n))
    start = time.perf_counter()
    view = LiveView(orch)  # snapshot + grouping + dot + parse + first frame
    elapsed = time.perf_counter() - start
    view.close()
    return elapsed


def main() -> None:
    if not drawing.dot_available():
        sys.exit(drawing.INSTALL_HINT)
    print(f"{'tasks':>6} {'layout s':>9} {'recolour ms':>12} {'svg ms':>7} "
          f"{'full SVG KB':>12} {'1-node frame KB':>16} {'all-nodes frame KB':>19}")
    for n in (50, 200, 500):
        r = layout_and_recolour(n)
        print(f"{n:>6} {r['layout_s']:>9.3f} {r['recolour_ms']:>12.3f} {r['svg_ms']:>7.2f} "
              f"{r['full_kb']:>12.1f} {r['one_kb']:>16.2f} {r['every_kb']:>19.1f}")
    for n in (5_000, 10_000):
        print(f"grouped view of {n} tasks, first frame (snapshot, grouping, dot): "
              f"{grouped_layout(n):.3f} s")
    layouts, versions = count_layouts()
    print(f"layouts: {layouts} for {versions} structure versions")
    print("engine throughput with the view: python benchmarks/run.py --only view")


if __name__ == "__main__":
    main()
