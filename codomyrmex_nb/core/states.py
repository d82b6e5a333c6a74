"""Task states and how an ended task counts, shared by the scheduler's steps.

The scheduler (``scheduler``) and its mixins (``define_steps``, ``rule_steps``,
``outcome_steps``, ``stop_steps``, ``map_steps``) all read states by these short
names; the two predicates here say how an ended task counts for the tasks after it.
"""

from __future__ import annotations

from typing import Any

from .model import TaskStatus
from .trigger_rules import FAILED as _FAILED
from .trigger_rules import SKIPPED as _SKIPPED
from .trigger_rules import SUCCESS as _SUCCESS
from .trigger_rules import UP_FAILED as _UP_FAILED

S = TaskStatus
PENDING, READY, RUNNING = S.PENDING, S.READY, S.RUNNING
COMPLETED, FAILED, CANCELLED, SKIPPED = S.COMPLETED, S.FAILED, S.CANCELLED, S.SKIPPED
UNFINISHED = (PENDING, READY, RUNNING)
ENDED = frozenset(s for s in S if s.is_terminal)
VERB = {FAILED: "failed", CANCELLED: "was cancelled", SKIPPED: "was skipped",
        COMPLETED: "completed"}
NOT_NEEDED_TYPE = "NotNeededError"  # the error type of a task skipped as not needed


def is_not_needed(rec: Any) -> bool:
    """Skipped because a trigger rule did not fire (Airflow's ``skipped``), not because an
    upstream task failed (``upstream_failed``)."""
    result = rec.result
    return rec.status is SKIPPED and result is not None and result.error_type == NOT_NEEDED_TYPE


def outcome_of(rec: Any) -> int:
    """How an ended upstream task counts for a trigger rule (``trigger_rules``' indices)."""
    status = rec.status
    if status is COMPLETED:
        return _SUCCESS
    if status is SKIPPED:
        return _SKIPPED if is_not_needed(rec) else _UP_FAILED
    return _FAILED  # failed or cancelled
