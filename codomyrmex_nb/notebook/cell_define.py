"""Defining, keeping or replacing the task of a ``%%codo_task`` cell.

Running a cell is idempotent, as a notebook user expects:

- a new name adds a task;
- the same text and options (the *fingerprint*, kept in
  ``task.metadata["codo_cell"]``) keep the task as it is: a completed result
  stays, a pending or running task goes on. A task that ended without a result
  (failed, cancelled, skipped) has nothing to keep, so it is queued again;
- changed text or options replace the task's function and settings in place
  (same id, so dependents keep pointing at it) and re-run it and everything
  downstream of it, interrupting any of them that runs; nothing else re-runs.
  A change of ``--out`` alone only re-targets the variable; a change of
  ``--cache`` alone only sets ``task.cache`` (whether the journal may restore the
  task when it is next defined: a new kernel), nothing re-runs. ``--cache`` is a
  setting about *where a result may come from*, not about what the cell computes,
  so, like ``--out``, it is left out of the change-detection fingerprint; it
  always reaches the Task (``Task.cache``), on definition, change and rename;
- a new name in the same cell (the front end's cell id, when it sends one, is
  kept in ``task.metadata["codo_cell_id"]``) *renames* the cell's task in place
  (``orchestrator.redefine(task, name=...)``): same id, so tasks that run after
  it keep their edge and no orphan is left in the DAG or the done/total count.
  It re-runs with its downstream, like any change; the message names the
  dependents whose cells still say an old name (their ``--after`` and the name
  their body reads it by; each cell's own, kept in ``metadata["codo_after"]``),
  to be updated. If the new name is already another
  task's, this cell takes that task over (as any cell with that name would) and
  its old task is removed; that is refused, before anything changes, while other
  tasks depend on the old one.

Everything is validated before anything changes (names, priority, resources,
numbers, dependency cycles), so a bad cell leaves the orchestrator as it was.
Errors are ``CellDefinitionError`` with a one-line message.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import keyword
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core import DependencyCycleError, ResourceType, Task, TaskPriority, TaskResource, TaskStatus
from ..core.mapping import check_tolerate
from ..core.model import RESOURCE_MODES
from ..core.names import check_task_name
from ..core.retry_on import check_retry_on
from ..core.trigger_rules import DEFAULT as DEFAULT_RULE
from ..core.trigger_rules import MEANING, check_rule
from ..orchestrator import TaskOrchestrator
from .cell_map import (
    MAP_ONLY,
    MappedCellFunction,
    MapSourceError,
    MapSources,
    parse_map,
    resolve_sources,
)
from .cell_tasks import CellFunction, CellSyntaxError, compile_cell

S = TaskStatus
META_KEY = "codo_cell"
CELL_ID_KEY = "codo_cell_id"
AFTER_KEY = "codo_after"  # upstream task id -> the name the cell's --after wrote for it


class CellDefinitionError(ValueError):
    """A ``%%codo_task`` cell cannot be defined; the message is one line."""


@dataclass
class CellOptions:
    """The parsed options of a ``%%codo_task`` line."""

    after: list[str] = field(default_factory=list)
    priority: str | None = None
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 0.0
    resources: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    out: str | None = None
    cache: bool = False
    retry_on: list[str] = field(default_factory=list)  # exception names (notebook or builtins)
    trigger: str | None = None  # a trigger rule (None: all_success)
    watch: list[str] = field(default_factory=list)
    map: list[str] = field(default_factory=list)  # "SOURCE" or "PARAM=SOURCE" (cell_map)
    map_mode: str | None = None  # zip (None) or product
    tolerate: str | None = None  # "N" items or "P%"
    max_parallel: int | None = None


@dataclass(frozen=True)
class Definition:
    """What running the cell did: ``action`` is defined / unchanged / changed / renamed / requeued."""

    task: Task
    action: str
    message: str


def parse_priority(text: str | None) -> TaskPriority:
    """A priority name (any case) or number 1-4."""
    if text is None:
        return TaskPriority.NORMAL
    value: Any = int(text) if text.strip().isdigit() else text
    try:
        return TaskPriority.coerce(value)
    except ValueError:
        names = ", ".join(p.name.lower() for p in TaskPriority)
        raise CellDefinitionError(
            f"bad --priority {text!r}: use one of {names} (or 1-{len(TaskPriority)})") from None


def parse_resource(spec: str) -> TaskResource:
    """``TYPE:ID[:MODE]``; an id containing ``:`` needs the mode spelled out."""
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise CellDefinitionError(f"bad --resource {spec!r}: write TYPE:ID[:MODE], e.g. cpu:system_cpu:read")
    ident, mode = rest, "read"
    if ":" in rest:
        ident, mode = rest.rsplit(":", 1)
    try:
        rtype = ResourceType.coerce(kind)
    except ValueError:
        kinds = ", ".join(t.value for t in ResourceType)
        raise CellDefinitionError(f"bad --resource {spec!r}: unknown type {kind!r}; use one of {kinds}") from None
    if mode.lower() not in RESOURCE_MODES:
        raise CellDefinitionError(
            f"bad --resource {spec!r}: unknown mode {mode!r}; use one of {', '.join(RESOURCE_MODES)}")
    try:
        return TaskResource(type=rtype, identifier=ident, mode=mode)
    except ValueError as exc:
        raise CellDefinitionError(f"bad --resource {spec!r}: {exc}") from None


def fingerprint(source: str, opts: CellOptions, mapped: MapSources | None = None) -> str:
    """What decides whether a cell changed: its text and every option but ``--out`` and
    ``--cache`` (neither changes what the cell computes). ``--watch`` counts: a new
    declared input re-runs the cell (the watched contents count in the journal's
    fingerprint, not here: an unchanged cell keeps its result, as for the names it reads).
    A ``--map`` counts with the content of the notebook lists it maps over (``cell_map``)."""
    key = {"source": source.rstrip(), "after": opts.after, "priority": opts.priority,
           "timeout": opts.timeout, "retries": opts.retries, "retry_delay": opts.retry_delay,
           "resources": opts.resources, "tags": opts.tags}
    if opts.retry_on:  # only when given: cells written before --retry-on keep their fingerprint
        key["retry_on"] = opts.retry_on
    rule = _rule_name(opts.trigger)
    if rule != DEFAULT_RULE:  # only then: cells without a rule keep their fingerprint
        key["trigger"] = rule
    if opts.watch:  # only when given: cells without it keep the fingerprint they had
        key["watch"] = sorted(opts.watch)
    if mapped is not None:  # only when mapped: other cells keep their fingerprint
        key["map"] = [mapped.key, opts.map_mode or "zip", opts.tolerate, opts.max_parallel]
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _rule_name(text: str | None) -> str:
    """The rule ``--trigger`` names (a bad name as written: ``_build`` explains it)."""
    if text is None:
        return DEFAULT_RULE
    try:
        return check_rule(text)
    except ValueError:
        return text


def define_cell_task(orch: TaskOrchestrator, name: str, source: str, opts: CellOptions,
                     namespace: Mapping[str, Any], header: str = "",
                     cell_id: str | None = None) -> Definition:
    """Add, keep, replace or rename the task ``name`` for this cell; raises ``CellDefinitionError``.

    ``cell_id`` is the notebook cell's id when the front end sent one: a cell
    whose task had another name renames that task (see the module docstring).
    """
    if not name or not name.strip():
        raise CellDefinitionError("a task needs a name: %%codo_task NAME [options]")
    try:
        check_task_name(name)
    except ValueError as exc:
        raise CellDefinitionError(str(exc)) from None
    try:
        cell = compile_cell(name, source, header)
    except CellSyntaxError as exc:
        raise CellDefinitionError(str(exc)) from None
    existing = orch.get_task(name)
    previous = _renamed_from(orch, cell_id, name, existing)
    written = _resolve_after(orch, name, opts.after, existing or previous, previous)
    deps = list(written.values())
    mapped = _map_sources(orch, name, opts, namespace)
    fn = CellFunction(cell, namespace)
    if mapped is not None:
        deps += [t for t in mapped.tasks if t not in deps]
        fn = MappedCellFunction(cell, namespace, tuple(mapped.bindings))
    probe = _build(name, opts, deps, fn, fingerprint(source, opts, mapped), cell_id,
                   _retry_on(name, opts.retry_on, namespace), mapped)
    if written:  # each --after task's id -> the name this cell wrote for it
        probe.metadata[AFTER_KEY] = {dep.id: ref for ref, dep in written.items()}
    if previous is not None and existing is None:
        done = _rename(orch, previous, probe, deps)
    else:
        if previous is not None:  # the new name is another task's: this cell's old task goes
            _check_removable(orch, previous, name)
        if existing is None:
            try:
                orch.add_task(probe)
            except ValueError as exc:
                raise CellDefinitionError(f"task {name!r}: {exc}") from None
            done = Definition(probe, "defined", _defined_line(orch, probe, deps, mapped))
        elif existing.metadata.get(META_KEY) == probe.metadata[META_KEY]:
            done = _keep(orch, existing, opts.cache)
        else:
            done = _replace(orch, existing, probe, deps)
        if previous is not None:
            orch.remove_task(previous)
            done = Definition(done.task, done.action, done.message
                              + f"; removed {previous.name!r}, this cell's task before")
    cell.register()
    if done.action != "unchanged" and not orch.is_running:
        done = Definition(done.task, done.action, done.message + _STOPPED)
    return done


def _retry_on(name: str, names: list[str], namespace: Mapping[str, Any]) -> Any:
    """``--retry-on`` names as exception classes, looked up in the notebook, then builtins."""
    if not names:
        return None
    try:
        return check_retry_on(names, namespace)
    except ValueError as exc:
        raise CellDefinitionError(f"task {name!r}: --retry-on: {exc}") from None


def _map_sources(orch: TaskOrchestrator, name: str, opts: CellOptions,
                 namespace: Mapping[str, Any]) -> MapSources | None:
    """The ``--map`` sources resolved (None: not mapped); map-only options need one."""
    if not opts.map:
        given = [flag for flag, value in zip(MAP_ONLY, (opts.tolerate, opts.max_parallel,
                                                        opts.map_mode), strict=True)
                 if value is not None]
        if given:
            one = len(given) == 1
            raise CellDefinitionError(f"task {name!r}: {', '.join(given)} "
                                      f"{'applies' if one else 'apply'} to mapped cells only: "
                                      f"add --map SOURCE or drop {'it' if one else 'them'}")
        return None
    try:
        check_tolerate(opts.tolerate)
    except ValueError:
        raise CellDefinitionError(f"task {name!r}: bad --tolerate {opts.tolerate!r}: give a "
                                  "count of items (2) or a share (10%)") from None
    if opts.max_parallel is not None and opts.max_parallel < 1:
        raise CellDefinitionError(f"task {name!r}: --max-parallel must be a whole number >= 1, "
                                  f"got {opts.max_parallel}")
    try:
        return resolve_sources(orch, name, parse_map(opts.map), namespace,
                               opts.map_mode or "zip")
    except MapSourceError as exc:
        raise CellDefinitionError(f"task {name!r}: {exc}") from None


def _build(name: str, opts: CellOptions, deps: list[Task], fn: CellFunction, fp: str,
           cell_id: str | None = None, retry_on: Any = None,
           mapped: MapSources | None = None) -> Task:
    resources = [parse_resource(r) for r in opts.resources]
    metadata: dict[str, Any] = {META_KEY: fp}
    if cell_id:
        metadata[CELL_ID_KEY] = cell_id
    try:
        return Task(name=name, func=fn, dependencies=[d.id for d in deps],
                    priority=parse_priority(opts.priority), timeout=opts.timeout,
                    max_retries=opts.retries, retry_delay=opts.retry_delay, resources=resources,
                    tags=list(opts.tags), metadata=metadata, cache=bool(opts.cache),
                    retry_on=retry_on, trigger_rule=opts.trigger or DEFAULT_RULE,
                    watch=list(opts.watch) or None, **_map_args(opts, mapped))
    except ValueError as exc:
        raise CellDefinitionError(f"task {name!r}: {exc}") from None


def _map_args(opts: CellOptions, mapped: MapSources | None) -> dict[str, Any]:
    if mapped is None:
        return {}
    return {"map": mapped.bindings, "map_mode": opts.map_mode or "zip",
            "tolerate": opts.tolerate if opts.tolerate is not None else 0,
            "max_parallel": opts.max_parallel}


def _renamed_from(orch: TaskOrchestrator, cell_id: str | None, name: str,
                  existing: Task | None) -> Task | None:
    """The task this cell defined last time under another name, if any."""
    if not cell_id:
        return None
    for task in reversed(orch.list_tasks()):
        if task.metadata.get(CELL_ID_KEY) == cell_id:
            if task.name == name or (existing is not None and task.id == existing.id):
                return None
            return task
    return None


def _check_removable(orch: TaskOrchestrator, previous: Task, name: str) -> None:
    after = _direct_dependents(orch, previous)
    if after:
        raise CellDefinitionError(
            f"task {name!r} is already defined, and this cell's task before, {previous.name!r}, "
            f"cannot be removed: {_names(t.name for t in after)} run --after it. Pick another "
            f"name (a new name renames {previous.name!r}), or change those cells first")


def _direct_dependents(orch: TaskOrchestrator, task: Task) -> list[Task]:
    return [t for t in orch.dependents_of(task)
            if any(d.id == task.id for d in orch.dependencies_of(t))]


def _resolve_after(orch: TaskOrchestrator, name: str, after: list[str],
                   existing: Task | None, previous: Task | None = None) -> dict[str, Task]:
    """The ``--after`` tasks by the name the cell wrote for each (the first, when it named
    one twice), checked to exist (cycles are the orchestrator's to refuse)."""
    deps: dict[str, Task] = {}
    for ref in after:
        dep = orch.get_task(ref)
        if dep is None:
            known = [t.name for t in orch.list_tasks()]
            close = difflib.get_close_matches(ref, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else " Run its cell first."
            raise CellDefinitionError(f"task {name!r}: --after {ref!r} is not a known task.{hint}")
        if previous is not None and dep.id == previous.id:
            raise CellDefinitionError(f"task {name!r} cannot run --after {ref!r}: that is this "
                                      "cell's own task, under its name before")
        if existing is not None and dep.id == existing.id:
            raise CellDefinitionError(f"task {name!r} cannot run --after itself")
        if dep not in deps.values():
            deps[ref] = dep
    return deps


def _keep(orch: TaskOrchestrator, task: Task, cache: bool = False) -> Definition:
    note = ""
    if task.cache != cache:  # a setting for the next definition: nothing re-runs for it
        task.cache = cache
        note = "; --cache now on" if cache else "; --cache now off"
    done = _keep_task(orch, task)
    return Definition(done.task, done.action, done.message + note)


def _keep_task(orch: TaskOrchestrator, task: Task) -> Definition:
    status = task.status
    if status is S.COMPLETED:
        return Definition(task, "unchanged", f"codo_task {task.name!r}: unchanged, keeping its result")
    if not status.is_terminal:
        return Definition(task, "unchanged", f"codo_task {task.name!r}: unchanged, still {status.value}")
    downstream = _downstream_names(orch, task)
    orch.rerun(task)
    return Definition(task, "requeued", f"codo_task {task.name!r}: unchanged but {status.value} "
                      f"last time; queued again{_and_downstream(downstream)}")


def _replace(orch: TaskOrchestrator, task: Task, probe: Task, deps: list[Task]) -> Definition:
    """Give ``task`` the probe's function and settings, then re-run it and its downstream.

    One locked call (``orchestrator.redefine``) validates and applies it all, so
    a refused change (a cycle) leaves the task as it was.
    """
    edges_changed = _redefine(orch, task, probe, deps)
    downstream = _downstream_names(orch, task)
    after = ""
    if edges_changed:
        after = f", now after {_names(d.name for d in deps)}" if deps else ", now without dependencies"
    return Definition(task, "changed", f"codo_task {task.name!r}: changed{after}; re-running "
                      f"it{_and_downstream(downstream)}")


def _rename(orch: TaskOrchestrator, task: Task, probe: Task, deps: list[Task]) -> Definition:
    """This cell's task under its new name, in place (same id, dependents keep their edge)."""
    old = task.name
    stale: dict[str, list[str]] = {}  # the name a dependent's cell wrote -> those dependents
    for down in _direct_dependents(orch, task):
        said = down.metadata.get(AFTER_KEY, {}).get(task.id, old)
        if said != probe.name:  # renamed back to what that cell says: nothing to change
            stale.setdefault(said, []).append(down.name)
    _redefine(orch, task, probe, deps, name=probe.name)
    downstream = _downstream_names(orch, task)
    message = (f"codo_task {task.name!r}: renamed from {old!r} (same cell); re-running "
               f"it{_and_downstream(downstream)}")
    if stale:
        changes = "; ".join(f"{said!r} to {task.name!r} in the --after and body of {_names(who)}"
                            for said, who in stale.items())
        message += f". Their cells still say the name before: change {changes}"
    return Definition(task, "renamed", message)


def _redefine(orch: TaskOrchestrator, task: Task, probe: Task, deps: list[Task],
              **extra: Any) -> bool:
    """``orchestrator.redefine`` with the probe's settings; True if the edges changed."""
    new_deps = [d.id for d in deps]
    edges_changed = set(new_deps) != {d.id for d in orch.dependencies_of(task)}
    changes = {attr: getattr(probe, attr) for attr in _REPLACED}
    changes["metadata"] = {**task.metadata, **probe.metadata}
    for key in (CELL_ID_KEY, AFTER_KEY):  # the cell's own, not a user's: gone with it
        if key not in probe.metadata:
            changes["metadata"].pop(key, None)
    try:
        orch.redefine(task, module="", action="", dependencies=new_deps, **changes, **extra)
    except DependencyCycleError as exc:
        raise CellDefinitionError(
            f"task {task.name!r}: --after {exc.cycle[-2]!r} would close a dependency cycle "
            f"({' -> '.join(exc.cycle)})") from None
    except ValueError as exc:
        raise CellDefinitionError(f"task {task.name!r}: {exc}") from None
    return edges_changed


_REPLACED = ("func", "priority", "timeout", "max_retries", "retry_delay", "resources", "tags",
             "cache", "retry_on", "trigger_rule", "watch", "map")


def _downstream_names(orch: TaskOrchestrator, task: Task) -> list[str]:
    return [t.name for t in orch.dependents_of(task)]


def _and_downstream(names: list[str]) -> str:
    if not names:
        return ""
    shown = _names(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f" and {len(names)} downstream ({shown})"


def _names(names: Any) -> str:
    return ", ".join(repr(n) for n in names)


def _defined_line(orch: TaskOrchestrator, task: Task, deps: list[Task],
                  mapped: MapSources | None = None) -> str:
    waits = f"waits for {_names(d.name for d in deps)}" if deps else "no dependencies"
    if mapped is not None:
        waits = f"{mapped.described()}, {waits}"
    if task.trigger_rule != DEFAULT_RULE:
        waits += f" (trigger rule {task.trigger_rule}: runs when {MEANING[task.trigger_rule]})"
    unnamed = [d.name for d in deps if not d.name.isidentifier() or keyword.iskeyword(d.name)]
    if unnamed:  # the body cannot read these by name: say how it can
        waits += (f" ({_names(unnamed[:1])} is not a Python name: the cell reads it as "
                  f"upstream[{unnamed[0]!r}])")
    return f"codo_task {task.name!r}: defined, {waits}"


_STOPPED = " (engine stopped: %codo_run starts it)"
