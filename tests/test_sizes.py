"""One unit for every size the package prints: decimal MB (10**6 bytes), as ``memory_limit``
reads "500MB". The journal's line, its size-bound warning, the inspector, the frames'
displays and the logs view all say the same thing about the same number of bytes."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings

import pandas as pd
import pytest

from codomyrmex_nb.core.journal import Journal, JournalWarning
from codomyrmex_nb.core.memory_budget import parse_limit
from codomyrmex_nb.core.sizes import size_text
from codomyrmex_nb.notebook.display import ResultsFrame, StatsFrame
from codomyrmex_nb.notebook.inspector import detail_html
from codomyrmex_nb.notebook.logs_view import logs_text

PEAK = 2_500_000  # 2.5 MB decimal; 2.4 MiB: the two conventions print differently


@pytest.mark.parametrize(("count", "text"), [
    (0, "0 bytes"), (512, "512 bytes"), (999, "999 bytes"), (1000, "1 KB"),
    (300_000, "300 KB"), (999_990, "1 MB"), (PEAK, "2.5 MB"), (30 * 10**6, "30 MB"),
    (4.2e9, "4.2 GB"), (1.5e13, "15 TB")])
def test_size_text_is_decimal(count, text):
    assert size_text(count) == text


@pytest.mark.parametrize("given", ["500MB", "4GB", "1.5GB", "300KB", "2.5MB"])
def test_a_limit_prints_as_it_was_given(given):
    number, unit = given[:-2], given[-2:]
    assert size_text(parse_limit(given)) == f"{number} {unit}"


def _add_run(journal: Journal, n: int, size: int) -> int:
    run = journal.begin_run()
    journal.define(run, "t", "t", f"fp{n}")
    journal.result(run, "t", "t", f"fp{n}", os.urandom(size), None, time.time())
    journal.end_run(run)
    assert journal.flush(10)
    return run


def test_the_journal_line_and_a_removal_count_in_decimal_mb(make_journal):
    journal = make_journal()
    _add_run(journal, 0, PEAK)
    assert "1 cached result (2.5 MB)" in journal.info().summary()
    assert "(2.5 MB of data)" in journal.clear_cache().summary()


def test_the_size_bound_warning_counts_in_decimal_mb(make_journal):
    journal = make_journal(max_bytes=2_000_000, vacuum_interval=0.0)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for n in range(2):
            journal.pinned.add((_add_run(journal, n, 1_500_000), f"fp{n}"))
    over = [str(w.message) for w in said if issubclass(w.category, JournalWarning)
            and "over its bound" in str(w.message)]
    assert over and "over its bound of 2 MB" in over[0], over


def _snapshot_with_peak(orch):
    task = orch.create_task("load", func=lambda: 1)
    orch.start_execution()
    assert orch.wait_for_completion(30)
    snap = orch.snapshot()
    view = snap.by_id()[task.id]._replace(peak_memory=PEAK)
    return dataclasses.replace(snap, tasks=(view,)), task


def test_the_inspector_and_the_logs_view_say_decimal_mb(orch):
    snap, task = _snapshot_with_peak(orch)
    html = detail_html(snap, task.id)
    assert "2.5 MB" in html and "MiB" not in html
    assert "peak memory 2.5 MB" in logs_text(snap, "load")


def test_the_frames_show_peak_memory_in_decimal_mb():
    results = ResultsFrame(pd.DataFrame({"name": ["load"], "id": ["t1"], "state": ["completed"],
                                         "peak_memory": [PEAK]}))
    assert list(results.summary()["memory"]) == ["2.5 MB"]
    stats = StatsFrame(pd.DataFrame({"peak_memory_max": [PEAK]}))
    assert "2.5 MB" in repr(stats)
