"""``tasks_frame()``'s notebook display: the columns that say something, with units.

The frame holds every column, always (a fixed schema: code that reads
``frame["wait_resources"]`` works whether or not a task waited). Shown in a
notebook, three dozen columns of which half are empty on a plain run bury
what matters, and bare floats hide whether they are seconds or bytes. So
``TasksFrame`` (like ``%codo_stats``'s ``StatsFrame``) displays a summary:
columns empty in every row are left out and named in a caption, times read
``1.23 s`` / ``45 ms``, memory ``12.3 MB``, timestamps local wall-clock
time. Only the display differs: the data, its dtypes and every frame derived
from it (``frame[...]``, ``set_index``, ``copy()``) are plain pandas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from .summary_frame import SummaryFrame, captioned_html, captioned_text

#: columns holding seconds, shown with their unit
SECONDS = ("wait_dependencies", "wait_resources", "wait_worker", "execution_time", "cpu_time")
BYTES = ("peak_memory",)
_CAPTION = "summary for display; the frame holds all {n} columns"


def _empty(value: Any) -> bool:
    if isinstance(value, list | tuple | set | dict | str):
        return len(value) == 0
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def empty_columns(frame: pd.DataFrame) -> list[str]:
    """Columns missing or empty ('' or []) in every row; none when there are no rows."""
    if frame.empty:
        return []
    out = []
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object:  # lists (tags, dependencies, resources): one by one
            empty = all(_empty(v) for v in values)
        elif pd.api.types.is_string_dtype(values.dtype):
            empty = bool((values.isna() | (values == "")).all())
        else:
            empty = bool(values.isna().all())
        if empty:
            out.append(str(column))
    return out


def _wall_clock(value: Any) -> str:
    if _empty(value):
        return ""
    return pd.Timestamp(value).to_pydatetime(warn=False).astimezone().strftime("%H:%M:%S.%f")[:-3]


def _formatters(frame: pd.DataFrame) -> dict[str, Callable[[Any], str]]:
    from ..notebook.display import _bytes, seconds  # the units %codo_stats shows

    out: dict[str, Callable[[Any], str]] = {c: seconds for c in SECONDS if c in frame}
    out.update({c: _bytes for c in BYTES if c in frame})
    out.update({str(c): _wall_clock for c in frame.columns
                if isinstance(frame[c].dtype, pd.DatetimeTZDtype)})
    return out


class TasksFrame(SummaryFrame):
    """``tasks_frame()``: a plain DataFrame but for its display (see the module)."""

    def hidden(self) -> list[str]:
        """The columns the display leaves out: empty in every row."""
        return empty_columns(pd.DataFrame(self))

    def _shown(self) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The columns to show and how: units through formatters, which pandas applies only
        to the rows it displays (a 100,000-row frame shows its first and last few)."""
        frame = pd.DataFrame(self)
        shown = frame.drop(columns=self.hidden())
        limit = pd.get_option("display.max_rows")
        if limit and len(shown) > limit:  # as pandas: a long frame shows min_rows of them
            limit = pd.get_option("display.min_rows") or limit
        options = {"formatters": _formatters(shown), "na_rep": "", "max_rows": limit,
                   "max_cols": None, "show_dimensions": False}
        return shown, options

    def caption(self) -> str:
        hidden = self.hidden()
        text = _CAPTION.format(n=len(self.columns)) + f" and {len(self):,} rows"
        if hidden:
            text += f"; empty in every row, not shown: {', '.join(hidden)}"
        return text + "; timestamps in local wall-clock time"

    def _repr_html_(self) -> str | None:
        shown, options = self._shown()
        table = shown.to_html(notebook=True, **options)
        return captioned_html(table, self.caption())

    def __repr__(self) -> str:
        shown, options = self._shown()
        with pd.option_context("display.width", 1000):
            table = shown.to_string(line_width=None, **options)
        return captioned_text(table, self.caption())


__all__ = ["TasksFrame", "empty_columns"]
