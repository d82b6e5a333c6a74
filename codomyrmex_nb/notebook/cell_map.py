"""``%%codo_task NAME --map SOURCE``: a cell run once per item (``core.mapping`` does the work).

``--map numbers`` binds each item as ``item`` in the cell; ``--map x=numbers --map
y=letters`` binds several, zipped (``--map-mode product`` crosses them; zipped notebook
lists of unequal lengths are refused when the cell is defined). ``map_index``
is bound too, but only a body that reads it gets it: the core puts the index in an
item's fingerprint only when the function names a ``map_index`` parameter, so the
cell function's signature (``MappedCellFunction.__signature__``) names it only then,
and inserting an item into the list invalidates no other item.

A source is the task of that name when there is one (its result, known when it ends),
else a notebook variable holding a list (tuple, range, set, dict: its ``(key, value)``
pairs) read when the cell runs (an iterator, such as a generator, is refused: reading it
would use it up, and the cell's next run would map over nothing); its content is part of
the cell's identity (``map_key``), so re-running the cell after the list changed
redefines the task, and the per-item journal (``--cache``, resume) restores every
unchanged item. A variable is passed to the core as a literal list, whose items are
fingerprinted by content.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.fingerprint import Unhashable, value_digest
from ..core.mapping import INDEX, ITEM, a_kind, items_of, refused
from ..orchestrator import TaskOrchestrator
from .cell_tasks import CellFunction, compile_cell

MAP_ONLY = ("--tolerate", "--max-parallel", "--map-mode")


class MapSourceError(ValueError):
    """A ``--map`` source is wrong; the message is one line."""


@dataclass(frozen=True)
class MapSources:
    """The resolved ``--map`` sources: ``bindings`` (parameter -> task id or literal list) for
    ``Task(map=...)``, the source tasks (dependencies), and ``key`` for the cell's identity."""

    bindings: dict[str, Any]
    tasks: list[Any]
    key: list[list[str]]
    shown: list[str]

    def described(self) -> str:
        """``runs once per item of task 'numbers'`` (for the line a defined cell prints)."""
        return "runs once per item of " + ", ".join(self.shown)


def parse_map(specs: list[str]) -> list[tuple[str, str]]:
    """``["numbers"]`` or ``["x=numbers", "y=letters"]`` -> [(parameter, source name)]."""
    pairs: list[tuple[str, str]] = []
    for spec in specs:
        param, sep, source = spec.partition("=")
        if not sep:
            param, source = ITEM, spec
        param, source = param.strip(), source.strip()
        if not param.isidentifier() or param in ("upstream", INDEX):
            raise MapSourceError(f"bad --map {spec!r}: the parameter must be a name other than "
                                 f"'upstream' and '{INDEX}', e.g. --map x=numbers")
        if not source:
            raise MapSourceError(f"bad --map {spec!r}: name a task or a notebook list, "
                                 "e.g. --map numbers")
        if any(p == param for p, _ in pairs):
            raise MapSourceError(f"--map binds {param!r} twice: give each source its own name, "
                                 "e.g. --map x=numbers --map y=letters")
        pairs.append((param, source))
    return pairs


def resolve_sources(orch: TaskOrchestrator, name: str, pairs: list[tuple[str, str]],
                    namespace: Mapping[str, Any], mode: str = "zip") -> MapSources:
    """Each source as a task (by id: a rename keeps the edge) or the notebook list it names.
    Zipped notebook lists of unequal lengths are refused here (a task's result is known,
    and checked, only when the mapped task expands)."""
    bindings: dict[str, Any] = {}
    tasks: list[Any] = []
    key: list[list[str]] = []
    shown: list[str] = []
    for param, source in pairs:
        prefix = "" if param == ITEM else f"{param}="
        task = orch.get_task(source)
        if task is not None:
            if task.name == name:
                raise MapSourceError(f"task {name!r} cannot map over itself")
            bindings[param] = task.id
            if task not in tasks:
                tasks.append(task)
            key.append([param, "task", source])
            shown.append(f"{prefix}task {source!r}")
            continue
        if source not in namespace and not source.isidentifier():  # a value, not a name
            raise MapSourceError(
                f"--map {source!r} is not a name: --map takes the name of a task or of a "
                f"notebook variable holding a list; set items = {source} in the notebook (a "
                f"list) and write --map items")
        if source not in namespace:
            raise MapSourceError(
                f"--map {source!r} is neither a task nor a notebook variable: run the cell of "
                f"task {source!r} first, or set {source} = [...] in the notebook")
        value = namespace[source]
        items = _as_list(source, value)
        bindings[param] = items
        key.append([param, "list", _digest(items)])
        kind = type(value).__name__  # "the dict 'd'": its items are (key, value) pairs
        shown.append(f"{prefix}the {kind} {source!r} ({len(items)} items)")
    if mode == "zip" and not tasks and len({len(v) for v in bindings.values()}) > 1:
        lengths = ", ".join(f"{source!r} has {len(bindings[param])}" for param, source in pairs)
        raise MapSourceError(f"--map zips lists of equal length: {lengths}; shorten one, or "
                             "cross them with --map-mode product")
    return MapSources(bindings, tasks, key, shown)


