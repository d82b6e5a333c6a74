"""The orchestrator core: model, scheduler, resources, clock, executors, engine.

No Jupyter imports, and nothing from a layer above: the public facade
``TaskOrchestrator`` lives in ``codomyrmex_nb.orchestrator``.
"""

from .actions import register_action
from .events import Event
from .exceptions import (
    AmbiguousDependencyError,
    DependencyCycleError,
    OrchestratorBusyError,
    ResourceTimeout,
    TaskCancelledError,
    TaskTimeoutError,
    UnknownDependencyError,
    UpstreamFailedError,
)
from .model import ResourceType, Task, TaskPriority, TaskResource, TaskResult, TaskStatus

__all__ = [
    "AmbiguousDependencyError", "DependencyCycleError", "Event", "OrchestratorBusyError",
    "ResourceTimeout", "ResourceType", "Task", "TaskCancelledError",
    "TaskPriority", "TaskResource", "TaskResult", "TaskStatus", "TaskTimeoutError",
    "UnknownDependencyError", "UpstreamFailedError", "register_action",
]
