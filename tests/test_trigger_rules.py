"""Trigger rules: the pure decision (a truth table per rule), then real tasks on the engine.

The truth table is checked against Airflow's documented meaning of each rule, written
here as predicates over the final outcomes, and against what is knowable early: a rule
fires before every upstream task ended only if it is a ``one_*`` rule and no later
outcome could change that, and it is refused early only when no later outcome could
make it fire.
"""

from __future__ import annotations

import itertools
import pickle
import threading
import time

import pytest
from conftest import fresh_ip, wait_until_status

from codomyrmex_nb import NoResult, NotNeededError, Task, TaskStatus, UpstreamFailedError
from codomyrmex_nb.core import trigger_rules as tr
from codomyrmex_nb.core.scheduler import Scheduler

S = TaskStatus
OUTCOMES = ("success", "failed", "upstream_failed", "skipped")  # skipped: not needed
FIRE, WAIT, UF, NN = tr.FIRE, tr.WAIT, tr.UPSTREAM_FAILED, tr.NOT_NEEDED


def verdict(rule: str, outcomes: tuple[str, ...], pending: int = 0) -> str:
    counts = [outcomes.count(o) for o in OUTCOMES]
    return tr.decide(rule, len(outcomes) + pending, *counts)


# Airflow's meaning of each rule once every upstream task ended: does it fire?
FIRES = {
    "all_success": lambda o: all(x == "success" for x in o),
    "all_failed": lambda o: all(x in ("failed", "upstream_failed") for x in o),
    "all_done": lambda o: True,
    "all_done_min_one_success": lambda o: "skipped" not in o and "success" in o,
    "all_skipped": lambda o: all(x == "skipped" for x in o),
    "one_success": lambda o: "success" in o,
    "one_failed": lambda o: "failed" in o or "upstream_failed" in o,
    "one_done": lambda o: "success" in o or "failed" in o,
    "none_failed": lambda o: all(x in ("success", "skipped") for x in o),
    "none_failed_min_one_success": lambda o: all(x in ("success", "skipped") for x in o)
    and "success" in o,
    "none_skipped": lambda o: "skipped" not in o,
    "always": lambda o: True,
}

# ... and when it does not: is the task upstream_failed (a failure above it) or not needed?
KIND = {
    "all_success": lambda o: UF if ("failed" in o or "upstream_failed" in o) else NN,
    "one_success": lambda o: NN if all(x == "skipped" for x in o) else UF,
    "none_failed": lambda o: UF,
    "none_failed_min_one_success": lambda o: UF if ("failed" in o or "upstream_failed" in o)
    else NN,
    "all_done_min_one_success": lambda o: NN if "skipped" in o else UF,
}


def test_every_rule_has_a_meaning_and_airflows_names():
    assert set(tr.RULES) == set(FIRES) == set(tr.MEANING)
    assert tr.DEFAULT == "all_success"


@pytest.mark.parametrize("rule", tr.RULES)
def test_truth_table_once_every_upstream_ended(rule):
    for n in (1, 2, 3):
        for outcomes in itertools.product(OUTCOMES, repeat=n):
            got = verdict(rule, outcomes)
            if FIRES[rule](outcomes):
                assert got == FIRE, (rule, outcomes, got)
            else:
                assert got == KIND.get(rule, lambda o: NN)(outcomes), (rule, outcomes, got)


@pytest.mark.parametrize("rule", tr.RULES)
def test_a_rule_is_decided_early_only_when_no_later_outcome_could_change_it(rule):
    for n in (1, 2, 3):
        for ended in range(n):  # at least one upstream task has not ended
            for known in itertools.product(OUTCOMES, repeat=ended):
                futures = [known + rest for rest in itertools.product(OUTCOMES, repeat=n - ended)]
                could_fire = any(FIRES[rule](f) for f in futures)
                got = verdict(rule, known, pending=n - ended)
                if got == FIRE:
                    assert rule.startswith("one_"), (rule, known)
                    assert all(FIRES[rule](f) for f in futures), (rule, known)
                elif got == WAIT:
                    assert could_fire, (rule, known)
                else:
                    assert not could_fire, (rule, known)


