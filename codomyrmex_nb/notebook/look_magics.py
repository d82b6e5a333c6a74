"""The magics that look at a run: ``%codo_status``, ``%codo_dag``, ``%codo_stats``,
``%codo_history``, ``%codo_journal``, ``%codo_bottlenecks`` and ``%codo_results`` (a mixin
of ``CodoMagics``). Frames are returned, not printed, so ``x = %codo_results`` works; how
they are shown is in ``display``, ``%codo_journal``'s work in ``journal_magic``."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from . import journal_magic
from .display import BottlenecksFrame, ResultsFrame, StatsFrame
from .failures import failed_count, failure_lines
from .magic_args import find_task, no_args, parse_line, plain_help
from .magic_views import live_view_or_none
from .magic_waits import WaitInterrupted, count_unfinished, interrupted_line, tasks_text
from .text_status import dag_text, status_table, task_detail


@magics_class
class LookMagics:
    """Mixed into ``CodoMagics`` (its ``orchestrator()`` and ``outs``)."""

    @plain_help
    @magic_arguments()
    @argument("name", nargs="?", metavar="NAME", help="one task: its line, the last lines it printed, "
              "then its error's traceback if it failed")
    @line_magic
    def codo_status(self, line: str) -> None:
        """Print counts by state and one line per task (or one task in detail)."""
        args = parse_line(self.codo_status, line)
        self.outs.sync()
        orch = self.orchestrator()
        if args.name is None:
            print(status_table(orch.snapshot()))
            return
        task = find_task(orch, args.name, "codo_status")
        result = task.result
        print(task_detail(orch.snapshot(), task.id, result.traceback if result else None,
                          logs=getattr(result, "logs", None) if result else None))

    @line_magic
    def codo_dag(self, line: str) -> Any:
        """The dependency graph as the live view.

        view = %codo_dag keeps it; view.svg is the drawing, to save it.
        """
        no_args("codo_dag", line)
        orch = self.orchestrator()
        view = live_view_or_none(orch)
        if view is None:
            print(dag_text(orch.snapshot()))
        return view

    @line_magic
    def codo_stats(self, line: str) -> Any:
        """Execution statistics as they are now, shown one per line with units.

        stats = %codo_stats keeps them: the one-row DataFrame of stats_frame(),
        numbers in seconds. It does not wait: mid-run it shows progress.
        """
        no_args("codo_stats", line)
        return StatsFrame(self.orchestrator().stats_frame())

    @line_magic
    def codo_history(self, line: str) -> Any:
        """Past runs in the run journal, newest first, as a DataFrame.

        runs = %codo_history keeps orchestrator.history(): when each run started
        and ended (UTC), its status (finished, stopped, or running: a run whose
        kernel died), how many tasks, completed, failed, and its makespan.
        """
        no_args("codo_history", line)
        orch = self.orchestrator()
        if orch.journal_path is None:
            print("codo_history: the run journal is off (%codo_run --journal on turns it on)")
        return orch.history()

    @plain_help
    @magic_arguments()
    @argument("--prune", action="store_true",
              help="remove old runs (with --keep-runs and/or --older-than; a run goes when "
              "every option given lets it go), then shrink the file")
    @argument("--keep-runs", type=int, metavar="N", help="with --prune: keep the N newest runs")
    @argument("--older-than", metavar="AGE", help="with --prune: remove runs last heard of more "
              "than AGE ago: a number and a unit s, m, h or d (30d, 12h)")
    @argument("--clear-cache", nargs="?", const="", metavar="NAME",
              help="remove cached results (of the task NAME, else all), then shrink the file; "
              "runs and their history stay")
    @argument("--dry-run", action="store_true",
              help="with --prune or --clear-cache: say what would go and the space it would "
              "free; remove nothing")
    @line_magic
    def codo_journal(self, line: str) -> Any:
        """The run journal: its file, size on disk, runs and the space each takes.

        info = %codo_journal keeps one row per run (started, status, tasks, cached
        results and their bytes, history bytes); a line above it gives the totals.
        Never removed: the current run, runs of another process that still runs,
        and results dropped from memory that will be read back from the journal.
        """
        return journal_magic.run(self.orchestrator, parse_line(self.codo_journal, line))

    @plain_help
    @magic_arguments()
    @argument("--top", type=int, default=5, metavar="N", help="at most N rows per kind (default 5; "
              "the critical path is always whole)")
    @line_magic
    def codo_bottlenecks(self, line: str) -> Any:
        """Why the run was slow: the critical path, resource and worker waits, retries.

        Shown rounded, each detail whole; report = %codo_bottlenecks keeps the
        DataFrame of orchestrator.bottlenecks(), seconds and shares as numbers.
        """
        args = parse_line(self.codo_bottlenecks, line)
        if args.top < 1:
            raise UsageError(f"%codo_bottlenecks: --top must be >= 1, got {args.top}")
        from ..analysis.frames import bottlenecks

        return BottlenecksFrame(bottlenecks(self.orchestrator(), top=args.top))

    @plain_help
    @magic_arguments()
    @argument("timeout", nargs="?", type=float, metavar="TIMEOUT",
              help="seconds to wait at most for unfinished tasks (default: no limit; "
              "0: the results so far)")
    @line_magic
    def codo_results(self, line: str) -> Any:
        """One row per task with its result, as a DataFrame: results = %codo_results.

        Shown by task name with each result summarised; the frame itself keeps
        every column, the result objects in results["data"]. While the engine runs and tasks are unfinished, it first waits for them
        to end (and says so), so that %codo_run and results = %codo_results in
        one cell give every task's result. An interrupt stops the wait, not the
        tasks, and returns nothing (one line says so). A task that has not ended
        yet has no row; a line says how many.
        """
        args = parse_line(self.codo_results, line)
        if args.timeout is not None and args.timeout < 0:
            raise UsageError(f"%codo_results: TIMEOUT must be >= 0, got {args.timeout:g}")
        orch = self.orchestrator()
        unfinished = count_unfinished(orch)
        if unfinished and orch.is_running and args.timeout != 0:
            limit = "" if args.timeout is None else f" (at most {args.timeout:g}s)"
            print(f"codo_results: waiting for {tasks_text(unfinished)} to end{limit} (interrupt to "
                  "stop waiting; %codo_results 0 gives the results so far)")
            try:
                orch.wait_for_completion(args.timeout)
            except RuntimeError:  # the engine was stopped meanwhile: report below
                pass
            except KeyboardInterrupt:
                raise WaitInterrupted(interrupted_line(
                    "codo_results", orch, "%codo_results waits again, %codo_results 0 gives "
                    "the results so far", returned="so it returned nothing (x = %codo_results "
                    "left x as it was)")) from None
            unfinished = count_unfinished(orch)
            lines = [] if unfinished else failure_lines(orch.snapshot())
            if lines:  # this cell waited for the run: it says what failed, once
                print("\n".join([f"codo_results: the run ended with "
                                  f"{failed_count(orch.snapshot())}:"] + lines))
        self.outs.sync()
        frame = ResultsFrame(orch.results_frame())
        if unfinished:
            hint = "" if orch.is_running else " (engine stopped: %codo_run starts it)"
            print(f"codo_results: {tasks_text(unfinished)} not ended yet, so no row{hint}")
        return frame
