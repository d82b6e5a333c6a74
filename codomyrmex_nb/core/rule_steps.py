"""The scheduler's steps for tasks whose trigger rule is not ``all_success`` (a mixin of
``Scheduler``; the rules themselves are ``trigger_rules``).
"""

from __future__ import annotations

from .exceptions import NotNeededError, UpstreamFailedError
from .records import Record
from .states import COMPLETED, ENDED, NOT_NEEDED_TYPE, SKIPPED, is_not_needed, outcome_of
from .trigger_rules import FIRE, NOT_NEEDED, WAIT, decide, reason


class RuleSteps:
    """Mixed into ``Scheduler`` (see there); runs under the engine lock."""

    # == trigger rules (tasks whose rule is not all_success; see trigger_rules) ===========
    def _settle_rule(self, rec: Record, now: float) -> None:
        """Count how a (re-)queued rule task's upstream tasks ended so far, and decide."""
        tally = rec.tally = [0, 0, 0, 0]
        for up in rec.ups:
            if up.status in ENDED:
                tally[outcome_of(up)] += 1
        verdict = decide(rec.rule, len(rec.ups), *tally)
        if verdict is FIRE:
            self._make_ready(rec, now)
        elif verdict is not WAIT:
            self._rule_skip(rec, verdict, now)
            self._skip_downstream(rec, now)

    def _rule_step(self, rec: Record, outcome: int, now: float) -> bool:
        """One more upstream task of the PENDING rule task ``rec`` ended; True if that
        decided it can never run (it is SKIPPED: the caller skips onwards). A task not
        settled yet (defined or re-queued in the batch being settled) counts when it is."""
        tally = rec.tally
        if tally is None:
            return False
        tally[outcome] += 1
        verdict = decide(rec.rule, len(rec.ups), *tally)
        if verdict is WAIT:
            return False
        if verdict is FIRE:
            self._make_ready(rec, now)
            return False
        self._rule_skip(rec, verdict, now)
        return True

    def _rule_skip(self, rec: Record, verdict: str, now: float) -> None:
        """PENDING -> SKIPPED: ``rec``'s rule can no longer hold; the result says why, and
        whether it was not needed or its upstream failed."""
        self._withdraw(rec)
        ended = [u for u in rec.ups if u.status in ENDED and u.status is not COMPLETED]
        if verdict is NOT_NEEDED:
            msg = reason(rec.rule, verdict, len(rec.ups), *rec.tally)
            error: BaseException = NotNeededError(msg)
            kind, cause = NOT_NEEDED_TYPE, None
        else:
            failed = [u for u in ended if not is_not_needed(u)]
            first = failed[0] if failed else None
            msg = reason(rec.rule, verdict, len(rec.ups), *rec.tally,
                         names=", ".join(repr(u.name) for u in failed))
            error, kind = UpstreamFailedError(msg), "UpstreamFailedError"
            cause = None if first is None else (
                first.result.metadata.get("root_cause", first.name)
                if first.status is SKIPPED and first.result is not None else first.name)
        rec.result = self._result(rec, False, 0.0, None, error=error, error_type=kind,
                                  skipped_because=[u.name for u in ended], root_cause=cause,
                                  trigger_rule=rec.rule)
        self._ended(rec, SKIPPED, now, msg)

    def not_needed(self) -> list[Record]:
        """Tasks skipped as not needed (a trigger rule that did not fire, or a task upstream
        of them not needed): not failures, so a run with only these ended well."""
        if not self.counts[SKIPPED]:
            return []
        return [r for r in self.records.values() if is_not_needed(r)]