@pytest.mark.parametrize("rule", tr.RULES)
def test_a_task_without_upstream_always_fires(rule):
    assert tr.decide(rule, 0, 0, 0, 0, 0) == FIRE


@pytest.mark.parametrize(("rule", "outcomes", "expected"), [
    ("all_done", ("upstream_failed", "success"), FIRE),  # upstream_failed counts as done
    ("none_failed", ("upstream_failed", "success"), UF),  # ... and as a failure here
    ("none_failed", ("skipped", "success"), FIRE),
    ("all_skipped", ("upstream_failed", "skipped"), NN),
    ("all_failed", ("upstream_failed", "failed"), FIRE),
    ("one_done", ("upstream_failed", "skipped"), NN),  # neither succeeded nor failed itself
    ("none_skipped", ("failed", "upstream_failed"), FIRE),
    ("all_done_min_one_success", ("success", "skipped"), NN),
])
def test_named_rows_of_the_table(rule, outcomes, expected):
    assert verdict(rule, outcomes) == expected


def test_always_waits_for_every_upstream_task_here():
    assert verdict("always", ("failed",), pending=1) == WAIT
    assert verdict("always", ("failed", "skipped")) == FIRE


def test_an_unknown_rule_is_refused_with_the_valid_ones_and_a_close_match():
    with pytest.raises(ValueError, match=r"unknown trigger rule 'one_fail' \(did you mean "
                       r"'one_failed'\?\): use one of all_success, .*always"):
        Task(name="x", func=print, trigger_rule="one_fail")
    with pytest.raises(ValueError, match="unknown trigger rule 3"):
        Task(name="x", func=print, trigger_rule=3)
    assert Task(name="x", func=print, trigger_rule="ALL-DONE").trigger_rule == "all_done"


def test_the_rule_round_trips_and_is_a_definition_field(orch):
    task = Task(name="cleanup", func=print, trigger_rule="all_done")
    again = Task.from_dict(task.to_dict())
    assert again.trigger_rule == "all_done"
    assert Task.from_dict({k: v for k, v in Task(name="x").to_dict().items()
                           if k != "trigger_rule"}).trigger_rule == "all_success"
    a = orch.create_task("a", func=lambda: 1)
    b = orch.create_task("b", func=lambda: 2, dependencies=[a])
    orch.redefine(b, trigger_rule="one_failed")
    assert b.trigger_rule == "one_failed"
    with pytest.raises(ValueError, match="unknown trigger rule"):
        orch.redefine(b, trigger_rule="nope")
    assert b.trigger_rule == "one_failed"


def test_no_result_says_what_happened_and_is_false():
    missing = NoResult("extract", "failed", "bad row")
    assert not missing
    assert repr(missing) == "NoResult('extract', state='failed', error='bad row')"
    assert pickle.loads(pickle.dumps(missing)) == missing
    with pytest.raises(AttributeError, match=r"'shape': upstream task 'extract' has no result "
                       r"\(failed: bad row\)"):
        missing.shape  # noqa: B018


# -- the engine ---------------------------------------------------------------------------------
def boom():
    raise ValueError("bad row")


def test_a_cleanup_with_all_done_runs_after_a_failure_and_sees_no_result(orch):
    seen = {}
    extract = orch.create_task("extract", func=boom)
    load = orch.create_task("load", func=lambda: 1, dependencies=[extract])
    ok = orch.create_task("ok", func=lambda: 7)
    cleanup = orch.create_task("cleanup", func=lambda upstream: seen.update(upstream) or "clean",
                               dependencies=[extract, load, ok], trigger_rule="all_done")
    orch.start_execution()
    assert orch.wait_for_completion(10) is False  # extract failed: the run did not go well
    assert cleanup.status is S.COMPLETED and cleanup.result.data == "clean"
    assert seen["ok"] == 7
    assert seen["extract"] == NoResult("extract", "failed", "bad row")
    assert seen["load"].state == "upstream_failed" and "extract" in seen["load"].error


