"""What the magics say about tasks that have not ended: how many (``count_unfinished``,
``count_in_flight``), and the one line an interrupted wait shows instead of a traceback
(``WaitInterrupted``): shared by ``%codo_run --wait``, ``%codo_wait``, ``%codo_results``
and the magics refused while tasks are in flight."""

from __future__ import annotations

from ..orchestrator import TaskOrchestrator


class WaitInterrupted(KeyboardInterrupt):
    """An interrupt that stopped a magic's wait, shown as its one line instead of a traceback.

    Still a KeyboardInterrupt, so the cell ends as interrupted and Run All stops
    there; only the wait stopped, and the line says the tasks go on.
    """

    def _render_traceback_(self) -> list[str]:  # what IPython shows instead of the traceback
        return [str(self)]


def interrupted_line(magic: str, orch: TaskOrchestrator, again: str,
                     returned: str = "") -> str:
    """What an interrupted wait says: what stopped, what goes on, how to wait again."""
    left = count_unfinished(orch)
    if orch.executor_name == "sync":  # tasks run in the waiting thread: the interrupt reached them
        head = (f"{magic}: interrupted; the sync executor runs tasks in the waiting cell, so "
                "the run stopped too" + (f", and {returned}" if returned else ""))
        if not left:
            return f"{head}: %codo_wait says how it ended"
        return (f"{head}; the {tasks_text(left)} not ended yet {'runs' if left == 1 else 'run'} "
                f"at the next wait: {again}")
    stopped = f"{magic}: stopped waiting (interrupted)" + (f", {returned}" if returned else "")
    if not left:
        return f"{stopped}; every task has ended: %codo_wait says how"
    return (f"{stopped}; the {tasks_text(left)} not ended yet {'keeps' if left == 1 else 'keep'} "
            f"running: {again}")


def count_in_flight(orch: TaskOrchestrator) -> int:
    """Tasks running, or waiting to run while the engine runs. Tasks only defined, the
    engine stopped, are not in flight: none has started, so the journal may change."""
    stats = orch.get_execution_stats()
    return stats["running"] + (stats["pending"] if orch.is_running else 0)


def count_unfinished(orch: TaskOrchestrator) -> int:
    """Tasks that have not ended (whether or not the engine runs)."""
    return sum(1 for task in orch.list_tasks() if not task.status.is_terminal)


def tasks_text(count: int) -> str:
    """``count`` tasks, in words: "1 task", "3 tasks"."""
    return f"{count} task{'s' if count != 1 else ''}"
