"""The scheduler's steps for what an attempt came to (a mixin of ``Scheduler``): completed,
failed (retried or not), timed out, or out of time waiting for its resources.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from .events import Event
from .exceptions import ResourceTimeout, TaskTimeoutError
from .model import MAX_DELAY, Attempt, TaskResult, TaskStatus
from .records import Record
from .retry_on import not_retried
from .states import COMPLETED, FAILED, PENDING, READY


def retry_delay(retry_delay: float, backoff: float, jitter: float, attempt: int,
                rand: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds before retry number ``attempt`` (1-based), never above ``MAX_DELAY``."""
    delay = retry_delay
    if backoff != 1.0 and delay > 0:
        exponent = attempt - 1
        if exponent * math.log(backoff) + math.log(delay) >= math.log(MAX_DELAY):
            return MAX_DELAY
        delay = delay * backoff ** exponent
    if jitter:
        delay += rand(0.0, jitter)
    return min(delay, MAX_DELAY)


class OutcomeSteps:
    """Mixed into ``Scheduler`` (see there); runs under the engine lock."""

    # == outcomes ===================================================================
    def finish(self, ticket: Any, ok: bool, value: Any = None, error: BaseException | None = None,
               tb: str | None = None, elapsed: float = 0.0, logs: str | None = None,
               cpu_time: float | None = None, peak_memory: int | None = None,
               displays: list[Any] | None = None, unbound: bool = False,
               run_delay: float | None = None) -> bool:
        """The attempt's code returned (or raised). False if it was abandoned or superseded.

        ``unbound``: the error is a ``TypeError`` binding the call (never retried).

        What the attempt printed and cost is kept on its ``Attempt`` either way (a
        timed-out body's last lines explain the timeout); the result of an
        abandoned or superseded attempt is dropped.
        """
        rec = ticket.rec
        self._release(ticket)
        attempt = ticket.attempt
        if attempt is not None and (logs is not None or cpu_time is not None):
            attempt.logs, attempt.cpu_time, attempt.peak_memory = logs, cpu_time, peak_memory
            attempt.displays, attempt.run_delay = displays, run_delay
            rec.view = None
            result = rec.result
            if ticket.abandoned and result is not None and result.logs is None \
                    and rec.attempts and rec.attempts[-1] is attempt:
                result.logs = logs
            if ticket.abandoned and self.listener is not None:  # a cancelled attempt's output
                self.listener(Event("output", rec.id, rec.name, rec.status, rec.status,
                                    "output", self._now()))  # arrived: an open inspector shows it
        if ticket.abandoned:
            rec.unwinding -= 1
            if rec.parked and not rec.unwinding:
                rec.parked = False
                if rec.status is READY:
                    self._push(rec)
            if rec.parent is not None:
                self._item_body_returned(rec)
            return False
        if rec.current is not ticket:
            return False
        now = self._now()
        if ok and rec.mapping is not None:  # a mapped task's items are known: they run now
            self._end_attempt(rec, ticket, "expanded", now)
            self._expanded(rec, value, now)
            return True
        attempt = self._end_attempt(rec, ticket, "completed" if ok else "failed", now)
        if ok:
            rec.result = self._result(rec, True, elapsed, attempt, data=value)
            rec.result.logs, rec.result.displays = logs, displays
            self._ended(rec, COMPLETED, now)
            self._completed_upstream(rec, now)
        else:
            self._failed(rec, error, tb, elapsed, attempt, now, unbound=unbound)
            rec.result.logs, rec.result.displays = logs, displays
        return True

    def _end_attempt(self, rec: Record, ticket: Any, outcome: str, now: float) -> Attempt:
        attempt = ticket.attempt
        attempt.ended_at = now
        attempt.outcome = outcome
        self.busy_ended += now - attempt.started_at
        rec.current = None
        del self.running[rec.id]
        return attempt

    def _ended(self, rec: Record, status: TaskStatus, now: float,
               detail: str | None = None) -> None:
        rec.completed_at = self.last_end = now
        result = rec.result
        parent = rec.parent
        if parent is None and result is not None and rec.attempts \
                and (status is COMPLETED or status is FAILED):
            took = rec.counted_time = result.execution_time
            self.run_time_total += took
            self.run_time_n += 1
        self._move(rec, status, detail,
                   execution_time=None if result is None else result.execution_time, now=now)
        if parent is not None:
            self._item_ended(rec, now)

    def _result(self, rec: Record, success: bool, elapsed: float, attempt: Attempt | None,
                data: Any = None, error: BaseException | None = None, tb: str | None = None,
                error_type: str | None = None, **metadata: Any) -> TaskResult:
        result = TaskResult.of_attempts(rec.id, success, len(rec.attempts), rec.retry_count,
                                        None if attempt is None else attempt.worker, data,
                                        error, error_type, elapsed, tb)
        if metadata:
            result.metadata.update(metadata)
        return result

    def _failed(self, rec: Record, error: BaseException | None, tb: str | None, elapsed: float,
                attempt: Attempt | None, now: float, error_type: str | None = None,
                final: TaskStatus = FAILED, unbound: bool = False) -> None:
        rec.result = self._result(rec, False, elapsed, attempt, error=error, tb=tb,
                                  error_type=error_type)
        detail = None
        if final is FAILED and rec.retry_count < rec.max_retries and rec.mapping is None:
            why = not_retried(rec.retry_on, error, unbound)
            if why is None:
                rec.retry_count += 1
                self.retries += 1
                delay = retry_delay(rec.retry_delay, rec.retry_backoff, rec.retry_jitter,
                                    rec.retry_count)
                rec.retry_at = now + delay
                token = rec.retry_token = next(self._tokens)
                self.waiting_retry += 1
                self._move(rec, PENDING, "retry")
                self.effects.append(("retry", rec, token, delay))
                return
            rec.result.metadata["not_retried"] = why  # retries are left, but waiting cannot help
            detail = f"not retried: {why}"
        self._ended(rec, final, now, detail)
        self._skip_downstream(rec, now)

    def retry_due(self, rec: Record, token: int) -> None:
        """A retry delay ran out; a stale token (cancelled, re-queued) changes nothing."""
        if rec.retry_token != token or rec.status is not PENDING or not self.known(rec):
            return
        self._clear_retry(rec)
        self._make_ready(rec, self._now(), "retry due")

    def _clear_retry(self, rec: Record) -> None:
        rec.retry_token = rec.retry_at = None
        self.waiting_retry -= 1
        self.effects.append(("cancel_retry", rec))

    def deadline(self, ticket: Any, since: float | None = None) -> None:
        """The attempt ran past its timeout; ``since``: when its timed part began (after a
        process worker's cold start, which is no part of the task's time), else its start."""
        rec = ticket.rec
        if rec.current is not ticket or ticket.abandoned:
            return
        limit = f" after {rec.timeout:g}s" if rec.timeout is not None else ""
        err = TaskTimeoutError(f"task {rec.name!r} timed out{limit}")
        started = ticket.attempt.started_at if since is None else max(since, ticket.attempt.started_at)
        self._abandon(ticket, "timeout")
        now = self._now()
        self._failed(rec, err, None, now - started, ticket.attempt, now, "TimeoutError")

    def resource_timeout(self, ticket: Any) -> None:
        """The task waited longer than its resource timeout; charged as a failed attempt."""
        rec = ticket.rec
        if rec.waiting is not ticket or rec.status is not READY or not ticket.wait_since:
            return
        key = rec.blocked_on
        waited_since = ticket.wait_since
        self._withdraw(rec)
        now = self._now()
        waited = now - waited_since
        rec.attempts += (Attempt(len(rec.attempts) + 1, None, waited_since, now,
                                 "resource-timeout"),)
        err = ResourceTimeout(
            f"task {rec.name!r} waited longer than its resource timeout for {key}; "
            "raise TaskResource.timeout or free the resource sooner")
        rec.wait_resources += waited
        if key is not None:
            self._add_resource_wait(rec, key, waited)
        self._failed(rec, err, None, 0.0, None, now, "ResourceTimeout")

    def _add_resource_wait(self, rec: Record, key: str, seconds: float) -> None:
        if rec.wait_by_resource is None:
            rec.wait_by_resource = {}
        rec.wait_by_resource[key] = rec.wait_by_resource.get(key, 0.0) + seconds
