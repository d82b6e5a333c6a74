"""Write the notebook tour (``01_quickstart.ipynb`` ... ``06_map.ipynb``).

The notebooks are generated from this file so that a review reads plain
Python, and they are committed without outputs. Edit here, then run::

    .venv/bin/python notebooks/build_notebooks.py

Every notebook runs as a test (``pytest --nbval-lax``, see ``make test``), so
each one stays quick: tasks do real work on this package's own code (``PACKAGE``,
found from ``codomyrmex_nb.__file__``, so a notebook runs from any folder: copied
alone, opened on Binder, or run by a test in an empty one) or wait a moment with
``threading.Event().wait(seconds)``.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
TOUR = [
    ("01_quickstart", "the guide's Complete Example, the live DAG and the stats frame"),
    ("02_cell_magics", "tasks defined in cells, dependencies, re-running a changed cell"),
    ("03_resources_and_priorities", "priorities, resource locks and pools, task settings"),
    ("04_failures_retries_cancel", "waiting, monitoring, failures, retries, timeouts, cancelling"),
    ("05_performance_analysis", "statistics, result frames, task output, bottlenecks, the "
     "timeline, and the GIL"),
    ("06_map", "one cell run once per item: a grid search, a fan-out over files with a bad "
     "one tolerated, a cleanup that runs after a failure"),
]


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def tour_footer(current: str) -> nbformat.NotebookNode:
    lines = []
    for name, what in TOUR:
        link = f"**{name}**" if name == current else f"[{name}]({name}.ipynb)"
        lines.append(f"1. {link}: {what}")
    return md("### The tour\n\n" + "\n".join(lines))


# -- 01 ---------------------------------------------------------------------------------------
def quickstart() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 01 · Quickstart: the Complete Example, live

The guide's *Complete Example* (`TASK_ORCHESTRATION_GUIDE.md`): check the
environment, analyse code, chart the result, with dependencies, priorities and a
resource. The engine runs in background threads; the **live view** shows the
DAG in a side panel beside this notebook and recolours each task as it moves
from queued (grey) to running (light green) to success (green); each node also
carries a glyph (▶ running, ✓ done, ✗ failed ...), so colour is never the only
cue.

Run everything with **Run ▸ Run All Cells**.
"""),
        md("""
## Quick Start

Load the magics and get the process-wide orchestrator (the one `%codo_run`
starts).
"""),
        code("""
%load_ext codomyrmex_nb
from codomyrmex_nb import (
    get_task_orchestrator,
    Task,
    TaskPriority,
    TaskResource,
    ResourceType,
    TaskStatus,
)
import threading
from pathlib import Path

import codomyrmex_nb

PACKAGE = str(Path(codomyrmex_nb.__file__).parent)  # the code the tasks analyse, from any folder

# Initialize orchestrator
orchestrator = get_task_orchestrator(max_workers=4)
orchestrator.reset()  # forget tasks of an earlier run of this notebook
"""),
        md("""
## Complete Example

As in the guide, with two changes: the analysed path is this package's own code
(`PACKAGE`, found from where `codomyrmex_nb` is installed, so the notebook runs
from any folder), and one task that is not in the guide,
`fetch_sources`, stands in for slow work (a clone, a download): it just waits
2.5 seconds, so there is time to watch it run. `analyze` waits for it as well
as for `setup`. First the task chain:
"""),
        code("""
# Create task chain
setup_task = orchestrator.create_task(
    name="setup",
    module="environment_setup",
    action="check_environment",
    priority=TaskPriority.HIGH
)

# Not in the guide: a stand-in for slow work, so you can watch it run.
fetch_task = orchestrator.create_task(
    name="fetch_sources",
    func=lambda: threading.Event().wait(2.5) or {"files_fetched": 0},
    priority=TaskPriority.HIGH
)

analysis_task = orchestrator.create_task(
    name="analyze",
    module="static_analysis",
    action="analyze_code_quality",
    parameters={"path": PACKAGE},
    dependencies=[setup_task.id, fetch_task.id],
    priority=TaskPriority.NORMAL,
    resources=[
        TaskResource(type=ResourceType.CPU, identifier="system_cpu", mode="read")
    ],
    timeout=300
)

visualization_task = orchestrator.create_task(
    name="visualize",
    module="data_visualization",
    action="create_bar_chart",
    parameters={"data": "placeholder", "title": "Code Quality"},
    dependencies=[analysis_task.id],
    priority=TaskPriority.NORMAL
)
"""),
        md("""
`%codo_run --side` starts the engine and shows the live view in a side panel
at the right of this notebook: it stays in sight while Run All scrolls down,
it goes away when you switch to another notebook and comes back with this one,
and it is as wide as its drawing needs. The cell says "in the side panel" once
the panel is there; a front end without one shows the view here, live, with a
line saying why. Click a node for its details (Cancel, Retry).

The next cell blocks in `wait_for_completion` while the view keeps updating.
"""),
        code("""
%codo_run --side
"""),
        code("""
# Wait for completion
completed = orchestrator.wait_for_completion(timeout=600)

if completed:
    # Get results
    analysis_result = orchestrator.get_task_result(analysis_task.id)
    visualization_result = orchestrator.get_task_result(visualization_task.id)

    # Print statistics
    stats = orchestrator.get_execution_stats()
    print(f"Completed {stats['completed']} tasks in {stats['total_execution_time']:.2f}s")

    # Stop execution
    orchestrator.stop_execution()
else:
    print("Execution timed out or failed")
"""),
        md("""
## Results

`analyze` returned plain data (line counts, functions, complexity per file and
in total). `visualize` was given `data="placeholder"`, so it charted the numeric
totals of its upstream result and saved the chart as a PNG under `codo_outputs/`.
"""),
        code("""
from IPython.display import Image

print("analysed", analysis_result.data["path"])
print({k: analysis_result.data["totals"][k] for k in ("files", "lines", "functions", "classes")})
Image(visualization_result.data["path"], width=480)
"""),
        md("""
## Statistics as a DataFrame

`get_execution_stats()` as one row, plus the critical path (the longest
dependency chain, which bounds the run time whatever the number of workers) and
the time tasks spent waiting. Transposed here so that it reads top to bottom.
"""),
        code("""
orchestrator.stats_frame().T.rename(columns={0: "value"})
"""),
        md("""
The same run with `%%codo_task` cells is the next notebook. A saved copy of this
notebook keeps, under the `%codo_run` cell, the final DAG as a picture and a
one-line summary (also where the notebook is not trusted, and on GitHub).
`live_view(orchestrator).svg` is the current drawing as a standalone SVG, if you
want to save it.
"""),
        tour_footer("01_quickstart"),
    ]


