"""Failures said once, clearly: for the cells that wait, for a NameError, in tracebacks.

- ``failure_lines``: one line per failed or cancelled task,
  ``boom: ZeroDivisionError: division by zero — %codo_logs boom``, at most ten,
  then ``and N more``; the cell that waited for the run prints them
  (``%codo_wait``, ``%codo_run --wait``, ``%codo_results`` when it waited).
  Tasks skipped because of them are counted, not listed: the root cause is
  the failed task. ``wait_line`` is the line above them (or the whole
  answer when all went well or the wait gave up).
- ``NameErrorHint``: a ``NameError`` in a later cell for a task's name or its
  ``--out`` variable gets one added line (an exception note, so the normal
  traceback is shown whole above it) with that task's state and error, as the
  ``NoResult`` a downstream task would see. Installed with IPython's
  ``set_custom_exc``, chained with a handler already there, removed on
  ``%unload_ext``.
- ``CellNames``: tracebacks of tasks defined in a cell say ``Cell In[5], line 3``
  like IPython's own (``shell.compile.format_code_name``), and so do those of
  ``%%codo_task`` cells (the cell's execution count when it defined the task).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import TaskStatus as S
from ..core import frame_names
from ..core.snapshot import Snapshot, TaskView
from ..core.trigger_rules import NoResult
from .cell_tasks import cell_filename
from .text_status import summary_line

LIMIT = 10
_LISTED = ("failed", "cancelled")


def failure_line(view: TaskView) -> str:
    """``boom: ZeroDivisionError: division by zero — %codo_logs boom``."""
    message = (view.error_message or "").strip().splitlines()
    what = view.error_type or view.state
    if message:
        what += f": {message[0][:200]}"
    return f"{view.name}: {what} \u2014 %codo_logs {view.name}"


def failure_lines(snap: Snapshot, limit: int = LIMIT) -> list[str]:
    """One line per failed or cancelled task (definition order), at most ``limit``."""
    bad = [v for v in snap.tasks if v.state in _LISTED]
    lines = [failure_line(v) for v in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"and {len(bad) - limit} more (%codo_status lists every task)")
    return lines


def wait_line(snap: Snapshot, timeout: float | None) -> str:
    """What ``%codo_wait`` says once the wait is over: all done, gave up, or the failures."""
    stats = snap.stats
    if not snap.tasks:
        return "codo_wait: no tasks"
    if stats["pending"] or stats["running"]:
        return f"codo_wait: gave up after {timeout or 0:g}s: {summary_line(snap)}"
    unneeded = [v.name for v in snap.tasks if v.state == "skipped"]  # a rule did not fire
    bad = [v for v in snap.tasks if v.status in (S.FAILED, S.SKIPPED, S.CANCELLED)
           and v.state != "skipped"]
    note = (f"; {some_names(unneeded)} not needed (a trigger rule did not fire)"
            if unneeded else "")
    took = took_line(snap, stats["makespan"])
    if not bad:
        done = len(snap.tasks) - len(unneeded)
        if unneeded:
            head = f"{done} task{'s' * (done != 1)}"
        else:
            head = "the 1 task" if done == 1 else f"all {done} tasks"
        return f"codo_wait: {head} completed{took}{note}"
    completed = stats["completed"]
    head = (f"codo_wait: done{took}, {completed} completed, but "
            f"{failed_count(snap)}{note}:")
    return "\n".join([head] + failure_lines(snap))


PAUSE = 0.25  # seconds without a task running that end a run (the next task starts in ms)


def last_run(snap: Snapshot) -> tuple[int, int, float] | None:
    """(tasks in it, tasks that ran in all, seconds) of the last run: the run a wait saw end,
    not the session (whose makespan counts the time spent editing cells between runs);
    None when no task ran (every one restored, say). A run begins after a pause with no
    task running, or at a task run again (a cell edited and run, a retry) that was
    queued once every earlier task had ended: with Run All that comes within
    milliseconds, and a pause alone would join it to the run before. A task a stop
    interrupted counts from its first attempt after the stop: the time the engine was
    stopped is no part of the run that finished it."""
    spans = sorted((_resumed_at(v) or v.started_at, v.completed_at,
                    _resumed_at(v) or _again_at(v)) for v in snap.tasks
                   if v.started_at is not None and v.completed_at is not None)
    if not spans:
        return None
    begin, end, count = spans[0][0], spans[0][1], 0
    for start, stop, again in spans:
        if start > end + PAUSE or (again is not None and again >= end):  # a new run
            begin, end, count = start, stop, 0
        end = max(end, stop)
        count += 1
    return count, len(spans), max(0.0, end - begin)


def _again_at(view: Any) -> float | None:
    """When a task that had run before was queued again (None for a first run): its
    earlier attempts began before it was queued."""
    queued, attempts = view.queued_at, view.attempts
    if queued is None or not attempts or attempts[0].started_at >= queued:
        return None
    return queued


def _resumed_at(view: Any) -> float | None:
    """When the first attempt after the last one a stop interrupted began (None if no stop
    interrupted the task, or none began after it)."""
    attempts = view.attempts or ()
    last = max((i for i, a in enumerate(attempts) if a.outcome == "interrupted"), default=None)
    if last is None or last + 1 >= len(attempts):
        return None
    return attempts[last + 1].started_at


def took_line(snap: Snapshot, makespan: float) -> str:
    """`` in 0.4s`` for a wait on one run; `` (the last 2 ran in 0.4s)`` when earlier runs
    of this session (before a cell was edited and run again) ended some of the tasks."""
    run = last_run(snap)
    if run is None:
        return f" in {makespan:.1f}s"
    count, ran, seconds = run
    if count >= ran:
        return f" in {seconds:.1f}s"
    return f" (the last {count} ran in {seconds:.1f}s)" if count > 1 else \
        f" (the last one ran in {seconds:.1f}s)"


def failed_count(snap: Snapshot) -> str:
    """``1 failed, 2 upstream failed`` (the states that are failures, with their counts)."""
    counts: dict[str, int] = {}
    for view in snap.tasks:
        if view.state in ("failed", "cancelled", "upstream_failed"):
            counts[view.state] = counts.get(view.state, 0) + 1
    return ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in
                     ("failed", "cancelled", "upstream_failed") if s in counts)


def some_names(names: list[str], limit: int = 5) -> str:
    """``'a', 'b' and 3 more``."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def no_result(view: TaskView) -> NoResult:
    """What a downstream task would see for this task: its state and error."""
    return NoResult(view.name, view.state, view.error_message)


