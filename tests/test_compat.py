"""Code written for the original Codomyrmex orchestrator builds our objects as it built its own.

Each test writes the object the way that project's users do (its ``TaskResult``
and ``Task`` were dataclasses: ``TaskResult(success, data, error_message,
error_type, execution_time, memory_usage, metadata)``; ``Task`` had a
``description``, named an unnamed task ``module.action`` and gave the priority's
number in ``to_dict``).
"""

from __future__ import annotations

import pickle

import pytest

from codomyrmex_nb import (
    AmbiguousDependencyError,
    ResourceType,
    Task,
    TaskPriority,
    TaskResource,
    TaskResult,
    TaskStatus,
)

ORIGINAL_RESULT_KEYS = ["success", "data", "error_message", "error_type", "execution_time",
                        "memory_usage", "metadata"]


# -- TaskResult -----------------------------------------------------------------------------------
def test_task_result_takes_the_originals_positional_order():
    assert TaskResult(True).success is True and TaskResult(True).task_id is None
    assert TaskResult(success=True).data is None
    ok = TaskResult(True, 42)
    assert (ok.success, ok.data, ok.execution_time, ok.memory_usage, ok.metadata) == \
        (True, 42, 0.0, 0.0, {})
    failed = TaskResult(False, None, "boom", "ValueError", 1.5, 12.0, {"step": 3})
    assert (failed.error_message, failed.error_type, failed.execution_time,
            failed.memory_usage, failed.metadata) == ("boom", "ValueError", 1.5, 12.0, {"step": 3})


def test_task_result_to_dict_has_exactly_the_originals_keys_and_round_trips():
    result = TaskResult(False, None, "boom", "ValueError", 1.5, 12.0, {"step": 3})
    data = result.to_dict()
    assert list(data) == ORIGINAL_RESULT_KEYS
    assert data["memory_usage"] == 12.0
    back = TaskResult.from_dict(data)
    assert back == result and back.memory_usage == 12.0
    data["metadata"]["step"] = 4  # a copy, as the dataclass's asdict gave
    assert result.metadata == {"step": 3}


def test_task_result_from_the_originals_dict():
    original = {"success": True, "data": {"rows": 3}, "error_message": None, "error_type": None,
                "execution_time": 0.25, "memory_usage": 48.5, "metadata": {"host": "a"}}
    result = TaskResult.from_dict(original)
    assert (result.data, result.memory_usage, result.metadata) == ({"rows": 3}, 48.5, {"host": "a"})
    assert result.to_dict() == original


def test_an_engine_result_round_trips_with_its_own_fields(orch):
    def fail():
        print("about to fail")
        raise ValueError("no")

    task = orch.create_task("fail", func=fail)
    orch.start_execution()
    assert orch.wait_for_completion(10) is False
    result = task.result
    data = result.to_dict()
    assert list(data)[:7] == ORIGINAL_RESULT_KEYS
    assert data["task_id"] == task.id and "ValueError" in data["traceback"]
    assert "about to fail" in data["logs"]
    assert TaskResult.from_dict(data) == result


def test_the_old_task_id_first_form_says_how_to_write_it():
    with pytest.raises(TypeError, match=r"takes success first.*task_id='t1'"):
        TaskResult("t1", True)
    assert TaskResult(True, task_id="t1").task_id == "t1"


def test_results_pickled_before_memory_usage_still_load():
    result = TaskResult(True, 7, task_id="t")
    del result.memory_usage  # as pickled by the class that had no such field
    back = pickle.loads(pickle.dumps(result))
    assert (back.data, back.task_id, back.memory_usage) == (7, "t", 0.0)



def test_results_pickled_with_their_counts_as_one_tuple_still_load():
    """Results pickled while attempts, retries and worker were one ``_counts`` tuple."""
    result = TaskResult.of_attempts("t", True, 2, 1, "codo-worker-3", data=7)
    fresh = pickle.loads(pickle.dumps(result))
    assert fresh.metadata == {"attempts": 2, "retries": 1, "worker": "codo-worker-3"}
    _, state = result.__getstate__()
    for key in ("_attempts", "_retries", "_worker"):
        state.pop(key)
    state["_counts"] = (2, 1, "codo-worker-3")
    old = TaskResult.__new__(TaskResult)
    old.__setstate__((None, state))
    assert old.metadata == {"attempts": 2, "retries": 1, "worker": "codo-worker-3"}
    assert (old.data, old.task_id, old.success) == (7, "t", True)

