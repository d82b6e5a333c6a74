"""``%codo_run`` and ``%codo_wait``: starting the engine (reconfigured by ``--workers`` /
``--executor``, its journal switched by ``--journal``, its memory budget set) and waiting
for it (a mixin of ``CodoMagics``). An interrupt stops a wait, not the tasks, and says so
in one line (``magic_waits``)."""

from __future__ import annotations

from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from .. import default as _default
from ..core import OrchestratorBusyError
from ..core.executors import EXECUTORS
from ..core.memory_budget import parse_limit
from ..core.recorder import journal_setting
from ..core.sizes import size_text
from ..orchestrator import TaskOrchestrator
from .failures import some_names, wait_line
from .magic_args import parse_line, plain_help
from .magic_views import live_view_or_none, side_panel
from .magic_waits import WaitInterrupted, count_in_flight, interrupted_line, tasks_text
from .text_status import status_table


@magics_class
class RunMagics:
    """Mixed into ``CodoMagics`` (its ``orchestrator()`` and ``outs``)."""

    @plain_help
    @magic_arguments()
    @argument("--workers", type=int, metavar="N", help="number of workers (reconfigures when idle)")
    @argument("--executor", choices=EXECUTORS, help="threads (default), processes, dask or sync (debugging: tasks run in the waiting thread)")
    @argument("--wait", action="store_true", help="block until every task has ended")
    @argument("--timeout", type=float, metavar="S", help="with --wait: wait at most S seconds")
    @argument("--side", action="store_true",
              help="show the live view in a JupyterLab side panel, visible while cells run")
    @argument("--fresh", action="store_true",
              help="recompute every task restored from the run journal, and restore no more "
              "from the unfinished run (--cache tasks still use the cache)")
    @argument("--journal", metavar="PATH", help="keep the run journal in the file PATH from now "
              "on ('on': the default place, ./.codomyrmex/; 'off': no journal); refused while "
              "tasks are in flight")
    @argument("--memory-limit", metavar="SIZE", dest="memory_limit",
              help="how much RAM finished results may hold before the least recently used "
              "ones the journal holds are dropped and read back when asked for: bytes, "
              "4GB, 500MB, a share of RAM such as 25%% (the default), or off")
    @line_magic
    def codo_run(self, line: str) -> None:
        """Start the engine and show the live view (a text status without one).

        Says in one line which tasks came back from the run journal (an unfinished
        run, after the kernel died, or the cache of --cache tasks) and from when.
        """
        args = parse_line(self.codo_run, line)
        if args.memory_limit is not None:  # checked before anything changes
            try:
                limit = parse_limit(args.memory_limit)
            except ValueError as exc:
                raise UsageError(f"%codo_run: --memory-limit: {exc}") from None
        orch = self._configure(args.workers, args.executor)
        if args.memory_limit is not None:
            orch.memory_limit = limit
            print("codo_run: no memory budget: every result stays in memory" if limit is None
                  else f"codo_run: memory budget {size_text(limit)} for results")
        summary = None
        if args.journal is not None:
            summary = self._switch_journal(orch, args.journal, args.fresh)
        if args.fresh:
            rerun = orch.fresh()
            if rerun:
                print(f"codo_run: --fresh: re-running {tasks_text(len(rerun))} restored from the "
                      f"journal ({some_names(rerun)}) and {'its' if len(rerun) == 1 else 'their'} "
                      "downstream")
            else:
                print("codo_run: --fresh: nothing was restored from the journal; "
                      "every task runs")
        else:
            summary = summary or orch.restored_summary()
            if summary:
                print(f"codo_run: {summary}")
        orch.start_execution()
        # With --side the view shows itself, and only its front end may say "in the side
        # panel": it does once the panel is there (or shows the view inline and says why).
        shown = side_panel(orch) if args.side else None
        if shown is None:
            view = live_view_or_none(orch)
            if view is not None:
                display(view)
            else:
                print(status_table(orch.snapshot()))
        if args.wait or args.timeout is not None:
            self._wait(orch, args.timeout, "codo_run")

    def _switch_journal(self, orch: TaskOrchestrator, value: str, fresh: bool) -> str | None:
        """``--journal``: switch files (or turn it on or off), then resume the tasks not
        started yet from the new file (unless ``fresh``); returns what was restored."""
        setting: bool | str = True if value.strip().lower() == "on" else value
        if isinstance(setting, str) and journal_setting(setting) is not None:
            setting = str(Path(setting).expanduser())
        target, current = journal_setting(setting), orch.journal_path
        if (target is None and current is None) or (
                target is not None and current is not None
                and target.absolute() == Path(current).absolute()):
            return None  # already so: re-running the cell changes nothing
        busy = count_in_flight(orch)
        if busy:
            raise UsageError(f"%codo_run: cannot switch the journal while {tasks_text(busy)} "
                             f"{'is' if busy == 1 else 'are'} in flight: %codo_wait (or "
                             "%codo_cancel) first")
        path = orch.use_journal(setting, resume=False if fresh else None)
        print(f"codo_run: journal {path}" if path else
              "codo_run: journal off; results will not survive a restart")
        return None if fresh or path is None else orch.resume()

    def _configure(self, workers: int | None, executor: str | None) -> TaskOrchestrator:
        if workers is None and executor is None:
            return self.orchestrator()
        if workers is not None and workers < 1:
            raise UsageError(f"%codo_run: --workers must be a whole number >= 1, got {workers}")
        settings = _default.current_settings() or {"max_workers": None, "executor": "threads",
                                                 "client": None, "address": None}
        if workers is not None:
            settings["max_workers"] = workers
        if executor is not None:
            settings["executor"] = executor
        try:
            orch = _default.get_task_orchestrator(**settings)
        except (OrchestratorBusyError, ValueError, ImportError) as exc:
            raise UsageError(f"%codo_run: {exc}") from None
        self.outs.attach(orch)
        return orch

    @plain_help
    @magic_arguments()
    @argument("timeout", nargs="?", type=float, metavar="TIMEOUT",
              help="seconds to wait at most (default: no limit)")
    @line_magic
    def codo_wait(self, line: str) -> None:
        """Block until every task has ended (an interrupt stops the wait, not the tasks)."""
        args = parse_line(self.codo_wait, line)
        self._wait(self.orchestrator(), args.timeout)

    def _wait(self, orch: TaskOrchestrator, timeout: float | None, magic: str = "codo_wait") -> None:
        if timeout is not None and not timeout >= 0:  # negative, or nan
            raise UsageError(f"%{magic}: a timeout is seconds >= 0, got {timeout:g}")
        try:
            orch.wait_for_completion(timeout)
        except RuntimeError as exc:  # tasks waiting but the engine is stopped
            raise UsageError(f"{exc} (%codo_run)") from None
        except KeyboardInterrupt:
            raise WaitInterrupted(interrupted_line(magic, orch, "%codo_wait waits again")) from None
        self.outs.sync()
        print(wait_line(orch.snapshot(), timeout))
