"""Checking a batch of definitions before the scheduler changes anything.

Pure functions over the scheduler's records (read, never written): resolve each
task's dependencies (ids, names, Task objects, ``task.output`` placeholders) to
ids, refuse cycles and contradicting resource capacities, and order a batch
upstream first. A dependency cycle can only close when a *known* task's
dependencies change, so only then does the search leave the batch.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from .exceptions import AmbiguousDependencyError, DependencyCycleError, UnknownDependencyError
from .model import Task, output_refs
from .resources import ResourceManager


def check_capacities(batch: list[Task], resources: ResourceManager) -> None:
    """Refuse a capacity that contradicts the one in force, or another in the same batch."""
    declared: dict[str, tuple[int, str]] = {}
    for t in batch:
        for res in t._resources or ():
            resources.check_capacity(res)
            if res.capacity is None:
                continue
            seen = declared.setdefault(res.key, (res.capacity, t.name))
            if seen[0] != res.capacity:
                raise ValueError(
                    f"resource {res.key} is declared with capacity {seen[0]} by task "
                    f"{seen[1]!r} and {res.capacity} by task {t.name!r} in the same batch; "
                    "declare one capacity")


def resolve(batch: list[Task], records: Mapping[str, Any],
            by_name: NameIndex) -> dict[str, list[str]]:
    """Upstream ids for each task of ``batch``; raises before anything changes."""
    batch_ids = {t.id: t for t in batch}
    batch_names: dict[str, list[str]] = {}
    for t in batch:
        batch_names.setdefault(t.name, []).append(t.id)
    resolved: dict[str, list[str]] = {}
    for task in batch:
        ids: dict[str, None] = {}
        refs = [r.task_id for v in task.parameters.values() for r in output_refs(v)] \
            if task.parameters else ()
        for spec in itertools.chain(task.dependencies, refs):
            dep = _resolve_one(task, spec, batch_ids, batch_names, records, by_name)
            if dep == task.id:
                raise DependencyCycleError([task.name, task.name])
            ids[dep] = None
        resolved[task.id] = list(ids)
    return resolved


def _resolve_one(task: Task, spec: object, batch_ids: dict[str, Task],
                 batch_names: dict[str, list[str]], records: Mapping[str, Any],
                 by_name: NameIndex) -> str:
    if isinstance(spec, Task):
        if spec.id in batch_ids:
            return spec.id
        rec = records.get(spec.id)
        if rec is not None and rec.task is spec:
            return spec.id
        if spec._record is not None:
            here = by_name.get(spec.name)
            hint = (f" A task named {spec.name!r} exists here: depend on it by name or id."
                    if here else "")
            raise UnknownDependencyError(
                task.name, spec.name, None,
                detail=f"Task {spec.name!r} (id {spec.id}) belongs to another orchestrator.{hint}")
        raise UnknownDependencyError(task.name, spec.name)
    if not isinstance(spec, str):
        raise ValueError(
            f"task {task.name!r}: a dependency must be a task id, name or Task, got {spec!r}")
    if spec in records or spec in batch_ids:
        return spec
    matches = batch_names.get(spec) or [r.id for r in by_name.get(spec, ())]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise AmbiguousDependencyError(task.name, spec, matches)
    close = difflib.get_close_matches(spec, list(by_name) + list(batch_names), n=1) \
        if len(by_name) < 5000 else [n for n in (spec.strip(),) if n in by_name]
    raise UnknownDependencyError(task.name, spec, close[0] if close else None)


def check_cycles(batch: list[Task], resolved: dict[str, list[str]],
                 records: Mapping[str, Any], known_changed: bool) -> None:
    """Depth-first search along upstream edges from the batch; a back edge is a cycle.

    Known tasks outside the batch can only lead back into the batch when a
    known task of the batch changes its dependencies; otherwise the search
    stays inside the batch (O(batch edges), not O(graph)).
    """
    def ups(node: str) -> list[str] | tuple[str, ...]:
        if node in resolved:
            return resolved[node]
        if not known_changed:
            return ()
        return tuple(u.id for u in records[node].ups)

    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in resolved:
        if root in state:
            continue
        path: list[str] = [root]
        stack = [iter(ups(root))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                names = {t.id: t.name for t in batch}
                raise DependencyCycleError(
                    [names.get(i) or records[i].name for i in reversed(cycle)])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(ups(nxt)))


class NameIndex:
    """Records by task name. A name held by one task maps to its record itself, not a
    one-element list: a list per task was one more object for the garbage collector to
    walk on every full collection (a sixth of what a defined task held)."""

    __slots__ = ("_by_name",)

    def __init__(self) -> None:
        self._by_name: dict[str, Any] = {}  # name -> record, or a list of two or more

    def add(self, name: str, rec: Any) -> None:
        held = self._by_name.get(name)
        if held is None:
            self._by_name[name] = rec
        elif type(held) is list:
            held.append(rec)
        else:
            self._by_name[name] = [held, rec]

    def remove(self, name: str, rec: Any) -> None:
        held = self._by_name.get(name)
        if held is rec:
            del self._by_name[name]
        elif type(held) is list and rec in held:
            held.remove(rec)
            if len(held) == 1:
                self._by_name[name] = held[0]

    def get(self, name: str, default: Any = ()) -> Any:
        """Every record of that name, oldest first (``default`` when there is none)."""
        held = self._by_name.get(name)
        if held is None:
            return default
        return tuple(held) if type(held) is list else (held,)

    def one(self, name: str) -> Any:
        """The record if exactly one task has that name, else None."""
        held = self._by_name.get(name)
        return None if held is None or type(held) is list else held

    def last(self, name: str) -> Any:
        """The newest record of that name, or None."""
        held = self._by_name.get(name)
        return held[-1] if type(held) is list else held

    def clear(self) -> None:
        self._by_name.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


def topological(batch: list[Task], resolved: dict[str, list[str]]) -> list[Task]:
    """The batch with every task after its upstream tasks from the same batch."""
    if len(batch) == 1:
        return batch
    by_id = {t.id: t for t in batch}
    indeg = {t.id: 0 for t in batch}
    down: dict[str, list[str]] = {}
    for t in batch:
        for u in resolved[t.id]:
            if u in by_id:
                indeg[t.id] += 1
                down.setdefault(u, []).append(t.id)
    order = [t.id for t in batch if indeg[t.id] == 0]
    for tid in order:  # grows while we walk it
        for d in down.get(tid, ()):
            indeg[d] -= 1
            if indeg[d] == 0:
                order.append(d)
    return [by_id[i] for i in order]
