"""The orchestrator core: model, scheduler, resources, clock, executors, engine.

No Jupyter imports, and nothing from a layer above: the public facade
``TaskOrchestrator`` lives in ``codomyrmex_nb.orchestrator``.
"""

from .actions import register_action
from .events import Event
from .exceptions import (
    AmbiguousDependencyError,
    DependencyCycleError,
    NotNeededError,
    OrchestratorBusyError,
    ResourceTimeout,
    TaskCancelledError,
    TaskTimeoutError,
    UnknownDependencyError,
    UpstreamFailedError,
)
from .model import ResourceType, Task, TaskPriority, TaskResource, TaskResult, TaskStatus
from .trigger_rules import RULES as TRIGGER_RULES
from .trigger_rules import NoResult

__all__ = [
    "AmbiguousDependencyError", "DependencyCycleError", "Event", "NoResult", "NotNeededError",
    "OrchestratorBusyError", "ResourceTimeout", "ResourceType", "TRIGGER_RULES", "Task",
    "TaskCancelledError",
    "TaskPriority", "TaskResource", "TaskResult", "TaskStatus", "TaskTimeoutError",
    "UnknownDependencyError", "UpstreamFailedError", "register_action",
]
