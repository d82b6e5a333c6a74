"""A task's ``display()`` output and shown figures stay with the task, never in a cell.

``core.capture`` keeps what a task *prints* per thread; this module does the
same for rich output. ``install(shell)`` (called when the IPython extension
loads) puts a router in front of the shell's ``display_pub.publish`` and
``display_pub.clear_output``:

- a ``publish`` from a thread whose writes a capture takes (``capture.current()``: a
  task's attempt on an engine worker thread, or a thread that task started while it
  runs) is kept on that capture
  (``Capture.add_display``) and is *not* published, so it never lands in
  whichever cell happens to be running; it comes back with the result as
  ``TaskResult.displays`` (and ``Attempt.displays``), a list of
  ``(mime bundle, metadata)``, and the node inspector shows it;
- a display *update* from such a thread (``handle.update(...)``,
  ``update_display(..., display_id=...)``) replaces the bundle it first showed,
  so a progress display keeps its last state instead of filling the list;
- ``clear_output()`` from such a thread is dropped (there is no cell to clear);
- every other call (the notebook's own cells, threads that are not tasks)
  goes through unchanged.

``install`` twice is one install; ``uninstall(shell)`` puts back what was
there. At most ``capture.MAX_DISPLAYS`` bundles are kept per attempt.

**matplotlib.** With the inline backend (Jupyter's default), ``plt.show()``
calls ``display(fig)``, so a figure a task *shows* is kept like any display.
A figure a task creates but never shows (``plt.show()`` or ``display(fig)``)
is not kept. Note that pyplot is one global state for every thread: after each
cell the inline backend shows and closes every pyplot figure left open, a
task's too, into that cell, and ``plt.show()`` in a task shows (and closes)
every open pyplot figure, the notebook's included. So a task that draws should
end with ``plt.show()`` (or ``display(fig); plt.close(fig)``); tasks drawing at
the same time, or while cells draw, should use figures pyplot does not track
(``matplotlib.figure.Figure()``) and ``display(fig)``.

Not covered: the ``processes`` and ``dask`` executors (a worker process has no
shell: ``display()`` there prints the text form, which is captured as text),
threads a task started once that task has ended (their displays go to the
notebook, as their prints do), and a shell whose ``display_pub`` is swapped after install (as
``%%capture`` does for the length of its cell).
"""

from __future__ import annotations

import threading
from typing import Any

from ..core import capture

DISPLAY_ID = "codomyrmex/display_id"  # metadata key: the display id a kept bundle was shown with

_lock = threading.Lock()
_installed: dict[int, Any] = {}  # id(shell) -> the display publisher wrapped for it


class _Router:
    """Stands in for a display publisher's method: capturing threads keep, others pass."""

    def __init__(self, publisher: Any, name: str) -> None:
        self.publisher = publisher
        self.name = name
        self.own = publisher.__dict__.get(name)  # an instance attribute replaced, if any
        self.original = getattr(publisher, name)  # what other threads' calls go to

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        box = capture.current()
        if box is None:
            return self.original(*args, **kwargs)
        if self.name == "publish":
            _keep(box, *args, **kwargs)
        return None  # clear_output in a task: nothing to clear

    def restore(self) -> None:
        if self.own is not None:
            setattr(self.publisher, self.name, self.own)
        else:
            self.publisher.__dict__.pop(self.name, None)

    def __repr__(self) -> str:
        return f"<codomyrmex_nb display router around {self.original!r}>"


def _keep(box: capture.Capture, data: dict[str, Any], metadata: dict[str, Any] | None = None,
          source: Any = None, *, transient: dict[str, Any] | None = None, update: bool = False,
          **kwargs: Any) -> None:
    metadata = dict(metadata or {})
    display_id = (transient or {}).get("display_id")
    if display_id is not None:
        metadata[DISPLAY_ID] = display_id
        if update and box.displays:  # replace what that display showed, if this attempt showed it
            for i in range(len(box.displays) - 1, -1, -1):
                if box.displays[i][1].get(DISPLAY_ID) == display_id:
                    box.displays[i] = (dict(data), metadata)
                    return
    box.add_display(data, metadata)


def install(shell: Any) -> bool:
    """Route ``shell``'s display output by thread (see the module); True if newly installed."""
    publisher = getattr(shell, "display_pub", None)
    if publisher is None:
        return False
    with _lock:
        if isinstance(publisher.__dict__.get("publish"), _Router):
            _installed.setdefault(id(shell), publisher)
            return False
        for name in ("publish", "clear_output"):
            if not isinstance(publisher.__dict__.get(name), _Router) and hasattr(publisher, name):
                setattr(publisher, name, _Router(publisher, name))
        _installed[id(shell)] = publisher
    return True


def uninstall(shell: Any) -> bool:
    """Undo ``install(shell)``; True if there was something to undo."""
    with _lock:
        publisher = _installed.pop(id(shell), None) or getattr(shell, "display_pub", None)
        if publisher is None:
            return False
        undone = False
        for name in ("publish", "clear_output"):
            router = publisher.__dict__.get(name)
            if isinstance(router, _Router):  # else wrapped again since: leave that alone
                router.restore()
                undone = True
    return undone


def installed(shell: Any) -> bool:
    """Whether ``shell``'s display output is routed by thread now."""
    publisher = getattr(shell, "display_pub", None)
    return publisher is not None and isinstance(publisher.__dict__.get("publish"), _Router)
