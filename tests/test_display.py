"""The display summaries of the magics' frames (notebook/display.py), without a shell."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from codomyrmex_nb.analysis.preview_frame import PreviewFrame
from codomyrmex_nb.notebook.display import (
    BottlenecksFrame,
    ResultsFrame,
    StatsFrame,
    seconds,
    summarize,
    unique_labels,
)


@pytest.mark.parametrize(("value", "expected"), [
    (None, "None"),
    (3, "3"),
    (np.float64(0.18), "0.18"),  # not np.float64(0.18)
    (np.int64(7), "7"),
    ("short", "'short'"),
    ([1, 2, 3], "[1, 2, 3]"),
    ({"a": 1}, "{'a': 1}"),
    (np.zeros((3, 4)), "ndarray (3, 4) float64"),
    (pd.DataFrame({"x": range(100), "y": 1.0}), "DataFrame 100×2 (x, y)"),
    (pd.DataFrame(), "DataFrame 0×0"),
    (pd.Series([1, 2], name="s"), "Series 's' of 2 int64"),
])
def test_summarize(value, expected):
    assert summarize(value) == expected


def test_summarize_long_values_in_one_short_line():
    assert summarize(list(range(50))) == "list of 50 items: [0, 1, 2, 3, ...]"
    assert summarize({i: i for i in range(10)}).startswith("dict of 10 keys: {0: 0, 1: 1")
    text = summarize("x" * 500)
    assert text.startswith("str of 500 chars: 'xxx") and len(text) <= 60
    wide = pd.DataFrame({f"column_{i}": [1] for i in range(8)})
    assert summarize(wide) == "DataFrame 1×8 (column_0, column_1, column_2, column_3, …)"
    assert "\n" not in summarize(type("Multi", (), {"__repr__": lambda self: "a\nb"})())


def test_summarize_survives_a_broken_repr():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    assert summarize(Broken()) == "<repr of Broken failed: RuntimeError: no>"
    assert summarize([Broken()]).startswith("[<Broken instance at")  # an item: a placeholder


@pytest.mark.parametrize(("value", "expected"), [
    (0.0, "0 s"), (0.0000123, "12 µs"), (0.0123, "12.3 ms"), (1.234, "1.23 s"),
    (125.0, "2 min 5 s"), (float("nan"), ""), (None, ""),
])
def test_seconds(value, expected):
    assert seconds(value) == expected


def test_unique_labels_suffix_only_clashing_names():
    assert unique_labels(["a", "b", "a"], ["1111aaaa", "2222", "1111bbbb"]) == [
        "a [1111aa]", "b", "a [1111bb]"]
    assert unique_labels(["a", "b"], ["1", "2"]) == ["a", "b"]


def _results() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["aaaa1111", "bbbb2222"], "name": ["load", "boom"],
        "state": ["completed", "failed"], "success": [True, False],
        "data": [pd.DataFrame({"x": range(5)}), None],
        "execution_time": [0.5, 0.002], "attempts": [1, 2],
        "error_type": [None, "KeyError"], "error_message": [None, "'k'"],
        "worker": ["w-1", "w-2"],
        "completed_at": pd.to_datetime([1.7e9, 1.7e9], unit="s", utc=True),
        "peak_memory": [2_500_000, np.nan],  # a column added later is shown too
    })


def test_results_summary():
    frame = ResultsFrame(_results())
    summary = frame.summary()
    assert list(summary.index) == ["load", "boom"] and summary.index.name == "name"
    assert list(summary.columns) == ["state", "result", "time", "memory", "attempts", "worker",
                                     "ended", "id"]
    assert list(summary["result"]) == ["DataFrame 5×1 (x)", "KeyError: 'k'"]
    assert list(summary["time"]) == ["500 ms", "2 ms"]
    assert list(summary["memory"]) == ["2.5 MB", ""]  # decimal, as memory_limit reads "2.5MB"
    assert frame["data"].iloc[0].shape == (5, 1)  # the objects stay in the frame
    assert "DataFrame 5×1 (x)" in repr(frame) and "DataFrame 5×1 (x)" in frame._repr_html_()


def test_summarised_frames_stay_dataframes_and_derive_plain_ones():
    frame = ResultsFrame(_results())
    assert isinstance(frame, pd.DataFrame)
    for derived in (frame[["name"]], frame.copy(), frame.head(1), frame.set_index("name")):
        assert type(derived) is PreviewFrame  # pandas' display, result objects bounded
    assert type(frame.to_pandas()) is pd.DataFrame
    again = pickle.loads(pickle.dumps(frame))
    assert type(again) is ResultsFrame and list(again["name"]) == ["load", "boom"]


def test_empty_results():
    empty = ResultsFrame(_results().iloc[0:0])
    assert len(empty.summary()) == 0
    assert "result" in repr(empty)


def test_stats_summary_is_vertical_with_units():
    stats = StatsFrame(pd.DataFrame([{
        "total_tasks": 4, "completed": 3, "failed": 1, "makespan": 12.3456,
        "throughput": 0.3241, "worker_utilization": 0.876, "critical_path_seconds": 10.0,
        "critical_path": "a -> b -> c", "is_running": np.bool_(False), "new_count": 5,
    }]))
    summary = stats.summary()
    assert list(summary.index[:3]) == ["makespan", "critical path length", "critical path"]
    values = dict(zip(summary.index, summary["value"], strict=True))
    assert values["makespan"] == "12.35 s" and values["critical path"] == "a -> b -> c"
    assert values["throughput"] == "0.324 tasks/s" and values["worker utilisation"] == "88 %"
    assert values["engine running"] == "no" and values["new count"] == "5"


def test_bottlenecks_detail_whole_and_rounded():
    detail = "waited for file:shared.db (held by unit_test_with_a_rather_long_name_1, unit_test_2)"
    frame = BottlenecksFrame(pd.DataFrame({
        "kind": ["resource_wait"], "task": ["unit_test_with_a_rather_long_name_2"],
        "resource": ["file:shared.db"], "seconds": [0.0512345], "share": [0.4567],
        "detail": [detail]}))
    with pd.option_context("display.max_colwidth", 20):  # the user's options do not cut it
        text, html = repr(frame), frame._repr_html_()
    assert detail in text and detail in html
    assert "51.2 ms" in text and "46 %" in text
