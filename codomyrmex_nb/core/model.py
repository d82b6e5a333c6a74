"""The task model: what a task is, how urgent it is, which resources it holds.

Small value classes, validated where values enter: a bad priority, mode, timeout or
retry setting fails at the line that wrote it, with the value quoted and the
allowed ones listed. ``Task`` is slotted (about 2 KB per task in all, see the
benchmarks) and holds the definition; its state lives in the scheduler. ``to_dict`` / ``from_dict`` round-trip everything but live
callables and exception objects.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from itertools import repeat
from typing import Any

from .mapping import MapSpec, check_params, check_spec
from .names import check_task_name, plain_name
from .retry_on import check_retry_on, retry_on_names
from .task_result import (  # noqa: F401 - re-exported: callers (and old pickles) name them here
    DROPPED,
    LazyData,
    TaskResult,
    _same,
    _set_slots,
    safe_str,
)
from .trigger_rules import DEFAULT as DEFAULT_RULE
from .trigger_rules import check_rule

_STR = repeat(str)  # ``is_plain``: every parameter name a str, checked at C speed


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

#: The longest wait the engine arms (a year, in seconds). Longer timeouts, retry
#: delays and resource timeouts are accepted and clamped to it, so no user value
#: can overflow a timer; ``inf`` and ``nan`` are refused where they enter.
MAX_DELAY = 365 * 24 * 3600.0


def _check_positive(value: Any, what: str, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number of seconds (finite, or None), got {value!r}")
    return float(value)


def _check_non_negative(value: Any, what: str, integer: bool = False) -> Any:
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or value < 0 or (
        not integer and not math.isfinite(value)
    ):
        noun = "a whole number >= 0" if integer else "a number >= 0 (finite)"
        raise ValueError(f"{what} must be {noun}, got {value!r}")
    return value


@dataclass(frozen=True)
class TaskResource:
    """A named lock ``type:identifier`` held for one attempt.

    ``read`` holds are shared; ``write`` takes one slot of the resource's
    ``capacity`` (default 1) and excludes readers; ``exclusive`` takes the whole
    resource. ``timeout`` bounds how long a task waits to acquire it. The fields
    come in the original orchestrator's order (``capacity``, ours, comes last).
    """

    type: ResourceType
    identifier: str
    mode: str = "read"
    timeout: float | None = None
    capacity: int | None = None

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


def check_watch(value: Any) -> list[str]:
    """A task's ``watch`` list, checked: file paths and ``env:NAME`` variables whose
    content or value its fingerprint includes (``core/watch.py``)."""
    if isinstance(value, str | os.PathLike):
        value = [value]
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"watch must be a list of file paths or 'env:NAME' strings, got {value!r}")
    specs = []
    for item in value:
        spec = os.fspath(item) if isinstance(item, os.PathLike) else item
        if not isinstance(spec, str) or not spec.strip() or spec.strip() == "env:":
            raise ValueError(f"watch entries must be a file path or 'env:NAME', got {item!r}")
        specs.append(spec)
    return specs


def _made_on_read(slot: str) -> property:
    """A list field stored in ``slot``, None until it is first read (then an empty list)."""
    def get(self: Any) -> list[Any]:
        held = getattr(self, slot)
        if held is None:
            held = []
            setattr(self, slot, held)
        return held

    def put(self: Any, value: list[Any]) -> None:
        setattr(self, slot, value)

    return property(get, put)


def _empty_list(value: Any) -> bool:
    return value is None or (type(value) is list and not value)


@dataclass(frozen=True)
class OutputRef:
    """``task.output``: a parameter placeholder replaced by that task's result data."""

    task_id: str
    task_name: str

    def __repr__(self) -> str:
        return f"<output of {self.task_name!r}>"


def output_refs(value: object) -> Iterable[OutputRef]:
    """Every ``task.output`` placeholder inside a parameter value (lists, tuples, dicts)."""
    if isinstance(value, OutputRef):
        yield value
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from output_refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from output_refs(item)


