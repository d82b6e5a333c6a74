"""The dependency graph and ready queue: a small state machine with no threads.

Policy. A task is *ready* when every upstream task has COMPLETED. Among ready
tasks the highest priority dispatches first, then the one with the longest
remaining critical path (the most tasks still downstream of it, counting
itself), then the earliest submitted.

State (all keyed by task id):
- ``tasks``        the Task objects; their ``status`` is owned by the engine.
- ``upstream``     ids each task waits for; ``downstream`` the reverse edges.
- ``unmet``        for PENDING tasks, how many upstream tasks have not completed.
- ``heap``         ready entries ``(-priority, -critical_path, order, token, id)``;
                   only the entry whose token is in ``live`` counts, so a task
                   queued, withdrawn and queued again is dispatched once.
- ``critical``     critical-path lengths over unfinished tasks, recomputed in
                   one O(V+E) pass once a quarter as many tasks were added
                   since the last pass (amortised O(1) per insert; a one-level
                   estimate in between).

Nothing here locks: the engine calls it under its own lock.
"""

from __future__ import annotations

import difflib
import heapq
import itertools
from collections.abc import Iterable

from .exceptions import AmbiguousDependencyError, DependencyCycleError, UnknownDependencyError
from .model import OutputRef, Task, TaskStatus

_DONE = TaskStatus.COMPLETED


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


