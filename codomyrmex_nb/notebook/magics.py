"""IPython magics: ``%%codo_task`` cells and the ``%codo_*`` line magics.

Every magic works on the default orchestrator *as it is configured now*
(``current_orchestrator``): a magic never reconfigures it, except
``%codo_run --workers/--executor``. Arguments are declared with
``magic_arguments`` (so ``%codo_task?`` prints the real help, as plain text);
every user mistake is a one-line ``UsageError`` and leaves nothing half-done.
Frames are returned, not printed, so ``x = %codo_results`` works. Every magic
line may end with a ``# comment``, as a Python line may (``strip_comment``), and
quotes group a value with spaces, as in a shell (``split_line``).

``%%codo_task`` semantics (idempotent re-runs, renames, the task namespace, line
numbers, async cells) live in ``cell_define`` and ``cell_tasks``; ``--out`` in
``outputs``; where nest-asyncio is applied in ``asyncio_support``; how results,
statistics and bottlenecks are displayed in ``display``.

The run journal (``core.journal``, "Nothing lost"): ``%%codo_task`` says when its
task came back from the journal instead of being defined to run; ``%codo_run``
prints one line on what was restored since the last ``%codo_run`` and from when,
``--fresh`` re-runs those tasks, ``--journal PATH|on|off`` switches journals
(refused while tasks are in flight); ``%codo_history`` returns the past runs,
``%codo_reset --journal`` forgets them and ``%codo_journal`` shows the file and
its space, and prunes it (``core.journal_upkeep``). ``--cache`` is a task setting, not part of
the cell's text: changing it alone keeps the task (see ``cell_define``).

The cell id. JupyterLab (and other front ends) send each execute request with
``metadata.cellId``; ipykernel (6.x and 7) passes it to ``run_cell(cell_id=...)``
and IPython hands it to ``pre_run_cell`` handlers as ``info.cell_id``. That
is the reliable source; the kernel's parent header is read as a fallback. It
is used only when the cell being run is itself a ``%%codo_task`` cell, so a
cell that defines several tasks from Python never renames one into another.
"""

from __future__ import annotations

import argparse
import inspect
import keyword
import shlex
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, kwds, magic_arguments
from IPython.display import display

from .. import default as _default
from ..core import OrchestratorBusyError, TaskStatus
from ..core.executors import EXECUTORS
from ..core.memory_budget import parse_limit
from ..core.recorder import journal_setting
from ..core.sizes import size_text
from ..orchestrator import TaskOrchestrator
from . import display_capture, journal_magic
from .cell_define import CellDefinitionError, CellOptions, define_cell_task
from .display import BottlenecksFrame, ResultsFrame, StatsFrame
from .failures import (
    CellNames,
    NameErrorHint,
    failed_count,
    failure_lines,
    name_error_line,
    some_names,
    unname_cells,
    wait_line,
)
from .outputs import OutBindings
from .text_status import dag_text, status_table, task_detail

S = TaskStatus
_TASK_USAGE = ("%%codo_task NAME [--after TASK [TASK ...]] [--priority P] [--timeout S]\n"
               "                 [--retries N] [--retry-delay S] [--retry-on EXC[,EXC]]...\n"
               "                 [--resource TYPE:ID[:MODE]]... [--tag T]... [--trigger RULE]\n"
               "                 [--out VAR] [--cache] [--watch PATH|env:NAME]...\n"
               "                 [--map [PARAM=]SOURCE]... [--map-mode zip|product]\n"
               "                 [--max-parallel N] [--tolerate N|P%%]")