def test_an_alert_with_one_failed_fires_while_another_upstream_still_runs(orch):
    gate = threading.Event()
    seen = {}
    slow = orch.create_task("slow", func=lambda: gate.wait(10) and "slow done")
    bad = orch.create_task("bad", func=boom)
    alert = orch.create_task("alert", func=lambda upstream: seen.update(upstream),
                             dependencies=[slow, bad], trigger_rule="one_failed")
    orch.start_execution()
    try:
        assert wait_until_status(orch, alert, S.COMPLETED)
        assert slow.status is S.RUNNING  # fired early
        assert seen["slow"] == NoResult("slow", "running")
        assert seen["bad"].state == "failed"
    finally:
        gate.set()
    orch.wait_for_completion(10)
    assert alert.status is S.COMPLETED and len(alert.attempts) == 1  # ran once


def starts_after_the_failure(events, failed: str, alert: str) -> tuple[list[str], bool]:
    """The tasks and items that started after ``failed`` failed and before ``alert`` started,
    and whether ``alert`` started at all."""
    between, seen_failure = [], False
    for e in events:  # delivered in the order they happened
        if e.name == failed and e.status is S.FAILED:
            seen_failure = True
        elif seen_failure and e.status is S.RUNNING:
            if e.name == alert:
                return between, True
            between.append(e.name)
    return between, False


def test_an_alert_starts_at_the_next_free_worker_ahead_of_a_maps_queued_items(orch):
    events = []
    orch.subscribe(events.append)
    load = orch.create_task("load", func=boom)  # fails at once, while the map's items queue
    orch.create_task("rows", func=lambda item: time.sleep(0.02), map=list(range(150)))
    orch.create_task("alert", func=lambda: "paged", dependencies=[load],
                     trigger_rule="one_failed")
    orch.start_execution()
    orch.wait_for_completion(30)
    orch.flush_events(10)
    between, started = starts_after_the_failure(events, "load", "alert")
    assert started
    # the worker 'load' failed on takes the alert next; the other may be taking an item
    assert len(between) <= 1, f"{len(between)} map items started before the alert"
    frame = orch.tasks_frame().set_index("name")
    assert frame.loc["alert", "priority"] == "normal"  # its place in the queue, not its priority


def test_a_higher_priority_still_goes_ahead_of_an_alert(orch):
    events = []
    orch.subscribe(events.append)
    rows_began = threading.Event()

    def load_after_rows_began():  # the map's items are queued (ahead) when the alert fires
        rows_began.wait(10)
        boom()

    def row(item):
        rows_began.set()
        time.sleep(0.005)

    load = orch.create_task("load", func=load_after_rows_began, priority="high")
    orch.create_task("rows", func=row, map=list(range(20)), priority="high")
    orch.create_task("alert", func=lambda: "paged", dependencies=[load],
                     trigger_rule="one_failed")  # normal priority
    orch.start_execution()
    orch.wait_for_completion(30)
    orch.flush_events(10)
    starts = [e.name for e in events if e.status is S.RUNNING]
    assert "alert" in starts
    # every item of the higher-priority map started before the alert, whenever load failed
    # (items a worker takes in a batch start as they are taken: before or after the failure)
    assert sorted(n for n in starts[:starts.index("alert")] if n.startswith("rows[")) \
        == sorted(f"rows[{i}]" for i in range(20))


def test_an_alert_not_needed_is_skipped_and_the_run_still_went_well(orch):
    calls = []
    a = orch.create_task("a", func=lambda: 1)
    b = orch.create_task("b", func=lambda: 2)
    alert = orch.create_task("alert", func=lambda: calls.append(1), dependencies=[a, b],
                             trigger_rule="one_failed")
    after = orch.create_task("after_alert", func=lambda: calls.append(2), dependencies=[alert])
    seen = []
    orch.subscribe(lambda e: e.name == "alert" and e.status is S.SKIPPED and seen.append(e))
    orch.start_execution()
    assert orch.wait_for_completion(10) is True
    assert calls == []
    assert alert.status is S.SKIPPED and isinstance(alert.result.exception, NotNeededError)
    assert alert.result.error_message.startswith("not needed: trigger rule one_failed did not "
                                                 "fire (2 succeeded of 2;")
    assert after.status is S.SKIPPED and after.result.error_type == "NotNeededError"
    orch.flush_events(5)
    assert seen and seen[0].detail.startswith("not needed: trigger rule one_failed")
    frame = orch.tasks_frame().set_index("name")
    assert frame.loc["alert", "state"] == "skipped"  # not needed
    assert frame.loc["alert", "trigger_rule"] == "one_failed"
    assert frame.loc["a", "trigger_rule"] == "all_success"


