"""Is this call coming from a script's body outside ``if __name__ == "__main__":``?

Why: Dask's local cluster starts its workers with ``spawn``, which runs the
parent's main module again in every worker before it can serve. A script that
starts the cluster from its unguarded body thus starts it again in each worker,
and Dask only reports "Nanny failed to start". Asked before the cluster starts,
this module finds the main module's ``<module>`` frame on the calling stack and
reads, from the script's own source (``ast``), whether the line running there
sits inside such a guard. A notebook, ``python -c``, ``python -m pkg`` (whose
``pkg.__main__`` spawn never re-runs) or a call from another thread is never
flagged.
"""

from __future__ import annotations

import ast
import sys
from types import FrameType

GUARD = 'if __name__ == "__main__":'


def _reruns_main() -> str | None:
    """The main module's file if ``spawn`` runs it again in a child, else None."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if path is None or (spec_name is not None and spec_name.split(".")[-1] == "__main__"):
        return None
    return path


def _module_frame(main_globals: dict) -> FrameType | None:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is main_globals:
            return frame
        frame = frame.f_back
    return None


_NAME, _MAIN = ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))


def _is_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` (either way round)."""
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and len(node.test.ops) == 1 and isinstance(node.test.ops[0], ast.Eq)):
        return False
    return {ast.dump(node.test.left), ast.dump(node.test.comparators[0])} == {_NAME, _MAIN}


def unguarded_line() -> tuple[str, int] | None:
    """``(script, line)`` when the main module's body is running unguarded, else None."""
    path = _reruns_main()
    if path is None:
        return None
    frame = _module_frame(sys.modules["__main__"].__dict__)
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        with open(path, encoding="utf-8") as source:
            tree = ast.parse(source.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if _is_guard(node) and node.body[0].lineno <= line <= (node.body[-1].end_lineno or 0):
            return None
    return path, line
