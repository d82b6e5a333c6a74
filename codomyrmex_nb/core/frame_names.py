"""What a traceback calls the file of each frame: the notebook layer may name its cells.

IPython compiles every cell under a file name of its own (under ipykernel a
temporary path such as ``/tmp/ipykernel_812/3401.py``) and its own tracebacks
say ``Cell In[5], line 3`` instead. A task's traceback is formatted by the
``traceback`` module, in a worker thread or another process, so it would show
the temporary path. ``rename`` rewrites each ``File "...", line N`` whose file
a registered namer knows, as the engine receives the traceback, so every
executor's tracebacks read alike. Core never imports IPython: the notebook
layer adds the namer (``add_namer``) and removes it on ``%unload_ext``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_FRAME = re.compile(r'^( *)File "([^"\n]+)", line (\d+)', re.M)
_namers: list[Callable[[str], str | None]] = []


def add_namer(namer: Callable[[str], str | None]) -> None:
    """Name files with ``namer(filename)`` (a label such as ``Cell In[5]``, or None)."""
    if namer not in _namers:
        _namers.append(namer)


def remove_namer(namer: Callable[[str], str | None]) -> None:
    if namer in _namers:
        _namers.remove(namer)


def rename(text: str | None) -> str | None:
    """``text`` with each frame's file named by the first namer that knows it."""
    if not text or not _namers:
        return text

    def label(match: re.Match[str]) -> str:
        for namer in list(_namers):
            try:
                name = namer(match.group(2))
            except Exception:  # noqa: BLE001 - a namer never breaks a traceback
                name = None
            if name:
                return f"{match.group(1)}{name}, line {match.group(3)}"
        return match.group(0)

    return _FRAME.sub(label, text)
