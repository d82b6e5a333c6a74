"""What the magics *display* for results, statistics and bottlenecks.

The frames the magics return are the analysis frames (``results_frame``,
``stats_frame``, ``bottlenecks``) unchanged: same columns, same dtypes, the
result objects themselves in ``data``. Only their notebook representation
differs. Each is returned as a thin ``pandas.DataFrame`` subclass whose
``_repr_html_`` and ``__repr__`` render a summary instead of the raw frame:

- ``ResultsFrame``: one row per task, indexed by name (a short id suffix only
  where two tasks share a name), a one-line summary of each result (type and
  shape for frames, arrays and collections, a short repr otherwise), times with
  units, the error in one line, and the id last.
- ``StatsFrame``: the one-row statistics shown vertically, one statistic per
  row, rounded and with units, the headline figures first.
- ``BottlenecksFrame``: the bottleneck report rounded, with ``detail`` whole
  (never cut by ``display.max_colwidth``).

Anything derived from one of them (``results[["name", "state"]]``,
``results.set_index("name")``, ``stats.T``, ``copy()``) is a plain DataFrame
again and displays as pandas does: the summary is only for the frame as the
magic returned it (one derived from ``ResultsFrame`` is a ``PreviewFrame``, as
``results_frame()`` is: its result objects display as bounded previews).
``summarize(value)`` is the one-line result summary.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.preview_frame import PreviewFrame
from ..analysis.summary_frame import SummaryFrame, captioned_html, captioned_text
from ..core.preview import BoundedRepr, safe_preview, safe_previews
from ..core.sizes import size_text

_WIDTH = 60  # characters of a result summary or an error message
_NOTE = "summary for display; the frame holds every column, result objects in 'data'"


# -- one value in one line ----------------------------------------------------------------
class _Short(BoundedRepr):
    """reprlib's sizes; a failing ``__repr__`` of the result itself is reported (by
    ``core.preview``: ``<repr of X failed: ...>``), one of an item inside is a placeholder."""

    def repr_instance(self, x: Any, level: int) -> str:
        if level < self.maxlevel:
            return super().repr_instance(x, level)
        text = repr(x)
        if len(text) > self.maxother:
            head = max(0, (self.maxother - 3) // 2)
            text = text[:head] + "..." + text[len(text) - (self.maxother - 3 - head):]
        return text


def _short_repr() -> reprlib.Repr:
    short = _Short()
    short.maxstring = short.maxother = _WIDTH
    short.maxlist = short.maxtuple = short.maxset = short.maxfrozenset = short.maxdict = 4
    short.maxlevel = 2
    return short


_SHORT = _short_repr()


def _clip(text: str, width: int = _WIDTH) -> str:
    first, *rest = text.strip().splitlines() or [""]
    if rest or len(first) > width:
        return first[: width - 1].rstrip() + "…"
    return first


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _safe_repr(value: Any) -> str:
    return _SHORT.repr(value)  # only called through core.preview, which reports a failure


def summarize(value: Any, width: int = _WIDTH) -> str:
    """One line for a result: type and shape for frames, arrays and collections, else a short repr.

    ``DataFrame 100×3 (region, sales, month)``, ``ndarray (3, 4) float64``,
    ``list of 3: [1, 2, 3]``, ``0.18`` (numpy scalars as plain numbers).
    Bounded in time and size (``core.preview``): a ``__repr__`` that hangs,
    raises or returns megabytes gives a short note, never a stalled table.
    """
    return safe_preview(value, width, render=partial(_summarize, width=width))


def summaries(values: list[Any], width: int = _WIDTH) -> list[str]:
    """``summarize`` for many values, all of them within about a second."""
    return safe_previews(values, width, render=partial(_summarize, width=width))


def _summarize(value: Any, width: int) -> str:
    """``summarize`` unbounded: runs the value's own code, so only through ``core.preview``."""
    if value is None:
        return "None"
    name = type(value).__name__
    if isinstance(value, pd.DataFrame):
        rows, cols = value.shape
        columns = ", ".join(str(c) for c in value.columns[:4]) + (", …" if cols > 4 else "")
        return _clip(f"DataFrame {rows:,}×{cols}" + (f" ({columns})" if cols else ""), width)
    if isinstance(value, pd.Series):
        label = f" {value.name!r}" if value.name is not None else ""
        return _clip(f"Series{label} of {len(value):,} {value.dtype}", width)
    item = getattr(value, "item", None)
    if getattr(value, "shape", None) == () and callable(item):  # a numpy (or similar) scalar
        try:
            return _clip(repr(item()), width)
        except Exception:  # noqa: BLE001
            pass
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:  # numpy, torch, xarray, ...
        return _clip(f"{name} {shape} {dtype}", width)
    if isinstance(value, str | bytes):
        text = _safe_repr(value)
        if len(value) > width:
            return _clip(f"{name} of {len(value):,} chars: {text}", width)
        return _clip(text, width)
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        count = _plural(len(value), "key" if isinstance(value, Mapping) else "item")
        text = _safe_repr(value)
        if len(text) <= width and len(value) <= 4:
            return text
        return _clip(f"{name} of {count}: {text}", width)
    return _clip(_safe_repr(value), width)


