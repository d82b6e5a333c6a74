"""Turning a ``%%codo_task`` cell body into a task function.

A cell compiles into a ``CellFunction``: the body runs with ``exec``, and the
value of a final expression statement is the task's result, as a notebook cell
shows its last expression.

Namespace. Each attempt runs in a fresh dict (``exec`` needs a real dict for
globals, so a ``ChainMap`` or a ``__missing__`` dict would not reach functions
defined in the cell). It is a shallow copy of the notebook namespace taken when
the attempt starts, so notebook names defined after the cell are visible;
then each upstream result under its task name (when the name is an
identifier); then ``upstream``, a read-only mapping {task name: result} that
also reaches names that are not identifiers. Rebinding a name inside the task
never touches the notebook (tasks run concurrently); mutating a shared object
does, as it would in any thread.

Line numbers. The body is compiled as if the ``%%codo_task`` line were line 1,
under the file name ``<codo_task NAME>``, and the whole cell is registered in
``linecache``: tracebacks show the cell's own line numbers and text.

Async cells. A body with top-level ``await`` compiles with
``PyCF_ALLOW_TOP_LEVEL_AWAIT``; the function then returns a coroutine, which
the engine runs on an event loop of the worker thread. Only when such a cell
also calls ``run`` / ``run_until_complete`` (``asyncio.run`` inside a running
loop) is nest-asyncio applied to that loop (see ``asyncio_support``).

Pickling (processes / Dask executors). A ``CellFunction`` pickles as its
source plus a snapshot of the notebook names the code reads (as far as its
code objects tell); it is compiled again where it runs.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import linecache
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import CodeType, MappingProxyType
from typing import Any

from .asyncio_support import allow_nested_runs

_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_NESTING_CALLS = frozenset({"run", "run_until_complete", "run_forever"})


class CellSyntaxError(SyntaxError):
    """The cell body does not compile; ``str()`` is a one-line explanation."""


@dataclass(frozen=True)
class CompiledCell:
    """A cell body compiled once: the statements, the final expression, and facts about them."""

    name: str
    source: str
    header: str
    filename: str
    body: CodeType | None
    last: CodeType | None
    is_async: bool
    needs_nesting: bool
    reads: frozenset[str]

    def register(self) -> None:
        """Show this cell's text in tracebacks (call once the task is defined)."""
        register_source(self.filename, f"%%codo_task {self.header}".rstrip() + "\n" + self.source)


def cell_filename(name: str) -> str:
    return f"<codo_task {name}>"


def compile_cell(name: str, source: str, header: str = "") -> CompiledCell:
    """Compile ``source`` (the cell body); raises ``CellSyntaxError`` with a one-line message.

    ``header`` is the ``%%codo_task ...`` line, shown as line 1 in tracebacks.
    """
    filename = cell_filename(name)
    try:
        # The leading newline makes body line 1 the cell's line 2, as in the editor.
        tree = ast.parse("\n" + source, filename, "exec")
        last_expr = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last_expr = ast.Expression(tree.body.pop().value)
        body = compile(tree, filename, "exec", flags=_FLAGS) if tree.body else None
        last = compile(last_expr, filename, "eval", flags=_FLAGS) if last_expr else None
    except SyntaxError as exc:
        raise CellSyntaxError(_describe_syntax_error(name, exc)) from None
    codes = [c for c in (body, last) if c is not None]
    is_async = any(c.co_flags & inspect.CO_COROUTINE for c in codes)
    reads = frozenset(n for c in codes for n in _names_read(c))
    return CompiledCell(name, source, header, filename, body, last, is_async,
                        is_async and bool(reads & _NESTING_CALLS), reads)


def _describe_syntax_error(name: str, exc: SyntaxError) -> str:
    where = f" at line {exc.lineno}" if exc.lineno else ""
    text = (exc.text or "").strip()
    shown = f": {text}" if text else ""
    hint = ""
    if exc.msg == "'return' outside function":  # the cell is read as a function's body
        hint = (" (a cell is not a function: its result is its last expression, so end it "
                "with the value itself rather than return it)")
    return f"syntax error in task {name!r}{where}: {exc.msg}{shown}{hint}"


def _names_read(code: CodeType) -> Iterator[str]:
    """Global names (and attribute names) used anywhere in ``code``, nested code included."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names_read(const)


def register_source(filename: str, text: str) -> None:
    """Make ``text`` the source of ``filename`` for tracebacks (mtime None: never evicted)."""
    lines = text.splitlines(keepends=True)
    linecache.cache[filename] = (len(text), None, lines, filename)


class CellFunction:
    """The task function of a cell: ``fn(upstream=...)`` runs the body and returns its value.

    ``namespace`` is the notebook namespace (a live mapping, read when an attempt
    starts).
    """

    def __init__(self, cell: CompiledCell, namespace: Mapping[str, Any]) -> None:
        self.cell = cell
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"<cell function of task {self.cell.name!r}>"

    def __call__(self, upstream: Mapping[str, Any]) -> Any:
        ns = self._namespace(upstream)
        if self.cell.is_async:
            return self._run_async(ns)
        if self.cell.body is not None:
            exec(self.cell.body, ns)
        return eval(self.cell.last, ns) if self.cell.last is not None else None

    def _namespace(self, upstream: Mapping[str, Any]) -> dict[str, Any]:
        ns = dict(self.namespace)
        for key, value in upstream.items():
            if isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key):
                ns[key] = value
        ns["upstream"] = MappingProxyType(dict(upstream))
        return ns

    async def _run_async(self, ns: dict[str, Any]) -> Any:
        cell = self.cell
        if cell.needs_nesting:
            allow_nested_runs()
        if cell.body is not None:
            pending = eval(cell.body, ns)
            if cell.body.co_flags & inspect.CO_COROUTINE:
                await pending
        if cell.last is None:
            return None
        value = eval(cell.last, ns)
        if cell.last.co_flags & inspect.CO_COROUTINE:
            value = await value
        return value

    # -- the journal's fingerprint --------------------------------------------------------
    def __codo_fingerprint__(self, upstream_names: frozenset[str] = frozenset()) -> str:
        """What this cell computes: its text and the values of the notebook names it reads
        (upstream task names excluded: their fingerprints count instead). Its options
        count through the task's settings (the magic line's text does not: a comment
        or ``--out`` changes nothing computed).

        Raises ``fingerprint.Unhashable`` naming a value that cannot be hashed: the
        task is then never restored from the journal.
        """
        from ..core.fingerprint import Unhashable, value_digest

        ns = self.namespace
        digests = {}
        for name in sorted(self.cell.reads):
            if name in upstream_names or name == "upstream" or name not in ns:
                continue
            try:
                digests[name] = value_digest(ns[name])
            except Unhashable as exc:
                raise Unhashable(f"notebook name {name!r} read by the cell: {exc}") from None
        return value_digest(("cell", self.cell.source, digests))  # options: the task's own

    # -- pickling for the processes / Dask executors ------------------------------------
    def __reduce__(self) -> tuple[Callable[..., CellFunction], tuple[Any, ...]]:
        ns = self.namespace
        snapshot = {k: ns[k] for k in self.cell.reads if k in ns}
        return _rebuild, (self.cell.name, self.cell.source, self.cell.header, snapshot)


def _rebuild(name: str, source: str, header: str, namespace: dict[str, Any]) -> CellFunction:
    cell = compile_cell(name, source, header)
    cell.register()
    return CellFunction(cell, namespace)
