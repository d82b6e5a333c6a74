"""IPython magics: ``%%codo_task`` cells and the ``%codo_*`` line magics.

Every magic works on the default orchestrator *as it is configured now*
(``current_orchestrator``): a magic never reconfigures it, except
``%codo_run --workers/--executor``. Arguments are declared with
``magic_arguments`` (so ``%codo_task?`` prints the real help, as plain text);
every user mistake is a one-line ``UsageError`` and leaves nothing half-done.
Frames are returned, not printed, so ``x = %codo_results`` works. Every magic
line may end with a ``# comment``, as a Python line may (``strip_comment``), and
quotes group a value with spaces, as in a shell (``split_line``).

This module holds ``CodoMagics`` itself (what it keeps per shell, the cell id, the
``pre_run_cell`` hook) and the extension's load and unload. The magics are mixins of it,
grouped by what they do: ``task_magic`` (``%%codo_task``), ``run_magics`` (``%codo_run``,
``%codo_wait``), ``task_action_magics`` (cancel, remove, logs, retry, reset) and
``look_magics`` (status, dag, stats, history, journal, bottlenecks, results). What they
share: ``magic_args`` (reading a line), ``magic_waits`` (tasks not ended, interrupted
waits), ``magic_views`` (the live and logs views, or text without them).

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

from typing import Any

from IPython.core.magic import Magics, magics_class

from .. import default as _default
from ..orchestrator import TaskOrchestrator
from . import display_capture
from .failures import CellNames, NameErrorHint, name_error_line, unname_cells
from .look_magics import LookMagics
from .magic_args import split_line, strip_comment  # noqa: F401 - re-exported: callers name them here
from .magic_waits import WaitInterrupted  # noqa: F401 - re-exported: callers name it here
from .outputs import OutBindings
from .run_magics import RunMagics
from .task_action_magics import TaskActionMagics
from .task_magic import TaskMagic


def current_orchestrator() -> TaskOrchestrator:
    """The default orchestrator with the settings it has now (never reconfigures it)."""
    return _default.current_orchestrator()


def _with_mixin_magics(cls: type[Magics]) -> type[Magics]:
    """``magics_class`` records only the magics defined in a class's own body: add those of
    its mixins (each a ``magics_class`` of its own), in the order of its bases."""
    merged: dict[str, dict[str, Any]] = {kind: {} for kind in cls.magics}
    for base in cls.__mro__:
        if vars(base).get("registered") is True:
            for kind, table in vars(base)["magics"].items():
                for name, method in table.items():
                    merged.setdefault(kind, {}).setdefault(name, method)
    cls.magics = merged
    return cls


@_with_mixin_magics
@magics_class
class CodoMagics(TaskMagic, RunMagics, TaskActionMagics, LookMagics, Magics):
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