# -- 02 ---------------------------------------------------------------------------------------
def cell_magics() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 02 · Tasks defined in cells

`%load_ext codomyrmex_nb` adds the magics. A `%%codo_task NAME` cell defines a
task whose body is the cell: defining it does not run it. The value of the
cell's last expression is the task's result, and a downstream task sees it
under the upstream task's name. `notebooks/MAGICS.md` has the full reference;
`%codo_task?` prints the options.
"""),
        code("""
%load_ext codomyrmex_nb
%codo_reset
from pathlib import Path

import codomyrmex_nb

PACKAGE = str(Path(codomyrmex_nb.__file__).parent)  # the code the tasks analyse, from any folder
"""),
        md("""
## A small pipeline

`scan` measures the Python files of this repository's package, `largest` keeps
the biggest files (and, with `--out`, also lands in the notebook variable
`largest_files` once it completes), `summary` runs after both.
"""),
        code("""
%%codo_task scan --priority high --tag analysis
from codomyrmex_nb.actions.static_analysis import analyze_code_quality

analyze_code_quality(PACKAGE)
"""),
        code("""
%%codo_task largest --after scan --out largest_files
import pandas as pd

files = pd.DataFrame(scan["files"])
files.nlargest(5, "lines")[["file", "lines", "functions"]].reset_index(drop=True)
"""),
        code("""
%%codo_task summary --after scan largest
{
    "files": int(scan["totals"]["files"]),
    "lines": int(scan["totals"]["lines"]),
    "largest": largest["file"].iloc[0],
    "largest files kept": len(largest),
    "their share of the lines": round(float(largest["lines"].sum() / scan["totals"]["lines"]), 2),
}
"""),
        md("""
`%codo_run` starts the engine and shows the live view; `--side` puts it in a
side panel beside this notebook that stays in sight while you edit and re-run the
cells below (where the front end has none, it shows here, with a line saying
why); `--wait` also blocks until every task has ended.
"""),
        code("""
%codo_run --side --wait --timeout 60
"""),
        code("""
largest_files
"""),
        code("""
%codo_status
"""),
        md("""
## Re-running a changed cell

Run a `%%codo_task` cell again with the same text and nothing runs: the result is
kept. Change the text and the task is replaced and re-runs together with
everything downstream of it, and nothing else. Here `largest` now keeps 3 files:
`largest` and `summary` run again, `scan` does not.
"""),
        code("""
%%codo_task largest --after scan --out largest_files
import pandas as pd

files = pd.DataFrame(scan["files"])
files.nlargest(3, "lines")[["file", "lines", "functions"]].reset_index(drop=True)
"""),
        code("""
%codo_wait 60
"""),
        code("""
results = %codo_results
results[["name", "state", "attempts", "execution_time"]].round(3)
"""),
        code("""
results.set_index("name").at["summary", "data"]
"""),
        md("""
`attempts` counts every run of a task in this kernel, redefinitions included: the
replaced `largest` and its downstream `summary` ran once more (2 each), `scan` kept
its first result (1).

## Mistakes are one-line errors

A wrong option, an unknown `--after` task (with a suggestion), a bad priority or
resource mode: the magic prints one line and defines nothing. (This cell is
expected to fail.)
"""),
        code("""
