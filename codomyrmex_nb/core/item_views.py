"""Frozen copies of a mapped task's items, for frames, the timeline, logs and the inspector.

A ``Snapshot`` holds one ``TaskView`` per task and, for a mapped task, only its
items' counts by state (``TaskView.map_tally``): views take snapshots often and
a map may hold 100,000 items. The items themselves are copied only on request
(``copy_items``, under the engine lock, O(items) of the maps asked for): an
``ItemView`` has the fields of a ``TaskView`` that make sense per item, so code
written for tasks (``%codo_logs``, the inspector, the timeline) reads it as is.
An item never dispatched has no record: its view says ``pending`` (or
``cancelled`` / ``skipped`` once its map closed) and has no attempts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from .map_steps import done_attempt
from .model import Attempt, LazyData, TaskStatus


class ItemView(NamedTuple):
    """One item of a mapped task as it stood when copied (a ``TaskView`` look-alike)."""

    id: str            # "<task id>[<map_index>]"
    name: str          # "<task name>[<map_index>]"
    task_id: str       # its mapped task's id
    task: str          # its mapped task's name
    map_index: int
    state: str         # the display state: pending, ready, running, completed, failed, ...
    attempts: tuple[Attempt, ...]
    retry_count: int
    queued_at: float | None
    started_at: float | None
    completed_at: float | None
    execution_time: float | None
    success: bool | None
    error_type: str | None
    error_message: str | None
    worker: str | None
    cpu_time: float | None
    peak_memory: int | None
    restored: float | None
    data: Any = None   # the item's value once completed (read from the journal if dropped)
    wait_resources: float = 0.0
    wait_worker: float = 0.0
    ready_at: float | None = None

    @property
    def value(self) -> Any:
        data = self.data
        return data.get() if data.__class__ is LazyData else data


def item_state(item: Any) -> str:
    """A made item's state as views and frames name it (``up_for_retry``, ``upstream_failed``)."""
    if item.retry_token is not None:
        return "up_for_retry"
    status = item.status
    if status is TaskStatus.SKIPPED:
        return "upstream_failed" if (item.result is not None and item.result.error_type ==
                                     "UpstreamFailedError") else "skipped"
    return status.value if status is not None else "removed"


def _view(rec: Any, index: int) -> ItemView:
    m = rec.mapping
    item = m.items[index] if index < len(m.items) else None
    tid, name = f"{rec.id}[{index}]", f"{rec.name}[{index}]"
    if item.__class__ is tuple:  # completed, kept compactly (``mapping.done_entry``)
        (value, _, queued_at, started_at, completed_at, elapsed, cpu_time, worker, wait_worker,
         *_) = item
        return ItemView(tid, name, rec.id, rec.name, index, "completed", (done_attempt(item),),
                        0, queued_at, started_at, completed_at, elapsed, True, None, None,
                        worker, cpu_time, None, None, value, 0.0, wait_worker, queued_at)
    if item is None:
        return ItemView(tid, name, rec.id, rec.name, index, m.state_of(index), (), 0, None, None,
                        None, None, None, None, None, None, None, None, None)
    attempts = tuple(a if a.ended_at is not None else a.copy() for a in item.attempts)
    r = item.result
    cpus = [a.cpu_time for a in attempts if a.cpu_time is not None]
    peaks = [a.peak_memory for a in attempts if a.peak_memory is not None]
    return ItemView(
        item.id, item.name, rec.id, rec.name, index, item_state(item), attempts, item.retry_count,
        item.queued_at, item.started_at, item.completed_at,
        None if r is None else r.execution_time, None if r is None else r.success,
        None if r is None else r.error_type, None if r is None else r.error_message,
        attempts[-1].worker if attempts else None, sum(cpus) if cpus else None,
        max(peaks) if peaks else None, item.restored,
        None if r is None or not r.success else r.snapshot_data(),
        item.wait_resources, item.wait_worker, item.ready_at)


def copy_items(records: Iterable[Any], index: int | None = None) -> list[ItemView]:
    """Under the engine lock: the items of every mapped record among ``records``, in
    ``map_index`` order (only item ``index`` when given)."""
    out: list[ItemView] = []
    for rec in records:
        m = rec.mapping
        if m is None:
            continue
        n = m.known_n  # a literal list's items show as pending before the map reads it
        if index is not None:
            if 0 <= index < n:
                out.append(_view(rec, index))
            continue
        out.extend(_view(rec, i) for i in range(n))
    return out


def item_costs(records: Iterable[Any]) -> dict[str, tuple[float | None, int | None]]:
    """Under the engine lock: per mapped record's id, what its items cost, from the items as
    they are (no view made): CPU seconds summed and the largest peak memory, None where
    none was measured. O(items of the maps)."""
    out: dict[str, tuple[float | None, int | None]] = {}
    for rec in records:
        m = rec.mapping
        if m is None:
            continue
        cpu, measured, peak = 0.0, False, None
        for item in m.items:
            if item is None:
                continue
            if item.__class__ is tuple:  # compact: one attempt, no peak memory
                spent = item[6]
                if spent is not None:
                    cpu += spent
                    measured = True
                continue
            for a in item.attempts:
                if a.cpu_time is not None:
                    cpu += a.cpu_time
                    measured = True
                if a.peak_memory is not None and (peak is None or a.peak_memory > peak):
                    peak = a.peak_memory
        out[rec.id] = (cpu if measured else None, peak)
    return out


def parse_item_ref(ref: str) -> tuple[str, int | None]:
    """``"square[7]"`` -> ``("square", 7)``; a plain name -> ``(name, None)``."""
    if ref.endswith("]") and "[" in ref:
        head, _, tail = ref[:-1].rpartition("[")
        if head and tail.strip().isdigit():
            return head, int(tail)
    return ref, None