def current_orchestrator() -> TaskOrchestrator:
    """The default orchestrator with the settings it has now (never reconfigures it)."""
    return _default.current_orchestrator()


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment``, so magic lines read like Python lines.

    IPython hands a magic the rest of its line, comment included. A ``#`` starts
    a comment when it is outside quotes and starts the line or follows
    whitespace, so ``task#1`` and ``"a # b"`` are kept as they are.
    """
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def split_line(line: str) -> list[str]:
    """The words of a magic line, quotes removed as a shell removes them.

    ``"my data.csv"`` and ``'a b'`` are one word each, without their quotes;
    a quote inside the other kind is kept (``"it's"``). Backslashes are plain
    characters (``C:\\data``), as ``strip_comment`` treats them. IPython's own
    split (``parse_argstring``) keeps the quotes, so a quoted name or path
    would keep them. An unbalanced quote raises ``ValueError``.
    """
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # strip_comment has removed the comment already
    lexer.escape = ""
    return list(lexer)


def _parse(magic: Any, line: str, prefix: str = "%") -> Any:
    line = strip_comment(line)
    try:
        argv = split_line(line)
    except ValueError:  # shlex: "No closing quotation"
        raise UsageError(f"{prefix}{magic.__name__}: unbalanced quote in {line.strip()!r}: "
                         "close it (a value with spaces goes in \"...\" or '...')") from None
    try:
        return magic.parser.parse_args(argv)
    except UsageError as exc:
        hint = ""
        if "required: NAME" in str(exc) and "--after" in line:
            hint = " (put NAME first: --after takes every name that follows it)"
        raise UsageError(f"{prefix}{magic.__name__}: {exc}{hint}") from None


class _PlainHelp(argparse.RawDescriptionHelpFormatter):
    """argparse help without IPython's reST markup (``::`` blocks, ``<METAVAR>``).

    ``?`` shows a docstring as plain text, so the markup would only be noise.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(inspect.cleandoc(text), width, indent)

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = "%") -> None:
        super().add_usage(usage, actions, groups, prefix)


def _plain_help(func: Any) -> Any:
    """Rewrite the help that ``magic_arguments`` put in ``func.__doc__`` as plain text."""
    func.parser.formatter_class = _PlainHelp
    func.__doc__ = func.parser.format_help()
    return func


