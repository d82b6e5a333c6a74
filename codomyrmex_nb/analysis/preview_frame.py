"""A DataFrame that keeps result objects whole but displays them as bounded previews.

``results_frame()["data"]`` holds each task's result as the very object it
returned. pandas displays an object cell with ``str()``, which for most
classes is their ``__repr__``: one that hangs would hang the notebook's
display of the whole frame, one that raises would replace the table by a
traceback. ``PreviewFrame`` displays (``repr``, ``_repr_html_``,
``to_string``, ``to_html``) a copy in which every object cell that could run
user code is a stand-in whose text comes from ``core.preview``: bounded in
size, each value in about 0.2 s and the whole table in about a second. The
frame itself, and every frame derived from it, still holds the objects; a
column taken out as a Series (``frame["data"]``) displays as pandas does.
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
from typing import Any

import numpy as np
import pandas as pd

from ..core.preview import LIMIT, TOTAL, safe_preview, short_repr

#: Cell types pandas shows without running user code: exact builtins, then library scalars.
_EXACT = frozenset({str, float, complex, bytes, bool})
_LIBRARY = (np.generic, dt.date, dt.time, dt.timedelta, decimal.Decimal)  # Timestamp: a datetime


def _plain(value: Any) -> bool:
    kind = type(value)
    if kind is int:
        return value.bit_length() <= 4000  # str() of a huger int raises
    return (kind in _EXACT or value is None or value is pd.NA or value is pd.NaT
            or isinstance(value, _LIBRARY))


def cell_text(value: Any) -> str:
    """What pandas would show (``str()``), but arrays and frames by type and shape."""
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and shape:
        return short_repr(value)
    return str(value)


class _Deadline:
    """One display's time for all its previews, from the first one asked for."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: float | None = None

    def get(self) -> float:
        if self.at is None:
            self.at = time.monotonic() + TOTAL
        return self.at


class _Shown:
    """A stand-in for an object cell: its text is a bounded preview, made when pandas asks."""

    __slots__ = ("value", "deadline")

    def __init__(self, value: Any, deadline: _Deadline) -> None:
        self.value, self.deadline = value, deadline

    def __str__(self) -> str:
        return safe_preview(self.value, LIMIT, render=cell_text, deadline=self.deadline.get())

    __repr__ = __str__


def displayable(frame: pd.DataFrame) -> pd.DataFrame:
    """A plain copy of ``frame`` whose object cells that could run user code are stand-ins."""
    shown = pd.DataFrame(frame)
    deadline = _Deadline()
    for i, dtype in enumerate(shown.dtypes):
        if not (isinstance(dtype, np.dtype) and dtype.kind == "O"):  # numpy objects only
            continue
        column = shown.iloc[:, i]
        if all(_plain(v) for v in column):
            continue
        cells = np.empty(len(column), dtype=object)
        for j, v in enumerate(column):
            cells[j] = v if _plain(v) else _Shown(v, deadline)
        shown.isetitem(i, cells)
    return shown


class PreviewFrame(pd.DataFrame):
    """``results_frame()``: a plain DataFrame in every way but its display (see the module)."""

    @property
    def _constructor(self) -> type[PreviewFrame]:
        return PreviewFrame

    def __repr__(self) -> str:
        return pd.DataFrame.__repr__(displayable(self))

    def _repr_html_(self) -> str | None:
        return pd.DataFrame._repr_html_(displayable(self))

    def to_string(self, *args: Any, **kwargs: Any) -> str | None:  # type: ignore[override]
        return pd.DataFrame.to_string(displayable(self), *args, **kwargs)

    def to_html(self, *args: Any, **kwargs: Any) -> str | None:  # type: ignore[override]
        return pd.DataFrame.to_html(displayable(self), *args, **kwargs)


__all__ = ["PreviewFrame", "cell_text", "displayable"]