class Attempt:
    """One run of a task: where, when, and how it ended (for timelines and frames)."""

    __slots__ = ("number", "worker", "started_at", "ended_at", "outcome", "logs", "cpu_time",
                 "peak_memory", "displays", "run_delay")

    def __init__(self, number: int, worker: str | None = None, started_at: float | None = None,
                 ended_at: float | None = None, outcome: str | None = None) -> None:
        self.number, self.worker, self.started_at = number, worker, started_at
        self.ended_at = ended_at
        # "completed" | "failed" | "timeout" | "cancelled" | "interrupted" | "resource-timeout"
        self.outcome = outcome
        self.logs: str | None = None  # captured output of this attempt
        self.cpu_time: float | None = None  # CPU seconds, where measured
        self.peak_memory: int | None = None  # bytes, where the executor can tell
        self.displays: list[Any] | None = None  # (mime bundle, metadata) it displayed
        self.run_delay: float | None = None  # seconds its thread waited for a core, where measured

    def copy(self) -> Attempt:
        twin = Attempt(self.number, self.worker, self.started_at, self.ended_at, self.outcome)
        twin.logs, twin.cpu_time, twin.peak_memory = self.logs, self.cpu_time, self.peak_memory
        twin.displays, twin.run_delay = self.displays, self.run_delay
        return twin

    def __repr__(self) -> str:
        return (f"Attempt(number={self.number}, worker={self.worker!r}, started_at={self.started_at!r}, "
                f"ended_at={self.ended_at!r}, outcome={self.outcome!r})")


#: A task's definition (what ``orchestrator.redefine`` may change); the rest is state.
DEFINITION_FIELDS = ("name", "module", "action", "parameters", "dependencies", "priority",
                     "resources", "timeout", "max_retries", "retry_delay", "retry_backoff",
                     "retry_jitter", "tags", "metadata", "func", "cache", "retry_on", "description",
                     "trigger_rule", "watch", "map")
_SERIALISED = ("id", "name", "module", "action", "parameters", "dependencies", "timeout",
               "max_retries", "retry_delay", "retry_backoff", "retry_jitter", "tags",
               "metadata", "retry_count", "created_at", "started_at", "completed_at",
               "trigger_rule", "watch")
_NO_ATTEMPTS: tuple[Attempt, ...] = ()
_S = TaskStatus


