"""What the live view asks of where it runs: is there a widget front end, can it have a side
panel, which cell runs now. In one module so that every part of the view reads the same
answer (and a test that pretends a front end is there patches one place)."""

from __future__ import annotations

import os
import sys


def has_widget_frontend() -> bool:
    """True inside a Jupyter kernel (a front end may render widgets); False in a script or terminal."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def has_side_panels() -> bool:
    """True where a side panel can show: a kernel a Jupyter server started for a notebook.

    JupyterLab (and Notebook 7, both on ``jupyter_server``) tell the kernel its
    notebook in ``JPY_SESSION_NAME``; nbconvert, nbclient, the classic tools and a
    terminal do not, and VS Code (``__vsc_ipynb_file__``) has no JupyterLab panels.
    So there the view says it shows inline rather than claim a panel nobody sees.
    """
    if not has_widget_frontend() or not os.environ.get("JPY_SESSION_NAME", "").strip():
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return "__vsc_ipynb_file__" not in (getattr(shell, "user_ns", None) or {})


def running_cell() -> int | None:
    """The running cell's execution count (None outside IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return None if shell is None else shell.execution_count
