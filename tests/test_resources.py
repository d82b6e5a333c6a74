"""Resource locks: shared reads, sole writes, pools, all-or-nothing grants, FIFO fairness."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codomyrmex_nb import ResourceTimeout, ResourceType, TaskResource, TaskStatus
from codomyrmex_nb.core.resources import ResourceManager, claims_of


def claims(*pairs):
    return tuple(pairs)


def test_reads_share_and_writes_are_sole():
    rm = ResourceManager()
    assert rm.acquire("r1", claims(("db", "read")))
    assert rm.acquire("r2", claims(("db", "read")))
    assert not rm.acquire("w", claims(("db", "write")))
    assert rm.release("r1") == []
    assert rm.release("r2") == ["w"]
    assert not rm.acquire("r3", claims(("db", "read")))
    assert rm.release("w") == ["r3"]


def test_waiting_writer_is_not_overtaken_by_later_readers():
    rm = ResourceManager()
    assert rm.acquire("r1", claims(("db", "read")))
    assert not rm.acquire("w", claims(("db", "write")))
    # A stream of new readers queues behind the writer instead of starving it.
    for i in range(5):
        assert not rm.acquire(f"late{i}", claims(("db", "read")))
    assert rm.release("r1") == ["w"]
    assert rm.release("w") == [f"late{i}" for i in range(5)]


def test_all_or_nothing():
    rm = ResourceManager()
    assert rm.acquire("a", claims(("x", "write")))
    assert not rm.acquire("b", claims(("y", "write"), ("x", "write")))
    assert rm.holders("y") == []  # b holds nothing while it waits
    assert rm.release("a") == ["b"]
    assert {tok for tok, _ in rm.holders("x") + rm.holders("y")} == {"b"}


def test_capacity_pool_admits_that_many_writers_and_exclusive_takes_all():
    rm = ResourceManager()
    rm.set_capacity("api", 2)
    assert rm.acquire("a", claims(("api", "write")))
    assert rm.acquire("b", claims(("api", "write")))
    assert not rm.acquire("c", claims(("api", "write")))
    assert not rm.acquire("x", claims(("api", "exclusive")))
    assert rm.release("a") == ["c"]
    assert rm.release("b") == []
    assert rm.release("c") == ["x"]


def test_withdrawn_waiter_unblocks_those_behind_it():
    rm = ResourceManager()
    assert rm.acquire("r", claims(("db", "read")))
    assert not rm.acquire("w", claims(("db", "write")))
    assert not rm.acquire("r2", claims(("db", "read")))
    assert rm.withdraw("w") == ["r2"]


def test_claims_keep_the_strongest_mode_per_key():
    res = [TaskResource(ResourceType.FILE, "f", "read"), TaskResource(ResourceType.FILE, "f", "exclusive")]
    assert claims_of(res) == (("file:f", "exclusive"),)


def test_conflicting_capacities_are_refused_at_add(orch):
    orch.create_task("a", func=lambda: 1,
                     resources=[TaskResource(ResourceType.EXTERNAL_API, "openai", "write", capacity=2)])
    with pytest.raises(ValueError, match="already has capacity 2"):
        orch.create_task("b", func=lambda: 1,
                         resources=[TaskResource(ResourceType.EXTERNAL_API, "openai", "write", capacity=3)])


def test_pool_limits_concurrency_in_the_engine(make_orch):
    orch = make_orch(6)
    lock = threading.Lock()
    active, peak = [0], [0]
    release = threading.Event()

    def call_api():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        release.wait(0.05)
        with lock:
            active[0] -= 1

    api = TaskResource(ResourceType.EXTERNAL_API, "openai", "write", capacity=2)
    for i in range(8):
        orch.create_task(f"call{i}", func=call_api, resources=[api])
    orch.start_execution()
    assert orch.wait_for_completion(20)
    assert peak[0] == 2


def test_resource_timeout_fails_the_waiting_task(orch):
    gate = threading.Event()
    held = orch.create_task("holder", func=gate.wait, parameters={"timeout": 10},
                            resources=[TaskResource(ResourceType.DATABASE, "db", "exclusive")])
    waiter = orch.create_task("waiter", func=lambda: "never",
                              resources=[TaskResource(ResourceType.DATABASE, "db", "read", timeout=0.3)])
    orch.start_execution()
    done = threading.Event()
    orch.subscribe(lambda e: e.name == "waiter" and e.status and e.status.is_terminal and done.set())
    assert done.wait(5)
    assert waiter.status is TaskStatus.FAILED
    assert waiter.result.error_type == "ResourceTimeout"
    assert isinstance(waiter.result.exception, ResourceTimeout)
    assert "database:db" in waiter.result.error_message
    gate.set()
    orch.wait_for_completion(10)
    assert held.status is TaskStatus.COMPLETED


# -- property: any sequence of requests, releases and withdrawals keeps the lock rules ---------

_ops = st.lists(st.tuples(
    st.sampled_from(["acquire", "release", "withdraw"]),
    st.integers(0, 11),
    st.lists(st.tuples(st.sampled_from(["a", "b", "pool"]), st.sampled_from(["read", "write", "exclusive"])),
             min_size=1, max_size=3, unique_by=lambda c: c[0]),
), max_size=80)


def _check_holds(rm: ResourceManager) -> None:
    for key in ("a", "b", "pool"):
        modes = [mode for _, mode in rm.holders(key)]
        if "exclusive" in modes:
            assert modes == ["exclusive"], (key, modes)
        if "write" in modes:
            assert "read" not in modes and modes.count("write") <= rm.capacity(key), (key, modes)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_any_history_keeps_sole_holds_sole_and_grants_waiters_in_order(ops):
    rm = ResourceManager()
    rm.set_capacity("pool", 2)
    holding, waiting = set(), []
    for op, token, request in ops:
        if op == "acquire" and token not in holding and token not in waiting:
            if rm.acquire(token, tuple(request)):
                holding.add(token)
            else:
                waiting.append(token)
        elif op == "release" and token in holding:
            holding.discard(token)
            granted = rm.release(token)
            assert granted == [w for w in waiting if w in granted]  # queue order
            holding.update(granted)
            waiting = [w for w in waiting if w not in granted]
        elif op == "withdraw" and token in waiting:
            waiting.remove(token)
            granted = rm.withdraw(token)
            holding.update(granted)
            waiting = [w for w in waiting if w not in granted]
        _check_holds(rm)
        assert rm.waiting == waiting
    # Releasing everything grants every waiter eventually: nobody waits forever.
    while holding:
        token = holding.pop()
        granted = rm.release(token)
        holding.update(granted)
        waiting = [w for w in waiting if w not in granted]
        _check_holds(rm)
    assert waiting == [] and rm.waiting == []


def test_wait_is_recorded_against_the_resource_that_blocked(orch):
    gate = threading.Event()
    db = TaskResource(ResourceType.DATABASE, "db", "exclusive")
    orch.create_task("holder", func=lambda: gate.wait(0.3), resources=[db])
    waiter = orch.create_task("waiter", func=lambda: 1, resources=[
        TaskResource(ResourceType.CPU, "cpu", "read"), TaskResource(ResourceType.DATABASE, "db", "read")])
    orch.start_execution()
    assert orch.wait_for_completion(10)
    assert set(waiter.wait_by_resource) == {"database:db"}
    assert waiter.wait_by_resource["database:db"] == waiter.wait_resources > 0.2
    view = next(v for v in orch.snapshot().tasks if v.name == "waiter")
    assert dict(view.wait_by_resource) == waiter.wait_by_resource and view.blocked_on is None