# -- Task -----------------------------------------------------------------------------------------
def test_task_has_a_description():
    task = Task(name="load", description="Load the raw data", module="data", action="load")
    assert task.description == "Load the raw data"
    assert Task(name="t").description == ""
    assert Task.from_dict(task.to_dict()).description == "Load the raw data"
    with pytest.raises(ValueError, match="task description must be a string, got 5"):
        Task(name="t", description=5)


def test_an_unnamed_task_is_called_module_action_else_its_id():
    assert Task(module="data", action="load").name == "data.load"
    assert Task(name="", module="data", action="load").name == "data.load"
    only_module = Task(module="data")
    assert only_module.name == only_module.id


def test_unnamed_tasks_sharing_a_name_run_and_a_dependency_by_it_is_refused(orch):
    orch.register_action("data", "load", lambda: 1)
    first, second = Task(module="data", action="load"), Task(module="data", action="load")
    orch.add_tasks([first, second])
    with pytest.raises(AmbiguousDependencyError, match="'data.load'"):
        orch.add_task(Task(name="after", func=lambda: 2, dependencies=["data.load"]))
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert first.result.data == second.result.data == 1


def test_to_dict_gives_the_priority_number_and_from_dict_reads_a_number_or_a_name():
    task = Task(name="t", priority=TaskPriority.HIGH)
    data = task.to_dict()
    assert data["priority"] == TaskPriority.HIGH.value == 3
    assert Task.from_dict(data).priority is TaskPriority.HIGH
    assert Task.from_dict({**data, "priority": "HIGH"}).priority is TaskPriority.HIGH
    assert Task.from_dict({**data, "priority": "critical"}).priority is TaskPriority.CRITICAL


def test_the_originals_task_dict_loads():
    original = {
        "id": "0b0e5c3a-5f0e-4f47-9d0e-2f3d4c5b6a79", "name": "analyze",
        "description": "Static analysis", "module": "static_analysis", "action": "analyze",
        "parameters": {"path": "."}, "dependencies": [], "priority": 3,
        "resources": [{"type": ResourceType.CPU, "identifier": "system_cpu", "mode": "read",
                       "timeout": None}],
        "timeout": 300, "max_retries": 3, "retry_delay": 1.0, "status": "completed",
        "retry_count": 0, "created_at": "2025-01-02T03:04:05+00:00",
        "started_at": "2025-01-02T03:04:06+00:00", "completed_at": "2025-01-02T03:04:08+00:00",
        "result": {"success": True, "data": 42, "error_message": None, "error_type": None,
                   "execution_time": 2.0, "memory_usage": 10.0, "metadata": {}},
        "tags": ["nightly"], "metadata": {},
    }
    task = Task.from_dict(original)
    assert (task.name, task.description, task.priority) == \
        ("analyze", "Static analysis", TaskPriority.HIGH)
    assert task.status is TaskStatus.COMPLETED and task.result.data == 42
    assert task.result.memory_usage == 10.0
    assert task.resources == [TaskResource(ResourceType.CPU, "system_cpu")]
    assert task.created_at == 1735787045.0 and task.completed_at == 1735787048.0
    again = Task.from_dict(task.to_dict())
    assert again.to_dict() == task.to_dict()


def test_task_resource_takes_the_originals_positional_order():
    res = TaskResource(ResourceType.DATABASE, "main_db", "write", 30)
    assert (res.mode, res.timeout, res.capacity) == ("write", 30.0, None)


def test_create_task_takes_a_description(orch):
    task = orch.create_task("t", func=lambda: 1, description="one")
    assert task.description == "one"


def test_tasks_pickled_before_the_new_fields_still_load():
    task = Task(name="t", max_retries=2)
    del task.retry_on, task.description  # as pickled by the class that had no such fields
    back = pickle.loads(pickle.dumps(task))
    assert (back.name, back.max_retries, back.retry_on, back.description) == ("t", 2, None, "")


def test_a_task_pickled_before_the_newer_fields_unpickles_with_their_defaults():
    """A task pickled by an earlier version (a journal, a saved object) lacks the slots
    added since: ``retry_on``, ``description``, ``trigger_rule``, ``watch``."""
    task = Task(name="old", func=print)
    cls, args, (_, slots) = task.__reduce_ex__(2)[:3]
    for newer in ("retry_on", "description", "trigger_rule", "_watch"):
        slots.pop(newer, None)
    old = args[0].__new__(args[0]) if cls.__name__ == "__newobj__" else cls(*args)
    old.__setstate__((None, slots))
    assert old.retry_on is None and old.description == ""
    assert old.trigger_rule == "all_success" and old.watch == []
    assert old.to_dict()["trigger_rule"] == "all_success"
