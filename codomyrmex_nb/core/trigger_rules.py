"""Trigger rules: when a task runs, given how its upstream tasks ended (Airflow's names).

A pure module: ``decide`` reads counts of upstream outcomes and says whether the
rule fires, must wait, or can never hold (and then whether the task counts as
*upstream failed* or as *not needed*). The scheduler keeps the counts and moves
the task; nothing here touches a record.

How our states count (Airflow's words in brackets):

- COMPLETED, restored included: ``success``;
- FAILED and CANCELLED: ``failed``;
- SKIPPED because an upstream failed: ``upstream_failed``;
- SKIPPED because a trigger rule did not fire (or a task upstream of it was not
  needed): ``skipped``, shown as *not needed*.

Every rule but the ``one_*`` ones fires only once every upstream task has ended
(``always`` too: a task here never starts while an upstream may still change
its inputs; Airflow's ``always`` does not wait). A rule that can no longer hold
is decided at once, as Airflow does: ``all_success`` after one failure, without
waiting for the other upstream tasks. A task without upstream tasks always fires.

``NoResult`` is what a task that runs after a failure sees for an upstream task
that has no result: never a silent ``None``.
"""

from __future__ import annotations

import difflib
from typing import Any

DEFAULT = "all_success"
RULES = ("all_success", "all_failed", "all_done", "all_done_min_one_success", "all_skipped",
         "one_success", "one_failed", "one_done", "none_failed",
         "none_failed_min_one_success", "none_skipped", "always")

#: Rules that may fire before every upstream task ended. Their task reacts to an outcome
#: (an alert, a fallback): once it fired it goes ahead of every ready task and map item of
#: its priority (``records``), and a higher priority still goes first.
REACTING = frozenset({"one_success", "one_failed", "one_done"})

#: What ``decide`` answers.
FIRE, WAIT, UPSTREAM_FAILED, NOT_NEEDED = "fire", "wait", "upstream_failed", "not_needed"

#: Indices of the outcome counts (``Tally``): success, failed, upstream_failed, skipped.
SUCCESS, FAILED, UP_FAILED, SKIPPED = 0, 1, 2, 3

#: One line per rule, for errors and the docs: when it fires.
MEANING = {
    "all_success": "every upstream task succeeded",
    "all_failed": "every upstream task failed or was upstream-failed",
    "all_done": "every upstream task ended, however it ended",
    "all_done_min_one_success": "every upstream task ended, one succeeded and none was not needed",
    "all_skipped": "every upstream task was not needed",
    "one_success": "one upstream task succeeded, without waiting for the others",
    "one_failed": "one upstream task failed or was upstream-failed, without waiting for the others",
    "one_done": "one upstream task succeeded or failed, without waiting for the others",
    "none_failed": "every upstream task succeeded or was not needed",
    "none_failed_min_one_success": "every upstream task succeeded or was not needed, and one "
                                   "succeeded",
    "none_skipped": "every upstream task ended and none was not needed",
    "always": "every upstream task ended, whatever happened",
}