def seconds(value: Any) -> str:
    """``1.23 s``, ``45 ms``, ``2 min 5 s``; blank when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    value = float(value)
    if value == 0:
        return "0 s"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    if value < 120:
        return f"{value:.2f} s"
    minutes, rest = divmod(value, 60)
    return f"{minutes:.0f} min {rest:.0f} s"


def _bytes(value: Any) -> str:
    if _missing(value):
        return ""
    return size_text(float(value))


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(value: Any) -> str:
    return "" if _missing(value) else _clip(str(value))


def _clock(value: Any) -> str:
    """A UTC timestamp as local wall-clock time, ``14:03:22``."""
    if _missing(value):
        return ""
    moment: datetime = pd.Timestamp(value).to_pydatetime(warn=False)
    return moment.astimezone().strftime("%H:%M:%S")


def _number(value: Any) -> str:
    if _missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return _text(value)


def _cells(values: Any) -> list[str]:
    """Any other column's values, shortened (each one bounded, as ``summarize``)."""
    return safe_previews(list(values), _WIDTH, render=_cell)


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return _clip(value)
    if isinstance(value, bool | np.bool_ | numbers.Real):
        return _number(value)
    return "" if _missing(value) else _summarize(value, _WIDTH)


# -- the frame subclasses -------------------------------------------------------------------
class _Summarised(SummaryFrame):
    """A frame that displays ``summary()`` (see ``analysis.summary_frame``)."""

    def summary(self) -> pd.DataFrame:  # pragma: no cover - overridden
        raise NotImplementedError

    _caption = _NOTE

    def _options(self) -> tuple[Any, ...]:
        return ("display.max_colwidth", None, "display.max_columns", None,
                "display.show_dimensions", False)

    def _repr_html_(self) -> str | None:
        with pd.option_context(*self._options()):
            table = self.summary()._repr_html_() or ""
        return captioned_html(table, self._caption)

    _left: tuple[str, ...] = ()  # text columns aligned left in the plain-text table

    def __repr__(self) -> str:
        summary = self.summary()
        formatters = {}
        for column in self._left:
            if column in summary:
                width = max((len(v) for v in summary[column]), default=0)
                formatters[column] = lambda v, w=width: v.ljust(w)
        with pd.option_context(*self._options(), "display.width", 1000):
            table = summary.to_string(formatters=formatters)
        return captioned_text(table, self._caption)


def unique_labels(names: list[str], ids: list[str]) -> list[str]:
    """The names, with a short id suffix only on names that occur more than once."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    clashing = [i for i, name in enumerate(names) if counts[name] > 1]
    length = 4
    while length < max((len(i) for i in ids), default=0):
        suffixes = [ids[i][:length] for i in clashing]
        if len(set(suffixes)) == len(suffixes):
            break
        length += 2
    labels = list(names)
    for i in clashing:
        labels[i] = f"{names[i]} [{ids[i][:length]}]"
    return labels


class ResultsFrame(_Summarised):
    """``results_frame()`` displayed by name, with each result summarised and the id last."""

    @property
    def _constructor(self) -> Callable[..., pd.DataFrame]:
        return PreviewFrame  # a derived frame displays its result objects bounded too

    _left = ("state", "result", "worker", "last line")

    # (column of the frame, heading shown, formatter); columns the frame lacks are left out
    COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
        ("state", "state", _text),
        ("execution_time", "time", seconds),
        ("cpu_time", "cpu", seconds),
        ("peak_memory", "memory", _bytes),
        ("attempts", "attempts", _number),
        ("worker", "worker", _text),
        ("completed_at", "ended", _clock),
        ("last_line", "last line", _text),
    )

    def summary(self) -> pd.DataFrame:
        frame = pd.DataFrame(self)
        names = [str(n) for n in frame.get("name", pd.Series([], dtype=object))]
        ids = [str(i) for i in frame.get("id", pd.Series([""] * len(frame)))]
        out: dict[str, list[str]] = {}
        if "state" in frame:
            out["state"] = [_text(v) for v in frame["state"]]
        out["result"] = self._results(frame)
        shown = {"id", "name", "data", "success", "error_type", "error_message", "state"}
        for column, heading, fmt in self.COLUMNS:
            if column in frame and column not in shown:
                out[heading] = [fmt(v) for v in frame[column]]
                shown.add(column)
        for column in frame.columns:  # columns added later: shown, shortened
            if column not in shown:
                out[str(column)] = _cells(frame[column])
        if "id" in frame:
            out["id"] = ids
        index = pd.Index(unique_labels(names, ids), name="name")
        return pd.DataFrame(out, index=index)

    @staticmethod
    def _results(frame: pd.DataFrame) -> list[str]:
        """Each row's error in one line, or its result summarised (all of them bounded)."""
        empty = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        out: list[str] = []
        shown: list[Any] = []  # the results to summarise, in one bounded batch
        for kind, message, success, data in zip(
                frame.get("error_type", empty), frame.get("error_message", empty),
                frame.get("success", empty), frame.get("data", empty), strict=True):
            if not _missing(kind) or (not _missing(success) and not bool(success)):
                kind, message = _text(kind), _text(message)
                out.append(_clip(f"{kind}: {message}" if message else kind or "no result"))
            else:
                out.append("")
                shown.append((len(out) - 1, data))
        for (i, _), text in zip(shown, summaries([d for _, d in shown]), strict=True):
            out[i] = text
        return out


