"""timeline(): one countable bar per attempt, coloured by outcome, critical path outlined."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from codomyrmex_nb import ResourceType, TaskResource
from codomyrmex_nb.analysis._common import critical_steps
from codomyrmex_nb.analysis.timeline import MIN_WIDTH, attempt_bars, cpu_strips, short_markers
from codomyrmex_nb.palette import fill


def flaky(failures: int):
    calls = {"n": 0}

    def body() -> int:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ConnectionError("try again")
        return calls["n"]
    return body


def workflow(orch) -> None:
    """Dependencies, a retried failure, a failure for good and a shared exclusive resource."""
    gate = threading.Event()
    db = [TaskResource(ResourceType.CUSTOM, "db", mode="exclusive")]
    a = orch.create_task("a", func=lambda: gate.wait(0.1))
    b = orch.create_task("b", func=flaky(1), dependencies=[a], max_retries=1, retry_delay=0.2,
                         resources=db)
    orch.create_task("c", func=lambda: gate.wait(0.05), dependencies=[a], resources=db)
    orch.create_task("doomed", func=flaky(9), max_retries=2)
    orch.create_task("d", func=lambda: 0, dependencies=[b])
    orch.start_execution()
    orch.wait_for_completion(30)
    orch.stop_execution()


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_empty_orchestrator_says_no_attempts(orch):
    fig = orch.timeline()
    assert isinstance(fig, Figure)
    assert "no attempts yet" in texts(fig)
    assert attempt_bars(fig) == []


def test_one_bar_per_attempt_coloured_by_outcome(orch):
    workflow(orch)
    snap = orch.snapshot()
    fig = orch.timeline()
    bars = attempt_bars(fig)
    attempts = {(v.id, a.number): a for v in snap.tasks for a in v.attempts}
    assert len(bars) == len(attempts) == 8  # a, b x2, c, doomed x3, d
    by_gid = {bar.get_gid(): bar for bar in bars}
    assert len(by_gid) == len(bars)
    for (task_id, number), attempt in attempts.items():
        bar = by_gid[f"attempt:{task_id}:{number}"]
        state = "completed" if attempt.outcome == "completed" else "failed"
        assert bar.get_facecolor() == to_rgba(fill(state))
        assert bar.get_width() > 0
        assert bool(bar.get_hatch()) == (number > 1)  # retries are hatched


def test_critical_path_is_outlined_and_lanes_are_workers(orch):
    workflow(orch)
    snap = orch.snapshot()
    names = {v.id: v.name for v in snap.tasks}
    fig = orch.timeline()
    ax = fig.axes[0]
    thick = {names[b.get_gid().split(":")[1]] for b in attempt_bars(fig) if b.get_linewidth() > 1.5}
    # b's retry delay (0.2 s) makes a -> b -> d longer than a -> c (0.05 s)
    assert thick == {v.name for v, _ in critical_steps(snap)} == {"a", "b", "d"}
    workers = {a.worker for v in snap.tasks for a in v.attempts}
    assert len(ax.get_yticks()) == len(workers)
    assert all(label.get_text().startswith("worker") for label in ax.get_yticklabels())
    assert any(c.get_gid() == "retry-waits" for c in ax.collections)  # retry gaps drawn


def test_running_and_timed_out_attempts(orch):
    started, release = threading.Event(), threading.Event()

    def hold() -> str:
        started.set()
        release.wait(30)
        return "done"

    def slow() -> None:
        for _ in range(500):  # short waits, so the timeout's interrupt lands quickly
            threading.Event().wait(0.01)

    orch.create_task("hold", func=hold)
    orch.create_task("slow", func=slow, timeout=0.2)
    orch.start_execution()
    assert started.wait(10)
    running = attempt_bars(orch.timeline())
    release.set()
    orch.wait_for_completion(30)
    orch.stop_execution()
    assert any(b.get_facecolor() == to_rgba(fill("running")) for b in running)
    snap = orch.snapshot()
    slow_view = next(v for v in snap.tasks if v.name == "slow")
    assert [a.outcome for a in slow_view.attempts] == ["timeout"]
    bar = next(b for b in attempt_bars(orch.timeline()) if slow_view.id in b.get_gid())
    assert bar.get_facecolor() == to_rgba(fill("failed"))


def test_draws_into_given_axes_and_renders_png(orch):
    workflow(orch)
    host = Figure()
    ax = host.add_subplot()
    assert orch.timeline(ax=ax) is host
    assert len(attempt_bars(ax)) == 8
    png = orch.timeline()._repr_png_()
    assert png.startswith(b"\x89PNG")
    assert any("a" == t.split()[-1] for t in texts(orch.timeline()))  # labels in the bars


def test_no_pyplot_and_lazy_imports():
    code = (
        "import sys, codomyrmex_nb\n"
        "assert 'pandas' not in sys.modules and 'matplotlib' not in sys.modules\n"
        "o = codomyrmex_nb.TaskOrchestrator(max_workers=1)\n"
        "o.create_task('x', func=lambda: 1); o.start_execution(); o.wait_for_completion(30)\n"
        "o.stop_execution(); o.timeline()._repr_png_()\n"
        "assert 'matplotlib.pyplot' not in sys.modules and 'pandas' not in sys.modules\n"
        "o.tasks_frame()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def legend_texts(fig: Figure) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def test_cpu_strip_shows_busy_against_waiting(make_orch):
    orch = make_orch(1)
    orch.create_task("busy", func=burn, parameters={"seconds": 0.3})
    orch.create_task("idle", func=lambda: threading.Event().wait(0.3))
    orch.start_execution()
    orch.wait_for_completion(30)
    orch.stop_execution()
    snap = orch.snapshot()
    ids = {v.name: v.id for v in snap.tasks}
    fig = orch.timeline()
    bars = {b.get_gid().split(":", 1)[1]: b for b in attempt_bars(fig)}
    strips = {s.get_gid().split(":", 1)[1]: s for s in cpu_strips(fig)}
    assert set(strips) == set(bars)
    attempts = {f"{v.id}:{a.number}": a for v in snap.tasks for a in v.attempts}
    for key, strip in strips.items():  # each strip is its attempt's CPU/wall of the bar
        a = attempts[key]
        share = min(1.0, a.cpu_time / (a.ended_at - a.started_at))
        assert strip.get_width() == pytest.approx(share * bars[key].get_width(), rel=1e-6)
        assert strip.get_x() == bars[key].get_x()
    busy, idle = f"{ids['busy']}:1", f"{ids['idle']}:1"
    assert strips[idle].get_width() < 0.1 * bars[idle].get_width()  # it slept
    assert strips[busy].get_width() > 3 * strips[idle].get_width()  # however busy the box
    assert "CPU time (strip length: CPU/wall)" in legend_texts(fig)


def test_short_failed_attempts_stay_visible_and_are_marked(make_orch):
    orch = make_orch(1)
    orch.create_task("long", func=lambda: threading.Event().wait(1.0), priority="high")
    bad = orch.create_task("blip", func=flaky(9), max_retries=1)
    orch.start_execution()
    orch.wait_for_completion(30)
    orch.stop_execution()
    fig = orch.timeline()
    ax = fig.axes[0]
    span = ax.get_xlim()[1] - ax.get_xlim()[0]
    blips = [b for b in attempt_bars(fig) if bad.id in b.get_gid()]
    assert len(blips) == 2
    assert all(b.get_width() >= MIN_WIDTH * span * 0.999 for b in blips)
    markers = {m.get_gid() for m in short_markers(fig)}
    assert markers == {f"short:{bad.id}:1", f"short:{bad.id}:2"}
    texts = legend_texts(fig)
    assert "short attempt (drawn wider)" in texts
    assert any("failed" in t for t in texts)
    long_bar = next(b for b in attempt_bars(fig) if bad.id not in b.get_gid())
    assert long_bar.get_width() > 0.5 * span
    assert not any(m.startswith(f"short:{long_bar.get_gid().split(':')[1]}") for m in markers)


def test_many_task_attempts_are_capped_keeping_the_critical_path_and_failures(orch, monkeypatch):
    # 50,000 tasks took minutes and gigabytes to draw: like items, task attempts are capped,
    # and what a reader looks for (the critical path, failures, retries) is kept
    from codomyrmex_nb.analysis import timeline as timeline_mod

    monkeypatch.setattr(timeline_mod, "MAX_TASK_BARS", 4)
    gate = threading.Event()
    first = orch.create_task("first", func=lambda: gate.wait(0.1))
    orch.create_task("second", func=lambda: gate.wait(0.1), dependencies=[first])
    orch.create_task("broken", func=flaky(9))
    for i in range(6):
        orch.create_task(f"quick{i}", func=lambda: 0)
    orch.start_execution()
    orch.wait_for_completion(30)
    orch.stop_execution()
    fig = orch.timeline()
    names = {orch.get_task(bar.get_gid().split(":")[1]).name for bar in attempt_bars(fig)}
    assert len(attempt_bars(fig)) == 4
    assert {"first", "second", "broken"} <= names
    assert "5 shorter task attempts not drawn" in fig.axes[0].get_title(loc="left")
    assert fig._repr_png_().startswith(b"\x89PNG")
