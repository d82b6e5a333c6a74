"""``retry_on`` / ``--retry-on``: which failures are retried, and the binding-error rule.

Counted by the attempts the engine recorded (they cross process boundaries),
never by sleeping. Every failing body raises at once, with no retry delay.
"""

from __future__ import annotations

import functools

import pytest
from IPython.core.error import UsageError

from codomyrmex_nb import Task, TaskStatus
from codomyrmex_nb.default import get_task_orchestrator

S = TaskStatus


class Busy(Exception):
    """A transient error of the test's own (named ``test_retry_on.Busy``)."""


class Unpicklable(Exception):
    """Comes back from a worker process as a ``RemoteError`` named like it (it will not unpickle)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(f"{code}: {why}")


def raise_unpicklable() -> None:
    raise Unpicklable(7, "busy")


def refuse_connection() -> None:
    raise ConnectionError("connection refused")


def reject_value() -> None:
    raise ValueError("bad row 7")


def body_type_error() -> int:
    return len(3)  # a TypeError raised by the body, after the call was bound


def needs_x(x: int) -> int:
    return x


def _logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


needs_x_logged = _logged(needs_x)  # a decorator: the binding error is raised inside the wrapper


def run(orch) -> None:
    orch.start_execution()
    assert orch.wait_for_completion(60) is False  # these runs always leave a failed task


@pytest.mark.parametrize("kind", ["threads", "processes", "dask", "sync"])
class TestEveryExecutor:
    def test_only_the_listed_exceptions_are_retried(self, make, kind):
        o = make()
        listed = o.create_task("listed", func=refuse_connection, max_retries=2,
                               retry_on=(ConnectionError,))
        other = o.create_task("other", func=reject_value, max_retries=2,
                              retry_on=[ConnectionError, TimeoutError])
        parent = o.create_task("parent", func=refuse_connection, max_retries=1, retry_on=(OSError,))
        run(o)
        assert len(listed.attempts) == 3 and listed.result.metadata["retries"] == 2
        assert "not_retried" not in listed.result.metadata
        assert len(parent.attempts) == 2  # ConnectionError is an OSError
        assert (other.status, len(other.attempts), other.retry_count) == (S.FAILED, 1, 0)
        assert other.result.error_type == "ValueError"
        assert other.result.metadata["not_retried"] == \
            "ValueError is not in retry_on (ConnectionError, TimeoutError)"

    def test_a_binding_type_error_is_never_retried(self, make, kind):
        o = make()
        missing = o.create_task("missing", func=needs_x, max_retries=3)
        unexpected = o.create_task("unexpected", func=needs_x, parameters={"x": 1, "y": 2},
                                   max_retries=3, retry_on=(TypeError,))
        wrapped = o.create_task("wrapped", func=needs_x_logged, max_retries=3)
        run(o)
        for task in (missing, unexpected, wrapped):
            assert (task.status, len(task.attempts)) == (S.FAILED, 1), task.name
            assert task.result.error_type == "TypeError"
            assert "binding the call" in task.result.metadata["not_retried"]
        assert "missing 1 required positional argument: 'x'" in missing.result.error_message
        assert "unexpected keyword argument 'y'" in unexpected.result.error_message

    def test_a_type_error_raised_by_the_body_is_retried(self, make, kind):
        o = make()
        plain = o.create_task("plain", func=body_type_error, max_retries=2)
        listed = o.create_task("listed", func=body_type_error, max_retries=1,
                               retry_on=(TypeError,))
        run(o)
        assert len(plain.attempts) == 3 and len(listed.attempts) == 2
        assert "not_retried" not in plain.result.metadata


def test_an_error_that_comes_back_as_a_remote_error_matches_its_class_by_name(make_orch):
    o = make_orch(1, executor="processes")
    task = o.create_task("t", func=raise_unpicklable, max_retries=1, retry_on=(Unpicklable,))
    run(o)
    assert task.result.error_type == "Unpicklable" and not isinstance(task.result.exception,
                                                                       Unpicklable)
    assert len(task.attempts) == 2


def test_a_class_redefined_since_still_matches(make_orch):
    redefined = type("Busy", (Exception,), {"__module__": Busy.__module__})  # a cell run again

    def busy() -> None:
        raise redefined("try later")

    o = make_orch(1)
    task = o.create_task("t", func=busy, max_retries=1, retry_on=(Busy,))
    run(o)
    assert len(task.attempts) == 2


def test_the_failed_event_says_why_it_was_not_retried(make_orch):
    o = make_orch(1)
    details = []
    o.subscribe(lambda ev: details.append((ev.name, ev.status, ev.detail)))
    o.create_task("other", func=reject_value, max_retries=2, retry_on=(ConnectionError,))
    o.create_task("unbound", func=needs_x, max_retries=2)
    o.create_task("spent", func=reject_value, max_retries=1)
    run(o)
    assert o.flush_events(10)  # events reach subscribers on their own thread
    failed = {name: detail for name, status, detail in details if status is S.FAILED}
    assert failed["other"] == "not retried: ValueError is not in retry_on (ConnectionError)"
    assert failed["unbound"].startswith("not retried: TypeError binding the call")
    assert failed["spent"] is None  # retried once, then out of retries: the usual end
    assert o.get_task("spent").retry_count == 1


def test_a_timeout_counts_as_a_timeout_error(make_orch):
    import threading
    gate = threading.Event()
    o = make_orch(2)
    kept = o.create_task("kept", func=lambda: gate.wait(30), timeout=0.2, max_retries=2,
                         retry_on=(ConnectionError,))
    retried = o.create_task("retried", func=lambda: gate.wait(30), timeout=0.2, max_retries=1,
                            retry_on=(TimeoutError,))
    run(o)
    gate.set()
    assert len(kept.attempts) == 1 and "TaskTimeoutError is not in retry_on" in \
        kept.result.metadata["not_retried"]
    assert len(retried.attempts) == 2


def test_without_retry_on_every_other_failure_keeps_the_rule(make_orch):
    o = make_orch(1)
    task = o.create_task("flaky", func=reject_value, max_retries=2)
    run(o)
    assert len(task.attempts) == 3 and "not_retried" not in task.result.metadata


# -- definition -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value,fragment", [
    ([ValueError, 3], "retry_on entry 3 is not an exception class"),
    ((int,), "retry_on entry <class 'int'> is not an exception class"),
    (["ConnectionError", "NoSuchError"], "retry_on entry 'NoSuchError' is not a known exception class"),
    ("nosuchmodule.Busy", "'nosuchmodule.Busy' is not a known exception class"),
    (42, "retry_on must be exception classes"),
])
def test_bad_entries_fail_at_definition_naming_them(make_orch, value, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Task("t", func=reject_value, retry_on=value)
    o = make_orch(1)
    with pytest.raises(ValueError, match="retry_on"):
        o.create_task("t", func=reject_value, retry_on=value)
    assert o.list_tasks() == []


def test_names_classes_and_a_single_class_are_accepted():
    assert Task("a", retry_on=ConnectionError).retry_on == (ConnectionError,)
    assert Task("b", retry_on=["ConnectionError", "test_retry_on.Busy"]).retry_on == \
        (ConnectionError, Busy)
    assert Task("c", retry_on=None).retry_on is None
    assert Task("d").retry_on is None


def test_to_dict_carries_retry_on_by_name():
    task = Task("t", func=reject_value, retry_on=(ConnectionError, Busy))
    data = task.to_dict()
    assert data["retry_on"] == ["ConnectionError", "test_retry_on.Busy"]
    assert Task.from_dict(data).retry_on == (ConnectionError, Busy)
    assert Task.from_dict(Task("u").to_dict()).retry_on is None


def test_redefine_changes_retry_on(make_orch):
    o = make_orch(1)
    task = o.create_task("t", func=reject_value, max_retries=1, retry_on=(ConnectionError,))
    run(o)
    assert len(task.attempts) == 1
    o.redefine(task, retry_on=(ValueError,))
    run(o)
    assert len(task.attempts) == 1 + 2  # attempts are kept across runs: this run retried once


# -- the cell magic --------------------------------------------------------------------------------
def test_cell_magic_retry_on_names_notebook_and_builtin_classes(ipython):
    ipython.user_ns["Busy"] = Busy
    ipython.run_cell_magic("codo_task", "busy --retries 2 --retry-on Busy,KeyError",
                           "raise Busy('try later')")
    ipython.run_cell_magic("codo_task", "wrong --retries 2 --retry-on Busy --retry-on KeyError",
                           "raise ValueError('no')")
    ipython.run_cell_magic("codo_task", "typed --retries 1", "len(3)")  # the body's TypeError
    orch = get_task_orchestrator()
    busy, wrong = orch.get_task("busy"), orch.get_task("wrong")
    assert busy.retry_on == wrong.retry_on == (Busy, KeyError)
    ipython.run_line_magic("codo_run", "--wait --timeout 30")
    assert len(busy.attempts) == 3
    assert len(wrong.attempts) == 1
    assert len(orch.get_task("typed").attempts) == 2
    assert wrong.result.metadata["not_retried"] == "ValueError is not in retry_on (Busy, KeyError)"


def test_cell_magic_changing_retry_on_redefines_the_task(ipython):
    ipython.run_cell_magic("codo_task", "t --retries 1 --retry-on KeyError", "raise ValueError('no')")
    ipython.run_line_magic("codo_run", "--wait --timeout 30")
    task = get_task_orchestrator().get_task("t")
    assert len(task.attempts) == 1
    ipython.run_cell_magic("codo_task", "t --retries 1 --retry-on ValueError", "raise ValueError('no')")
    ipython.run_line_magic("codo_wait", "30")
    assert task.retry_on == (ValueError,) and len(task.attempts) == 1 + 2  # retried this time


def test_cell_magic_unknown_name_is_a_one_line_usage_error(ipython):
    with pytest.raises(UsageError) as info:
        ipython.run_cell_magic("codo_task", "t --retries 2 --retry-on KeyError,NoSuchError", "1")
    message = str(info.value)
    assert "--retry-on" in message and "'NoSuchError'" in message and "\n" not in message
    ipython.user_ns["not_a_class"] = 3
    with pytest.raises(UsageError, match="'not_a_class' is not an exception class"):
        ipython.run_cell_magic("codo_task", "t --retry-on not_a_class", "1")
    assert get_task_orchestrator().list_tasks() == []
