"""``make demo``: the guide's Complete Example, headless, on this project's own source.

The example analyses ``./src``; the demo analyses the installed ``codomyrmex_nb``
package instead, so the analysis is real, and leaves nothing behind but the
chart, in ``./codo_outputs/`` as for any chart: no temporary folder, and no run
journal (a one-shot run has nothing to resume).
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import ResourceType, TaskOrchestrator, TaskPriority, TaskResource


def main() -> int:
    package = Path(__file__).resolve().parent
    print(f"analysing {package}\n")

    orchestrator = TaskOrchestrator(max_workers=4, journal=False)
    orchestrator.start_execution()
    setup = orchestrator.create_task(name="setup", module="environment_setup",
                                     action="check_environment", priority=TaskPriority.HIGH)
    analysis = orchestrator.create_task(
        name="analyze", module="static_analysis", action="analyze_code_quality",
        parameters={"path": str(package)}, dependencies=[setup.id], priority=TaskPriority.NORMAL,
        resources=[TaskResource(type=ResourceType.CPU, identifier="system_cpu", mode="read")],
        timeout=300)
    chart = orchestrator.create_task(
        name="visualize", module="data_visualization", action="create_bar_chart",
        parameters={"data": "placeholder", "title": "Code Quality"},
        dependencies=[analysis.id], priority=TaskPriority.NORMAL)

    completed = orchestrator.wait_for_completion(timeout=600)
    stats = orchestrator.get_execution_stats()
    orchestrator.stop_execution()

    print(f"Completed {stats['completed']} tasks in {stats['total_execution_time']:.2f}s "
          f"(makespan {stats['makespan']:.2f}s, {stats['failed']} failed, {stats['skipped']} skipped)\n")
    for task in (setup, analysis, chart):
        result = task.result
        state = "ok" if result and result.success else f"FAILED: {result and result.error_message}"
        print(f"{task.name:<10} {task.status.value:<10} {task.execution_time or 0:.3f}s  {state}")
    if setup.result and setup.result.success:
        env = setup.result.data
        print(f"\nenvironment: Python {env.get('python_version')} on {env.get('platform')}, "
              f"dot: {env.get('dot_version') or 'missing'}, warnings: {env.get('warnings') or 'none'}")
    if analysis.result and analysis.result.success:
        totals = analysis.result.data["totals"]
        print("code quality: " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in totals.items()))
    if chart.result and chart.result.success:
        print(f"chart: {Path(chart.result.data['path']).resolve()}")
    return 0 if completed else 1


if __name__ == "__main__":
    sys.exit(main())
