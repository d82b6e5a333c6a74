"""Worker processes that start without re-running the parent's ``__main__``.

Why: ``spawn`` prepares each child by running the parent's main module again
(as ``__mp_main__``) so that objects pickled by reference to ``__main__`` can
be found. A script without ``if __name__ == "__main__":`` then runs its whole
body once more in every worker: tasks defined twice, results printed three
times. Our workers never need it: every call reaches them as cloudpickle bytes,
which carry ``__main__``'s functions and classes by value (as in a notebook,
whose ``__main__`` a child cannot import anyway), so ``__main__`` is left out of
the preparation of the processes named ``WORKER_PREFIX...``; every other
process (Dask's, the user's) is prepared as the standard library does.

The hook is ``multiprocessing.spawn.get_preparation_data``, which the standard
library's spawn launchers look up at each start and pass the process's name;
it is wrapped once, and the wrapper changes nothing for other names.
"""

from __future__ import annotations

import functools
import multiprocessing.spawn
from typing import Any

WORKER_PREFIX = "codo-process-"
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


def install() -> None:
    """Wrap ``get_preparation_data`` so that our workers skip ``__main__`` (idempotent)."""
    original = multiprocessing.spawn.get_preparation_data
    if getattr(original, "_codo_without_main", False):
        return

    @functools.wraps(original)
    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        if isinstance(name, str) and name.startswith(WORKER_PREFIX):
            for key in _MAIN_KEYS:
                data.pop(key, None)
        return data

    get_preparation_data._codo_without_main = True  # type: ignore[attr-defined]
    multiprocessing.spawn.get_preparation_data = get_preparation_data