def test_upstream_failed_and_not_needed_stay_apart(orch):
    bad = orch.create_task("bad", func=boom)
    plain = orch.create_task("plain", func=lambda: 1, dependencies=[bad])
    strict = orch.create_task("strict", func=lambda: 1, dependencies=[bad],
                              trigger_rule="none_failed")
    orch.start_execution()
    assert orch.wait_for_completion(10) is False
    frame = orch.tasks_frame().set_index("name")
    assert plain.result.error_type == "UpstreamFailedError"
    assert frame.loc["plain", "state"] == "upstream_failed"
    assert frame.loc["strict", "state"] == "upstream_failed"
    assert isinstance(strict.result.exception, UpstreamFailedError)
    assert strict.result.error_message.startswith(
        "upstream failed: 'bad': trigger rule none_failed did not fire (1 failed of 1;")
    assert strict.result.metadata["root_cause"] == "bad"


def test_a_join_after_a_branch_not_taken_runs_with_none_failed_min_one_success(orch):
    ran = []
    a = orch.create_task("a", func=lambda: 1)
    took = orch.create_task("took", func=lambda: "yes", dependencies=[a])
    not_taken = orch.create_task("not_taken", func=lambda: ran.append("nt"), dependencies=[a],
                                 trigger_rule="one_failed")
    join = orch.create_task("join", func=lambda upstream: ran.append(dict(upstream)),
                            dependencies=[took, not_taken],
                            trigger_rule="none_failed_min_one_success")
    orch.start_execution()
    assert orch.wait_for_completion(10) is True
    assert join.status is S.COMPLETED
    assert ran == [{"took": "yes", "not_taken": NoResult(
        "not_taken", "skipped", not_taken.result.error_message)}]


def test_an_output_placeholder_of_a_failed_task_is_a_no_result(orch):
    got = []
    bad = orch.create_task("bad", func=boom)
    orch.create_task("report", func=lambda value: got.append(value),
                     parameters={"value": bad.output}, trigger_rule="all_done")
    orch.start_execution()
    orch.wait_for_completion(10)
    assert got == [NoResult("bad", "failed", "bad row")]


def test_a_cancelled_upstream_counts_as_failed(orch):
    gate = threading.Event()
    long = orch.create_task("long", func=lambda: gate.wait(10))
    fallback = orch.create_task("fallback", func=lambda: "fell back", dependencies=[long],
                                trigger_rule="all_failed")
    orch.start_execution()
    try:
        assert wait_until_status(orch, long, S.RUNNING)
        orch.cancel_task(long)
        assert wait_until_status(orch, fallback, S.COMPLETED)
    finally:
        gate.set()
    assert fallback.result.data == "fell back"


def test_rerunning_an_upstream_task_decides_the_rule_again(orch):
    fail = {"on": True}

    def flaky():
        if fail["on"]:
            raise ValueError("down")
        return "up"

    src = orch.create_task("src", func=flaky)
    alert = orch.create_task("alert", func=lambda: "alerted", dependencies=[src],
                             trigger_rule="one_failed")
    orch.start_execution()
    orch.wait_for_completion(10)
    assert alert.status is S.COMPLETED
    fail["on"] = False
    orch.rerun(src)
    assert orch.wait_for_completion(10) is True
    assert alert.status is S.SKIPPED and alert.result.error_type == "NotNeededError"


def test_the_default_rule_changes_no_fingerprint_and_another_rule_does(tmp_path):
    from codomyrmex_nb.core.recorder import Recorder

    rec = Recorder(tmp_path / "j.sqlite", None)
    try:
        def body():
            return 1

        plain = rec.fingerprint(Task(name="x", func=body), [], {})
        explicit = rec.fingerprint(Task(name="x", func=body, trigger_rule="all_success"), [], {})
        other = rec.fingerprint(Task(name="x", func=body, trigger_rule="all_done"), [], {})
        assert plain == explicit != other
    finally:
        rec.close()


def _extract(flag):
    """Fails until the file ``flag`` exists: the same fingerprint either way."""
    import os

    if not os.path.exists(flag):
        raise ValueError("not ready")
    return 1