%%codo_task report --after sumary
summary
""", "raises-exception"),
        md("""
## Magics and Python mix

The magics use the default orchestrator, the same object
`get_task_orchestrator()` returns, so everything in the guide works on cell
tasks too.
"""),
        code("""
from codomyrmex_nb import TaskStatus, get_task_orchestrator

orchestrator = get_task_orchestrator()  # the magics' orchestrator
for task in orchestrator.list_tasks(status=TaskStatus.COMPLETED):
    print(f"{task.name:8} {task.execution_time:.3f}s")
orchestrator.stop_execution()
"""),
        tour_footer("02_cell_magics"),
    ]


# -- 03 ---------------------------------------------------------------------------------------
def resources_and_priorities() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 03 · Priorities, resources and task settings

The guide's *Step 2: Configure Resources and Priorities*. Each example uses its
own small `TaskOrchestrator` so that the effect is easy to see.
"""),
        code("""
import threading
from pathlib import Path

from IPython.display import display

import codomyrmex_nb
from codomyrmex_nb import (
    ResourceType,
    Task,
    TaskOrchestrator,
    TaskPriority,
    TaskResource,
    live_view,
)

PACKAGE = str(Path(codomyrmex_nb.__file__).parent)  # the code the tasks analyse, from any folder


def work(seconds):
    \"\"\"A task body that takes `seconds` (returns how long it was asked to wait).\"\"\"
    threading.Event().wait(seconds)
    return seconds


def columns(orch, *names):
    frame = orch.tasks_frame()
    return frame.sort_values("started_at")[["name", *names]].reset_index(drop=True)
"""),
        md("""
## Priority levels

With one worker, the ready tasks run one at a time: highest priority first.
The tasks are added before the engine starts, in the "wrong" order. Priorities
are `TaskPriority` members or their names in any case (`"high"`).
"""),
        code("""
orch = TaskOrchestrator(max_workers=1)
orch.add_tasks([
    Task(name="low_task", func=work, parameters={"seconds": 0.05}, priority=TaskPriority.LOW),
    Task(name="normal_task", func=work, parameters={"seconds": 0.05}),  # NORMAL is the default
    Task(name="high_task", func=work, parameters={"seconds": 0.05}, priority="high"),
    Task(name="critical_task", func=work, parameters={"seconds": 0.05},
         priority=TaskPriority.CRITICAL),
])
orch.start_execution()
orch.wait_for_completion(timeout=30)
columns(orch, "priority", "wait_worker")
"""),
        md("""
## Resource requirements

A `TaskResource` is a named lock `type:identifier`. `read` holds are shared;
`write` and `exclusive` holds are sole. A task takes all its resources at once
or none, and gives them back when its attempt ends, whatever the outcome.

Six workers, six tasks of 0.3 s: three only *read* `system_cpu` and run side by
side; three need the `openai_api` *exclusively* and so run one after another.
`wait_resources` is the time each task spent waiting for a lock.
"""),
        code("""
cpu_resource = TaskResource(type=ResourceType.CPU, identifier="system_cpu", mode="read")
api_resource = TaskResource(type=ResourceType.EXTERNAL_API, identifier="openai_api",
                            mode="exclusive")

orch = TaskOrchestrator(max_workers=6)
view = live_view(orch)
display(view)
orch.add_tasks(
    [Task(name=f"read_{i}", func=work, parameters={"seconds": 0.3}, resources=[cpu_resource])
     for i in range(3)]
    + [Task(name=f"api_call_{i}", func=work, parameters={"seconds": 0.3},
            resources=[api_resource]) for i in range(3)]
)
orch.start_execution()
orch.wait_for_completion(timeout=30)
columns(orch, "resources", "wait_resources", "execution_time").round(2)
"""),
        md("""
**Pools** (beyond the guide): a resource may be given a `capacity`. Each `write`
hold takes one slot, so "at most 2 calls to the API at once" reads as below.
`TaskResource(..., timeout=S)` bounds how long a task waits for its resources
before it fails with `ResourceTimeout`.
"""),
        code("""
pool = TaskResource(type=ResourceType.EXTERNAL_API, identifier="openai_api", mode="write",
                    capacity=2)
orch = TaskOrchestrator(max_workers=4)
orch.add_tasks([Task(name=f"call_{i}", func=work, parameters={"seconds": 0.3}, resources=[pool])
                for i in range(4)])
orch.start_execution()
orch.wait_for_completion(timeout=30)
columns(orch, "wait_resources").round(2)
"""),
        md("""
## A task with resources and a timeout

The guide's `heavy_analysis`, on this repository's package: the deeper analysis
also counts imports and TODO markers and ranks the most complex functions.
"""),
        code("""
orch = TaskOrchestrator(max_workers=2)
orch.start_execution()
task = orch.create_task(
    name="heavy_analysis",
    module="static_analysis",
    action="comprehensive_analysis",
    parameters={"path": PACKAGE},
    priority=TaskPriority.HIGH,
    resources=[
        TaskResource(type=ResourceType.CPU, identifier="system_cpu", mode="read"),
        TaskResource(type=ResourceType.MEMORY, identifier="system_memory", mode="read"),
    ],
    timeout=600  # 10 minute timeout
)
orch.wait_for_completion(timeout=60)
report = orch.get_task_result(task.id).data
print(report["totals"])
report["most_complex_functions"][:3]
"""),
        md("""
## Task configuration

The guide's `long_running_task`, on a small CSV written here:
`process_large_dataset` reads it in chunks with pandas. `timeout`,
`max_retries`, `retry_delay`, `tags` and `metadata` travel with the task.
"""),
        code("""
import os

import numpy as np
import pandas as pd

os.makedirs("codo_outputs", exist_ok=True)
rng = np.random.default_rng(0)
pd.DataFrame({"value": rng.normal(size=50_000), "group": rng.integers(0, 5, 50_000)}).to_csv(
    "codo_outputs/large_data.csv", index=False)

task = Task(
    name="long_running_task",
    module="data_visualization",
    action="process_large_dataset",
    parameters={"file": "codo_outputs/large_data.csv", "chunksize": 10_000},
    timeout=3600,  # 1 hour timeout
    max_retries=3,  # Retry up to 3 times
    retry_delay=5.0,  # Wait 5 seconds between retries
    tags=["data-processing", "visualization"],
    metadata={"description": "Process large dataset"}
)
orch.add_task(task)
orch.wait_for_completion(timeout=60)
summary = orch.get_task_result(task.id).data
print(summary["rows"], "rows in", summary["chunks"], "chunks")
pd.DataFrame(summary["numeric"]).round(3)
"""),
        md("""
## Mistakes are caught where the value enters

A bad resource mode fails when the `TaskResource` is built, a bad priority or a
negative retry count when the `Task` is: each message quotes the value and says
what is allowed.
"""),
        code("""
for make in (
    lambda: TaskResource(type=ResourceType.CPU, identifier="system_cpu", mode="shared"),
    lambda: Task(name="t", func=work, priority="urgent"),
    lambda: Task(name="t", func=work, max_retries=-1),
):
    try:
        make()
    except ValueError as exc:
        print("ValueError:", exc)
orch.stop_execution()
"""),
        tour_footer("03_resources_and_priorities"),
    ]


