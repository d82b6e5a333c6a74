"""``--out VAR``: pushing a task's result into the notebook namespace once it completes.

Two paths push, both idempotent (each result object is pushed at most once, so
a variable the user has since reassigned is not overwritten again):

- an engine event subscription, on the event dispatcher thread, as soon as the
  task completes (a dict store is atomic, so writing ``user_ns`` from that
  thread is safe);
- ``sync()``, called on the kernel's thread before every cell runs (IPython's
  ``pre_run_cell``) and by the magics that wait or report: events are delivered
  asynchronously, so this makes "the task completed" imply "the variable is
  set" for any code that runs afterwards.

While a task re-runs, its variable keeps the previous result until the new one
arrives. The subscription follows the default orchestrator when it is replaced
(``%codo_reset --all``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, MutableMapping
from typing import Any

from ..core import Event, TaskStatus
from ..orchestrator import TaskOrchestrator


class OutBindings:
    """Which task feeds which notebook variable, and what was pushed already."""

    def __init__(self, namespace: MutableMapping[str, Any]) -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._vars: dict[str, str] = {}  # task id -> variable name
        self._pushed: dict[str, object] = {}  # task id -> the result object pushed last
        self._orch: TaskOrchestrator | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, orch: TaskOrchestrator) -> None:
        """Listen to ``orch`` (dropping bindings of a previous orchestrator)."""
        if orch is self._orch:
            return
        self.detach()
        self._orch = orch
        self._unsubscribe = orch.subscribe(self._on_event)

    def detach(self) -> None:
        with self._lock:
            self._vars.clear()
            self._pushed.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._orch = self._unsubscribe = None

    def bind(self, task_id: str, var: str | None) -> str | None:
        """Feed ``var`` from this task (None: stop); returns the variable bound before."""
        with self._lock:
            before = self._vars.pop(task_id, None)
            if var is not None:
                self._vars[task_id] = var
                if var != before:
                    self._pushed.pop(task_id, None)  # a new variable gets the current result
        self.sync()
        return before

    def variable(self, task_id: str) -> str | None:
        with self._lock:
            return self._vars.get(task_id)

    @property
    def orchestrator(self) -> TaskOrchestrator | None:
        """The orchestrator listened to (the one the magics use), if any yet."""
        return self._orch

    def task_of(self, var: str) -> str | None:
        """The id of the task that feeds the notebook variable ``var``, if one does."""
        with self._lock:
            return next((tid for tid, name in self._vars.items() if name == var), None)

    def _on_event(self, event: Event) -> None:
        if event.kind == "removed" and event.task_id is not None:
            with self._lock:
                self._vars.pop(event.task_id, None)
                self._pushed.pop(event.task_id, None)
        elif event.kind == "status" and event.status is TaskStatus.COMPLETED:
            self._push(event.task_id)

    def sync(self) -> None:
        """Push every bound result that completed and was not pushed yet."""
        with self._lock:
            ids = list(self._vars)
        for task_id in ids:
            self._push(task_id)

    def _push(self, task_id: str | None) -> None:
        orch = self._orch
        if orch is None or task_id is None:
            return
        task = orch.get_task(task_id)
        if task is None:
            return
        result = task.result
        with self._lock:
            var = self._vars.get(task_id)
            if (var is None or task.status is not TaskStatus.COMPLETED or result is None
                    or not result.success or self._pushed.get(task_id) is result):
                return
            self._pushed[task_id] = result
            self.namespace[var] = result.data
