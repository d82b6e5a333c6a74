"""What one fingerprint call carries, shared by the value and the code hashing.

``_Ctx`` is the state of one walk: the digests of composites already hashed (a value
met twice is hashed once), the composites being hashed (met again: a cycle), the
depth, and the budget of the value being read (``BUDGET_SECONDS`` of this thread's
CPU time, ``BUDGET_BYTES``). ``Unhashable`` and ``TooCostly`` are the two ways a
fingerprint is refused. ``_str`` is the one encoding of text every part uses, so that
equal inputs give equal bytes whichever module hashes them.
"""

from __future__ import annotations

import gc
import hashlib
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from .reach import metadata_seconds
from .sizes import MB, size_text

_PREFIX = b"codomyrmex-fingerprint-1;py%d.%d;" % sys.version_info[:2]
MAX_DEPTH = 200  # nesting levels before a value is declared unhashable
#: What hashing one value the code reads (a global, a module attribute) may cost; beyond
#: either, the task is not restorable (``TooCostly``) rather than cached on a partial view.
BUDGET_SECONDS = 0.05
BUDGET_BYTES = 64 * MB

_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})

_sha256 = hashlib.sha256


class Unhashable(Exception):
    """A value the fingerprint cannot take (the message names it and why); the task
    is then never restorable."""


class TooCostly(Unhashable):
    """A value the code reads is too big or too slow to hash (over ``BUDGET_SECONDS`` or
    ``BUDGET_BYTES``), or changed while it was hashed: never counted by type, the task
    is not restorable."""


# -- the budget's clock ----------------------------------------------------------------


def _clock() -> float:
    """The budget's clock: the hashing thread's CPU time, so that a busy machine (another
    process, the task's own threads) never makes a value "too slow" that is not, less the
    one-time reads of package metadata (``reach``) and the garbage collections this thread
    ran (a full one in a big process takes 100 ms), which belong to no value."""
    return time.thread_time() - metadata_seconds() - _gc_spent.get(_get_ident(), 0.0)


_get_ident = threading.get_ident
_gc_began: dict[int, float] = {}  # thread -> CPU time when its running collection began
_gc_spent: dict[int, float] = {}  # thread -> CPU seconds it spent collecting garbage


def _gc_clock(phase: str, info: dict) -> None:
    """``gc.callbacks`` hook: count each thread's collection time (runs in that thread)."""
    ident = _get_ident()
    if phase == "start":
        _gc_began[ident] = time.thread_time()
    else:
        began = _gc_began.pop(ident, None)
        if began is not None:
            _gc_spent[ident] = _gc_spent.get(ident, 0.0) + time.thread_time() - began


gc.callbacks.append(_gc_clock)


# -- the state of one walk -------------------------------------------------------------


class _Ctx:
    __slots__ = ("upstream", "include_globals", "memo", "keep", "active", "depth", "deadline",
                 "spent", "reads_data", "ticks")

    def __init__(self, upstream: Mapping[str, str] | None, include_globals: bool = True) -> None:
        self.upstream = upstream
        self.include_globals = include_globals
        self.memo: dict[int, bytes] = {}  # id -> digest of composites hashed in this call
        self.keep: list[object] = []      # keeps those ids valid for the call
        self.active: set[int] = set()     # composites being hashed (a repeat is a cycle)
        self.depth = 0
        self.deadline: float | None = None  # while hashing a value the code reads: its budget
        self.spent = 0                      # bytes hashed of that value so far
        self.reads_data = False             # a value (not code) the code reads was hashed
        self.ticks = 0                      # composites hashed: the clock is read every 64


# -- the budget of one value the code reads ----------------------------------------------
# (``BUDGET_SECONDS`` and ``BUDGET_BYTES`` are read here only: patch them on this module.)


def _deadline() -> float:
    """When the value about to be hashed is over the time budget (on ``_clock``)."""
    return _clock() + BUDGET_SECONDS


def _charge(ctx: _Ctx, nbytes: int) -> None:
    """Count ``nbytes`` against the budget of the value being read (if any)."""
    if ctx.deadline is not None:
        ctx.spent += nbytes
        if ctx.spent > BUDGET_BYTES:
            raise _too_big()


def _check_size(nbytes: int) -> None:
    """Refuse a value of ``nbytes`` (a long string) over the byte budget, before the work."""
    if nbytes > BUDGET_BYTES:
        raise _too_big()


def _too_big() -> TooCostly:
    return TooCostly(f"it is over {size_text(BUDGET_BYTES)} to hash")


def _too_slow() -> TooCostly:
    return TooCostly(f"it takes over {BUDGET_SECONDS * 1000:.0f} ms to hash")


def _budget_note() -> str:
    return f"the budget is {BUDGET_SECONDS * 1000:.0f} ms and {size_text(BUDGET_BYTES)}"


# -- names and text, encoded the same everywhere ----------------------------------------


def _str(h: Any, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    h.update(b"s%d:%b" % (len(data), data))


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _type_name(value: object) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
