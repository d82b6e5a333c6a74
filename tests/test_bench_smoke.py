"""The benchmark suite runs end to end at a tiny size and writes well-formed results.

Shape and sanity only: no speed thresholds (figures from a shared test box
mean nothing). The suite runs in a subprocess, as ``make bench`` runs it,
writing to a temporary results file and a temporary copy of the README, so the
committed figures are never touched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
PARTS = ("overhead", "quality", "memory", "view", "executors", "journal", "fingerprint", "map")
TINY = ["--quick", "--sizes", "50", "--repeat", "1", "--seeds", "2", "--memory-tasks", "300",
        "--pipeline-tasks", "4", "--pipeline-mb", "1", "--pipeline-budget-mb", "2",
        "--view-tasks", "100", "--view-rounds", "1", "--cpu-seconds", "0.05",
        "--journal-tasks", "200", "--journal-rounds", "1", "--fingerprint-tasks", "30",
        "--fingerprint-rounds", "1", "--map-items", "300", "--map-rounds", "1"]


def _committed() -> dict[str, bytes | None]:
    return {name: (BENCH / name).read_bytes() if (BENCH / name).exists() else None
            for name in ("results.json", "README.md")}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    readme = tmp / "README.md"
    shutil.copy(BENCH / "README.md", readme)
    before = _committed()
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), *TINY, "--out", str(tmp / "results.json"),
         "--readme", str(readme)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert _committed() == before, "the smoke run changed the committed figures"
    return json.loads((tmp / "results.json").read_text()), readme.read_text(), proc.stdout


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_every_part_is_written_with_its_meta(suite):
    results, _, stdout = suite
    assert set(results) == set(PARTS)
    for name in PARTS:
        meta = results[name]["meta"]
        assert positive(meta["seconds"]) and meta["python"] and meta["dask"]
        assert f"## {name}" in stdout


def test_overhead_has_every_case_and_side(suite):
    rows = suite[0]["overhead"]["rows"]
    cases = {(r["tasks"], r["shape"], r["workers"]) for r in rows}
    assert cases == {(50, s, w) for s in ("independent", "chain", "layered") for w in (4, 2)}
    for row in rows:
        for side in ("floor", "dask", "ours_create_task", "ours_add_tasks"):
            assert positive(row[f"{side}_us"]) and row[f"{side}_repeats"] == 1
        for ratio in ("create_task_vs_dask", "add_tasks_vs_dask", "create_task_vs_floor",
                      "add_tasks_vs_floor"):
            assert positive(row[ratio])


def test_quality_ratios_respect_the_lower_bound(suite):
    quality = suite[0]["quality"]
    assert [r["seed"] for r in quality["rows"]] == [101, 202]
    for row in quality["rows"]:
        assert 30 <= row["tasks"] <= 60
        # No schedule beats the bound (sleeps never end early): this checks the bound's maths.
        assert row["ours_s"] >= row["lower_bound_s"] and row["dask_s"] >= row["lower_bound_s"]
    summary = quality["summary"]
    assert summary["dags"] == 2 and summary["worst_seed"] in (101, 202)
    assert all(positive(summary[k]) for k in ("ours_mean_ratio", "ours_max_ratio",
                                              "dask_mean_ratio", "worst_ours_vs_dask"))


def test_memory_is_counted_per_task(suite):
    memory = suite[0]["memory"]
    assert memory["tasks"] == 300
    assert positive(memory["pending_bytes_per_task"])
    assert positive(memory["finished_bytes_per_task"])
    assert positive(memory["stats_ms"]) and positive(memory["tasks_frame_s"])


def test_memory_measures_the_pipeline_with_and_without_a_budget(suite):
    results, readme, _ = suite
    run = results["memory"]["pipeline"]
    assert (run["tasks"], run["mb"], run["budget_mb"]) == (4, 1, 2)
    for side in ("with_budget", "without"):
        assert run[side]["ok"] and run[side]["all_equal"]
        assert positive(run[side]["peak_above_mb"]) and positive(run[side]["seconds"])
    assert run["with_budget"]["drops"] >= 1 and run["without"]["drops"] == 0
    assert "| 2 MiB |" in readme and "| none |" in readme


def test_view_reports_every_mode(suite):
    view = suite[0]["view"]
    for work in ("no-op", "1 ms sleep"):
        modes = view[work]
        assert modes["without"]["kept"] == 1.0
        for name, values in modes.items():
            assert positive(values["tasks_per_s"]) and positive(values["kept"])
            assert (values["frames_per_s"] is None) == (not name.startswith("view"))


def test_executors_ran_and_left_no_process(suite):
    executors = suite[0]["executors"]
    rows = executors["rows"]
    assert list(rows) == ["serial", "threads", "processes", "dask", "dask, address="]
    assert all(positive(r["wall_s"]) and positive(r["speedup"]) for r in rows.values())
    assert all(r["startup_s"] >= 0 for r in rows.values())
    assert all(len(rows[name]["spans_s"]) == 6 for name in list(rows)[1:])
    assert len(executors["cluster_pids"]) >= 3  # a scheduler and two workers, at least
    assert executors["cluster_left_running"] == []
    assert not [p for p in executors["cluster_pids"] if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_fingerprint_reports_the_cost_per_task_of_each_run(suite):
    fingerprint = suite[0]["fingerprint"]
    assert (fingerprint["tasks"], fingerprint["list_size"]) == (30, 100_000)
    for key in ("off_us_per_task", "first_us_per_task", "cached_us_per_task", "fingerprint_us",
                "off_cpu_us_per_task", "first_cpu_us_per_task", "cached_cpu_us_per_task"):
        assert positive(fingerprint[key])


def test_map_times_every_side_and_counts_pending_items(suite):
    results, readme, _ = suite
    mapped = results["map"]
    assert (mapped["items"], mapped["rounds"]) == (300, 1)
    for side in ("dask", "map", "map_journal_off", "plain"):
        assert positive(mapped[f"{side}_us"]) and positive(mapped[f"{side}_cpu_us"])
    for side in ("map", "map_journal_off", "plain"):
        assert positive(mapped[f"{side}_vs_dask"]) and positive(mapped[f"{side}_cpu_vs_dask"])
    assert positive(mapped["pending_bytes_per_item"])
    assert "one mapped task (shipped defaults)" in readme


def test_readme_tables_between_markers_and_prose_kept(suite):
    _, readme, _ = suite
    original = (BENCH / "README.md").read_text()
    for name in PARTS:
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        assert readme.count(start) == 1 and readme.count(end) == 1
        assert "|" in readme[readme.index(start):readme.index(end)]
    first = original.find("<!-- bench:")
    if first > 0:
        assert readme[:first] == original[:first]
