"""Named resource locks: shared reads, sole writes, pools, all-or-nothing, first come first served.

A request is a list of claims ``(key, mode)``. It is granted whole or not at
all, so tasks never hold part of what they need (no deadlock). A request that
cannot be granted joins a FIFO queue; its claims stay *reserved* against later
requests, so a waiting writer is never overtaken forever by a stream of
readers (no starvation). Releases grant waiters in queue order.

Modes: ``read`` holds share a resource with other reads; ``write`` takes one
slot of the resource's capacity (default 1) and excludes reads; ``exclusive``
takes the whole resource. Holders are opaque tokens (the engine's attempts).
No threads or locks here: the engine calls it under its own lock.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from .model import TaskResource

_STRENGTH = {"read": 0, "write": 1, "exclusive": 2}


@dataclass
class _Usage:
    readers: int = 0
    writers: int = 0
    exclusive: int = 0


def claims_of(resources: Iterable[TaskResource]) -> tuple[tuple[str, str], ...]:
    """One claim per key, keeping the strongest mode asked for."""
    modes: dict[str, str] = {}
    for res in resources:
        old = modes.get(res.key)
        if old is None or _STRENGTH[res.mode] > _STRENGTH[old]:
            modes[res.key] = res.mode
    return tuple(modes.items())


class ResourceManager:
    """Grants and queues claims; reports who holds and who waits."""

    def __init__(self) -> None:
        self._usage: dict[str, _Usage] = {}
        self._capacity: dict[str, int] = {}
        self._holds: dict[Hashable, tuple[tuple[str, str], ...]] = {}
        self._waiters: dict[Hashable, tuple[tuple[str, str], ...]] = {}  # insertion = FIFO

    # -- configuration --------------------------------------------------------------
    def check_capacity(self, res: TaskResource) -> None:
        """Raise if ``res`` declares a capacity that contradicts the one in force."""
        known = self._capacity.get(res.key)
        if res.capacity is not None and known is not None and known != res.capacity:
            raise ValueError(
                f"resource {res.key} already has capacity {known}, but a task declares "
                f"capacity {res.capacity}; declare the same capacity everywhere (or only once)")

    def set_capacity(self, key: str, capacity: int) -> None:
        self._capacity[key] = capacity

    def forget_capacities(self) -> None:
        """Drop declared pools (the tasks that declared them were forgotten)."""
        self._capacity.clear()

    def forget_capacity(self, key: str) -> None:
        """Drop one declared pool (its last user was removed): it may be declared anew."""
        self._capacity.pop(key, None)

    def declared(self, key: str) -> bool:
        """Whether a task declared a capacity for ``key`` (else it is 1)."""
        return key in self._capacity

    def capacity(self, key: str) -> int:
        return self._capacity.get(key, 1)

    # -- grant / release -------------------------------------------------------------
    def acquire(self, token: Hashable, claims: tuple[tuple[str, str], ...]) -> bool:
        """Grant now (True) or queue behind earlier waiters (False)."""
        if self._fits(claims, self._reserved(self._waiters) if self._waiters else {}):
            self._hold(token, claims)
            return True
        self._waiters[token] = claims
        return False

    def release(self, token: Hashable) -> list[Hashable]:
        """Drop ``token``'s holds; returns the waiters granted as a result."""
        claims = self._holds.pop(token, None)
        if claims is None:
            return []
        usage = self._usage
        for key, mode in claims:
            use = usage[key]
            if mode == "read":
                use.readers -= 1
            elif mode == "write":
                use.writers -= 1
            else:
                use.exclusive -= 1
            if not (use.readers or use.writers or use.exclusive):
                del usage[key]  # one entry per key *in use*: distinct keys never pile up
        return self._grant_waiters() if self._waiters else []

    def withdraw(self, token: Hashable) -> list[Hashable]:
        """Remove a queued request (cancelled or timed out); returns waiters it unblocked."""
        if self._waiters.pop(token, None) is None:
            return []
        return self._grant_waiters()

    def entries(self) -> int:
        """How many keys are tracked (in use) now; stays bounded by what is held."""
        return len(self._usage)

    def blocking_key(self, token: Hashable) -> str | None:
        """The first resource that keeps a queued request waiting (for diagnostics)."""
        for key, mode in self._waiters.get(token, ()):
            if not self._claim_fits(key, mode, {}):
                return key
        claims = self._waiters.get(token, ())
        return claims[0][0] if claims else None

    def holders(self, key: str) -> list[tuple[Hashable, str]]:
        return [(tok, mode) for tok, claims in self._holds.items() for k, mode in claims if k == key]

    @property
    def waiting(self) -> list[Hashable]:
        return list(self._waiters)

    # -- internals -----------------------------------------------------------------------
    def _grant_waiters(self) -> list[Hashable]:
        granted: list[Hashable] = []
        reserved: dict[str, list[int]] = {}
        for token, claims in list(self._waiters.items()):
            if self._fits(claims, reserved):
                del self._waiters[token]
                self._hold(token, claims)
                granted.append(token)
            else:
                self._reserve(reserved, claims)
        return granted

    @staticmethod
    def _reserved(waiters: dict[Hashable, tuple[tuple[str, str], ...]]) -> dict[str, list[int]]:
        reserved: dict[str, list[int]] = {}
        for claims in waiters.values():
            ResourceManager._reserve(reserved, claims)
        return reserved

    @staticmethod
    def _reserve(reserved: dict[str, list[int]], claims: tuple[tuple[str, str], ...]) -> None:
        for key, mode in claims:
            slot = reserved.setdefault(key, [0, 0])
            slot[0 if mode == "read" else 1] += 1

    def _fits(self, claims: tuple[tuple[str, str], ...], reserved: dict[str, list[int]]) -> bool:
        return all(self._claim_fits(key, mode, reserved) for key, mode in claims)

    def _claim_fits(self, key: str, mode: str, reserved: dict[str, list[int]]) -> bool:
        use = self._usage.get(key)
        queued_reads, queued_sole = reserved.get(key, (0, 0))
        if use is None:
            use = _Usage()
        if use.exclusive:
            return False
        if mode == "read":
            return use.writers == 0 and queued_sole == 0
        if use.readers or queued_reads or queued_sole:
            return False
        if mode == "write":
            return use.writers < self.capacity(key)
        return use.writers == 0

    def _hold(self, token: Hashable, claims: tuple[tuple[str, str], ...]) -> None:
        self._holds[token] = claims
        for key, mode in claims:
            use = self._usage.get(key)
            if use is None:
                use = self._usage[key] = _Usage()
            if mode == "read":
                use.readers += 1
            elif mode == "write":
                use.writers += 1
            else:
                use.exclusive += 1