# (statistic, label, formatter), the headline first; statistics not listed follow, as numbers
_STATS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("makespan", "makespan", seconds),
    ("critical_path_seconds", "critical path length", seconds),
    ("critical_path", "critical path", _text),
    ("critical_path_tasks", "critical path tasks", _number),
    ("total_tasks", "tasks", _number),
    ("completed", "completed", _number),
    ("failed", "failed", _number),
    ("cancelled", "cancelled", _number),
    ("skipped", "skipped", _number),
    ("running", "running", _number),
    ("pending", "pending", _number),
    ("ready", "ready (queued for a worker)", _number),
    ("waiting_resources", "waiting for a resource", _number),
    ("waiting_retry", "waiting to retry", _number),
    ("retries", "retries", _number),
    ("throughput", "throughput", lambda v: "" if _missing(v) else f"{_number(float(v))} tasks/s"),
    ("worker_utilization", "worker utilisation",
     lambda v: "" if _missing(v) else f"{float(v) * 100:.0f} %"),
    ("max_workers", "workers", _number),
    ("total_execution_time", "task time, total", seconds),
    ("average_execution_time", "task time, average", seconds),
    ("wait_dependencies_total", "waited for dependencies", seconds),
    ("wait_resources_total", "waited for resources", seconds),
    ("wait_worker_total", "waited for a worker", seconds),
    ("cpu_time_total", "CPU time, total", seconds),
    ("cores_busy", "cores kept busy", lambda v: "" if _missing(v) else f"{float(v):.2f}"),
    ("peak_memory_max", "peak memory, largest attempt",
     _bytes),
    ("is_running", "engine running", _number),
)


class StatsFrame(_Summarised):
    """``stats_frame()`` (one row) displayed vertically: one statistic per row, with units."""

    _caption = "summary for display; the frame is stats_frame()'s one row"

    def summary(self) -> pd.DataFrame:
        frame = pd.DataFrame(self)
        row = frame.iloc[0] if len(frame) else pd.Series(dtype=object)
        labels, values, seen = [], [], set()
        for key, label, fmt in _STATS:
            if key in row.index:
                labels.append(label)
                values.append(fmt(row[key]))
                seen.add(key)
        for key in row.index:
            if key not in seen:
                value = row[key]
                labels.append(str(key).replace("_", " "))
                values.append(seconds(value) if str(key).endswith(("_seconds", "_time"))
                              else _number(value))
        return pd.DataFrame({"value": values}, index=pd.Index(labels, name="statistic"))


class BottlenecksFrame(_Summarised):
    """``bottlenecks()`` rounded, with the ``detail`` and ``cure`` texts whole."""

    _left = ("kind", "task", "resource", "detail", "cure")

    _caption = "summary for display; the frame holds seconds and shares as numbers"

    def summary(self) -> pd.DataFrame:
        frame = pd.DataFrame(self)
        out = pd.DataFrame(index=frame.index)
        for column in frame.columns:
            values = frame[column]
            if column == "seconds":
                out[column] = [seconds(v) for v in values]
            elif column == "share":
                out[column] = ["" if _missing(v) else f"{float(v) * 100:.0f} %" for v in values]
            else:
                out[column] = ["" if _missing(v) else str(v) for v in values]
        return out
