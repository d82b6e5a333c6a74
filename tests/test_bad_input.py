"""Wrong values given to the public API: a clear error naming the value and the fix,
and nothing half-applied (no task added)."""

from __future__ import annotations

import pytest

from codomyrmex_nb import Task, TaskOrchestrator


def double(x):
    return 2 * x


@pytest.fixture
def orch():
    o = TaskOrchestrator(max_workers=1, journal=False)
    yield o
    o.stop_execution()


def test_a_function_given_as_action_says_to_pass_it_as_func(orch):
    with pytest.raises(ValueError, match=r"action must be a string, got <function double.*"
                                         r"pass it as func="):
        orch.create_task("a", action=double, parameters={"x": 1})
    assert orch.list_tasks() == []


def test_parameter_names_that_are_not_strings_are_refused_at_definition(orch):
    """They were accepted, and the task failed only when it ran (keywords must be strings)."""
    with pytest.raises(ValueError, match=r"task 'p': parameter names must be strings .* got 1"):
        orch.create_task("p", func=double, parameters={1: 2})
    with pytest.raises(ValueError, match="parameter names must be strings"):
        Task(name="q", func=double, parameters={("x",): 2})
    assert orch.list_tasks() == []


@pytest.mark.parametrize("given", ["one", b"one", {"name": "x"}, 5])
def test_add_tasks_given_something_else_than_a_list_of_tasks_names_it(orch, given):
    """A string was taken apart letter by letter ("got 'o'"), a number raised TypeError."""
    with pytest.raises(ValueError, match=f"add_tasks expects a list of Task objects, got {given!r}"):
        orch.add_tasks(given)
    assert orch.list_tasks() == []


def test_add_tasks_given_one_task_says_to_use_add_task(orch):
    """It raised ``TypeError: 'Task' object is not iterable``."""
    with pytest.raises(ValueError, match=r"for one task use add_task\(task\)"):
        orch.add_tasks(Task(name="single", func=double, parameters={"x": 1}))
    assert orch.list_tasks() == []


@pytest.mark.parametrize("timeout", ["5", True, float("nan"), [1]])
def test_wait_for_completion_refuses_a_timeout_that_is_not_seconds(orch, timeout):
    """``"5"`` raised ``TypeError: unsupported operand type(s) for +``; True waited 1 s."""
    orch.start_execution()
    with pytest.raises(ValueError, match=r"timeout=\.\.\.\) takes a number of seconds or None"):
        orch.wait_for_completion(timeout=timeout)
