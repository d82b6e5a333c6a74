"""Charts and data summaries: ``create_bar_chart`` and ``process_large_dataset``.

Charts are drawn on a ``matplotlib.figure.Figure`` with the Agg canvas, never
through ``pyplot``: pyplot keeps global state and a GUI backend, which is unsafe
in the engine's worker threads. matplotlib and pandas are imported inside the
functions, so importing this module is cheap (and always with ``import``, which is
thread-safe, never by peeking at ``sys.modules``, which can hold a half-imported module).

``create_bar_chart`` charts ``data`` when it is chartable; otherwise (the guide
passes ``data="placeholder"``) it charts the numeric metrics of its upstream
results: the ``totals`` dict of each result that has one, else the result's
top-level numbers, labelled ``"<task>.<metric>"``.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import Any

__all__ = ["create_bar_chart", "process_large_dataset"]

DEFAULT_OUTPUT_DIR = "codo_outputs"
ACCEPTED = ("a dict of label -> number, a list of (label, number) pairs or a pandas Series, "
            "or leave data unchartable (e.g. 'placeholder') and depend on tasks whose results "
            "are dicts of numbers (or have a numeric 'totals' dict)")

Pairs = list[tuple[str, int | float]]


# -- bar chart ----------------------------------------------------------------------------
def create_bar_chart(data: Any = None, title: str = "",
                     output_dir: str | os.PathLike[str] | None = None,
                     upstream: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Draw ``data`` (or the upstream tasks' numeric metrics) as a bar chart saved to a PNG."""
    pairs, source = _chartable(data), "data"
    if pairs is None:
        pairs, source = _upstream_metrics(upstream or {}), "upstream"
    if not pairs:
        tasks = ", ".join(map(str, upstream)) if upstream else "none"
        raise ValueError(f"create_bar_chart: cannot chart data={_short(data)} "
                         f"({type(data).__name__}) and the upstream results (tasks: {tasks}) "
                         f"hold no numeric metrics. Pass {ACCEPTED}.")
    labels = [label for label, _ in pairs]
    values = [value for _, value in pairs]
    path = _output_path(output_dir, title)
    _draw(labels, values, title, path)
    return {"path": str(path), "title": title, "labels": labels, "values": values,
            "source": source}


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _plain(value: Any) -> int | float:
    """A JSON-able Python number (numpy scalars included)."""
    return int(value) if isinstance(value, Integral) else float(value)


def _chartable(data: Any) -> Pairs | None:
    """``data`` as (label, number) pairs, or ``None`` when it is not something to chart.

    pandas is imported with a plain ``import``, never looked up in ``sys.modules``: while
    another worker thread is importing pandas (e.g. ``process_large_dataset``), the entry in
    ``sys.modules`` is a partially initialised module without ``Series``; ``import`` waits on
    the import lock until that module is complete.
    """
    import pandas as pd

    if isinstance(data, pd.Series):
        data = dict(data.items())
    if isinstance(data, Mapping):
        if data and all(_is_number(v) for v in data.values()):
            return [(str(k), _plain(v)) for k, v in data.items()]
        return _metrics_of(data, prefix="") or None  # e.g. an analysis result itself
    if isinstance(data, list | tuple) and data and all(
            isinstance(item, list | tuple) and len(item) == 2 and _is_number(item[1])
            for item in data):
        return [(str(label), _plain(value)) for label, value in data]
    return None


def _metrics_of(result: Mapping[str, Any], prefix: str) -> Pairs:
    """The numbers of one result: its ``totals`` dict if it has one, else its top level."""
    totals = result.get("totals")
    metrics = totals if isinstance(totals, Mapping) else result
    return [(f"{prefix}{k}", _plain(v)) for k, v in metrics.items() if _is_number(v)]


