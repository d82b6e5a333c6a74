"""Where nest-asyncio is applied, and why only there.

nest-asyncio patches asyncio for the whole process (pure-Python tasks and
futures, a re-entrant ``asyncio.run``), so it is imported and applied lazily,
in one place only:

- an async ``%%codo_task`` cell (top-level ``await``) runs as a coroutine on an
  event loop in its worker thread; if that cell also calls ``asyncio.run`` or
  ``loop.run_until_complete`` (nested in the running loop, which plain asyncio
  refuses), that loop is patched just before the body runs.

Nowhere else needs it: a synchronous cell body runs in a worker thread with no
loop, so ``asyncio.run`` works there as is; and ``%codo_wait`` waits on the
engine's threading condition, not on an event loop, so it works in a kernel
whose loop is running (ipykernel's) without re-entering that loop.
"""

from __future__ import annotations

import asyncio


def allow_nested_runs(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Let code running on ``loop`` (default: the running loop) call ``asyncio.run`` again."""
    import nest_asyncio

    nest_asyncio.apply(loop or asyncio.get_running_loop())  # idempotent per loop