# -- 04 ---------------------------------------------------------------------------------------
def failures() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 04 · Waiting, monitoring, failures, retries and cancelling

The guide's *Step 3* and *Step 4*. Every task reaches an end state: a failure
never leaves its dependents waiting forever (they are *skipped*), and
`wait_for_completion` returns `True` only when nothing failed.
"""),
        code("""
import threading
import time
from pathlib import Path

from IPython.display import display

import codomyrmex_nb
from codomyrmex_nb import Task, TaskOrchestrator, TaskStatus, live_view

PACKAGE = str(Path(codomyrmex_nb.__file__).parent)  # the code the tasks analyse, from any folder


def slow(seconds):
    \"\"\"Wait `seconds` in short steps, so that a timeout or a cancel interrupts it at once.\"\"\"
    stop = threading.Event()
    for _ in range(int(seconds / 0.05)):
        stop.wait(0.05)
    return seconds


calls = {"flaky": 0}


def flaky():
    \"\"\"Fails twice, then works: a server that is busy for a moment.\"\"\"
    calls["flaky"] += 1
    if calls["flaky"] < 3:
        raise ConnectionError(f"attempt {calls['flaky']}: server busy, try again")
    return "fetched"
"""),
        md("""
## A run with trouble in it

- `fetch` fails twice and succeeds on its third attempt (`max_retries=3`);
- `parse` asks for an action that does not exist: it fails, and `report`,
  which depends on it, is skipped;
- `render` takes longer than its `timeout` and is interrupted;
- `archive` would take a minute: we cancel it while it runs.
"""),
        code("""
orchestrator = TaskOrchestrator(max_workers=3)
orchestrator.add_tasks([
    Task(name="fetch", func=flaky, max_retries=3, retry_delay=0.2),
    Task(name="parse", module="static_analysis", action="parse_everything",
         dependencies=["fetch"]),
    Task(name="report", func=lambda: "report", dependencies=["parse"]),
    Task(name="render", func=slow, parameters={"seconds": 10}, timeout=0.5),
    Task(name="archive", func=slow, parameters={"seconds": 60}),
])
view = live_view(orchestrator, side=True)  # in a side panel: in sight while the cells below run
orchestrator.start_execution()
"""),
        md("""
### Cancel tasks

`cancel_task` works on a pending, ready or running task (a running attempt is
interrupted) and returns `False` for a task that has already ended.
"""),
        code("""
archive = orchestrator.get_task("archive")  # by id or by name
while archive.status is not TaskStatus.RUNNING:
    time.sleep(0.05)

