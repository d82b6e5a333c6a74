"""The model validates where values enter and round-trips through dicts."""

from __future__ import annotations

import pytest

from codomyrmex_nb import ResourceType, Task, TaskPriority, TaskResource, TaskResult, TaskStatus


def test_priority_accepts_members_and_names_in_any_case():
    assert Task(name="a", priority="high").priority is TaskPriority.HIGH
    assert Task(name="a", priority="Critical").priority is TaskPriority.CRITICAL
    assert Task(name="a", priority=TaskPriority.LOW).priority is TaskPriority.LOW


def test_bad_priority_repeats_the_value_and_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        Task(name="a", priority="urgent")
    msg = str(err.value)
    assert "'urgent'" in msg and "TaskPriority.HIGH" in msg and "'low'" in msg


def test_resource_mode_is_checked_when_built():
    with pytest.raises(ValueError, match=r"invalid resource mode 'shared'.*'read'.*'write'.*'exclusive'"):
        TaskResource(type=ResourceType.CPU, identifier="cpu", mode="shared")
    assert TaskResource(type="external_api", identifier="openai", mode="EXCLUSIVE").mode == "exclusive"
    assert TaskResource(ResourceType.GPU, "gpu0").key == "gpu:gpu0"


@pytest.mark.parametrize("field,value,fragment", [
    ("timeout", 0, "timeout must be a positive number"),
    ("timeout", -5, "got -5"),
    ("max_retries", -1, "max_retries must be a whole number >= 0"),
    ("max_retries", 1.5, "got 1.5"),
    ("retry_delay", -0.5, "retry_delay must be a number >= 0"),
])
def test_bad_numbers_raise_when_the_task_is_created(field, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        Task(name="a", **{field: value})


def test_resources_must_be_task_resources():
    with pytest.raises(ValueError, match="TaskResource"):
        Task(name="a", resources=["cpu"])


def test_guide_placeholder_task_gets_a_name():
    task = Task(..., priority=TaskPriority.CRITICAL)  # as written in the guide's snippets
    assert task.name == task.id and task.priority is TaskPriority.CRITICAL


def test_can_retry_follows_retry_count():
    task = Task(name="a", max_retries=2)
    assert task.can_retry()
    task.retry_count = 2
    assert not task.can_retry()


def test_to_dict_from_dict_round_trip():
    up = Task(name="up")
    task = Task(name="t", module="m", action="a", parameters={"x": 1, "y": up.output},
                dependencies=[up.id], priority="high",
                resources=[TaskResource(ResourceType.DATABASE, "db", "write", capacity=2, timeout=3)],
                timeout=10, max_retries=2, retry_delay=0.5, tags=["x"], metadata={"k": "v"})
    task.status = TaskStatus.COMPLETED
    task.result = TaskResult(True, data={"n": 1}, execution_time=0.25, metadata={"w": 1},
                             task_id=task.id)
    data = task.to_dict()
    back = Task.from_dict(data)
    assert back.to_dict() == data
    assert back.status is TaskStatus.COMPLETED and back.result.data == {"n": 1}
    assert back.parameters["y"].task_id == up.id
    assert back.resources[0].capacity == 2


def test_a_results_metadata_says_attempts_retries_and_worker_and_keeps_what_is_added(orch):
    flaky_calls = []

    def flaky():
        flaky_calls.append(1)
        if len(flaky_calls) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    task = orch.create_task("flaky", func=flaky, max_retries=1)
    orch.start_execution()
    assert orch.wait_for_completion(10)
    result = task.result
    assert result.metadata["attempts"] == 2 and result.metadata["retries"] == 1
    assert result.metadata["worker"].startswith("codo-worker-")
    result.metadata["note"] = "checked"
    assert task.result.metadata["note"] == "checked"
    assert "metadata={" in repr(result) and "'attempts': 2" in repr(result)
    same = TaskResult(True, "ok", execution_time=result.execution_time, task_id=result.task_id,
                      metadata=dict(result.metadata), logs=result.logs)
    assert same == result and TaskResult(False, task_id=result.task_id) != result


def test_status_terminal_flags():
    assert {s for s in TaskStatus if s.is_terminal} == {
        TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED}


def test_tags_and_resources_are_lists_the_task_keeps():
    task = Task(name="t")
    assert task.tags == [] and task.resources == []
    task.tags.append("nightly")
    task.resources.append(TaskResource(ResourceType.DATABASE, "db", "read"))
    assert task.tags == ["nightly"] and task.resources[0].identifier == "db"
    assert not task.is_plain()  # resources now need checking when it is added
    back = Task.from_dict(task.to_dict())
    assert back.tags == ["nightly"] and back.resources[0].identifier == "db"