class Task:
    """A unit of work: ``module.action(**parameters)`` (or ``func``) plus its scheduling needs.

    ``dependencies`` may hold ids, names or Task objects; once added to an
    orchestrator they are stored as ids. ``output`` is a placeholder for this
    task's result data, usable in another task's ``parameters``. ``retry_on``
    (exception classes) limits which failures are retried (``core.retry_on``);
    ``description`` is free text, as in the original orchestrator.
    ``trigger_rule`` says when it runs given how its upstream tasks ended (Airflow's
    names, see ``trigger_rules``; ``all_success`` by default).

    Once added, the orchestrator's scheduler is the one writer of the task's
    state: ``status``, ``result``, ``retry_count``, ``attempts`` and the
    timings read its record. Assigning ``status`` or ``retry_count`` (the
    guide's retry recipe) is a request that the next ``add_task`` or
    ``rerun`` acts on, and changed definition fields (``timeout``,
    ``parameters``...) take effect, validated, when the task is next queued by
    ``add_task``, ``rerun`` or ``orchestrator.redefine``.
    """

    __slots__ = ("name", "module", "action", "parameters", "dependencies", "priority", "_resources",
                 "timeout", "max_retries", "retry_delay", "retry_backoff", "retry_jitter", "_tags",
                 "metadata", "func", "cache", "id", "created_at", "_status", "_retry_count",
                 "_result", "retry_on", "description", "_watch",
                 "_started_at", "_completed_at", "_record", "_asked", "trigger_rule",
                 "_map", "__weakref__")

    def __init__(self, name: Any = "", module: str = "", action: str = "",
                 parameters: dict[str, Any] | None = None, dependencies: Any = None,
                 priority: TaskPriority | str = TaskPriority.NORMAL,
                 resources: list[TaskResource] | None = None, timeout: float | None = None,
                 max_retries: int = 0, retry_delay: float = 0.0, retry_backoff: float = 1.0,
                 retry_jitter: float = 0.0, tags: list[str] | None = None,
                 metadata: dict[str, Any] | None = None, func: Callable[..., Any] | None = None,
                 cache: bool = False, id: str | None = None, status: TaskStatus = TaskStatus.PENDING,  # noqa: A002
                 retry_count: int = 0, result: TaskResult | None = None,
                 created_at: float | None = None, started_at: float | None = None,
                 completed_at: float | None = None, *,
                 retry_on: Any = None, description: str = "",
                 trigger_rule: str = DEFAULT_RULE, watch: list[str] | None = None,
                 map: Any = None, map_mode: str = "zip", tolerate: Any = 0,  # noqa: A002
                 max_parallel: int | None = None) -> None:
        self.name, self.module, self.action = name, module, action
        self.retry_on = retry_on  # None: every failure is retried (see core.retry_on)
        self.description = description
        self.trigger_rule = trigger_rule  # when it runs, given how its upstream ended
        self.parameters = {} if parameters is None else parameters
        self.dependencies = [] if dependencies is None else dependencies
        self.priority, self.timeout, self.func, self.cache = priority, timeout, func, cache
        self._resources = resources  # None until read: most tasks hold no resources
        self.max_retries, self.retry_delay = max_retries, retry_delay
        self.retry_backoff, self.retry_jitter = retry_backoff, retry_jitter
        self._tags = tags  # None until read, as resources
        self._watch = watch  # files and "env:NAME" variables in the fingerprint (core/watch.py)
        self.metadata = {} if metadata is None else metadata
        self.id = f"{_random_bits(64):016x}" if id is None else id
        self.created_at = time.time() if created_at is None else created_at
        self._status, self._retry_count, self._result = status, retry_count, result
        self._started_at, self._completed_at = started_at, completed_at
        self._record: Any = None  # the scheduler's record while an orchestrator knows the task
        self._asked: dict[str, Any] | None = None  # state writes waiting for add_task/rerun
        # mapped: run once per item of its sources (core/mapping.py); checked here, whole
        self._map = map if isinstance(map, MapSpec) else check_spec(map, map_mode, tolerate,
                                                                    max_parallel)
        if self._map is not None:
            self._add_map_sources()
        if not self.is_plain():
            self.validate()

    # Resources and tags are made on first read: two empty lists per task were a quarter
    # of the objects every full garbage collection walked, for fields most tasks never set.
    resources = _made_on_read("_resources")
    tags = _made_on_read("_tags")
    watch = _made_on_read("_watch")

    @property
    def map(self) -> MapSpec | None:
        """How the task is mapped (``core.mapping.MapSpec``), or None for a plain task."""
        return self._map

    @map.setter
    def map(self, value: Any) -> None:
        self._map = value if value is None or isinstance(value, MapSpec) else check_spec(value)
        if self._map is not None:
            self._add_map_sources()

    def _add_map_sources(self) -> None:
        """A task mapped over another task's result depends on it."""
        deps = self.dependencies
        if not isinstance(deps, list):
            return  # validate() explains
        for source in self._map.sources():
            if not any(d is source or (type(d) is str and d == source) for d in deps):
                deps.append(source)

    def is_plain(self) -> bool:
        """True when every field has a default-like type and value: nothing to check."""
        return (type(self.name) is str and self.name != "" and plain_name(self.name)
                and type(self.module) is str
                and type(self.action) is str and type(self.parameters) is dict
                and all(map(isinstance, self.parameters, _STR))  # names: no frame
                and type(self.dependencies) is list and type(self.priority) is TaskPriority
                and _empty_list(self._resources) and self.timeout is None
                and type(self.max_retries) is int and self.max_retries == 0
                and self.retry_delay == 0.0 and self.retry_backoff == 1.0
                and self.retry_jitter == 0.0 and _empty_list(self._tags)
                and type(self.metadata) is dict and (self.func is None or callable(self.func))
                and self.cache is False and self.retry_on is None
                and type(self.description) is str
                and self.trigger_rule is DEFAULT_RULE and _empty_list(self._watch)
                and self._map is None)

    def validate(self) -> None:
        """Check and normalise every definition field; raises ``ValueError`` naming the bad one."""
        if self.name is Ellipsis or self.name is None or self.name == "":
            # Unnamed (the guide writes Task(..., priority=...)): named as the original
            # orchestrator named it, ``module.action``, else by its id.
            module, action = self.module, self.action
            self.name = f"{module}.{action}" if module and action and isinstance(module, str) \
                and isinstance(action, str) else self.id
        if not isinstance(self.name, str):
            raise ValueError(f"task name must be a string, got {self.name!r}")
        check_task_name(self.name)
        for attr in ("module", "action"):
            value = getattr(self, attr)
            if not isinstance(value, str):
                hint = "; to run a function, pass it as func=" if callable(value) else ""
                raise ValueError(f"task {attr} must be a string, got {value!r}{hint}")
        if not isinstance(self.parameters, dict):
            raise ValueError(f"task parameters must be a dict, got {self.parameters!r}")
        for key in self.parameters:
            if not isinstance(key, str):
                raise ValueError(f"task {self.name!r}: parameter names must be strings (they "
                                 f"are passed as keyword arguments), got {key!r}")
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
        backoff = self.retry_backoff
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) \
                or not math.isfinite(backoff) or backoff < 1:
            raise ValueError(f"retry_backoff must be a finite number >= 1 (1 = constant delay), "
                             f"got {backoff!r}")
        self.retry_backoff = float(backoff)
        if isinstance(self.tags, str):
            self.tags = [self.tags]
        if not isinstance(self.tags, list | tuple | set):
            raise ValueError(f"tags must be a list of strings, got {self.tags!r}")
        self.tags = [str(t) for t in self.tags]
        if not isinstance(self.metadata, dict):
            raise ValueError(f"task metadata must be a dict, got {self.metadata!r}")
        if self.func is not None and not callable(self.func):
            raise ValueError(f"func must be callable, got {self.func!r}")
        if self._map is not None and self.func is not None:
            check_params(self.name, self.func, self._map)
        if not isinstance(self.cache, bool):
            raise ValueError(f"cache must be True or False, got {self.cache!r}")
        self.retry_on = check_retry_on(self.retry_on)
        if not isinstance(self.description, str):
            raise ValueError(f"task description must be a string, got {self.description!r}")
        rule = check_rule(self.trigger_rule)
        self.trigger_rule = DEFAULT_RULE if rule == DEFAULT_RULE else rule
        self._watch = check_watch(self._watch) if self._watch else None

    # -- state: the scheduler's record decides once the task is added ------------------
    @property
    def status(self) -> TaskStatus:
        rec = self._record
        return self._status if rec is None else rec.status

    @status.setter
    def status(self, value: TaskStatus | str) -> None:
        value = value if isinstance(value, TaskStatus) else TaskStatus(str(value).lower())
        self._status = value
        if self._record is not None:
            self._ask("status", value)

    @property
    def retry_count(self) -> int:
        rec = self._record
        return self._retry_count if rec is None else rec.retry_count

    @retry_count.setter
    def retry_count(self, value: int) -> None:
        value = _check_non_negative(value, "retry_count", integer=True)
        self._retry_count = value
        if self._record is not None:
            self._ask("retry_count", value)

    def _ask(self, key: str, value: Any) -> None:
        if self._asked is None:
            self._asked = {}
        self._asked[key] = value

    @property
    def result(self) -> TaskResult | None:
        rec = self._record
        return self._result if rec is None else rec.result

    @result.setter
    def result(self, value: TaskResult | None) -> None:
        if self._record is not None:
            raise AttributeError("the orchestrator owns a queued task's result; "
                                 "reset() or remove the task before assigning one")
        self._result = value

    @property
    def started_at(self) -> float | None:
        rec = self._record
        return self._started_at if rec is None else rec.started_at

    @property
    def completed_at(self) -> float | None:
        rec = self._record
        return self._completed_at if rec is None else rec.completed_at

    @property
    def attempts(self) -> list[Attempt] | tuple[Attempt, ...]:
        rec = self._record
        return _NO_ATTEMPTS if rec is None else rec.attempts

    def _timing(name: str, default: Any = None) -> property:  # noqa: N805 - a property factory
        def get(self: Task) -> Any:
            rec = self._record
            return default if rec is None else getattr(rec, name)
        get.__name__ = name
        return property(get, doc=f"The scheduler's ``{name}`` for this task (read-only).")

    queued_at = _timing("queued_at")
    ready_at = _timing("ready_at")
    retry_at = _timing("retry_at")
    blocked_on = _timing("blocked_on")
    wait_dependencies = _timing("wait_dependencies", 0.0)
    wait_resources = _timing("wait_resources", 0.0)
    wait_worker = _timing("wait_worker", 0.0)
    del _timing

    @property
    def wait_by_resource(self) -> dict[str, float]:
        """Seconds waited, per resource that blocked the task."""
        rec = self._record
        return {} if rec is None or rec.wait_by_resource is None else dict(rec.wait_by_resource)

    # -- the guide's accessors ------------------------------------------------
    def can_retry(self) -> bool:
        """May this task run again?

        Before it ends: while an automatic retry is left (``retry_count <
        max_retries``). Once it ended FAILED or CANCELLED its automatic retries
        are spent, so this means "a manual retry is allowed": True, and the
        guide's recipe (reset the status and ``retry_count``, ``add_task`` it
        again) runs it again with a fresh budget. COMPLETED and SKIPPED tasks
        have nothing to retry (a skipped one runs when its upstream is re-run).
        """
        status = self.status
        if status is _S.FAILED or status is _S.CANCELLED:
            return True
        if status is _S.COMPLETED or status is _S.SKIPPED:
            return False
        return self.retry_count < self.max_retries

    @property
    def execution_time(self) -> float | None:
        """Run time of the last finished attempt, in seconds."""
        result = self.result
        return result.execution_time if result is not None else None

    @property
    def output(self) -> OutputRef:
        """A placeholder for this task's result data in another task's parameters."""
        return OutputRef(self.id, self.name)

    @property
    def waiting_retry(self) -> bool:
        return self.retry_at is not None and self.status is TaskStatus.PENDING

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, status={self.status.value}, id={self.id[:8]})"

    def __setstate__(self, state: Any) -> None:
        """Unpickle, tasks pickled before ``retry_on``, ``description``, ``trigger_rule``
        and ``watch`` existed included (the defaults of fields their state lacks)."""
        self.retry_on, self.description = None, ""
        self.trigger_rule, self._watch, self._map = DEFAULT_RULE, None, None
        _set_slots(self, state)

    # -- serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in _SERIALISED}
        data["dependencies"] = [d.id if isinstance(d, Task) else d for d in self.dependencies]
        data["parameters"] = {k: ({"__output_of__": v.task_id} if isinstance(v, OutputRef) else v)
                              for k, v in self.parameters.items()}
        data["priority"] = self.priority.value  # a number, as the original's to_dict gave
        data["description"] = self.description
        data["retry_on"] = retry_on_names(self.retry_on)
        data["status"] = self.status.value
        data["resources"] = [r.to_dict() for r in self.resources]
        result = self.result
        data["result"] = result.to_dict() if result else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """Ours or the original orchestrator's ``to_dict()`` (priority a number or a name,
        times as seconds or ISO strings, exception names in ``retry_on``)."""
        data = dict(data)
        for key in ("created_at", "started_at", "completed_at"):
            data[key] = _seconds(data.get(key))
        result = data.pop("result", None)
        status = data.pop("status", "pending")
        params = {k: (OutputRef(v["__output_of__"], v["__output_of__"])
                      if isinstance(v, dict) and set(v) == {"__output_of__"} else v)
                  for k, v in data.pop("parameters", {}).items()}
        resources = [TaskResource.from_dict(r) for r in data.pop("resources", [])]
        return cls(parameters=params, resources=resources, status=TaskStatus(status),
                   result=TaskResult.from_dict(result) if result else None, **data)


def _seconds(value: Any) -> Any:
    """A time as epoch seconds: the original's dicts hold ISO strings (or datetimes)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"bad time {value!r}: use epoch seconds or an ISO 8601 string") from None
    return value.timestamp() if isinstance(value, datetime) else value