# Cancel a task
success = orchestrator.cancel_task(archive.id)

if success:
    print("Task cancelled")
else:
    print("Task could not be cancelled (already completed or not found)")
"""),
        md("""
### Monitor execution

The guide's loop. `pending` counts every task not yet started, including those
waiting to retry, so the loop ends only when all the work has ended.
"""),
        code("""
# Monitor task status
while True:
    stats = orchestrator.get_execution_stats()
    print(f"Pending: {stats['pending']}, Running: {stats['running']}, Completed: {stats['completed']}")

    if stats['pending'] == 0 and stats['running'] == 0:
        break

    time.sleep(0.5)
"""),
        md("""
### Wait for completion

Returns `True` when every task completed; `False` when something failed, was
skipped or cancelled, or on timeout. An interrupt (■) stops the wait at once;
the tasks keep running.
"""),
        code("""
# Wait for all tasks to complete
completed = orchestrator.wait_for_completion(timeout=300.0)  # 5 minute timeout

if completed:
    print("All tasks completed successfully")
else:
    print("Task execution timed out or failed")
"""),
        md("""
### Check task status and results

A retried task's `retry_count` says how many extra attempts it took; a failed
result keeps the error's type, message and traceback.
"""),
        code("""
for name in ("fetch", "parse", "report", "render", "archive"):
    task = orchestrator.get_task(name)
    result = orchestrator.get_task_result(task.id)
    print(f"{name:8} {task.status.value:10} retries={task.retry_count}", end="  ")
    if result.success:
        print(f"data={result.data!r} in {result.execution_time:.2f}s")
    else:
        print(f"{result.error_type}: {result.error_message}")
"""),
        md("""
### Handle task failures

The guide's recipe reports each failed task and re-queues it when `can_retry()`
says so. A task that has *ended* failed (or cancelled) has spent its automatic
retries, and `can_retry()` then means "a manual retry is allowed": it is `True`
for both failures here, `render` and `parse`. So the recipe re-queues both, with
a fresh retry budget, but changes nothing about them: each fails again the same
way (`render` times out once more, `parse` still asks for an action that does
not exist, and `report` is skipped again). The cell after it waits and shows
their second attempt.
"""),
        code("""
# Check for failed tasks
failed_tasks = orchestrator.list_tasks(status=TaskStatus.FAILED)

for task in failed_tasks:
    result = orchestrator.get_task_result(task.id)
    if result:
        print(f"Task {task.name} failed: {result.error_message}")

        # Check if task can be retried
        if task.can_retry():
            # Reset task and retry
            task.status = TaskStatus.PENDING
            task.retry_count = 0
            orchestrator.add_task(task)
"""),
        code("""
orchestrator.wait_for_completion(timeout=60)  # the re-queued tasks end again
for name in ("render", "parse", "report"):
    task = orchestrator.get_task(name)
    print(f"{name:7} {task.status.value:10} attempts={len(task.attempts)}")
"""),
        md("""
Running a task again only helps once its cause is fixed. `rerun` (beyond the
guide; in a notebook, `%codo_retry NAME`) runs a task again, with everything
downstream of it and a fresh retry budget. Here `parse` gets a real action, and
`report` runs after it; `render` keeps its two failed attempts.
"""),
        code("""
parse = orchestrator.get_task("parse")
parse.action = "analyze_code_quality"
parse.parameters = {"path": PACKAGE}
orchestrator.rerun(parse)
orchestrator.wait_for_completion(timeout=60)  # False: render and archive did not complete
orchestrator.tasks_frame()[["name", "state", "attempts", "retries", "error_type"]]
"""),
        code("""
