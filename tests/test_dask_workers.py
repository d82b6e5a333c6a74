"""The dask executor on its default local cluster: a worker *process* per engine worker.

The shared executor contract (``test_executors``) runs Dask in-process, where an
interrupt reaches the attempt's thread directly. Here the attempts run in other
interpreters, as they do for a user who writes ``executor="dask"``: a worker that
dies, an attempt given up on while it still runs there. Task functions live at
module level (workers import them); what they did is told through files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codomyrmex_nb import TaskOrchestrator, TaskStatus

pytest.importorskip("distributed")
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def orch():
    """One local cluster of two worker processes for the module (each start costs seconds)."""
    o = TaskOrchestrator(max_workers=2, executor="dask", journal=False)
    o.start_execution()
    yield o
    o.stop_execution()


def note_and_die(path):
    with open(path, "a") as f:
        f.write("ran\n")
    os._exit(3)


def test_an_attempt_whose_worker_dies_runs_once_and_fails(orch, tmp_path: Path):
    """Dask's default re-ran it on three more workers (each killed in turn) before
    giving up: four runs of a task with ``max_retries=0``."""
    marks = tmp_path / "runs.txt"
    task = orch.create_task("dies", func=note_and_die, parameters={"path": str(marks)})
    assert not orch.wait_for_completion(120)
    assert task.status is TaskStatus.FAILED
    assert task.result.error_type == "WorkerCrashedError"
    assert marks.read_text().count("ran") == 1
