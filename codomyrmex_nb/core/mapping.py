"""Map: one task run once per item of a list, an upstream result, or several of them.

A mapped task (``create_task(..., map="numbers")``) is one record in the scheduler
with a ``MapState``; its items are *light records* (``ItemRecord``) made only when
an item is dispatched, so a pending item costs a slot in a list (and its value,
which its source holds anyway). This module holds the pure parts: the definition
(``MapSpec``, checked when the task is built), the expansion of the sources into
items (``expand``, run by a worker outside the engine lock: an iterator is read
once there, and a bad source fails the task with a message saying what to do),
the per-map bookkeeping (``MapState``) and what a downstream task receives
(``MapResult``). The scheduler moves items through its one transition function.

Decisions (where the issue is silent):

- ``map="name"`` (or a Task) binds the keyword ``item``; ``map=[...]`` is a literal
  list bound to ``item``; ``map={"x": ..., "y": ...}`` binds several, zipped (equal
  lengths) or crossed (``map_mode="product"``, the last parameter varies fastest).
  Zipped literal lists of unequal lengths are refused at definition; when a source is
  an upstream task, its length is known, and checked, only when the task expands.
- A dict source is mapped over its ``(key, value)`` pairs; a string, bytes or a
  DataFrame is refused (the message names what to map over instead).
- An upstream ``MapResult`` is mapped over its successful values in ``map_index``
  order, unless the map is *chained* (the source is itself mapped and this task has
  no other mapped source): then item *i* runs as soon as the source's item *i*
  completed, and an item whose source item did not complete is ``skipped`` and does
  not count against ``tolerate`` (the source map already counted it).
- ``tolerate``: a count (``2``) or a share (``"10%"`` of the items, rounded down).
  Items that failed or were cancelled count; the map then completes with the
  successful values. Above it the map fails, and its result still holds the
  ``MapResult`` (``get_task_result(name).data``) so partial results are never lost.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import math
import operator
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

MODES = ("zip", "product")
ITEM = "item"  # the keyword a single source binds
INDEX = "map_index"  # passed where the function takes it (bound in a cell)
_SEP = "["  # item ids are "<task id>[<index>]": never in a task id (hex) or a name's id


class MapSpec:
    """A mapped task's definition: which parameters take which source, and how.

    ``bindings`` maps a parameter name to a task reference (name, id or Task) or a
    literal list; ``tolerate`` is (count or None, share or None).
    """

    __slots__ = ("bindings", "mode", "tolerate", "max_parallel")

    def __init__(self, bindings: dict[str, Any], mode: str = "zip",
                 tolerate: tuple[int | None, float | None] = (0, None),
                 max_parallel: int | None = None) -> None:
        self.bindings, self.mode = bindings, mode
        self.tolerate, self.max_parallel = tolerate, max_parallel

    def sources(self) -> list[Any]:
        """The task references among the bindings (they are dependencies of the task)."""
        return [v for v in self.bindings.values() if not isinstance(v, list)]

    def literal_count(self) -> int | None:
        """How many items, when every source is a literal list (known before the map reads
        its sources); None when an upstream result decides."""
        lists = list(self.bindings.values())
        if not all(isinstance(v, list) for v in lists):
            return None
        if self.mode == "product":
            return math.prod(len(v) for v in lists)
        return min(len(v) for v in lists)

    def allowed_failures(self, n: int) -> int:
        count, share = self.tolerate
        if share is not None:
            return math.floor(share * n + 1e-9)
        return count or 0

    def __repr__(self) -> str:
        shown = {k: (f"[{len(v)} items]" if isinstance(v, list) else v)
                 for k, v in self.bindings.items()}
        return f"MapSpec({shown}, mode={self.mode!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MapSpec):
            return NotImplemented
        return (self.bindings, self.mode, self.tolerate, self.max_parallel) == \
            (other.bindings, other.mode, other.tolerate, other.max_parallel)

    __hash__ = None  # type: ignore[assignment]


def _is_ref(value: Any) -> bool:
    from .model import Task
    return isinstance(value, str | Task)


def _literal(name: str, value: Any) -> list[Any]:
    problem = refused(value)
    if problem is not None:
        raise ValueError(f"map: {name!r} {problem}")
    items = items_of(value)
    if items is None:
        raise ValueError(f"map: {name!r} must be a task name, a Task or a list of items, got "
                         f"{type(value).__name__}; wrap one value in a list: [value]")
    return items


def check_spec(map: Any, map_mode: str = "zip", tolerate: Any = 0,  # noqa: A002
               max_parallel: Any = None) -> MapSpec | None:
    """The checked ``MapSpec`` of ``create_task``'s map arguments (None: not mapped).

    Raises ``ValueError`` naming the bad argument and the fix; nothing is kept.
    """
    if map is None:
        if map_mode != "zip" or tolerate not in (0, None) or max_parallel is not None:
            raise ValueError("map_mode, tolerate and max_parallel apply to mapped tasks only; "
                             "add map=<source> or drop them")
        return None
    if isinstance(map, Mapping) and not _is_ref(map):
        if not map:
            raise ValueError("map={} binds nothing; give {'param': source}")
        bindings: dict[str, Any] = {}
        for key, value in map.items():
            if not isinstance(key, str) or not key.isidentifier() or key in ("upstream", INDEX):
                raise ValueError(f"map: {key!r} must be a parameter name (an identifier, "
                                 f"not 'upstream' or {INDEX!r}, which the engine passes)")
            bindings[key] = value if _is_ref(value) else _literal(key, value)
    elif _is_ref(map):
        bindings = {ITEM: map}
    else:
        bindings = {ITEM: _literal(ITEM, map)}
    if map_mode not in MODES:
        raise ValueError(f"map_mode must be 'zip' or 'product', got {map_mode!r}")
    lists = [v for v in bindings.values() if isinstance(v, list)]
    if map_mode == "zip" and len(lists) == len(bindings) and len({len(v) for v in lists}) > 1:
        raise ValueError(unequal(list(bindings), [len(v) for v in lists]))
    return MapSpec(bindings, map_mode, check_tolerate(tolerate),
                   _check_parallel(max_parallel))


MAP_OPTIONS = ("map_mode", "tolerate", "max_parallel")


def check_params(task: str, fn: Any, spec: MapSpec) -> None:
    """A ``ValueError`` at definition when ``fn`` has no parameter for a mapped binding (the
    default one is ``item``): else every item would fail the same ``TypeError`` at run time.
    Functions whose signature cannot be read, or that take ``**kwargs``, are not checked."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    missing = [name for name in spec.bindings if name not in takes]
    if not missing:
        return
    name = missing[0]
    free = [n for n in takes if n not in spec.bindings and n not in ("upstream", "map_index")
            and params[n].default is inspect.Parameter.empty]
    bind = f"map={{{free[0]!r}: ...}}" if free else "map={'PARAM': ...}"
    raise ValueError(
        f"task {task!r}: map passes each item as {name!r}, but its function "
        f"{getattr(fn, '__qualname__', type(fn).__name__)}({', '.join(takes)}) has no parameter "
        f"{name!r}: name a parameter {name!r}, or bind the items to one it has ({bind})")


