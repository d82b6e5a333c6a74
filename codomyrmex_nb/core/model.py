"""The task model: what a task is, how urgent it is, which resources it holds.

Plain dataclasses, validated where values enter: a bad priority, mode, timeout or
retry setting fails at the line that wrote it, with the value quoted and the
allowed ones listed. ``to_dict`` / ``from_dict`` round-trip everything but live
callables and exception objects.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class TaskStatus(Enum):
    """Lifecycle: PENDING -> READY -> RUNNING -> COMPLETED | FAILED, plus CANCELLED, SKIPPED."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    __hash__ = object.__hash__  # members are singletons; C-level hashing keeps the engine quick

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED}
)


def _coerce_enum(enum_cls: type[Enum], value: Any, what: str) -> Any:
    """Accept a member, its name (any case) or its value; otherwise explain."""
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        member = enum_cls.__members__.get(value.strip().upper())
        if member is not None:
            return member
    for member in enum_cls:
        if member.value == value and not isinstance(value, bool):
            return member
    valid = ", ".join(f"{enum_cls.__name__}.{m.name}" for m in enum_cls)
    names = ", ".join(repr(m.name.lower()) for m in enum_cls)
    raise ValueError(f"invalid {what} {value!r}: use one of {valid} (or the names {names})")


class TaskPriority(Enum):
    """Higher value dispatches first among ready tasks."""

    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4

    __hash__ = object.__hash__

    @classmethod
    def coerce(cls, value: Any) -> TaskPriority:
        return _coerce_enum(cls, value, "priority")


class ResourceType(Enum):
    """Kinds of named resources; the pair (type, identifier) names one lock."""

    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    NETWORK = "network"
    GPU = "gpu"
    DATABASE = "database"
    FILE = "file"
    EXTERNAL_API = "external_api"
    CUSTOM = "custom"

    @classmethod
    def coerce(cls, value: Any) -> ResourceType:
        return _coerce_enum(cls, value, "resource type")


RESOURCE_MODES = ("read", "write", "exclusive")
_random_bits = random.Random().getrandbits  # ids: 64 random bits, cheap (uuid4 costs 3x more)


