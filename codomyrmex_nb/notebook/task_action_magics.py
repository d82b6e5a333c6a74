"""The magics that act on tasks: ``%codo_cancel``, ``%codo_remove``, ``%codo_logs``,
``%codo_retry`` and ``%codo_reset`` (a mixin of ``CodoMagics``). Each names the task it
acts on (``find_task``: a wrong name suggests the closest) and says in one line what it did."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .. import default as _default
from ..core import TaskStatus
from .magic_args import find_task, parse_line, plain_help
from .magic_views import task_logs_text
from .magic_waits import count_in_flight, tasks_text

S = TaskStatus


@magics_class
class TaskActionMagics:
    """Mixed into ``CodoMagics`` (its ``orchestrator()`` and ``outs``)."""

    @plain_help
    @magic_arguments()
    @argument("name", metavar="NAME", help="the task to cancel (its dependents are skipped)")
    @line_magic
    def codo_cancel(self, line: str) -> None:
        """Cancel a pending or running task."""
        args = parse_line(self.codo_cancel, line)
        orch = self.orchestrator()
        task = find_task(orch, args.name, "codo_cancel")
        if orch.cancel_task(task.id):
            print(f"codo_cancel: cancelled {task.name!r}")
        else:
            print(f"codo_cancel: {task.name!r} already {task.status.value}; nothing to cancel")

    @plain_help
    @magic_arguments()
    @argument("name", metavar="NAME", help="the task to remove (cancelled first if it has not ended)")
    @argument("--downstream", action="store_true",
              help="also remove every task that runs after it, directly or not")
    @line_magic
    def codo_remove(self, line: str) -> None:
        """Remove a task from the orchestrator (and the DAG); its cell can define it again.

        Refused, naming them, while other tasks run after it: remove or change
        those first, or add --downstream to remove them too.
        """
        args = parse_line(self.codo_remove, line)
        orch = self.orchestrator()
        task = find_task(orch, args.name, "codo_remove")
        todo = [task]
        if args.downstream:
            todo = list(reversed(orch.dependents_of(task))) + todo  # the leaves first
        else:
            after = [t for t in orch.dependents_of(task)
                     if any(d.id == task.id for d in orch.dependencies_of(t))]
            if after:
                names = ", ".join(repr(t.name) for t in after)
                raise UsageError(f"%codo_remove: {names} run{'s' if len(after) == 1 else ''} "
                                 f"--after {task.name!r}: remove or change "
                                 f"{'it' if len(after) == 1 else 'them'} first, or "
                                 f"%codo_remove {task.name} --downstream")
        removed = []
        for each in todo:
            running = each.status is S.RUNNING
            try:
                orch.remove_task(each)
            except (KeyError, ValueError) as exc:  # changed meanwhile (another thread)
                raise UsageError(f"%codo_remove: {exc}") from None
            removed.append(repr(each.name) + (" (cancelled while running)" if running else ""))
        print(f"codo_remove: removed {', '.join(reversed(removed))}")

    @plain_help
    @magic_arguments()
    @argument("name", metavar="NAME", help="the task whose captured output to print "
              "(NAME[7]: item 7 of a mapped task)")
    @argument("--map-index", type=int, default=None, metavar="I",
              help="item I of the mapped task NAME (as NAME[I])")
    @line_magic
    def codo_logs(self, line: str) -> None:
        """Print what a task printed or logged, attempt by attempt (a running one: so far)."""
        from ..core.item_views import parse_item_ref

        args = parse_line(self.codo_logs, line)
        orch = self.orchestrator()
        name, index = args.name, args.map_index
        if index is None and orch.get_task(name) is None:
            name, index = parse_item_ref(name)
        task = find_task(orch, name, "codo_logs")
        if index is None:
            print(task_logs_text(orch, args.name, task))
            return
        from .logs_view import logs_text  # items: only the logs view knows them

        try:
            orch.get_task_result(task.id, map_index=index)  # an index out of range says so
            print(logs_text(orch, f"{task.id}[{index}]"))
        except (KeyError, ValueError) as exc:
            raise UsageError(f"%codo_logs: {exc.args[0] if exc.args else exc}") from None

    @plain_help
    @magic_arguments()
    @argument("name", nargs="?", metavar="NAME", help="the task to run again, with everything downstream")
    @argument("--failed", action="store_true", help="every failed or cancelled task instead")
    @line_magic
    def codo_retry(self, line: str) -> None:
        """Run ended tasks again (and everything downstream of them), retries counted afresh."""
        args = parse_line(self.codo_retry, line)
        if (args.name is None) == (not args.failed):
            raise UsageError("%codo_retry: give a task NAME or --failed (not both)")
        orch = self.orchestrator()
        if args.name is not None:
            task = find_task(orch, args.name, "codo_retry")
            if not task.status.is_terminal:
                raise UsageError(f"%codo_retry: {task.name!r} is {task.status.value}; nothing to retry")
            todo = [task]
        else:
            todo = orch.list_tasks(S.FAILED) + orch.list_tasks(S.CANCELLED)
        retried = []
        for task in todo:
            if task.status.is_terminal:  # not already re-queued as downstream of another
                orch.rerun(task)  # a fresh retry budget
                retried.append(task.name)
        if not retried:
            print("codo_retry: nothing failed or was cancelled")
            return
        names = ", ".join(repr(n) for n in retried)
        hint = "" if orch.is_running else " (engine stopped: %codo_run starts it)"
        whose = "its" if len(retried) == 1 else "their"
        print(f"codo_retry: re-queued {names} and {whose} downstream{hint}")

    @plain_help
    @magic_arguments()
    @argument("--all", action="store_true",
              help="also stop and drop the default orchestrator (settings back to defaults)")
    @argument("--journal", action="store_true",
              help="clear the run journal instead: every past run and result but those still "
              "in use, which the line names (the tasks stay); with --all, both")
    @line_magic
    def codo_reset(self, line: str) -> None:
        """Forget every task (cancelling unfinished ones); notebook variables stay."""
        args = parse_line(self.codo_reset, line)
        if args.journal:
            self._clear_journal()
            if not args.all:
                return
        if args.all:
            _default.reset_default()
            self.outs.detach()
            print("codo_reset: default orchestrator stopped and dropped")
            return
        count = self.orchestrator().reset()
        print(f"codo_reset: forgot {count} task{'s' if count != 1 else ''}")

    def _clear_journal(self) -> None:
        orch = self.orchestrator()
        path = orch.journal_path
        if path is None:
            print("codo_reset: the run journal is off; nothing to clear")
            return
        busy = count_in_flight(orch)
        if busy:
            raise UsageError(f"%codo_reset: cannot clear the journal while {tasks_text(busy)} "
                             f"{'is' if busy == 1 else 'are'} in flight: %codo_wait (or "
                             "%codo_cancel) first")
        removal = orch.clear_journal()
        if removal is None or removal.error is not None:
            why = "the journal is off" if removal is None else removal.error
            print(f"codo_reset: could not clear the run journal ({why}): {path}")
            return
        runs = len(removal.runs)
        print(f"codo_reset: cleared the run journal ({runs} run{'s' * (runs != 1)} "
              f"forgotten{removal.kept_text()}): {path}")