def respec(spec: MapSpec | None, changes: dict[str, Any]) -> MapSpec | None:
    """``spec`` with ``changes`` (``map`` and ``MAP_OPTIONS``, as ``create_task`` takes them)
    applied, checked: an option not changed keeps its value, so a new list keeps the map's
    mode, tolerance and parallelism (None: not mapped, and then no option may be given)."""
    options = {k: changes[k] for k in MAP_OPTIONS if k in changes}
    source = changes["map"] if "map" in changes else None if spec is None else spec.bindings
    if isinstance(source, MapSpec):
        source = source.bindings
    if spec is not None and source is not None:
        count, share = spec.tolerate
        kept = {"map_mode": spec.mode, "max_parallel": spec.max_parallel,
                "tolerate": count if share is None else f"{share * 100:g}%"}
        options = {**kept, **options}
    return check_spec(source, **options)


def check_tolerate(value: Any) -> tuple[int | None, float | None]:
    """``2`` (items) or ``"10%"`` (of the items) -> (count, share)."""
    if value is None:
        return 0, None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            share = -1.0
        if not 0 <= share <= 1:
            raise ValueError(f"tolerate must be a count or a share such as '10%', got {value!r}")
        return None, share
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"tolerate must be a count >= 0 or a share such as '10%', got {value!r}")
    return value, None