def _cleanup(upstream):
    return "cleaned"


def test_a_rule_task_is_restored_only_when_its_upstream_tasks_completed(tmp_path, make_orch):
    """A cleanup recorded after a failure must run again once the failure is fixed."""
    path = tmp_path / "journal.sqlite"
    flag = str(tmp_path / "ready")

    def define(orch):
        src = orch.create_task("extract", func=_extract, parameters={"flag": flag}, cache=True)
        return src, orch.create_task("cleanup", func=_cleanup, dependencies=[src], cache=True,
                                     trigger_rule="all_done")

    first = make_orch(2, journal=path)
    _, cleanup = define(first)
    first.start_execution()
    first.wait_for_completion(10)
    first.stop_execution()
    assert cleanup.status is S.COMPLETED
    (tmp_path / "ready").write_text("")
    second = make_orch(2, journal=path)
    src, again = define(second)
    assert src.status is S.READY  # it failed last time: nothing to restore
    assert again.status is S.PENDING  # recorded after a failure: it waits for extract again
    second.start_execution()
    assert second.wait_for_completion(10) is True
    assert len(again.attempts) == 1
    second.stop_execution()
    third = make_orch(2, journal=path)  # both completed last time: both come back
    src, last = define(third)
    assert src.status is S.COMPLETED and last.status is S.COMPLETED and not last.attempts


# -- the scheduler alone ---------------------------------------------------------------------------
def test_a_rule_task_waits_while_its_rule_is_undecided():
    sched = Scheduler()
    a, b = Task(name="a", func=print), Task(name="b", func=print)
    c = Task(name="c", func=print, dependencies=[a, b], trigger_rule="all_done")
    sched.define([a, b, c])
    first = sched.next_ticket()
    sched.start(first, "w")
    sched.finish(first, False, error=RuntimeError("x"))
    assert c.status is S.PENDING
    second = sched.next_ticket()
    sched.start(second, "w")
    sched.finish(second, True, 2)
    assert c.status is S.READY


def test_a_rule_task_defined_with_a_restored_upstream_in_one_batch_counts_it_once():
    sched = Scheduler()
    a = Task(name="a", func=print)
    c = Task(name="c", func=print, dependencies=[a], trigger_rule="one_success")
    sched.define([a, c], restored={a.id: (1, 0.0, "the cache")})
    assert a.status is S.COMPLETED and c.status is S.READY
    assert sched.lookup("c").tally == [1, 0, 0, 0]


def test_a_rerun_counts_a_rule_tasks_upstream_afresh():
    # u -> x (default, also after f which failed) -> r (one_failed): re-running u skips x at
    # once, which r must count on top of nothing stale from the first run.
    sched = Scheduler()
    u, f = Task(name="u", func=print), Task(name="f", func=print)
    x = Task(name="x", func=print, dependencies=[u, f])
    r = Task(name="r", func=print, dependencies=[x], trigger_rule="all_skipped")
    sched.define([u, f, x, r])
    while (ticket := sched.next_ticket()) is not None:
        sched.start(ticket, "w")
        sched.finish(ticket, ticket.rec.name != "f", 1, None if ticket.rec.name != "f"
                     else RuntimeError("f"))
    assert x.status is S.SKIPPED and r.status is S.SKIPPED  # x upstream_failed: not all skipped
    sched.requeue(sched.lookup("u"))
    assert x.status is S.SKIPPED and r.status is S.SKIPPED
    assert sched.lookup("r").tally == [0, 0, 1, 0]


# -- cells: --trigger, NoResult in the cell, %codo_wait ----------------------------------------
@pytest.fixture
def ip(shell):
    yield from fresh_ip(shell, ("seen", "kind"))


def cell_orch():
    from codomyrmex_nb.notebook.magics import current_orchestrator

    return current_orchestrator()


