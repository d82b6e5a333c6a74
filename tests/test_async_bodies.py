"""``async def`` task bodies end as ``asyncio.run`` would end them: a timeout, a cancel or a
stop cancels the coroutine (its ``except CancelledError`` / ``finally`` run: a session is
closed, a lock released), and tasks it started and left running are cancelled as it returns,
their clean-up run too, rather than destroyed pending (``Task was destroyed but it is
pending!`` in whatever cell the garbage collector next runs)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import pytest
from conftest import wait_until_status

from codomyrmex_nb import TaskStatus as S


@pytest.fixture
def asyncio_errors():
    """What asyncio logs as errors (a task destroyed pending, an exception never retrieved)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep(level=logging.ERROR)
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


@pytest.mark.parametrize("how", ["timeout", "cancel", "stop"])
def test_an_interrupted_coroutine_runs_its_clean_up(make_orch, asyncio_errors, how):
    orch = make_orch(2)
    started, cleaned = threading.Event(), threading.Event()
    seen: list[str] = []

    async def wait_forever() -> None:
        started.set()
        try:
            await asyncio.sleep(1000)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            cleaned.set()

    task = orch.create_task("forever", func=wait_forever,
                            timeout=0.3 if how == "timeout" else None)
    orch.start_execution()
    assert started.wait(10)
    if how == "cancel":
        assert orch.cancel_task(task.id)
    elif how == "stop":
        orch.stop_execution()
    else:
        assert wait_until_status(orch, task, S.FAILED, timeout=10)
    assert cleaned.wait(5), "the coroutine's finally block never ran"
    assert seen == ["cancelled"]
    if how == "timeout":
        assert task.result.error_type == "TimeoutError"
    orch.stop_execution()
    gc.collect()
    assert not [m for m in asyncio_errors if "destroyed but it is pending" in m]


def test_tasks_a_coroutine_left_running_are_cancelled_as_it_returns(make_orch, asyncio_errors):
    orch = make_orch(1)
    child_ended: list[str] = []

    async def child() -> None:
        try:
            await asyncio.sleep(1000)
        finally:
            child_ended.append("finally")

    async def body() -> str:
        asyncio.get_running_loop().create_task(child())
        await asyncio.sleep(0.01)
        return "done"

    task = orch.create_task("spawns", func=body)
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert task.result.data == "done"
    assert child_ended == ["finally"]
    orch.stop_execution()
    gc.collect()
    assert not [m for m in asyncio_errors if "destroyed but it is pending" in m]