def _check_parallel(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_parallel must be a whole number >= 1, got {value!r}")
    return value


def check_index(value: Any) -> int:
    """A ``map_index`` argument as an int (a NumPy integer too); a bool (``True`` would be
    item 1) or anything else that is not a whole number is a ``ValueError``."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise ValueError(f"map_index must be an item's position, a whole number, got {value!r} "
                     f"({type(value).__name__})")


def a_kind(value: Any) -> str:
    """``an int``, ``a float``: the value's type name with its article, for messages."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def refused(value: Any) -> str | None:
    """Why ``value`` cannot be mapped over (None: it can)."""
    kind = type(value)
    module = getattr(kind, "__module__", "") or ""
    if module.startswith("pandas") and kind.__name__ == "DataFrame":
        return ("is a DataFrame: map over df.itertuples(), df.to_dict('records') or a column "
                "(df['col'])")
    if isinstance(value, str | bytes | bytearray):
        return f"is {a_kind(value)}, one value, not a list of items: wrap it as [value]"
    return None


class Plan:
    """The items of one expansion: a column of values per bound parameter."""

    __slots__ = ("names", "columns", "mode", "n")

    def __init__(self, names: tuple[str, ...], columns: list[Sequence[Any]], mode: str) -> None:
        self.names, self.columns, self.mode = names, columns, mode
        self.n = math.prod(len(c) for c in columns) if mode == "product" else \
            (len(columns[0]) if columns else 0)

    def binding(self, index: int) -> dict[str, Any]:
        """The keyword values of item ``index``."""
        if self.mode == "product":
            values = []
            for column in reversed(self.columns):
                index, at = divmod(index, len(column))
                values.append(column[at])
            values.reverse()
            return dict(zip(self.names, values, strict=True))
        if len(self.columns) == 1:  # one source (most maps): no zip
            return {self.names[0]: self.columns[0][index]}
        return {name: column[index] for name, column in zip(self.names, self.columns, strict=True)}


def items_of(value: Any) -> list[Any] | None:
    """``value``'s items as a new list (a mapping's ``(key, value)`` pairs, a ``MapResult``'s
    values, any other iterable read once), or None when it is not iterable. What
    ``refused`` names is the caller's to refuse first."""
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, Iterator):  # read a chunk at a time: between chunks Python runs, so
        items: list[Any] = []  # a cancel or stop lands even in an endless C iterator
        while chunk := list(itertools.islice(value, _CHUNK)):
            items += chunk
        return items
    if isinstance(value, Iterable):
        return list(value)
    return None


_CHUNK = 4096  # items of an iterator read at once


def as_items(name: str, value: Any) -> list[Any]:
    """An upstream result as a list of items (an iterator is read once); raises
    ``ValueError`` for what cannot be mapped over."""
    problem = None if isinstance(value, MapResult) else refused(value)
    if problem is not None:
        raise ValueError(f"cannot map over {name!r}: it {problem}")
    items = items_of(value)
    if items is None:
        raise ValueError(f"cannot map over {name!r}: its result is {a_kind(value)}, "
                         "not a list, tuple, range, set or other iterable; return a list of items")
    return items


def expand(names: tuple[str, ...], sources: list[Any], labels: list[str], mode: str) -> Plan:
    """Items from each bound source (already read: literal lists or upstream results)."""
    columns = [as_items(label, src) for label, src in zip(labels, sources, strict=True)]
    if mode == "zip" and len({len(c) for c in columns}) > 1:
        raise ValueError(unequal(labels, [len(c) for c in columns]))
    return Plan(names, columns, mode)


def unequal(labels: Sequence[str], lengths: Sequence[int]) -> str:
    """Why zipped sources of these lengths cannot map (``check_spec`` when every source is a
    literal list, else ``expand`` once the upstream results are read)."""
    said = ", ".join(f"{label!r} has {n}" for label, n in zip(labels, lengths, strict=True))
    return (f"map_mode='zip' needs sources of equal length: {said}; shorten one or use "
            "map_mode='product'")


def item_id(task_id: str, index: int) -> str:
    return f"{task_id}{_SEP}{index}]"


def is_item_id(task_id: str) -> bool:
    return _SEP in task_id