def _check_positive(value: Any, what: str, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number of seconds (or None), got {value!r}")
    return float(value)


def _check_non_negative(value: Any, what: str, integer: bool = False) -> Any:
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or value < 0 or (
        not integer and not math.isfinite(value)
    ):
        noun = "a whole number" if integer else "a number"
        raise ValueError(f"{what} must be {noun} >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class TaskResource:
    """A named lock ``type:identifier`` held for one attempt.

    ``read`` holds are shared; ``write`` takes one slot of the resource's
    ``capacity`` (default 1) and excludes readers; ``exclusive`` takes the whole
    resource. ``timeout`` bounds how long a task waits to acquire it.
    """

    type: ResourceType
    identifier: str
    mode: str = "read"
    capacity: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", ResourceType.coerce(self.type))
        if not isinstance(self.identifier, str) or not self.identifier:
            raise ValueError(f"resource identifier must be a non-empty string, got {self.identifier!r}")
        mode = self.mode.lower() if isinstance(self.mode, str) else self.mode
        if mode not in RESOURCE_MODES:
            raise ValueError(
                f"invalid resource mode {self.mode!r} for {self.type.value}:{self.identifier}: "
                f"use 'read' (shared), 'write' or 'exclusive' (sole)"
            )
        object.__setattr__(self, "mode", mode)
        if self.capacity is not None and (
            isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity < 1
        ):
            raise ValueError(f"resource capacity must be a whole number >= 1, got {self.capacity!r}")
        object.__setattr__(self, "timeout", _check_positive(self.timeout, "resource timeout"))

    @property
    def key(self) -> str:
        return f"{self.type.value}:{self.identifier}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type.value, "identifier": self.identifier, "mode": self.mode,
                "capacity": self.capacity, "timeout": self.timeout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResource:
        return cls(**data)


@dataclass
class TaskResult:
    """The outcome of a task's last attempt; ``exception`` keeps the error whole."""

    task_id: str
    success: bool
    data: Any = None
    error_message: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    execution_time: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "task_id", "success", "data", "error_message", "error_type", "traceback",
            "execution_time", "metadata")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        return cls(**data)


@dataclass(frozen=True)
class OutputRef:
    """``task.output``: a parameter placeholder replaced by that task's result data."""

    task_id: str
    task_name: str

    def __repr__(self) -> str:
        return f"<output of {self.task_name!r}>"


@dataclass(eq=False)
class Attempt:
    """One run of a task: where, when, and how it ended (for timelines and frames)."""

    number: int
    worker: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None  # "completed" | "failed" | "timeout" | "cancelled" | "interrupted"


_SERIALISED = ("id", "name", "module", "action", "parameters", "dependencies", "timeout",
               "max_retries", "retry_delay", "retry_backoff", "retry_jitter", "tags",
               "metadata", "retry_count", "created_at", "started_at", "completed_at")


@dataclass(eq=False)
class Task:
    """A unit of work: ``module.action(**parameters)`` (or ``func``) plus its scheduling needs.

    ``dependencies`` may hold ids, names or Task objects; once added to an
    orchestrator they are stored as ids. ``output`` is a placeholder for this
    task's result data, usable in another task's ``parameters``.
    """

    name: str = ""
    module: str = ""
    action: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    dependencies: list[Any] = field(default_factory=list)
    priority: TaskPriority = TaskPriority.NORMAL
    resources: list[TaskResource] = field(default_factory=list)
    timeout: float | None = None
    max_retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    retry_jitter: float = 0.0
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    func: Callable[..., Any] | None = field(default=None, repr=False)
    id: str = field(default_factory=lambda: f"{_random_bits(64):016x}")
    status: TaskStatus = TaskStatus.PENDING
    retry_count: int = 0
    result: TaskResult | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None

    def __post_init__(self) -> None:
        if (type(self.name) is str and self.name and type(self.module) is str
                and type(self.action) is str and type(self.parameters) is dict
                and type(self.dependencies) is list and type(self.priority) is TaskPriority
                and type(self.resources) is list and not self.resources and self.timeout is None
                and self.max_retries == 0 and self.retry_delay == 0.0 and self.retry_backoff == 1.0
                and self.retry_jitter == 0.0 and type(self.tags) is list and not self.tags
                and type(self.max_retries) is int):
            self._init_state()  # the common, all-defaults case: nothing to check
            return
        self._validate()
        self._init_state()

    def _validate(self) -> None:
        if self.name is Ellipsis or self.name is None or self.name == "":
            # The guide's snippets write Task(..., priority=...): a placeholder name.
            self.name = f"task-{self.id[:8]}"
        if not isinstance(self.name, str):
            raise ValueError(f"task name must be a string, got {self.name!r}")
        for attr in ("module", "action"):
            if not isinstance(getattr(self, attr), str):
                raise ValueError(f"task {attr} must be a string, got {getattr(self, attr)!r}")
        if not isinstance(self.parameters, dict):
            raise ValueError(f"task parameters must be a dict, got {self.parameters!r}")
        if isinstance(self.dependencies, str | Task) or not isinstance(self.dependencies, list | tuple | set):
            raise ValueError(
                f"dependencies must be a list of task ids, names or Task objects, got {self.dependencies!r}")
        self.dependencies = list(self.dependencies)
        self.priority = TaskPriority.coerce(self.priority)
        if isinstance(self.resources, TaskResource) or not isinstance(self.resources, list | tuple):
            raise ValueError(f"resources must be a list of TaskResource, got {self.resources!r}")
        bad = [r for r in self.resources if not isinstance(r, TaskResource)]
        if bad:
            raise ValueError(f"resources must be TaskResource objects, got {bad[0]!r}")
        self.resources = list(self.resources)
        self.timeout = _check_positive(self.timeout, "timeout")
        self.max_retries = _check_non_negative(self.max_retries, "max_retries", integer=True)
        self.retry_delay = float(_check_non_negative(self.retry_delay, "retry_delay"))
        self.retry_jitter = float(_check_non_negative(self.retry_jitter, "retry_jitter"))
        if isinstance(self.retry_backoff, bool) or not isinstance(self.retry_backoff, int | float) \
                or self.retry_backoff < 1:
            raise ValueError(f"retry_backoff must be a number >= 1 (1 = constant delay), got {self.retry_backoff!r}")
        if isinstance(self.tags, str):
            self.tags = [self.tags]
        self.tags = [str(t) for t in self.tags]

    def _init_state(self) -> None:
        if self.func is not None and not callable(self.func):
            raise ValueError(f"func must be callable, got {self.func!r}")
        self.attempts: list[Attempt] = []
        self.retry_at: float | None = None  # set while waiting to retry
        self.queued_at: float | None = None  # when it was (re-)added
        self.ready_at: float | None = None
        self.runnable_since = 0.0  # last time it joined the ready queue (for worker waits)
        self.wait_dependencies = 0.0
        self.wait_resources = 0.0
        self.wait_worker = 0.0
        self.blocked_on: str | None = None  # resource key it waits for now
        self.wait_by_resource: dict[str, float] = {}  # seconds waited, per blocking resource

    # -- the guide's accessors ------------------------------------------------
    def can_retry(self) -> bool:
        """True while another automatic attempt is allowed."""
        return self.retry_count < self.max_retries

    @property
    def execution_time(self) -> float | None:
        """Run time of the last finished attempt, in seconds."""
        return self.result.execution_time if self.result is not None else None

    @property
    def output(self) -> OutputRef:
        """A placeholder for this task's result data in another task's parameters."""
        return OutputRef(self.id, self.name)

    @property
    def waiting_retry(self) -> bool:
        return self.retry_at is not None and self.status is TaskStatus.PENDING

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, status={self.status.value}, id={self.id[:8]})"

    # -- serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in _SERIALISED}
        data["dependencies"] = [d.id if isinstance(d, Task) else d for d in self.dependencies]
        data["parameters"] = {k: ({"__output_of__": v.task_id} if isinstance(v, OutputRef) else v)
                              for k, v in self.parameters.items()}
        data["priority"] = self.priority.name
        data["status"] = self.status.value
        data["resources"] = [r.to_dict() for r in self.resources]
        data["result"] = self.result.to_dict() if self.result else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        data = dict(data)
        result = data.pop("result", None)
        status = data.pop("status", "pending")
        params = {k: (OutputRef(v["__output_of__"], v["__output_of__"])
                      if isinstance(v, dict) and set(v) == {"__output_of__"} else v)
                  for k, v in data.pop("parameters", {}).items()}
        resources = [TaskResource.from_dict(r) for r in data.pop("resources", [])]
        task = cls(parameters=params, resources=resources, **data)
        task.status = TaskStatus(status)
        task.result = TaskResult.from_dict(result) if result else None
        return task