class TaskGraph:
    """Dependencies, readiness and dispatch order of the known tasks."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.by_name: dict[str, list[str]] = {}
        self._names: dict[str, str] = {}  # id -> the name it is indexed under
        self.upstream: dict[str, tuple[str, ...]] = {}
        self.downstream: dict[str, set[str]] = {}
        self.unmet: dict[str, int] = {}
        self._order: dict[str, int] = {}
        self._counter = itertools.count()
        self._heap: list[tuple[int, int, int, int, str]] = []
        self._live: dict[str, int] = {}  # task id -> token of its one valid heap entry
        self._tokens = itertools.count()
        self.critical: dict[str, int] = {}
        self._inserts_since_pass = 0

    # -- validation ---------------------------------------------------------------
    def resolve(self, batch: list[Task]) -> dict[str, tuple[str, ...]]:
        """Upstream ids for each task of ``batch``; raises before anything changes."""
        batch_ids = {t.id: t for t in batch}
        batch_names: dict[str, list[str]] = {}
        for t in batch:
            batch_names.setdefault(t.name, []).append(t.id)
        resolved: dict[str, tuple[str, ...]] = {}
        for task in batch:
            ids: list[str] = []
            specs = list(task.dependencies)
            specs += [ref.task_id for value in task.parameters.values() for ref in output_refs(value)]
            for spec in specs:
                dep = self._resolve_one(task, spec, batch_ids, batch_names)
                if dep == task.id:
                    raise DependencyCycleError([task.name, task.name])
                if dep not in ids:
                    ids.append(dep)
            resolved[task.id] = tuple(ids)
        self._check_cycles(batch, resolved)
        return resolved

    def _resolve_one(self, task: Task, spec: object, batch_ids: dict[str, Task],
                     batch_names: dict[str, list[str]]) -> str:
        if isinstance(spec, Task):
            if spec.id in self.tasks or spec.id in batch_ids:
                return spec.id
            raise UnknownDependencyError(task.name, spec.name)
        if not isinstance(spec, str):
            raise ValueError(
                f"task {task.name!r}: a dependency must be a task id, name or Task, got {spec!r}")
        if spec in self.tasks or spec in batch_ids:
            return spec
        matches = batch_names.get(spec) or [i for i in self.by_name.get(spec, ())]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise AmbiguousDependencyError(task.name, spec, matches)
        names = list(self.by_name) + list(batch_names)
        close = difflib.get_close_matches(spec, names, n=1)
        raise UnknownDependencyError(task.name, spec, close[0] if close else None)

    def _check_cycles(self, batch: list[Task], resolved: dict[str, tuple[str, ...]]) -> None:
        """Depth-first search from the batch along upstream edges; a back edge is a cycle."""

        def ups(node: str) -> tuple[str, ...]:
            return resolved[node] if node in resolved else self.upstream.get(node, ())

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
                    # path follows upstream edges; show it in run order.
                    raise DependencyCycleError(
                        [names.get(i) or self.tasks[i].name for i in reversed(cycle)])
                elif nxt not in state:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(ups(nxt)))

    # -- structure ------------------------------------------------------------------
    def insert(self, task: Task, upstream: tuple[str, ...]) -> None:
        """Add a task, or replace a known task's edges; dependencies become ids."""
        tid = task.id
        old_name = self._names.get(tid)
        if old_name is not None:  # re-added (the same object; its name may have changed)
            for up in self.upstream[tid]:
                self.downstream[up].discard(tid)
        if old_name != task.name:
            if old_name is not None:
                self._forget_name(tid, old_name)
            self.by_name.setdefault(task.name, []).append(tid)
            self._names[tid] = task.name
        self.tasks[tid] = task
        self.upstream[tid] = upstream
        self.downstream.setdefault(tid, set())
        for up in upstream:
            self.downstream[up].add(tid)
        task.dependencies = list(upstream)
        self._order[tid] = next(self._counter)
        # Cheap estimate until the next full pass: a fresh sink, one level up.
        mine = self.critical.get(tid, 1)
        self.critical[tid] = mine
        for up in upstream:
            if self.critical.get(up, 1) <= mine:
                self.critical[up] = mine + 1
        self._inserts_since_pass += 1

    def remove(self, task_id: str) -> Task:
        """Forget a task that nothing unfinished depends on."""
        task = self.tasks.pop(task_id)
        for up in self.upstream.pop(task_id):
            self.downstream[up].discard(task_id)
        for down in self.downstream.pop(task_id, ()):  # defensive: callers remove leaves
            self.upstream[down] = tuple(u for u in self.upstream[down] if u != task_id)
        self._forget_name(task_id, self._names.pop(task_id))
        self.unmet.pop(task_id, None)
        self._live.pop(task_id, None)
        self.critical.pop(task_id, None)
        self._order.pop(task_id, None)
        return task

    def _forget_name(self, task_id: str, name: str) -> None:
        ids = self.by_name.get(name, [])
        if task_id in ids:
            ids.remove(task_id)
        if not ids:
            self.by_name.pop(name, None)

    def names(self, ids: Iterable[str]) -> list[str]:
        return [self.tasks[i].name for i in ids]

    def descendants(self, task_id: str) -> list[str]:
        """Every task downstream of ``task_id``, upstream-first (breadth-first)."""
        seen: dict[str, None] = {}
        frontier = [task_id]
        while frontier:
            nxt = []
            for node in frontier:
                for down in self.downstream.get(node, ()):
                    if down not in seen:
                        seen[down] = None
                        nxt.append(down)
            frontier = nxt
        return list(seen)

    # -- readiness --------------------------------------------------------------------
    def count_unmet(self, task_id: str) -> int:
        tasks = self.tasks
        n = sum(1 for up in self.upstream[task_id] if tasks[up].status is not _DONE)
        self.unmet[task_id] = n
        return n

    def blocked_by(self, task_id: str) -> list[str]:
        """Upstream tasks that ended without success (so this task cannot run)."""
        return [up for up in self.upstream[task_id]
                if self.tasks[up].status.is_terminal and self.tasks[up].status is not _DONE]

    def completed(self, task_id: str) -> list[Task]:
        """Record that ``task_id`` completed; returns dependents now free of upstream work."""
        freed = []
        unmet, tasks = self.unmet, self.tasks
        for down in self.downstream[task_id]:
            task = tasks[down]
            if task.status is TaskStatus.PENDING and task.retry_at is None:
                left = unmet.get(down, 1) - 1
                unmet[down] = left
                if left == 0:
                    freed.append(task)
        return freed

    # -- ready queue --------------------------------------------------------------------
    def push_ready(self, task: Task) -> None:
        tid = task.id
        token = self._live[tid] = next(self._tokens)
        heapq.heappush(self._heap, (-task.priority.value, -self.critical.get(tid, 1),
                                    self._order[tid], token, tid))

    def pop_ready(self) -> Task | None:
        """The best READY task, or None."""
        if self._inserts_since_pass and self._inserts_since_pass * 4 >= len(self.tasks) + 16:
            self._critical_pass()
        heap, tasks, live = self._heap, self.tasks, self._live
        while heap:
            entry = heapq.heappop(heap)
            tid = entry[4]
            if live.get(tid) != entry[3]:
                continue
            del live[tid]
            task = tasks.get(tid)
            if task is not None and task.status is TaskStatus.READY:
                return task
        return None

    def ready_count(self) -> int:
        return len(self._live)

    def _critical_pass(self) -> None:
        """Exact critical paths over unfinished tasks, then re-key the ready heap."""
        self._inserts_since_pass = 0
        tasks = self.tasks
        live = [tid for tid, t in tasks.items() if not t.status.is_terminal]
        indeg = {tid: 0 for tid in live}
        for tid in live:
            for down in self.downstream[tid]:
                if down in indeg:
                    indeg[tid] += 1
        # Sinks first (reverse topological order): Kahn's algorithm on reversed edges.
        stack = [tid for tid, n in indeg.items() if n == 0]
        critical: dict[str, int] = {}
        while stack:
            tid = stack.pop()
            best = 0
            for down in self.downstream[tid]:
                c = critical.get(down)
                if c is not None and c > best:
                    best = c
            critical[tid] = best + 1
            for up in self.upstream[tid]:
                if up in indeg:
                    indeg[up] -= 1
                    if indeg[up] == 0:
                        stack.append(up)
        self.critical = critical
        live = self._live
        entries = [(p, -critical.get(tid, 1), o, tok, tid) for p, _, o, tok, tid in self._heap
                   if live.get(tid) == tok]
        heapq.heapify(entries)
        self._heap = entries