def _as_list(source: str, value: Any) -> list[Any]:
    """A copy: appending to the notebook's list later changes nothing here."""
    problem = refused(value)
    if problem is not None:
        raise MapSourceError(f"--map {source!r}: the notebook variable {problem}")
    if isinstance(value, Iterator):  # read here, the cell's next run would see it used up
        raise MapSourceError(
            f"--map {source!r}: the notebook variable is {a_kind(value)}, an iterator "
            f"a run would use up: make it a list, e.g. {source} = list(...)")
    items = items_of(value)
    if items is None:
        raise MapSourceError(
            f"--map {source!r}: the notebook variable is {a_kind(value)}, not a list "
            f"of items; set {source} = [...] (or name a task)")
    return items


def _digest(items: list[Any]) -> str:
    """The list's content, for the cell's identity; a list the fingerprint cannot take
    (objects without a stable form) makes the cell count as changed on every run."""
    try:
        return value_digest(items)
    except Unhashable:
        return f"unhashable-{uuid.uuid4().hex}"


class MappedCellFunction(CellFunction):
    """A mapped cell's task function: ``fn(upstream=..., item=..., [map_index=...])``.

    ``bound`` are the parameters the ``--map`` sources bind; ``map_index`` is in the
    signature only when the body reads it (the core then passes it, and it counts in the
    item's fingerprint). The bound names never count as notebook names the cell reads.
    """

    def __init__(self, cell: Any, namespace: Mapping[str, Any], bound: tuple[str, ...]) -> None:
        super().__init__(cell, namespace)
        self.bound = bound
        self.reads_index = INDEX in cell.reads
        params = [inspect.Parameter("upstream", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in bound]
        if self.reads_index:
            params.append(inspect.Parameter(INDEX, inspect.Parameter.KEYWORD_ONLY))
        self.__signature__ = inspect.Signature(params)

    def __repr__(self) -> str:
        return f"<cell function of mapped task {self.cell.name!r}>"

    def __call__(self, upstream: Mapping[str, Any], **bound: Any) -> Any:  # type: ignore[override]
        ns = self._namespace(upstream)
        ns.update(bound)
        if self.cell.is_async:
            return self._run_async(ns)
        if self.cell.body is not None:
            exec(self.cell.body, ns)
        return eval(self.cell.last, ns) if self.cell.last is not None else None

    def __codo_fingerprint__(self, upstream_names: frozenset[str] = frozenset()) -> str:
        skip = frozenset(self.bound) | {INDEX}
        return value_digest(("mapped", super().__codo_fingerprint__(upstream_names | skip)))

    def __reduce__(self) -> tuple[Callable[..., MappedCellFunction], tuple[Any, ...]]:
        ns = self.namespace
        snapshot = {k: ns[k] for k in self.cell.reads if k in ns and k not in self.bound}
        return _rebuild, (self.cell.name, self.cell.source, self.cell.header, snapshot, self.bound)


def _rebuild(name: str, source: str, header: str, namespace: dict[str, Any],
             bound: tuple[str, ...]) -> MappedCellFunction:
    cell = compile_cell(name, source, header)
    cell.register()
    return MappedCellFunction(cell, namespace, bound)
