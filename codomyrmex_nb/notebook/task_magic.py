"""``%%codo_task``: the magic that defines a task from a cell, with its options and help (a
mixin of ``CodoMagics``). What a definition means (idempotent re-runs, renames, the task
namespace, line numbers, async cells) lives in ``cell_define`` and ``cell_tasks``; this
module turns the line into ``CellOptions`` and says in one line what the cell did, restored
from the run journal included."""

from __future__ import annotations

import keyword
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, kwds, magic_arguments

from ..core import TaskStatus
from .cell_define import CellDefinitionError, CellOptions, define_cell_task
from .magic_args import parse_line, plain_help

_TASK_USAGE = ("%%codo_task NAME [--after TASK [TASK ...]] [--priority P] [--timeout S]\n"
               "                 [--retries N] [--retry-delay S] [--retry-on EXC[,EXC]]...\n"
               "                 [--resource TYPE:ID[:MODE]]... [--tag T]... [--trigger RULE]\n"
               "                 [--out VAR] [--cache] [--watch PATH|env:NAME]...\n"
               "                 [--map [PARAM=]SOURCE]... [--map-mode zip|product]\n"
               "                 [--max-parallel N] [--tolerate N|P%%]")


@magics_class
class TaskMagic:
    """Mixed into ``CodoMagics`` (its ``orchestrator()``, ``outs``, ``cells``, ``cell_id()``)."""

    @plain_help
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
        args = parse_line(self.codo_task, line, "%%")
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


def _restored_from(task: Any) -> str | None:
    """Where a completed task's result came back from ("the unfinished run of ..."), if so."""
    result = task.result
    metadata = getattr(result, "metadata", None) or {}
    if task.status is not TaskStatus.COMPLETED or not metadata.get("restored"):
        return None
    return str(metadata.get("restored_from") or "the run journal")

