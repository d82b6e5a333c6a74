"""Collapse a big graph into group nodes so the drawing stays readable and fast.

``dot`` needs about 11 s for 5,000 nodes and nobody can read them anyway, so
above a threshold each task joins one group: its first tag, else its
``module.action``, else its name prefix (``fetch_17`` -> ``fetch``). Beyond
``max_groups`` the smallest groups share one ``other`` node. A group shows its
size and counts per state; an edge joins two groups when any task of one
depends on a task of the other.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..core.snapshot import Snapshot, TaskView
from ..palette import glyph

OTHER = "other"
# Most urgent first: the state a group is coloured by when its tasks differ.
PRECEDENCE = ("failed", "up_for_retry", "running", "upstream_failed", "cancelled", "skipped",
              "ready", "pending", "completed")
# States listed in a group's counts line, in reading order.
SHOWN = ("completed", "running", "ready", "pending", "up_for_retry", "failed",
         "upstream_failed", "cancelled", "skipped")
_SEP = re.compile(r"[_\-.:/\s]+")


def name_prefix(name: str) -> str:
    """``fetch_users_3`` -> ``fetch``; ``t17`` -> ``t``; never empty."""
    head = _SEP.split(name.strip(), maxsplit=1)[0]
    head = head.rstrip("0123456789") or head
    return head or "tasks"


def group_key(task: TaskView) -> str:
    """The group a task belongs to: tag, else module.action, else name prefix."""
    if task.tags:
        return f"#{task.tags[0]}"
    if task.module:
        return f"{task.module}.{task.action}" if task.action else task.module
    return name_prefix(task.name)


@dataclass(frozen=True, slots=True)
class Grouping:
    of: dict[str, str]                   # task id -> group key
    members: dict[str, tuple[str, ...]]  # group key -> task ids, in snapshot order
    edges: tuple[tuple[str, str], ...]   # (upstream group, downstream group)


def group_tasks(snapshot: Snapshot, max_groups: int = 40) -> Grouping:
    """Assign every task of ``snapshot`` to a group; at most ``max_groups`` groups."""
    keys = {t.id: group_key(t) for t in snapshot.tasks}
    sizes = Counter(keys.values())
    if len(sizes) > max_groups:
        kept = {k for k, _ in sizes.most_common(max(1, max_groups - 1))}
        keys = {tid: (k if k in kept else OTHER) for tid, k in keys.items()}
    members: dict[str, list[str]] = {}
    for tid, key in keys.items():
        members.setdefault(key, []).append(tid)
    edges: dict[tuple[str, str], None] = {}
    for t in snapshot.tasks:
        down = keys[t.id]
        for dep in t.dependencies:
            up = keys.get(dep)
            if up is not None and up != down:
                edges[(up, down)] = None
    return Grouping(keys, {k: tuple(v) for k, v in members.items()}, tuple(edges))


def dominant(counts: Counter[str] | dict[str, int]) -> str:
    """The state that colours a group: the most urgent one present."""
    for state in PRECEDENCE:
        if counts.get(state):
            return state
    return "pending"


def counts_line(counts: Counter[str] | dict[str, int]) -> str:
    """``✓12 ▶3 ◷40``: the non-zero counts, each behind its state's glyph."""
    return " ".join(f"{glyph(s)}{counts[s]}" for s in SHOWN if counts.get(s))


def count_states(states: Iterable[str]) -> Counter[str]:
    return Counter(states)
