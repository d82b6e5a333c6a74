"""Reading a magic's line, the same way for every magic: a trailing ``# comment`` as in
Python (``strip_comment``), quotes as in a shell (``split_line``), argparse help shown as
plain text (``plain_help``), and every mistake, a task NAME that names none included, as a
one-line ``UsageError`` that leaves nothing half-done."""

from __future__ import annotations

import argparse
import difflib
import inspect
import shlex
from typing import Any

from IPython.core.error import UsageError

from ..orchestrator import TaskOrchestrator
from . import option_hints


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


def parse_line(magic: Any, line: str, prefix: str = "%") -> Any:
    """``magic``'s arguments from ``line`` (its ``magic_arguments`` parser); a mistake is a
    one-line ``UsageError`` naming the magic."""
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
        hint = hint or option_hints.hint(magic.parser, argv, str(exc))
        raise UsageError(f"{prefix}{magic.__name__}: {exc}{hint}") from None


def no_args(name: str, line: str) -> None:
    """Refuse anything but a comment after a magic that takes no arguments."""
    rest = strip_comment(line).strip()
    if rest:
        raise UsageError(f"%{name} takes no arguments, got {rest!r}")


def find_task(orch: TaskOrchestrator, name: str, magic: str) -> Any:
    """The task called ``name``; none is a ``UsageError`` suggesting the closest name."""
    task = orch.get_task(name)
    if task is None:
        close = difflib.get_close_matches(name, [t.name for t in orch.list_tasks()], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"%{magic}: no task named {name!r}{hint}")
    return task


class _PlainHelp(argparse.RawDescriptionHelpFormatter):
    """argparse help without IPython's reST markup (``::`` blocks, ``<METAVAR>``).

    ``?`` shows a docstring as plain text, so the markup would only be noise.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(inspect.cleandoc(text), width, indent)

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = "%") -> None:
        super().add_usage(usage, actions, groups, prefix)


def plain_help(func: Any) -> Any:
    """Rewrite the help that ``magic_arguments`` put in ``func.__doc__`` as plain text."""
    func.parser.formatter_class = _PlainHelp
    func.__doc__ = func.parser.format_help()
    return func