def item_fingerprint(base: str, binding: Mapping[str, Any], index: int | None) -> str:
    """An item's fingerprint: the map's base and the item's content (its index only when the
    function reads ``map_index``), so inserting an item invalidates no other."""
    parts = [base]
    for name, value in binding.items():
        kind = type(value)
        if kind is int or kind is str or kind is float or kind is bool or value is None:
            parts.append(f"{name}={kind.__name__}:{value!r}")  # plain values: their repr
        else:
            parts.append(f"{name}#{_value_digest()(value)}")
    if index is not None:
        parts.append(f"map_index={index}")
    return hashlib.sha256(";".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def item_fingerprints(base: str, plan: Plan, by_index: bool) -> list[str]:
    """Every item's ``item_fingerprint`` ("" for an unhashable one), made at expansion. A
    map over one list of plain values (the usual map) takes them in one loop, without a
    binding dict per item; the strings are the same."""
    if plan.mode != "product" and len(plan.columns) == 1 and not by_index:
        # the hash of the common prefix is taken once and copied per item: the same digest
        # as hashing the whole key, at half the cost (the prefix is two of its three blocks)
        prefix = hashlib.sha256(f"{base};{plan.names[0]}".encode("utf-8", "surrogatepass"))
        copy = prefix.copy
        fps: list[str] = []
        column = plan.columns[0]
        if set(map(type, column)) == {int}:  # a list of ints (a range): the same bytes as
            add = fps.append  # below, formatted without the type test and repr per item
            for value in column:
                h = copy()
                h.update(b"=int:%d" % value)
                add(h.hexdigest())
            return fps
        for value in column:
            kind = type(value)
            if kind is int or kind is str or kind is float or kind is bool or value is None:
                h = copy()
                h.update(f"={kind.__name__}:{value!r}".encode("utf-8", "surrogatepass"))
                fps.append(h.hexdigest())
            else:
                fps.append(_one(base, {plan.names[0]: value}, None))
        return fps
    return [_one(base, plan.binding(i), i if by_index else None) for i in range(plan.n)]


def _one(base: str, binding: Mapping[str, Any], index: int | None) -> str:
    try:
        return item_fingerprint(base, binding, index)
    except _unhashable():
        return ""


@functools.cache
def _unhashable() -> type[Exception]:
    from .fingerprint import Unhashable  # imported once: fingerprint imports us (via model)
    return Unhashable


@functools.cache
def _value_digest() -> Any:
    """``fingerprint.value_digest``, imported once (fingerprint imports model, which imports
    us; an import statement per item cost as much as the item's hash)."""
    from .fingerprint import value_digest
    return value_digest


def combined_fingerprint(base: str, item_fps: Iterable[str | None]) -> str:
    """A finished map's fingerprint for tasks downstream: its items', in order ("" if one
    has none). One hash of their concatenation: the digest of an update per item, at the
    cost of one call (which releases the GIL for the hashing)."""
    fps = list(item_fps)
    if not all(fps):
        return ""
    return hashlib.sha256(b"codo-map-1;" + base.encode() + "".join(fps).encode()).hexdigest()


# -- a completed item, compactly -------------------------------------------------------------
# An item that completed in one attempt, printed and displayed nothing, was not restored and
# whose result no memory budget holds is kept in ``MapState.items`` as one plain tuple of
# its figures instead of a record with an attempt and a result (``MapSteps.compact``): a
# map of 100,000 items otherwise leaves 400,000 objects of 10 to 57 fields each for the
# cyclic garbage collector to walk at every full collection, a third of an item's cost. A
# tuple of plain values is not walked at all. ``map_steps.item_at`` makes a record of it
# again for whoever asks (``get_task_result``); the views read it as it is. Its fields:
# (value, fingerprint, queued_at, started_at, completed_at, execution_time, cpu_time,
# worker, wait_worker, run_delay, logs, and its last move's sequence number and time as the
# journal reads them: ``Recorder.collect``).
DONE_VALUE, DONE_FP, DONE_ELAPSED, DONE_JSEQ, DONE_JTIME = 0, 1, 5, 11, 12


def done_entry(item: Any) -> tuple[Any, ...] | None:
    """The compact entry of a completed ``item`` record, or None if it must stay a record
    (more than one attempt, output, displays, restored, a result the budget holds...)."""
    attempts = item.attempts
    result = item.result
    if len(attempts) != 1 or item.restored is not None or item.retry_count \
            or item.current is not None or result is None or result._entry is not None \
            or result.logs or result.displays is not None or result._metadata is not None \
            or item.jdetail is not None:
        return None
    a = attempts[0]
    if a.peak_memory is not None or a.displays is not None:
        return None
    return (result._data, item.fingerprint, item.queued_at, a.started_at, a.ended_at,
            result.execution_time, a.cpu_time, a.worker, item.wait_worker, a.run_delay,
            result.logs, item.jseq, item.jtime)


class MapResult(Sequence[Any]):
    """What a task downstream of a mapped task receives: the successful items' values in
    ``map_index`` order. ``by_index`` maps each successful ``map_index`` to its value
    (positions shift after a tolerated failure), ``failed`` maps ``map_index`` to the
    exception (or its message), ``states`` lists every item's final state.

    Built under the engine lock from the items' results without reading them: a result the
    memory budget dropped is read back on first use, by whoever uses it (``results`` holds
    ``(map_index, TaskResult)`` pairs until then, or ``(map_index, entry)`` for an item kept
    as a compact entry: ``done_entry``).
    """

    __slots__ = ("_values", "_by_index", "_results", "failed", "states", "task")

    def __init__(self, by_index: dict[int, Any] | None, failed: dict[int, Any],
                 states: list[str], task: str = "",
                 results: list[tuple[int, Any]] | None = None) -> None:
        self.failed, self.states, self.task = failed, states, task
        self._by_index = by_index
        self._results = results
        self._values: list[Any] | None = None if by_index is None else list(by_index.values())

    @property
    def by_index(self) -> dict[int, Any]:
        if self._by_index is None:
            self._by_index = {i: r[DONE_VALUE] if r.__class__ is tuple else r.read_data()
                              for i, r in self._results or ()}
            self._results = None
        return self._by_index

    @property
    def _list(self) -> list[Any]:
        values = self._values
        if values is None:
            values = self._values = list(self.by_index.values())
        return values

    def __len__(self) -> int:
        if self._values is None and self._results is not None:
            return len(self._results)
        return len(self._list)

    def __getitem__(self, index: Any) -> Any:
        return self._list[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._list)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MapResult):
            return self.by_index == other.by_index and self.failed.keys() == other.failed.keys()
        if isinstance(other, list | tuple):
            return self._list == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        n = len(self.states)
        failed = f", {len(self.failed)} failed" if self.failed else ""
        values = self._list
        shown = ", ".join(repr(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        return f"MapResult([{shown}], {len(values)} of {n} items{failed})"

    def __reduce__(self) -> tuple[Any, ...]:
        return MapResult, (self.by_index, self.failed, self.states, self.task)


class MapState:
    """One mapped record's items while it runs and after (scheduler-owned)."""

    __slots__ = ("spec", "plan", "n", "next", "ready", "items", "live", "counts", "source",
                 "chained", "source_ended", "closing", "base_fp", "in_heap", "fps", "fps_run", "reuse",
                 "depth", "jmoved", "jold", "unwinding", "unwound", "held", "call_plan")

    def __init__(self, spec: MapSpec, unwinding: dict[int, int] | None = None) -> None:
        self.spec = spec
        # bodies of items given up on (timed out, cancelled, interrupted) whose thread has
        # not returned yet, by index; kept across a reset (rerun) and a redefinition, so
        # an item never runs twice at once, and counted against ``max_parallel``
        self.unwinding: dict[int, int] = {} if unwinding is None else unwinding
        self.unwound = sum(self.unwinding.values())
        # indices of items moved since the journal's last commit read them (under the
        # engine's lock: ``Recorder.collect``); a plain list of ints, so no item record is
        # kept alive for the journal. ``jold``: (items, indices) a reset left unread.
        self.jmoved: list[int] = []
        self.jold: list[tuple[list[Any], list[int]]] | None = None
        self.reset()

    def reset(self) -> None:
        if self.jmoved:  # moves the journal has not read yet: read from the items they were
            self.jold = [*(self.jold or ()), (self.items, self.jmoved)]
            self.jmoved = []
        self.plan: Plan | None = None
        self.n = 0
        self.next = 0  # the next fresh index (not chained)
        self.ready: deque[int] = deque()  # indices to dispatch first (chained, rerun)
        self.items: list[Any] = []
        self.live = 0  # items made and not ended
        self.counts: dict[Any, int] = {}
        self.source: Any = None  # the mapped record this one is chained on
        self.depth = 0  # maps it follows item by item (its items go ahead of theirs)
        self.chained: list[Any] = []  # mapped records chained on this one
        self.source_ended = False
        self.closing = False
        self.base_fp: str | None = None  # the fingerprint of all but its items (journal)
        self.fps: list[str] | None = None  # item fingerprints made at expansion (journal)
        self.fps_run: int | None = None  # the run whose journal holds them (its expansion)
        # how its items are called (``Engine._execute_item``): worked out once per definition
        self.call_plan: tuple[Any, ...] | None = None
        self.reuse: dict[str, Any] | None = None  # fingerprint -> result of the definition before
        self.in_heap = False
        self.held: set[int] = set()  # fresh indices waiting for their old body to return

    @property
    def expanded(self) -> bool:
        return self.plan is not None or self.source is not None

    @property
    def known_n(self) -> int:
        """Its items' count as views show it: known before the expansion when its sources
        are literal lists (their items then show as pending), else 0 until then."""
        return self.n if self.expanded else self.spec.literal_count() or 0

    def advance(self) -> None:
        """Move the fresh-item cursor past items made out of turn (cancelled by index)."""
        items, n = self.items, self.n
        while self.next < n and items[self.next] is not None:
            self.next += 1

    def next_index(self) -> int | None:
        """The next item to dispatch, taken off the queue: a queued one (rerun, chained,
        returned), else a chained map has none, else the next fresh one; None when none."""
        ready, items = self.ready, self.items
        while ready and items[ready[0]] is not None:  # cancelled by index already
            ready.popleft()
        if ready:
            return ready.popleft()
        if self.source is not None:  # chained: only items whose source item completed
            return None
        if self.next < self.n and items[self.next] is not None:
            self.advance()
        if self.next >= self.n:
            return None
        index = self.next
        self.next += 1
        return index

    def can_dispatch(self) -> bool:
        """May an item go now: one is left to dispatch (queued, or fresh when not chained),
        within ``max_parallel``."""
        limit = self.spec.max_parallel
        return (bool(self.ready) or (self.source is None and self.next < self.n)) \
            and (limit is None or self.live + self.unwound < limit)

    def body_abandoned(self, index: int) -> None:
        """Item ``index``'s attempt was given up on; its thread has not returned yet."""
        self.unwinding[index] = self.unwinding.get(index, 0) + 1
        self.unwound += 1

    def body_returned(self, index: int) -> None:
        """An abandoned body of item ``index`` returned; once none is left, a fresh item held
        back for it may go (``held`` -> ``ready``)."""
        left = self.unwinding.get(index, 0) - 1
        if left < 0:
            return
        self.unwound -= 1
        if left:
            self.unwinding[index] = left
            return
        del self.unwinding[index]
        if index in self.held:
            self.held.discard(index)
            self.ready.append(index)

    def finished(self) -> bool:
        """Every item ended (chained: and the source map ended, so none will come)."""
        if self.live or self.ready or self.held:
            return False
        return self.source_ended if self.source is not None else self.next >= self.n

    def state_of(self, index: int) -> str:
        rec = self.items[index] if index < len(self.items) else None
        if rec.__class__ is tuple:
            return "completed"
        if rec is not None:
            return rec.status.value if rec.status is not None else "removed"
        return self._unmade_state(index)

    def _unmade_state(self, index: int) -> str:
        """The state of an item never dispatched. A chained map's item whose source item
        completed was cancelled with its map (``rerun(only="failed")`` runs it); one whose
        source item did not complete is skipped."""
        if self.source is not None:
            if not (self.source_ended or self.closing):
                return "pending"
            return "cancelled" if self.closing and self._source_done(index) else "skipped"
        return "cancelled" if self.closing else "pending"

    def _source_done(self, index: int) -> bool:
        items = self.source.mapping.items if self.source.mapping is not None else ()
        entry = items[index] if index < len(items) else None
        return entry is not None and (entry.__class__ is tuple or entry.status is not None
                                      and entry.status.value == "completed")

    def tally(self) -> dict[str, int]:
        """Items by state (pending ones included), for views and frames."""
        out: dict[str, int] = {}
        made = 0
        for status, count in self.counts.items():
            if count:
                out[status.value] = out.get(status.value, 0) + count
                made += count
        rest = self.known_n - made
        if rest > 0 and self.source is not None and self.closing:  # by item: see above
            for index, entry in enumerate(self.items):
                if entry is None:
                    key = self._unmade_state(index)
                    out[key] = out.get(key, 0) + 1
        elif rest > 0:
            key = self._unmade_state(0)
            out[key] = out.get(key, 0) + rest
        return out