# -- a NameError for a task's name or --out variable -------------------------------------------------
class NameErrorHint:
    """Adds one line to a ``NameError`` for a task's name or ``--out`` variable.

    ``lookup(name)`` gives the line, or None when the name has nothing to do
    with a task. The handler before ours (``shell.custom_exceptions`` /
    ``shell.CustomTB``) still gets the exceptions it asked for, NameError
    included; otherwise the normal traceback is shown.
    """

    def __init__(self, shell: Any, lookup: Callable[[str], str | None]) -> None:
        self.shell, self.lookup = shell, lookup
        self.before: tuple[tuple[type[BaseException], ...], Any] | None = None
        self.mine: Any = None  # our handler as IPython wrapped it (to tell if it is still in place)
        self.active = False

    def install(self) -> None:
        shell = self.shell
        if not hasattr(shell, "set_custom_exc") or self.active:
            return
        kinds = tuple(getattr(shell, "custom_exceptions", ()) or ())
        self.before = (kinds, getattr(shell, "CustomTB", None))
        shell.set_custom_exc(kinds + (() if _covers(kinds, NameError) else (NameError,)),
                             self._handle)
        self.mine = shell.CustomTB
        self.active = True

    def uninstall(self) -> None:
        """Put the handler before ours back (if another was installed since, ours passes through)."""
        if not self.active:
            return
        self.active = False
        shell = self.shell
        if self.before is not None and getattr(shell, "CustomTB", None) is self.mine:
            shell.custom_exceptions, shell.CustomTB = self.before
            self.before = None

    def _handle(self, shell: Any, etype: type[BaseException], value: BaseException, tb: Any,
                tb_offset: int | None = None) -> Any:
        if self.active and isinstance(value, NameError):
            self._note(value)
        kinds, handler = self.before if self.before is not None else ((), None)
        if handler is not None and kinds and issubclass(etype, kinds):
            return handler(etype, value, tb, tb_offset=tb_offset)
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None

    def _note(self, error: NameError) -> None:
        name = getattr(error, "name", None)
        if not isinstance(name, str):
            return
        try:
            line = self.lookup(name)
        except Exception:  # noqa: BLE001 - a hint never hides the error itself
            line = None
        if line and line not in getattr(error, "__notes__", ()):
            error.add_note(line)


