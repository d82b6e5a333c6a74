"""codomyrmex-nb: a task orchestrator that lives in Jupyter.

Define tasks (in Python or with ``%%codo_task`` cells), start the engine, watch
the live DAG, read results as DataFrames. ``%load_ext codomyrmex_nb`` loads the
magics; nothing here imports IPython until then.
"""

from .core import (
    TRIGGER_RULES,
    AmbiguousDependencyError,
    DependencyCycleError,
    Event,
    NoResult,
    NotNeededError,
    OrchestratorBusyError,
    ResourceTimeout,
    ResourceType,
    Task,
    TaskCancelledError,
    TaskPriority,
    TaskResource,
    TaskResult,
    TaskStatus,
    TaskTimeoutError,
    UnknownDependencyError,
    UpstreamFailedError,
    register_action,
)
from .core.mapping import MapResult
from .default import get_task_orchestrator
from .orchestrator import TaskOrchestrator

__version__ = "0.1.0"

__all__ = [
    "AmbiguousDependencyError", "DependencyCycleError", "Event", "MapResult", "NoResult", "NotNeededError",
    "OrchestratorBusyError", "ResourceTimeout", "ResourceType", "TRIGGER_RULES", "Task",
    "TaskCancelledError", "TaskOrchestrator",
    "TaskPriority", "TaskResource", "TaskResult", "TaskStatus", "TaskTimeoutError",
    "UnknownDependencyError", "UpstreamFailedError", "get_task_orchestrator", "live_view",
    "register_action",
]


def live_view(orchestrator: TaskOrchestrator | None = None, *, side: bool | None = None):  # noqa: ANN201 - widget type is lazy
    """The live DAG view of ``orchestrator`` (default: the default orchestrator).

    ``side=True`` shows it in a JupyterLab side panel that stays in sight while cells run.
    """
    from .notebook.live_view import live_view as _live_view

    return _live_view(orchestrator, side=side)


def load_ipython_extension(ipython) -> None:  # noqa: ANN001
    """``%load_ext codomyrmex_nb``: register the magics."""
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython) -> None:  # noqa: ANN001
    from .notebook.magics import unload_ipython_extension as _unload

    _unload(ipython)