@magics_class
class CodoMagics(Magics):
    """The codomyrmex-nb magics; one instance per shell."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.outs = OutBindings(shell.user_ns)
        self._cell: tuple[str | None, str] | None = None  # (cell id, source) of the running cell
        self.cells = CellNames(shell)  # task tracebacks say "Cell In[5]"
        self.name_errors = NameErrorHint(shell, self._name_error_line)

    def _name_error_line(self, name: str) -> str | None:
        """The line added to a NameError for a task's name or ``--out`` variable."""
        orch = self.outs.orchestrator  # never creates one for a NameError
        if orch is None:
            return None
        return name_error_line(orch, name, self.outs.task_of)

    def orchestrator(self) -> TaskOrchestrator:
        orch = current_orchestrator()
        self.outs.attach(orch)
        return orch

    def pre_run_cell(self, info: Any = None) -> None:
        """Before each cell: note its id and make every completed ``--out`` result visible."""
        self._cell = (getattr(info, "cell_id", None), getattr(info, "raw_cell", "") or "")
        self.cells.running(info)
        self.outs.sync()

    def post_run_cell(self, result: Any = None) -> None:
        self._cell = None
        self.cells.number = None

    def cell_id(self) -> str | None:
        """The id of the notebook cell running now, if it is a ``%%codo_task`` cell."""
        cell_id, source = self._cell or (None, "")
        if cell_id is None:
            parent = _parent_header(self.shell)
            metadata = parent.get("metadata") or {}
            content = parent.get("content") or {}
            cell_id, source = metadata.get("cellId"), content.get("code") or source
        if not cell_id or not source.lstrip().startswith("%%codo_task"):
            return None
        return str(cell_id)

    # -- defining tasks -------------------------------------------------------------------
    @_plain_help
    @magic_arguments()
    @kwds(usage=_TASK_USAGE)
    @argument("name", metavar="NAME", help="task name; running the cell again with the same text keeps its "
              "result, changed text re-runs it and its downstream")
    @argument("--after", nargs="+", default=[], metavar="TASK",
              help="run after these tasks; their results are visible by name (or upstream[name])")
    @argument("--priority", metavar="P", help="low, normal (default), high or critical (or 1-4)")
    @argument("--timeout", type=float, metavar="S", help="fail the attempt after S seconds")
    @argument("--retries", type=int, default=0, metavar="N", help="retry a failure up to N times")
    @argument("--retry-delay", type=float, default=0.0, metavar="S",
              help="seconds between retries")
    @argument("--retry-on", action="append", default=[], metavar="EXC[,EXC]",
              help="retry only these exceptions (notebook or builtin class names, "
              "comma-separated or repeated); others fail at once")
    @argument("--resource", action="append", default=[], metavar="TYPE:ID[:MODE]",
              help="hold a resource while running; MODE read (default), write or exclusive; "
              "repeat for several")
    @argument("--tag", action="append", default=[], metavar="T", help="a tag; repeatable")
    @argument("--trigger", metavar="RULE",
              help="when to run, given how the --after tasks ended (Airflow's trigger rules): "
              "all_success (default), all_done (a cleanup), one_failed (an alert), none_failed, "
              "one_success, ... An upstream task without a result is bound to a NoResult "
              "saying why")
    @argument("--out", metavar="VAR", help="also store the result in the notebook variable VAR "
              "when the task completes")
    @argument("--cache", action="store_true",
              help="restore the result from the run journal whenever the cell's text, the "
              "notebook names it reads and its upstream tasks are as they were in any run that "
              "completed it (without --cache only an unfinished run is resumed); changing "
              "--cache alone re-runs nothing")
    @argument("--watch", action="append", default=[], metavar="PATH|env:NAME",
              help="a file (by its content) or environment variable (by its value) the cell "
              "reads: it counts in the fingerprint that decides what the journal restores; "
              "repeatable")
    @argument("--map", action="append", default=[], metavar="[PARAM=]SOURCE",
              help="run the cell once per item of SOURCE (a task's result, or a notebook "
              "list), bound as 'item' (or PARAM) with its position as 'map_index'; repeat to "
              "bind several, zipped; --after tasks then get a MapResult")
    @argument("--map-mode", choices=("zip", "product"), default=None,
              help="with several --map: zip them (default) or cross them (product)")
    @argument("--max-parallel", type=int, default=None, metavar="N",
              help="with --map: run at most N items at once")
    @argument("--tolerate", metavar="N|P%", default=None,
              help="with --map: the task still completes with up to N failed items (or P%% "
              "of them); its MapResult holds the successful ones")
    @line_cell_magic
    def codo_task(self, line: str, cell: str | None = None) -> None:
        """Define a task whose body is this cell; its last expression is the task's result.

        The body reads notebook names (a copy taken when it starts) and upstream
        results by task name; its own assignments stay inside the task. Top-level
        await makes it an async task. Running the cell again with the same text
        keeps the result; changed text re-runs the task and its downstream; a new
        NAME in the same notebook cell renames its task.
        """
        if cell is None:
            raise UsageError("%codo_task defines a task from a cell: start the cell with "
                             "%%codo_task NAME [options] and write the task's code below it")
        args = _parse(self.codo_task, line, "%%")
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"%%codo_task: --out {args.out!r} is not a valid variable name")
        opts = CellOptions(after=args.after, priority=args.priority, timeout=args.timeout,
                           retries=args.retries, retry_delay=args.retry_delay,
                           resources=args.resource, tags=args.tag, out=args.out,
                           cache=args.cache, trigger=args.trigger, watch=args.watch,
                           map=args.map, map_mode=args.map_mode, tolerate=args.tolerate,
                           max_parallel=args.max_parallel,
                           retry_on=[n.strip() for v in args.retry_on for n in v.split(",")
                                     if n.strip()])
        orch = self.orchestrator()
        try:
            done = define_cell_task(orch, args.name, cell, opts, self.shell.user_ns, line.strip(),
                                    cell_id=self.cell_id())
        except CellDefinitionError as exc:
            raise UsageError(f"%%codo_task: {exc}") from None
        before = self.outs.bind(done.task.id, args.out)
        self.cells.defined(done.task.name)
        message = done.message
        source = _restored_from(done.task) if done.action == "defined" else None
        if source:
            message = f"codo_task {done.task.name!r}: restored from {source}, not run"
        if done.action == "unchanged" and before != args.out and args.out:
            message += f"; result goes to {args.out!r}"
        print(message)

    # -- running and waiting ----------------------------------------------------------------
    @_plain_help
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
        args = _parse(self.codo_run, line)
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
                print(f"codo_run: --fresh: re-running {_tasks(len(rerun))} restored from the "
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
        shown = _side_panel(orch) if args.side else None
        if shown is None:
            view = _live_view(orch)
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
        busy = _in_flight(orch)
        if busy:
            raise UsageError(f"%codo_run: cannot switch the journal while {_tasks(busy)} "
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

    @_plain_help
    @magic_arguments()
    @argument("timeout", nargs="?", type=float, metavar="TIMEOUT",
              help="seconds to wait at most (default: no limit)")
    @line_magic
    def codo_wait(self, line: str) -> None:
        """Block until every task has ended (an interrupt stops the wait, not the tasks)."""
        args = _parse(self.codo_wait, line)
        self._wait(self.orchestrator(), args.timeout)

    def _wait(self, orch: TaskOrchestrator, timeout: float | None, magic: str = "codo_wait") -> None:
        if timeout is not None and not timeout >= 0:  # negative, or nan
            raise UsageError(f"%{magic}: a timeout is seconds >= 0, got {timeout:g}")
        try:
            orch.wait_for_completion(timeout)
        except RuntimeError as exc:  # tasks waiting but the engine is stopped
            raise UsageError(f"{exc} (%codo_run)") from None
        except KeyboardInterrupt:
            raise WaitInterrupted(_interrupted_line(magic, orch, "%codo_wait waits again")) from None
        self.outs.sync()
        print(wait_line(orch.snapshot(), timeout))

    # -- acting on tasks ----------------------------------------------------------------------
    @_plain_help
    @magic_arguments()
    @argument("name", metavar="NAME", help="the task to cancel (its dependents are skipped)")
    @line_magic
    def codo_cancel(self, line: str) -> None:
        """Cancel a pending or running task."""
        args = _parse(self.codo_cancel, line)
        orch = self.orchestrator()
        task = _find(orch, args.name, "codo_cancel")
        if orch.cancel_task(task.id):
            print(f"codo_cancel: cancelled {task.name!r}")
        else:
            print(f"codo_cancel: {task.name!r} already {task.status.value}; nothing to cancel")

    @_plain_help
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
        args = _parse(self.codo_remove, line)
        orch = self.orchestrator()
        task = _find(orch, args.name, "codo_remove")
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

    @_plain_help
    @magic_arguments()
    @argument("name", metavar="NAME", help="the task whose captured output to print "
              "(NAME[7]: item 7 of a mapped task)")
    @argument("--map-index", type=int, default=None, metavar="I",
              help="item I of the mapped task NAME (as NAME[I])")
    @line_magic
    def codo_logs(self, line: str) -> None:
        """Print what a task printed or logged, attempt by attempt (a running one: so far)."""
        from ..core.item_views import parse_item_ref

        args = _parse(self.codo_logs, line)
        orch = self.orchestrator()
        name, index = args.name, args.map_index
        if index is None and orch.get_task(name) is None:
            name, index = parse_item_ref(name)
        task = _find(orch, name, "codo_logs")
        if index is None:
            print(_logs_text(orch, args.name, task))
            return
        from .logs_view import logs_text  # items: only the logs view knows them

        try:
            orch.get_task_result(task.id, map_index=index)  # an index out of range says so
            print(logs_text(orch, f"{task.id}[{index}]"))
        except (KeyError, ValueError) as exc:
            raise UsageError(f"%codo_logs: {exc.args[0] if exc.args else exc}") from None

    @_plain_help
    @magic_arguments()
    @argument("name", nargs="?", metavar="NAME", help="the task to run again, with everything downstream")
    @argument("--failed", action="store_true", help="every failed or cancelled task instead")
    @line_magic
    def codo_retry(self, line: str) -> None:
        """Run ended tasks again (and everything downstream of them), retries counted afresh."""
        args = _parse(self.codo_retry, line)
        if (args.name is None) == (not args.failed):
            raise UsageError("%codo_retry: give a task NAME or --failed (not both)")
        orch = self.orchestrator()
        if args.name is not None:
            task = _find(orch, args.name, "codo_retry")
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

    @_plain_help
    @magic_arguments()
    @argument("--all", action="store_true",
              help="also stop and drop the default orchestrator (settings back to defaults)")
    @argument("--journal", action="store_true",
              help="clear the run journal instead: every past run and result but those still "
              "in use, which the line names (the tasks stay); with --all, both")
    @line_magic
    def codo_reset(self, line: str) -> None:
        """Forget every task (cancelling unfinished ones); notebook variables stay."""
        args = _parse(self.codo_reset, line)
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
        busy = _in_flight(orch)
        if busy:
            raise UsageError(f"%codo_reset: cannot clear the journal while {_tasks(busy)} "
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

    # -- looking --------------------------------------------------------------------------------
    @_plain_help
    @magic_arguments()
    @argument("name", nargs="?", metavar="NAME", help="one task: its line, the last lines it printed, "
              "then its error's traceback if it failed")
    @line_magic
    def codo_status(self, line: str) -> None:
        """Print counts by state and one line per task (or one task in detail)."""
        args = _parse(self.codo_status, line)
        self.outs.sync()
        orch = self.orchestrator()
        if args.name is None:
            print(status_table(orch.snapshot()))
            return
        task = _find(orch, args.name, "codo_status")
        result = task.result
        print(task_detail(orch.snapshot(), task.id, result.traceback if result else None,
                          logs=getattr(result, "logs", None) if result else None))

    @line_magic
    def codo_dag(self, line: str) -> Any:
        """The dependency graph as the live view.

        view = %codo_dag keeps it; view.svg is the drawing, to save it.
        """
        _no_args("codo_dag", line)
        orch = self.orchestrator()
        view = _live_view(orch)
        if view is None:
            print(dag_text(orch.snapshot()))
        return view

    @line_magic
    def codo_stats(self, line: str) -> Any:
        """Execution statistics as they are now, shown one per line with units.

        stats = %codo_stats keeps them: the one-row DataFrame of stats_frame(),
        numbers in seconds. It does not wait: mid-run it shows progress.
        """
        _no_args("codo_stats", line)
        return StatsFrame(self.orchestrator().stats_frame())

    @line_magic
    def codo_history(self, line: str) -> Any:
        """Past runs in the run journal, newest first, as a DataFrame.

        runs = %codo_history keeps orchestrator.history(): when each run started
        and ended (UTC), its status (finished, stopped, or running: a run whose
        kernel died), how many tasks, completed, failed, and its makespan.
        """
        _no_args("codo_history", line)
        orch = self.orchestrator()
        if orch.journal_path is None:
            print("codo_history: the run journal is off (%codo_run --journal on turns it on)")
        return orch.history()

    @_plain_help
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
        return journal_magic.run(self.orchestrator, _parse(self.codo_journal, line))

    @_plain_help
    @magic_arguments()
    @argument("--top", type=int, default=5, metavar="N", help="at most N rows per kind (default 5; "
              "the critical path is always whole)")
    @line_magic
    def codo_bottlenecks(self, line: str) -> Any:
        """Why the run was slow: the critical path, resource and worker waits, retries.

        Shown rounded, each detail whole; report = %codo_bottlenecks keeps the
        DataFrame of orchestrator.bottlenecks(), seconds and shares as numbers.
        """
        args = _parse(self.codo_bottlenecks, line)
        if args.top < 1:
            raise UsageError(f"%codo_bottlenecks: --top must be >= 1, got {args.top}")
        from ..analysis.frames import bottlenecks

        return BottlenecksFrame(bottlenecks(self.orchestrator(), top=args.top))

    @_plain_help
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
        args = _parse(self.codo_results, line)
        if args.timeout is not None and args.timeout < 0:
            raise UsageError(f"%codo_results: TIMEOUT must be >= 0, got {args.timeout:g}")
        orch = self.orchestrator()
        unfinished = _unfinished(orch)
        if unfinished and orch.is_running and args.timeout != 0:
            limit = "" if args.timeout is None else f" (at most {args.timeout:g}s)"
            print(f"codo_results: waiting for {_tasks(unfinished)} to end{limit} (interrupt to "
                  "stop waiting; %codo_results 0 gives the results so far)")
            try:
                orch.wait_for_completion(args.timeout)
            except RuntimeError:  # the engine was stopped meanwhile: report below
                pass
            except KeyboardInterrupt:
                raise WaitInterrupted(_interrupted_line(
                    "codo_results", orch, "%codo_results waits again, %codo_results 0 gives "
                    "the results so far", returned="so it returned nothing (x = %codo_results "
                    "left x as it was)")) from None
            unfinished = _unfinished(orch)
            lines = [] if unfinished else failure_lines(orch.snapshot())
            if lines:  # this cell waited for the run: it says what failed, once
                print("\n".join([f"codo_results: the run ended with "
                                  f"{failed_count(orch.snapshot())}:"] + lines))
        self.outs.sync()
        frame = ResultsFrame(orch.results_frame())
        if unfinished:
            hint = "" if orch.is_running else " (engine stopped: %codo_run starts it)"
            print(f"codo_results: {_tasks(unfinished)} not ended yet, so no row{hint}")
        return frame


class WaitInterrupted(KeyboardInterrupt):
    """An interrupt that stopped a magic's wait, shown as its one line instead of a traceback.

    Still a KeyboardInterrupt, so the cell ends as interrupted and Run All stops
    there; only the wait stopped, and the line says the tasks go on.
    """

    def _render_traceback_(self) -> list[str]:  # what IPython shows instead of the traceback
        return [str(self)]


def _interrupted_line(magic: str, orch: TaskOrchestrator, again: str,
                      returned: str = "") -> str:
    """What an interrupted wait says: what stopped, what goes on, how to wait again."""
    left = _unfinished(orch)
    if orch.executor_name == "sync":  # tasks run in the waiting thread: the interrupt reached them
        head = (f"{magic}: interrupted; the sync executor runs tasks in the waiting cell, so "
                "the run stopped too" + (f", and {returned}" if returned else ""))
        if not left:
            return f"{head}: %codo_wait says how it ended"
        return (f"{head}; the {_tasks(left)} not ended yet {'runs' if left == 1 else 'run'} "
                f"at the next wait: {again}")
    stopped = f"{magic}: stopped waiting (interrupted)" + (f", {returned}" if returned else "")
    if not left:
        return f"{stopped}; every task has ended: %codo_wait says how"
    return (f"{stopped}; the {_tasks(left)} not ended yet {'keeps' if left == 1 else 'keep'} "
            f"running: {again}")


def _no_args(name: str, line: str) -> None:
    rest = strip_comment(line).strip()
    if rest:
        raise UsageError(f"%{name} takes no arguments, got {rest!r}")


def _in_flight(orch: TaskOrchestrator) -> int:
    """Tasks running, or waiting to run while the engine runs. Tasks only defined, the
    engine stopped, are not in flight: none has started, so the journal may change."""
    stats = orch.get_execution_stats()
    return stats["running"] + (stats["pending"] if orch.is_running else 0)


def _restored_from(task: Any) -> str | None:
    """Where a completed task's result came back from ("the unfinished run of ..."), if so."""
    result = task.result
    metadata = getattr(result, "metadata", None) or {}
    if task.status is not S.COMPLETED or not metadata.get("restored"):
        return None
    return str(metadata.get("restored_from") or "the run journal")


def _unfinished(orch: TaskOrchestrator) -> int:
    return sum(1 for task in orch.list_tasks() if not task.status.is_terminal)


def _tasks(count: int) -> str:
    return f"{count} task{'s' if count != 1 else ''}"


def _find(orch: TaskOrchestrator, name: str, magic: str) -> Any:
    import difflib

    task = orch.get_task(name)
    if task is None:
        close = difflib.get_close_matches(name, [t.name for t in orch.list_tasks()], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"%{magic}: no task named {name!r}{hint}")
    return task


def _live_view(orch: TaskOrchestrator) -> Any:
    """The live view, or None while that module is missing (a text status instead)."""
    try:
        from .live_view import live_view
    except ImportError:
        return None
    return live_view(orch)


def _side_panel(orch: TaskOrchestrator) -> bool | None:
    """Show the live view in the side panel: True if the front end has said it is there
    already, False if the live view showed itself (it moves into the panel or says why it
    stays inline), None if the caller must show it inline.

    ``live_view(side=True)`` shows the view (in the panel, or inline with a note).
    A live view without that keyword gets a one-line note here.
    """
    try:
        from .live_view import live_view
    except ImportError:
        return None
    try:
        params = inspect.signature(live_view).parameters
    except (TypeError, ValueError):
        params = {}
    side = params.get("side")
    if side is None or side.kind not in (side.POSITIONAL_OR_KEYWORD, side.KEYWORD_ONLY):
        print("codo_run: no side panel in this version of the live view; showing it here")
        return None
    view = live_view(orch, side=True)  # shows the cell's part itself, or says why not
    return bool(getattr(view, "side", False))


def _logs_text(orch: TaskOrchestrator, name: str, task: Any) -> str:
    """``logs_view.logs_text(orch, name)``; without that module, the result's captured output."""
    try:
        from .logs_view import logs_text
    except ImportError:
        result = orch.get_task_result(task.id)
        logs = getattr(result, "logs", None) if result is not None else None
        if logs:
            return logs.rstrip("\n")
        return f"codo_logs: {task.name!r}: no output captured"
    return logs_text(orch, name) or f"codo_logs: {task.name!r}: no output captured"


def _parent_header(shell: Any) -> dict[str, Any]:
    """The execute request being run, as the kernel received it ({} outside a kernel)."""
    kernel = getattr(shell, "kernel", None)
    get_parent = getattr(kernel, "get_parent", None)
    try:
        parent = get_parent() if callable(get_parent) else getattr(shell, "parent_header", None)
    except Exception:  # noqa: BLE001 - a kernel without a parent for this thread
        parent = None
    return parent if isinstance(parent, dict) else {}


_instances: dict[int, CodoMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the ``--out`` hook on this shell."""
    if id(ipython) in _instances:
        return
    magics = CodoMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.pre_run_cell)
    ipython.events.register("post_run_cell", magics.post_run_cell)
    display_capture.install(ipython)  # a task's display() output stays with the task
    magics.cells.install()
    magics.name_errors.install()
    _instances[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and the hook (``%unload_ext codomyrmex_nb``)."""
    magics = _instances.pop(id(ipython), None)
    if magics is None:
        return
    ipython.events.unregister("pre_run_cell", magics.pre_run_cell)
    ipython.events.unregister("post_run_cell", magics.post_run_cell)
    magics.outs.detach()
    display_capture.uninstall(ipython)
    magics.cells.uninstall()
    unname_cells(ipython)
    magics.name_errors.uninstall()
    for kind, names in CodoMagics.magics.items():
        for name in names:
            ipython.magics_manager.magics[kind].pop(name, None)
    ipython.magics_manager.registry.pop(CodoMagics.__name__, None)