orchestrator.stop_execution()
"""),
        tour_footer("04_failures_retries_cancel"),
    ]


# -- 05 ---------------------------------------------------------------------------------------
def performance() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 05 · Performance analysis

The guide's *Step 5: Review Results and Performance* and its *Slow Execution*
checklist, on a small build-like pipeline with the usual sources of delay: a
long dependency chain, a lock several tasks want, a worker pool that is too
small, and a flaky step.
"""),
        code("""
import threading
from pathlib import Path

import codomyrmex_nb
from codomyrmex_nb import (
    ResourceType,
    Task,
    TaskOrchestrator,
    TaskPriority,
    TaskResource,
    TaskStatus,
)

PACKAGE = str(Path(codomyrmex_nb.__file__).parent)  # the code the tasks analyse, from any folder


def work(seconds, value=None):
    print(f"working for {seconds} s")
    threading.Event().wait(seconds)
    return {"seconds": seconds} if value is None else value


attempts = {"upload": 0}


def upload():
    attempts["upload"] += 1
    print(f"uploading 3 files (attempt {attempts['upload']})")
    if attempts["upload"] == 1:
        raise ConnectionError("connection reset")
    print("uploaded")
    return {"uploaded": 3}


db = TaskResource(type=ResourceType.DATABASE, identifier="results_db", mode="exclusive")
orchestrator = TaskOrchestrator(max_workers=2)
orchestrator.add_tasks([
    Task(name="checkout", func=work, parameters={"seconds": 0.2}, priority=TaskPriority.HIGH),
    Task(name="analyze", module="static_analysis", action="analyze_code_quality",
         parameters={"path": PACKAGE}, dependencies=["checkout"]),
    Task(name="compile", func=work, parameters={"seconds": 0.5}, dependencies=["checkout"]),
    Task(name="unit_tests", func=work, parameters={"seconds": 0.4}, dependencies=["compile"],
         resources=[db]),
    Task(name="integration_tests", func=work, parameters={"seconds": 0.3},
         dependencies=["compile"], resources=[db]),
    Task(name="docs", func=work, parameters={"seconds": 0.3}, dependencies=["checkout"],
         priority=TaskPriority.LOW),
    Task(name="package", func=work, parameters={"seconds": 0.2},
         dependencies=["unit_tests", "integration_tests", "analyze"]),
    Task(name="upload", func=upload, dependencies=["package", "docs"], max_retries=2,
         retry_delay=0.2),
])
orchestrator.start_execution()
orchestrator.wait_for_completion(timeout=60)
"""),
        md("""
## Execution statistics

As in the guide; the engine also reports wall-clock `makespan`, `throughput`
(tasks per second) and `worker_utilization`.
"""),
        code("""
# Get comprehensive execution statistics
stats = orchestrator.get_execution_stats()

print(f"Total tasks: {stats['total_tasks']}")
print(f"Completed: {stats['completed']}")
print(f"Failed: {stats['failed']}")
print(f"Average execution time: {stats['average_execution_time']:.2f}s")
print(f"Total execution time: {stats['total_execution_time']:.2f}s")
print(f"Makespan: {stats['makespan']:.2f}s, utilization: {stats['worker_utilization']:.0%}")
"""),
        md("""
## Task results and the guide's performance loop
"""),
        code("""
# Get results for all completed tasks
completed_tasks = orchestrator.list_tasks(status=TaskStatus.COMPLETED)

for task in completed_tasks[:3]:
    result = orchestrator.get_task_result(task.id)
    if result and result.success:
        data = repr(result.data)
        data = data if len(data) < 70 else data[:66] + "...}"
        print(f"\\nTask: {task.name}")
        print(f"  Execution time: {result.execution_time:.2f}s")
        print(f"  Data: {data}")
        print(f"  Metadata: {result.metadata}")
"""),
        code("""
# Analyze performance by task
tasks = orchestrator.list_tasks()
execution_times = []

for task in tasks:
    if task.execution_time:
        execution_times.append({
            'name': task.name,
            'time': task.execution_time,
            'priority': task.priority.value
        })

# Sort by execution time
execution_times.sort(key=lambda x: x['time'], reverse=True)

print("Slowest tasks:")
for item in execution_times[:5]:
    print(f"  {item['name']}: {item['time']:.2f}s (priority: {item['priority']})")
"""),
        md("""
## The same as DataFrames

`tasks_frame()` has one row per task: state, priority (an ordered categorical),
attempts, timestamps, and where the time went: waiting on dependencies, on a
resource, on a worker, and running; then what it cost (`cpu_time`, and
`peak_memory` on the processes executor) and the last line it printed.
"""),
        code("""
frame = orchestrator.tasks_frame()
frame[["name", "state", "priority", "attempts", "wait_dependencies", "wait_resources",
       "wait_worker", "execution_time", "cpu_time", "last_line"]].round(2)
"""),
        md("""
## What a task printed

A task's prints, warnings and log records (INFO and above) never land in
whichever cell happens to be running: each attempt's output is kept with it,
and `result.logs` holds the output of the attempt that produced the result.
`%codo_logs upload` shows every attempt's output with its traceback.
"""),
        code("""
upload_task = next(t for t in orchestrator.list_tasks() if t.name == "upload")
for attempt in upload_task.attempts:
    print(f"attempt {attempt.number} ({attempt.outcome}): {attempt.logs!r}")
print(orchestrator.get_task_result(upload_task.id).logs)
"""),
        code("""
results = orchestrator.results_frame()
results[["name", "success", "attempts", "execution_time", "worker"]].round(2)
"""),
        code("""
orchestrator.stats_frame()[["makespan", "total_execution_time", "worker_utilization",
                            "critical_path_seconds", "critical_path"]].round(2)
"""),
        md("""
## Why was it slow?

`bottlenecks()` turns the guide's *Slow Execution* checklist into one short
frame: the critical path (only shortening it shortens the run), tasks that
fought over the GIL, tasks that mostly waited, the longest waits for a
resource (and who held it), the longest waits for a free worker, and the
retries. The `cure` column says what to change.
"""),
        code("""
orchestrator.bottlenecks().round(2)
"""),
        md("""
## Timeline

One lane per worker, one bar per attempt, coloured like the live view; the
critical path is outlined, the retry is hatched, and the thin line under a bar
is the time that task was ready but waiting (for the lock, a worker or a retry
delay). The dark strip along a bar's bottom is as long as the attempt's
CPU/wall ratio: short here, since these tasks mostly wait. A failed attempt
too short to see is drawn wider and marked with ▼.
"""),
        code("""
orchestrator.timeline()
"""),
        code("""
orchestrator.stop_execution()
"""),
        md("""
## CPU-bound Python on threads: the GIL

Threads suit tasks that wait (I/O, sleeps, calls to services). Pure-Python
computation is another matter: only one thread runs Python at a time (the
GIL), so four such tasks on four threads take as long as running them one
after another, each getting about a quarter of a core. The wall-clock time
alone does not say so; the CPU time does.
"""),
        code("""
def count_primes(below):
    \"\"\"Pure Python: holds the GIL the whole time it runs.\"\"\"
    count = 0
    for n in range(2, below):
        if all(n % d for d in range(2, int(n ** 0.5) + 1)):
            count += 1
    return count


def primes_on(executor):
    orch = TaskOrchestrator(max_workers=4, executor=executor)
    orch.add_tasks([Task(name=f"primes_{i}", func=count_primes, parameters={"below": 200_000})
                    for i in range(4)])
    orch.start_execution()
    orch.wait_for_completion(timeout=300)
    return orch


def cpu_per_wall(orch):
    frame = orch.tasks_frame()
    frame["cpu/wall"] = frame["cpu_time"] / frame["execution_time"]
    return frame[["name", "execution_time", "cpu_time", "cpu/wall"]].round(2)


on_threads = primes_on("threads")
cpu_per_wall(on_threads)
"""),
        md("""
Each task's CPU/wall ratio is about 0.25 and the four add up to one core:
`bottlenecks()` calls it GIL contention and names the cure. On a machine whose
cores are busy with other work (a small CI runner, a shared laptop) the process
may get much less than a core between them; on Linux each attempt's wait for a
core (`attempt.run_delay`) still shows the threads mostly slept, waiting for the
GIL. Where that figure is missing and they got under 0.6 of a core, the report
cannot tell the GIL from a busy machine, lists the tasks as *waiting* instead,
and the cell below says so.
"""),
        code("""
report = on_threads.bottlenecks()
gil = report[report["kind"] == "gil_contention"]
if gil.empty:
    cores = on_threads.stats_frame().loc[0, "cores_busy"]
    print(f"No GIL contention reported: the four threads got {cores:.2f} of a core between "
          "them and waited for a core (or no run-queue figure says otherwise): a machine "
          "busy with other work, so bottlenecks() lists them as waiting instead.")
gil[["task", "seconds", "detail", "cure"]].round(2) if not gil.empty else None
"""),
        code("""
on_threads.timeline()
"""),
        md("""
## The cure: `executor="processes"`

The same tasks on the processes executor: each runs in its own interpreter,
with its own GIL, on its own core. On a machine with free cores each task's
CPU/wall ratio is now close to 1 and the batch takes about a quarter of the
time (starting the worker processes once costs a moment; they are reused).
Processes also report each attempt's peak memory.
"""),
        code("""
on_processes = primes_on("processes")
frame = cpu_per_wall(on_processes)
frame["peak_memory_mb"] = (on_processes.tasks_frame()["peak_memory"] / 1e6).round(1)
frame
"""),
        code("""
report = on_processes.bottlenecks()
print("GIL contention rows:", int((report["kind"] == "gil_contention").sum()))
for orch in (on_threads, on_processes):
    tasks = orch.tasks_frame()
    batch = (tasks["completed_at"].max() - tasks["started_at"].min()).total_seconds()
    print(f"{orch.executor_name:>9}: the four tasks took {batch:.2f} s "
          f"(each {tasks['execution_time'].mean():.2f} s on average)")
    orch.stop_execution()
"""),
        tour_footer("05_performance_analysis"),
    ]