def test_a_cell_with_trigger_all_done_sees_a_no_result_by_name(ip, capsys):
    ip.run_cell_magic("codo_task", "extract", "raise ValueError('bad row')")
    ip.run_cell_magic("codo_task", "ok", "41 + 1")
    ip.run_cell_magic("codo_task", "cleanup --after extract ok --trigger all_done",
                      "from codomyrmex_nb import NoResult\n"
                      "(isinstance(extract, NoResult), bool(extract), extract.state, "
                      "extract.error, ok, upstream['extract'] == extract)")
    assert capsys.readouterr().out.splitlines()[-1] == (
        "codo_task 'cleanup': defined, waits for 'extract', 'ok' (trigger rule all_done: runs "
        "when every upstream task ended, however it ended) (engine stopped: %codo_run starts it)")
    ip.run_line_magic("codo_run", "--wait --timeout 20")
    orch = cell_orch()
    assert orch.get_task("cleanup").result.data == (True, False, "failed", "bad row", 42, True)
    assert orch.get_task("cleanup").trigger_rule == "all_done"
    out = capsys.readouterr().out
    assert "extract: ValueError: bad row \u2014 %codo_logs extract" in out


def test_codo_wait_says_an_alert_was_not_needed(ip, capsys):
    ip.run_cell_magic("codo_task", "load", "1")
    ip.run_cell_magic("codo_task", "alert --after load --trigger one_failed", "'sent'")
    ip.run_line_magic("codo_run", "--wait --timeout 20")
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("codo_wait: 1 task completed in ")
    assert out[-1].endswith("; 'alert' not needed (a trigger rule did not fire)")
    assert cell_orch().wait_for_completion(1) is True


def test_a_bad_trigger_is_a_one_line_error_with_a_close_match(ip):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match=r"%%codo_task: task 'x': unknown trigger rule "
                       r"'al_done' \(did you mean 'all_done'\?\): use one of all_success"):
        ip.run_cell_magic("codo_task", "x --trigger al_done", "1")
    assert cell_orch().get_task("x") is None  # nothing half-defined


def test_changing_trigger_redefines_the_cell_and_no_trigger_keeps_old_fingerprints(ip, capsys):
    from codomyrmex_nb.notebook.cell_define import CellOptions, fingerprint

    assert fingerprint("1", CellOptions()) == fingerprint("1", CellOptions(trigger="all_success"))
    assert fingerprint("1", CellOptions()) != fingerprint("1", CellOptions(trigger="all_done"))
    ip.run_cell_magic("codo_task", "a", "1")
    ip.run_cell_magic("codo_task", "b --after a", "a + 1")
    ip.run_cell_magic("codo_task", "b --after a --trigger all_done", "a + 1")
    assert "changed" in capsys.readouterr().out.splitlines()[-1]
    assert cell_orch().get_task("b").trigger_rule == "all_done"


# -- the live view ---------------------------------------------------------------------------------
def test_the_view_marks_a_task_whose_rule_is_not_the_default(orch):
    import re

    from codomyrmex_nb.notebook.painter import Painter

    gate = threading.Event()
    a = orch.create_task("extract", func=lambda: gate.wait(10))
    orch.create_task("load", func=lambda: 1, dependencies=[a])
    orch.create_task("cleanup", func=lambda: 1, dependencies=[a], trigger_rule="all_done")
    painter = Painter("cv", 200, 40, 1.0)
    painter.paint([], orch.snapshot(), orch.snapshot)
    texts = re.findall(r"<text[^>]*>(.*?)</text>", painter.standalone())
    assert "\u2691 all_done" in texts  # a line under the cleanup's name
    assert not any("all_success" in t for t in texts)  # the default is not marked
    tips = {look.tip.split("\n")[0]: look.tip for look in painter.looks().values()}
    assert "\u2691 trigger rule all_done: runs when every upstream task ended" in tips["cleanup"]
    assert "trigger rule" not in tips["load"]
    orch.start_execution()
    gate.set()
    orch.wait_for_completion(10)
    orch.flush_events(5)
    events = []
    frame = painter.paint(events, None, orch.snapshot)  # a patch: the rule line stays as drawn
    assert frame is not None
    svg = painter.template.render(painter.looks(), css=True)
    assert "\u2691 all_done" in re.findall(r"<text[^>]*>(.*?)</text>", svg)


