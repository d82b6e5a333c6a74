"""The orchestrator core: model, graph, resources, executors, engine. No Jupyter imports."""

from .actions import register_action
from .default import current_orchestrator, get_task_orchestrator
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
from .orchestrator import TaskOrchestrator

__all__ = [
    "AmbiguousDependencyError", "DependencyCycleError", "Event", "OrchestratorBusyError",
    "ResourceTimeout", "ResourceType", "Task", "TaskCancelledError", "TaskOrchestrator",
    "TaskPriority", "TaskResource", "TaskResult", "TaskStatus", "TaskTimeoutError",
    "UnknownDependencyError", "UpstreamFailedError", "current_orchestrator", "get_task_orchestrator",
    "register_action",
]
