"""A result as bytes: pickled for the journal (or a spill file of the memory budget), and a
cheap lower bound of that size, so a result too large to keep is refused before
pickling doubles its memory.
"""

from __future__ import annotations

import pickle
import sys
from itertools import islice
from typing import Any

import cloudpickle

NO_SIZE = frozenset({int, float, bool, complex, type(None)})  # a few bytes at most
_FLAT = frozenset({bytes, str, bytearray})  # pickled at least at their length


def dumps(value: Any) -> bytes:
    """Plain pickle where it works (fast for plain data), cloudpickle otherwise."""
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:  # noqa: BLE001 - lambdas, notebook classes: cloudpickle knows them
        return cloudpickle.dumps(value)


def dumps_to(value: Any, file: Any) -> None:
    """``dumps`` straight into a file (a result spilled by the memory budget)."""
    try:
        pickle.dump(value, file, protocol=5)
    except Exception:  # noqa: BLE001 - as dumps: cloudpickle knows the rest
        file.seek(0)
        file.truncate()
        cloudpickle.dump(value, file)


def pickled_at_least(value: Any, depth: int = 0, seen: set[int] | None = None) -> int:
    """A cheap lower bound of the bytes pickling ``value`` makes (0 when it cannot tell):
    a result too large for the journal is refused before pickling doubles its memory.
    Bytes and strings by length, numpy arrays and pandas numeric columns by ``nbytes``
    (an object column or array: a byte an item), the first 16 items of lists, tuples
    and dicts, a few levels deep, each object once (pickle stores a repeat as a
    reference), short strings and bytes inside them not counted; no copy and no walk of
    big data (well under a microsecond on small results)."""
    kind = type(value)
    if kind in _FLAT:
        return len(value)
    if kind in NO_SIZE:
        return 0
    if kind is list or kind is tuple or kind is dict:
        if depth >= 3 or not value:
            return 0
        total = 0
        for item in islice(value.values() if kind is dict else value, 16):
            item_kind = type(item)
            if item_kind in NO_SIZE or (item_kind in _FLAT and len(item) < 4096):
                continue  # too small to matter: not even worth remembering
            if seen is None:
                seen = {id(value)}
            if id(item) not in seen:
                seen.add(id(item))
                total += pickled_at_least(item, depth + 1, seen)
        return total
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return int(value.size if value.dtype.hasobject else value.nbytes)
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame | pd.Series):
        if isinstance(value, pd.Series):
            return int(value.memory_usage(index=False)) if _numeric(value.dtype) else len(value)
        usage = zip(value.memory_usage(index=False), value.dtypes, strict=True)
        return int(sum(n if _numeric(dtype) else len(value) for n, dtype in usage))
    return 0


def _numeric(dtype: Any) -> bool:
    """Stored as plain numbers (pickled at their size), not objects."""
    return getattr(dtype, "kind", "O") in "biufcmM"