def test_the_live_mirror_tells_not_needed_from_upstream_failed_by_the_events(orch):
    from codomyrmex_nb.notebook.tracker import Tracker

    bad = orch.create_task("bad", func=boom)
    after = orch.create_task("after", func=lambda: 1, dependencies=[bad])
    good = orch.create_task("good", func=lambda: 1)
    alert = orch.create_task("alert", func=lambda: 1, dependencies=[good],
                             trigger_rule="one_failed")
    tracker = Tracker()
    tracker.reset(orch.snapshot(), None)
    events = []
    orch.subscribe(events.append)
    orch.start_execution()
    orch.wait_for_completion(10)
    orch.flush_events(5)
    tracker.apply(events)  # no snapshot: from the events alone
    assert tracker.states[after.id] == "upstream_failed"
    assert tracker.states[alert.id] == "skipped"
    assert "\u2298 not needed 1" in tracker.summary()


def describe(upstream):
    return {name: repr(value) for name, value in sorted(upstream.items())}


@pytest.mark.parametrize("executor", ["processes", "sync"])
def test_a_no_result_reaches_a_task_on_every_executor(make_orch, executor):
    orch = make_orch(2, executor=executor)
    bad = orch.create_task("bad", func=boom)
    report = orch.create_task("report", func=describe, dependencies=[bad],
                              trigger_rule="all_done")
    orch.start_execution()
    orch.wait_for_completion(60)
    assert report.status is S.COMPLETED
    assert report.result.data == {"bad": "NoResult('bad', state='failed', error='bad row')"}


def test_the_inspector_names_the_rule_and_why_a_task_was_not_needed(orch):
    from codomyrmex_nb.notebook.inspector import detail_html

    good = orch.create_task("good", func=lambda: 1)
    alert = orch.create_task("alert", func=lambda: 1, dependencies=[good],
                             trigger_rule="one_failed")
    orch.start_execution()
    orch.wait_for_completion(10)
    html = detail_html(orch.snapshot(), alert.id, alert.result)
    assert "<th>trigger rule</th><td>\u2691 <b>one_failed</b>: runs when one upstream" in html
    assert "\u2298 not needed</span>" in html
    assert "NotNeededError</b>: not needed: trigger rule one_failed did not fire" in html
    assert "trigger rule" not in detail_html(orch.snapshot(), good.id, good.result)


@pytest.mark.parametrize("combo", [("success", "failed"), ("success", "skipped"),
                                   ("upstream_failed", "skipped"), ("success", "success"),
                                   ("skipped", "skipped"), ("failed", "upstream_failed")])
def test_every_rule_on_real_upstream_outcomes_matches_the_table(make_orch, combo):
    orch = make_orch(4)
    ok = orch.create_task("ok", func=lambda: 1)
    makers = {
        "success": lambda i: orch.create_task(f"s{i}", func=lambda: 1),
        "failed": lambda i: orch.create_task(f"f{i}", func=boom),
        "upstream_failed": lambda i: orch.create_task(
            f"u{i}", func=lambda: 1, dependencies=[orch.create_task(f"uf{i}", func=boom)]),
        "skipped": lambda i: orch.create_task(f"k{i}", func=lambda: 1, dependencies=[ok],
                                              trigger_rule="one_failed"),
    }
    ups = [makers[kind](i) for i, kind in enumerate(combo)]
    tasks = {rule: orch.create_task(f"r_{rule}", func=lambda upstream: sorted(upstream),
                                    dependencies=ups, trigger_rule=rule) for rule in tr.RULES}
    orch.start_execution()
    orch.wait_for_completion(20)
    for up, kind in zip(ups, combo, strict=True):  # the upstream tasks ended as intended
        assert orch.tasks_frame().set_index("id").loc[up.id, "state"] == (
            "completed" if kind == "success" else kind)
    for rule, task in tasks.items():
        if FIRES[rule](combo):
            assert task.status is S.COMPLETED, (rule, combo, task.result)
            assert task.result.data == sorted(u.name for u in ups)
        else:
            kinds = {KIND.get(rule, lambda o: NN)(combo)}
            if rule == "all_success" and "skipped" in combo:  # decided by the first to end,
                kinds = {NN, KIND[rule](combo)}  # as in Airflow: not needed, or upstream failed
            assert task.status is S.SKIPPED, (rule, combo)
            assert task.result.error_type in {"NotNeededError" if k == NN
                                              else "UpstreamFailedError" for k in kinds}, (rule,
                                                                                          combo)