def _upstream_metrics(upstream: Mapping[str, Any]) -> Pairs:
    pairs: Pairs = []
    for task, result in upstream.items():
        if isinstance(result, Mapping):
            pairs.extend(_metrics_of(result, prefix=f"{task}."))
    return pairs


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _output_path(output_dir: str | os.PathLike[str] | None, title: str) -> Path:
    """A fresh PNG path: ``<output_dir>/<title-slug>-<8 hex>.png`` (directory created)."""
    directory = Path(output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "bar-chart"
    return (directory / f"{slug}-{uuid.uuid4().hex[:8]}.png").resolve()


def _draw(labels: list[str], values: list[int | float], title: str, path: Path) -> None:
    """One bar chart; metrics of very different sizes get a panel (an axis) each instead."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if _spread(values):
        fig = _log_bars(Figure, labels, values, title)
    else:
        fig = Figure(figsize=(min(max(6.0, 0.6 * len(labels) + 2), 24), 4.8),
                     layout="constrained")
        ax = fig.add_subplot()
        bars = ax.bar(range(len(values)), values, color="#4c72b0")
        ax.bar_label(bars, labels=[_fmt(v) for v in values], fontsize=8, padding=2)
        crowded = len(labels) > 6 or max(map(len, labels)) > 8
        ax.set_xticks(range(len(labels)), labels, rotation=35 if crowded else 0,
                      ha="right" if crowded else "center", fontsize=9)
        ax.set_title(title)
        ax.spines[["top", "right"]].set_visible(False)
        ax.margins(y=0.1)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=100)


SPREAD = 20.0  # above this ratio of largest to smallest non-zero size, one axis flattens bars


def _spread(values: list[int | float]) -> bool:
    """True when one linear axis would reduce the small values to slivers (13,629 lines
    next to an average of 4.0)."""
    sizes = [abs(v) for v in values if v and math.isfinite(v)]
    return len(sizes) > 1 and max(sizes) > SPREAD * min(sizes)


def _log_bars(figure: Any, labels: list[str], values: list[int | float], title: str) -> Any:
    """Horizontal bars on a logarithmic axis, each labelled with its value, top to bottom in
    the given order. Zero or negative values need ``symlog`` (linear below the smallest size)."""
    fig = figure(figsize=(7.5, min(max(2.5, 0.42 * len(labels) + 1.2), 24)),
                 layout="constrained")
    ax = fig.add_subplot()
    rows = range(len(values))
    bars = ax.barh(rows, values, color="#4c72b0")
    ax.bar_label(bars, labels=[_fmt(v) for v in values], fontsize=8, padding=3)
    ax.set_yticks(rows, labels, fontsize=9)
    ax.invert_yaxis()
    if all(v > 0 for v in values if math.isfinite(v)):
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=min(abs(v) for v in values if v and math.isfinite(v)))
    ax.set_xlabel("log scale")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(x=0.15)
    return fig


def _fmt(value: int | float) -> str:
    if isinstance(value, int) or math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


# -- chunked CSV summary --------------------------------------------------------------------
def process_large_dataset(file: str | os.PathLike[str], chunksize: int = 100_000,
                          output_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Summarise a CSV too big for memory: rows, columns, nulls, and per numeric column
    count/mean/std/min/max, read ``chunksize`` rows at a time with pandas.

    A column counts as numeric only if every chunk parsed it as numbers (a text value
    anywhere turns it into a non-numeric column). With ``output_dir`` the summary is
    also written there as JSON (``summary_path``).
    """
    import pandas as pd

    path = Path(file).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"process_large_dataset: no CSV file at {os.fspath(file)!r} (looked in "
            f"{path.absolute()}); pass file= the path of an existing CSV file")
    if path.is_dir():
        raise IsADirectoryError(f"process_large_dataset: {os.fspath(file)!r} is a directory; "
                                "pass file= the path of a CSV file")
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"process_large_dataset: chunksize must be a whole number >= 1, "
                         f"got {chunksize!r}")

    columns: list[str] = []
    nulls: dict[str, int] = {}
    stats: dict[str, _Moments] = {}
    non_numeric: set[str] = set()
    rows = chunks = 0
    with pd.read_csv(path, chunksize=chunksize) as reader:
        for chunk in reader:
            chunks += 1
            rows += len(chunk)
            for name in chunk.columns:
                col, key = chunk[name], str(name)
                if key not in nulls:
                    columns.append(key)
                    nulls[key] = 0
                nulls[key] += int(col.isna().sum())
                if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                    stats.setdefault(key, _Moments()).add(col.dropna())
                elif col.notna().any():
                    non_numeric.add(key)
    numeric = {c: stats[c].summary() for c in columns if c in stats and c not in non_numeric}
    summary: dict[str, Any] = {
        "file": str(path.resolve()), "rows": rows, "columns": columns, "chunks": chunks,
        "numeric": numeric, "nulls": nulls,
        "totals": {"rows": rows, "columns": len(columns), "numeric_columns": len(numeric),
                   "null_cells": sum(nulls.values()), "chunks": chunks},
        "summary_path": None,
    }
    if output_dir is not None:
        directory = Path(output_dir).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        out = (directory / f"{path.stem}-summary-{uuid.uuid4().hex[:8]}.json").resolve()
        summary["summary_path"] = str(out)
        out.write_text(json.dumps(summary, indent=2, allow_nan=True), encoding="utf-8")
    return summary


class _Moments:
    """Count, mean, M2, min and max of a column, merged chunk by chunk (Chan et al.), so the
    mean and standard deviation match a single pass over the whole column."""

    __slots__ = ("n", "mean", "m2", "lo", "hi")

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.lo: int | float | None = None
        self.hi: int | float | None = None

    def add(self, values: Any) -> None:
        n = len(values)
        if n == 0:
            return
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        lo, hi = _plain(values.min()), _plain(values.max())
        total = self.n + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.n * n / total
        self.mean += delta * n / total
        self.n = total
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def summary(self) -> dict[str, Any]:
        return {"count": self.n, "mean": self.mean if self.n else None,
                "std": math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None,
                "min": self.lo, "max": self.hi}
