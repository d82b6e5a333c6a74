"""The process-wide default orchestrator that notebooks and the guide share.

``get_task_orchestrator(**settings)`` returns the same object for the same
settings, so re-running a cell is safe. Different settings rebuild it while
it is stopped or idle (no task pending, ready or running; its tasks carry over) and
raise ``OrchestratorBusyError`` while it runs with work in flight.
"""

from __future__ import annotations

import threading
from typing import Any

from .core.exceptions import OrchestratorBusyError
from .orchestrator import TaskOrchestrator, default_workers

_lock = threading.Lock()
_default: TaskOrchestrator | None = None
_settings: dict[str, Any] = {}


def _normalise(max_workers: int | None, executor: str, client: Any, address: str | None) -> dict:
    return {"max_workers": default_workers() if max_workers is None else max_workers,
            "executor": executor, "client": client, "address": address}


def get_task_orchestrator(max_workers: int | None = None, executor: str = "threads",
                          client: Any = None, address: str | None = None) -> TaskOrchestrator:
    """The default orchestrator, configured with these settings."""
    global _default, _settings
    wanted = _normalise(max_workers, executor, client, address)
    with _lock:
        if _default is not None and wanted == _settings:
            return _default
        if _default is None:
            _default, _settings = TaskOrchestrator(**wanted), wanted
            return _default
        _default = _rebuild(_default, wanted)
        _settings = wanted
        return _default


def current_orchestrator() -> TaskOrchestrator:
    """The default orchestrator as it is configured now (created with defaults if none yet)."""
    global _default, _settings
    with _lock:
        if _default is None:
            _settings = _normalise(None, "threads", None, None)
            _default = TaskOrchestrator(**_settings)
        return _default


def current_settings() -> dict[str, Any]:
    """The settings the default orchestrator was last configured with (empty if none yet)."""
    with _lock:
        return dict(_settings)


def _rebuild(old: TaskOrchestrator, settings: dict[str, Any]) -> TaskOrchestrator:
    """Reconfigure in place so that references held by the user stay valid; only while no
    task is in flight (decided as the engine stops, so a task another thread defines
    meanwhile is never interrupted: it waits for the restart, or the change is refused)."""
    from .core.executors import make_executor

    workers = settings["max_workers"]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"max_workers must be a whole number >= 1, got {workers!r}")
    executor = None  # built (and so checked) before anything changes
    if settings["executor"] != old.executor_name or settings["client"] or settings["address"]:
        executor = make_executor(settings["executor"], client=settings["client"],
                                 address=settings["address"])
    if not old.is_running:
        # Stopped (or never started): nothing to stop first. A stop here would close the
        # journal's open run, the one the tasks defined so far belong to, as "stopped":
        # `%codo_run --workers 4` would show run 2 after a run 1 that never ran.
        try:
            if executor is not None:
                old.use_executor(executor, settings["executor"])
            old.max_workers = workers
            return old
        except RuntimeError:  # started meanwhile by another thread: as a running one below
            pass
    if old._engine.reconfigure(executor, settings["executor"], workers):
        return old
    if executor is not None:
        executor.shutdown()  # built for nothing: a Dask client it made goes
    stats = old.get_execution_stats()
    busy = stats["pending"] + stats["running"]
    changed = ", ".join(f"{k}={settings[k]!r} (now {_settings[k]!r})"
                        for k in settings if settings[k] != _settings[k])
    tasks = "a task is" if busy == 1 else f"{busy or 'some'} tasks are"
    raise OrchestratorBusyError(
        f"cannot change the default orchestrator's settings ({changed}) while {tasks} in "
        "flight: wait_for_completion() or stop_execution() first, or build a separate "
        "TaskOrchestrator(...)")


def reset_default() -> None:
    """Stop and drop the default orchestrator (tests, %codo_reset --all)."""
    global _default, _settings
    with _lock:
        old, _default, _settings = _default, None, {}
    if old is not None:
        old.stop_execution()