def check_rule(value: Any) -> str:
    """The rule's name from ``value`` (any case, ``-`` for ``_``); ValueError listing the valid
    ones, with the closest match, otherwise."""
    if isinstance(value, str):
        name = value.strip().lower().replace("-", "_")
        if name in MEANING:
            return name
    else:
        name = str(getattr(value, "value", value))
        if name in MEANING:  # an enum member whose value is a rule name (Airflow's TriggerRule)
            return name
    close = difflib.get_close_matches(str(name), RULES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown trigger rule {value!r}{hint}: use one of {', '.join(RULES)}")


def decide(rule: str, total: int, success: int, failed: int, upstream_failed: int,
           skipped: int) -> str:
    """FIRE, WAIT, UPSTREAM_FAILED or NOT_NEEDED for ``rule`` over ``total`` upstream tasks of
    which the given numbers ended so (the rest have not ended yet)."""
    if total == 0:
        return FIRE
    bad = failed + upstream_failed
    done = success + bad + skipped == total
    if rule == "all_success":
        if bad:
            return UPSTREAM_FAILED
        if skipped:
            return NOT_NEEDED
        return FIRE if success == total else WAIT
    vetoes = {  # rules that fire once every upstream task ended, unless an outcome rules them out
        "all_done": (0, None), "always": (0, None),
        "none_failed": (bad, UPSTREAM_FAILED),
        "all_failed": (success + skipped, NOT_NEEDED),
        "all_skipped": (success + bad, NOT_NEEDED),
        "none_skipped": (skipped, NOT_NEEDED),
    }
    if rule in vetoes:
        ruled_out, verdict = vetoes[rule]
        return verdict if ruled_out else (FIRE if done else WAIT)
    if rule == "one_failed":
        return FIRE if bad else (NOT_NEEDED if done else WAIT)
    if rule == "one_success":
        if success:
            return FIRE
        if not done:
            return WAIT
        return NOT_NEEDED if skipped == total else UPSTREAM_FAILED
    if rule == "one_done":
        return FIRE if success or failed else (NOT_NEEDED if done else WAIT)
    if rule == "none_failed_min_one_success":
        if bad:
            return UPSTREAM_FAILED
        if skipped == total:
            return NOT_NEEDED
        return FIRE if done else WAIT
    if rule == "all_done_min_one_success":
        if skipped:
            return NOT_NEEDED
        if not done:
            return WAIT
        return FIRE if success else UPSTREAM_FAILED
    raise ValueError(f"unknown trigger rule {rule!r}")


def reason(rule: str, verdict: str, total: int, success: int, failed: int,
           upstream_failed: int, skipped: int, names: str = "") -> str:
    """Why a task whose rule can never hold was skipped (its result's message and the
    transition's detail): ``not needed: trigger rule one_failed did not fire (...)`` or
    ``upstream failed: 'extract': trigger rule none_failed did not fire (...)``."""
    seen = ", ".join(f"{n} {what}" for n, what in (
        (success, "succeeded"), (failed, "failed"), (upstream_failed, "upstream failed"),
        (skipped, "not needed")) if n)
    ended = success + failed + upstream_failed + skipped
    of = f"{seen} of {total}" + ("" if ended == total else f", {total - ended} not ended")
    head = "not needed" if verdict == NOT_NEEDED else "upstream failed"
    who = f" {names}:" if names else ""
    return f"{head}:{who} trigger rule {rule} did not fire ({of}; it fires when {MEANING[rule]})"


class NoResult:
    """What a task sees for an upstream task that has no result (it failed, was cancelled or
    skipped, or has not ended when a ``one_*`` rule fired): its ``name``, ``state``
    ("failed", "cancelled", "upstream_failed", "skipped", "running"...) and ``error`` (the
    message, or None). False in a test, so ``if extract:`` reads naturally; any other
    attribute raises an ``AttributeError`` that says so."""

    __slots__ = ("name", "state", "error")

    def __init__(self, name: str, state: str, error: str | None = None) -> None:
        self.name, self.state, self.error = name, state, error

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        error = f", error={self.error!r}" if self.error else ""
        return f"NoResult({self.name!r}, state={self.state!r}{error})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not NoResult:
            return NotImplemented
        return (self.name, self.state, self.error) == (other.name, other.state, other.error)

    def __hash__(self) -> int:
        return hash((self.name, self.state, self.error))

    def __reduce__(self) -> tuple[Any, ...]:
        return NoResult, (self.name, self.state, self.error)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        why = f"{self.state}: {self.error}" if self.error else self.state
        raise AttributeError(
            f"{attr!r}: upstream task {self.name!r} has no result ({why}); a task that runs "
            f"after a failure tests for it first: isinstance(value, codomyrmex_nb.NoResult)")
