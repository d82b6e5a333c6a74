"""Definitions: dependency resolution, errors that name the problem, all-or-nothing batches."""

from __future__ import annotations

import threading

import pytest

from codomyrmex_nb import (
    AmbiguousDependencyError,
    DependencyCycleError,
    Task,
    TaskStatus,
    UnknownDependencyError,
)


def noop():
    return None


def test_dependencies_by_id_name_and_object(orch):
    a = orch.create_task("a", func=lambda: 1)
    b = orch.create_task("b", func=lambda: 2)
    c = orch.create_task("c", func=lambda: 3)
    d = orch.create_task("d", func=lambda upstream: upstream, dependencies=[a.id, "b", c])
    assert d.dependencies == [a.id, b.id, c.id]
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert d.result.data == {"a": 1, "b": 2, "c": 3}


def test_unknown_dependency_names_it_with_a_close_match(orch):
    orch.create_task("load_data", func=noop)
    with pytest.raises(UnknownDependencyError) as err:
        orch.create_task("train", func=noop, dependencies=["load_dta"])
    assert isinstance(err.value, ValueError)
    assert "'load_dta'" in str(err.value) and "Did you mean 'load_data'" in str(err.value)
    assert [t.name for t in orch.list_tasks()] == ["load_data"]  # nothing half-added


def test_unadded_task_object_as_dependency_is_an_error(orch):
    ghost = Task(name="ghost", func=noop)
    with pytest.raises(UnknownDependencyError, match="'ghost'"):
        orch.add_task(Task(name="t", func=noop, dependencies=[ghost]))


def test_batch_in_any_order(orch):
    a = Task(name="a", func=lambda: 1)
    b = Task(name="b", func=lambda upstream: upstream["a"] + 1, dependencies=["a"])
    c = Task(name="c", func=lambda upstream: upstream["b"] + 1, dependencies=[b])
    orch.add_tasks([c, b, a])
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert c.result.data == 3


def test_cycle_in_a_batch_is_named_and_nothing_is_added(orch):
    a = Task(name="a", func=noop, dependencies=["b"])
    b = Task(name="b", func=noop, dependencies=["a"])
    with pytest.raises(DependencyCycleError) as err:
        orch.add_tasks([a, b])
    assert isinstance(err.value, ValueError)
    assert str(err.value).startswith(("dependency cycle: a -> b -> a", "dependency cycle: b -> a -> b"))
    assert orch.list_tasks() == []


def test_cycle_from_readding_a_known_task(orch):
    a = orch.create_task("a", func=noop)
    b = orch.create_task("b", func=noop, dependencies=[a])
    orch.create_task("c", func=noop, dependencies=[b])
    a.dependencies = ["c"]
    with pytest.raises(DependencyCycleError, match="a -> b -> c -> a"):
        orch.add_task(a)
    assert orch.dependencies_of("a") == []


def test_self_dependency_is_a_cycle(orch):
    t = Task(name="me", func=noop)
    t.dependencies = [t.id]
    with pytest.raises(DependencyCycleError, match="me -> me"):
        orch.add_task(t)


def test_ambiguous_name_dependency(orch):
    orch.create_task("dup", func=noop)
    with pytest.warns(UserWarning, match="a task named 'dup' is already defined"):
        orch.create_task("dup", func=noop)
    with pytest.raises(AmbiguousDependencyError, match="2 tasks have that name"):
        orch.create_task("x", func=noop, dependencies=["dup"])


def test_output_reference_flows_and_implies_the_dependency(orch):
    a = orch.create_task("a", func=lambda: [1, 2, 3])
    b = orch.create_task("b", func=lambda xs, scale: sum(xs) * scale,
                         parameters={"xs": a.output, "scale": 10})
    assert b.dependencies == [a.id]
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert b.result.data == 60


def test_readding_a_known_task_requeues_and_never_duplicates(orch):
    calls = []
    t = orch.create_task("t", func=lambda: calls.append(1) or len(calls))
    orch.start_execution()
    assert orch.wait_for_completion(10)
    orch.add_task(t)
    assert orch.wait_for_completion(10)
    assert len(orch.list_tasks()) == 1 and t.result.data == 2 and len(t.attempts) == 2


def test_guide_retry_recipe_requeues_failed_task_and_its_skipped_dependents(orch):
    flaky = {"fail": True}

    def work():
        if flaky["fail"]:
            raise RuntimeError("first time")
        return "ok"

    t = orch.create_task("t", func=work)
    d = orch.create_task("d", func=lambda upstream: upstream["t"] + "!", dependencies=[t])
    orch.start_execution()
    assert orch.wait_for_completion(10) is False
    assert (t.status, d.status) == (TaskStatus.FAILED, TaskStatus.SKIPPED)
    flaky["fail"] = False
    t.status = TaskStatus.PENDING  # the guide's recipe
    t.retry_count = 0
    orch.add_task(t)
    assert orch.wait_for_completion(10)
    assert d.result.data == "ok!"
    assert orch.get_execution_stats()["total_tasks"] == 2


def test_tasks_added_while_running_start_when_ready(orch):
    gate = threading.Event()
    orch.start_execution()
    first = orch.create_task("first", func=gate.wait, parameters={"timeout": 10})
    second = orch.create_task("second", func=lambda: "after", dependencies=[first])
    assert second.status is TaskStatus.PENDING
    gate.set()
    assert orch.wait_for_completion(10)
    assert second.result.data == "after"
    assert second.started_at >= first.completed_at


def test_renamed_task_readded_is_found_by_its_new_name(orch):
    t = orch.create_task("old", func=noop)
    orch.start_execution()
    assert orch.wait_for_completion(10)
    t.name = "new"
    orch.add_task(t)
    assert orch.get_task("new") is t
    with pytest.raises(UnknownDependencyError, match="'old'"):
        orch.create_task("x", func=noop, dependencies=["old"])
