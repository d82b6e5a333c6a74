"""Every error the orchestrator raises, each refining the builtin it specialises.

Callers can catch the builtin (``ValueError``, ``TimeoutError``, ``RuntimeError``)
or the precise class; messages name the offending value and the fix.
"""

from __future__ import annotations


class UnknownDependencyError(ValueError):
    """A task depends on something that is neither a known task nor in its batch."""

    def __init__(self, task: str, dependency: str, suggestion: str | None = None,
                 detail: str | None = None):
        self.task, self.dependency, self.suggestion = task, dependency, suggestion
        if detail is not None:
            super().__init__(f"task {task!r} depends on {dependency!r}, which is not in this "
                             f"orchestrator: {detail}")
            return
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(
            f"task {task!r} depends on unknown task {dependency!r}.{hint} "
            "Add that task first, or add both together with add_tasks([...])."
        )


class AmbiguousDependencyError(ValueError):
    """A dependency given by name matches several tasks."""

    def __init__(self, task: str, name: str, ids: list[str]):
        self.task, self.name, self.ids = task, name, ids
        super().__init__(
            f"task {task!r} depends on {name!r}, but {len(ids)} tasks have that name "
            f"(ids {', '.join(ids)}); depend on the task object or its id instead (a notebook "
            f"cell that calls create_task, run a second time, adds its tasks again: reset() "
            f"or %codo_reset forgets every task)."
        )


class DependencyCycleError(ValueError):
    """Adding the tasks would close a dependency cycle; ``cycle`` lists it in run order."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__(
            f"dependency cycle: {' -> '.join(cycle)} (each task would wait for the next); "
            "remove one of these dependencies."
        )


class OrchestratorBusyError(RuntimeError):
    """Settings cannot change while tasks are in flight."""


class TaskTimeoutError(TimeoutError):
    """An attempt ran past its task's ``timeout``."""


class ResourceTimeout(TimeoutError):
    """A task waited longer than a resource's ``timeout`` to acquire it."""


class TaskCancelledError(RuntimeError):
    """The attempt was cancelled (``cancel_task`` or ``stop_execution``)."""


class UpstreamFailedError(RuntimeError):
    """A dependency failed, was cancelled or was skipped, so this task was skipped."""


class NotNeededError(RuntimeError):
    """The task's trigger rule did not fire (or a task upstream of it was not needed), so it
    was skipped: not a failure of the run (an alert that had nothing to report)."""


class WorkerCrashedError(RuntimeError):
    """The process or Dask worker running the attempt died."""