# -- 06 ---------------------------------------------------------------------------------------
def mapping() -> list[nbformat.NotebookNode]:
    return [
        md("""
# 06 · Map: one cell, run once per item

`%%codo_task NAME --map SOURCE` runs the cell once per item of a list: a notebook
variable, or the result of an upstream task, known only when that task ends. Each run
sees its item as `item` (or the name given in `--map x=SOURCE`) and its position as
`map_index`. A cell `--after` it receives a `MapResult`: the items' values in
`map_index` order. Every item has its own state, attempts, retries, timeout and logs;
the live view draws the whole map as one node with its counts.
"""),
        code("""
%load_ext codomyrmex_nb
%codo_reset
"""),
        md("""
## A grid search in two cells

The grid is two notebook lists, crossed with `--map-mode product` (the last varies
fastest): 4 × 3 = 12 runs, at most 4 at once. The training is a stand-in, a smooth
score whose best is at rate 0.1 and depth 4.
"""),
        code("""
learning_rates = [0.01, 0.03, 0.1, 0.3]
depths = [2, 4, 8]
"""),
        code("""
%%codo_task fit --map rate=learning_rates --map depth=depths --map-mode product --max-parallel 4
import math

score = 1 - (math.log10(rate) + 1) ** 2 / 4 - (depth - 4) ** 2 / 50
{"rate": rate, "depth": depth, "score": round(score, 4)}
"""),
        code("""
%%codo_task best --after fit --out best_model
max(fit, key=lambda row: row["score"])   # fit is a MapResult of 12 dicts
"""),
        code("""
%codo_run --wait --timeout 60
"""),
        code("""
assert best_model == {"rate": 0.1, "depth": 4, "score": 1.0}, best_model
best_model
"""),
        md("""
The lists are part of the cell: change `learning_rates` and run the `fit` cell again,
and the task is defined anew. With `--cache` (and the run journal on, the default
outside tests) only the items whose content changed run; the others come back from
the journal. An item is known by its content, not its position, unless the body
reads `map_index`.

## A fan-out over files, one bad file tolerated

`make_files` writes a few small files into a fresh temporary folder, one of them not
JSON; `find_files` lists them. `read_file` maps over that list, a result known only
when `find_files` ends. `--tolerate 1` lets the map complete with one failed item:
the `MapResult` then holds the successful values, `.by_index` maps each successful
`map_index` to its value, and `.failed` the others to their exception.
"""),
        code("""
%%codo_task make_files --out folder
import json
import pathlib
import tempfile

where = pathlib.Path(tempfile.mkdtemp(prefix="codo-map-"))
for i in range(5):
    (where / f"part{i}.json").write_text(json.dumps({"values": list(range(i, i + 5))}))
(where / "part5.json").write_text("{not json")   # the bad file
where
"""),
        code("""
%%codo_task find_files --after make_files
sorted(make_files.glob("*.json"))
"""),
        code("""
%%codo_task read_file --map find_files --tolerate 1 --timeout 10
import json

sum(json.loads(item.read_text())["values"])
"""),
        code("""
%%codo_task combine --after read_file
{"files read": len(read_file), "total": sum(read_file),
 "failed": {i: type(e).__name__ for i, e in read_file.failed.items()}}
"""),
        md("""
## A cleanup that runs after a failure

`check` is a strict quality gate: it fails because a file was bad. A task after it
would be skipped, but `cleanup` has `--trigger all_done`: it runs once every task it
waits for has ended, however it ended (Airflow's trigger rules; the live view marks it
`⚑ all_done`). The run ends with one failure, said once by the cell that waits.
"""),
        code("""
%%codo_task check --after read_file
assert not read_file.failed, f"{len(read_file.failed)} bad file(s)"
"""),
        code("""
%%codo_task cleanup --after make_files combine check --trigger all_done
import shutil

shutil.rmtree(make_files)
f"removed {make_files.name}"
"""),
        code("""
%codo_wait 60
"""),
        code("""
from codomyrmex_nb import get_task_orchestrator

orch = get_task_orchestrator()
states = {t.name: t.status.value for t in orch.list_tasks()}
assert states["read_file"] == "completed" and states["check"] == "failed", states
assert states["cleanup"] == "completed" and not folder.exists(), states
orch.get_task_result("combine").data
"""),
        md("""
`map_items` lists the items of a mapped task, failures first: what the live view
shows when you click the map's node. `get_task_result("read_file", map_index=5)` is
one item's result, with its error and logs.
"""),
        code("""
import pandas as pd

pd.DataFrame(orch.map_items("read_file"))[["map_index", "state", "attempts", "error"]]
"""),
        code("""
orch.stop_execution()
"""),
        tour_footer("06_map"),
    ]


NOTEBOOKS = {
    "01_quickstart": quickstart,
    "02_cell_magics": cell_magics,
    "03_resources_and_priorities": resources_and_priorities,
    "04_failures_retries_cancel": failures,
    "05_performance_analysis": performance,
    "06_map": mapping,
}


def language_info() -> dict:
    """What ipykernel reports for this interpreter (the tour's kernel).

    Jupyter writes the kernel's ``language_info`` into a notebook it opens; a
    partial one would be completed on open and mark an untouched notebook as
    modified. The fields mirror ipykernel's, so opening one changes nothing.
    """
    major = sys.version_info[0]
    return {
        "name": "python",
        "version": platform.python_version(),
        "mimetype": "text/x-python",
        "file_extension": ".py",
        "pygments_lexer": f"ipython{major}",
        "codemirror_mode": {"name": "ipython", "version": major},
        "nbconvert_exporter": "python",
    }


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = language_info()
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"  # stable ids: regenerating gives no diff
    nbformat.validate(nb)
    return nb


def main(argv: list[str]) -> int:
    names = argv or list(NOTEBOOKS)
    for name in names:
        path = HERE / f"{name}.ipynb"
        nbformat.write(build(name), path)
        print("wrote", path.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