def _covers(kinds: tuple[type[BaseException], ...], kind: type[BaseException]) -> bool:
    return any(issubclass(kind, k) for k in kinds)


def name_error_line(orch: Any, name: str, task_of_variable: Callable[[str], str | None]) -> str | None:
    """The added line for a NameError on ``name``: a task's ``--out`` variable or its name."""
    snap = orch.snapshot()
    views = snap.by_id()
    task_id = task_of_variable(name)
    if task_id is not None and task_id in views:
        view = views[task_id]
        if view.state == "completed":
            return (f"{name} is the --out variable of task {view.name!r}, which completed: "
                    "run this cell again (the variable is set before each cell)")
        return (f"{name} is the --out variable of task {view.name!r}, which has no result: "
                f"{no_result(view)!r}{_logs_hint(view)}")
    view = next((v for v in snap.tasks if v.name == name), None)
    if view is None:
        return None
    if view.state == "completed":
        return (f"{name!r} is a task, not a notebook variable; it completed: "
                f"%%codo_task {name} --out VAR stores its result in VAR (or results = "
                "%codo_results)")
    return f"{name!r} is a task, not a notebook variable: {no_result(view)!r}{_logs_hint(view)}"


def _logs_hint(view: TaskView) -> str:
    if view.state in _LISTED:
        return f" \u2014 %codo_logs {view.name}"
    if not view.status.is_terminal:
        return " (not ended yet: %codo_wait)"
    return ""


# -- "Cell In[5]" in task tracebacks ----------------------------------------------------------------
class CellNames:
    """Names the files of notebook cells in task tracebacks as IPython does."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.cells: dict[str, int] = {}  # "<codo_task NAME>" -> the cell's execution count
        self.number: int | None = None  # the running cell's In[N]

    def running(self, info: Any) -> None:
        """Before a cell runs (``pre_run_cell``): note its number. IPython has already counted
        it by then when it stores history, so In[N] is one less than ``execution_count``."""
        count = getattr(self.shell, "execution_count", None)
        if isinstance(count, int):
            stored = getattr(info, "store_history", False) and not getattr(info, "silent", False)
            self.number = count - 1 if stored else count

    def install(self) -> None:
        frame_names.add_namer(self.label)

    def uninstall(self) -> None:
        frame_names.remove_namer(self.label)

    def defined(self, task_name: str) -> None:
        """The running cell defined ``task_name`` (a ``%%codo_task`` cell): name it so."""
        count = self.number if self.number is not None else getattr(
            self.shell, "execution_count", None)
        if isinstance(count, int):
            self.cells[cell_filename(task_name)] = count

    def label(self, filename: str) -> str | None:
        count = self.cells.get(filename)
        if count is not None:
            return f"Cell In[{count}]"
        compiler = getattr(self.shell, "compile", None)
        format_name = getattr(compiler, "format_code_name", None)
        named = format_name(filename) if callable(format_name) else None
        if named:
            label, name = named
            return f"{label} {name}"
        return None


_named: dict[int, CellNames] = {}  # shells whose cells are named without the magics loaded


def name_cells(shell: Any) -> None:
    """Tracebacks of tasks defined in ``shell``'s cells say ``Cell In[5]`` once a live view is
    shown there, magics loaded or not (the Python API in a notebook)."""
    if shell is not None and id(shell) not in _named:
        names = _named[id(shell)] = CellNames(shell)
        names.install()


def unname_cells(shell: Any) -> None:
    """``%unload_ext``: the names a live view installed go too."""
    names = _named.pop(id(shell), None)
    if names is not None:
        names.uninstall()
