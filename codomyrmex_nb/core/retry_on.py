"""Which failures are worth retrying: ``Task.retry_on`` and the definition-error rule.

A retry helps only when waiting can change the outcome (a dropped connection,
a busy service), not when the call itself is wrong. So:

- a ``TypeError`` raised while *binding* the call to the function (a missing or
  unexpected argument: the parameters do not fit the signature, and the body
  never ran) is a definition error and is never retried;
- with ``retry_on`` set (exception classes), only failures that are instances of
  one of them are retried; any other fails at once, its retries left unused;
- every other failure keeps the design's rule: retried while retries are left.

Timeouts count as ``TimeoutError`` (``TaskTimeoutError``, ``ResourceTimeout``)
and a dead worker process as ``WorkerCrashedError`` (a ``RuntimeError``). An
error that came back from a worker process as a ``RemoteError`` (it did not
unpickle) matches a ``retry_on`` class of the same module and name, as does a
class redefined since (a notebook cell that defines it was run again).

``retry_on`` may name classes as strings (``"ConnectionError"``,
``"mypkg.errors.Busy"``): a builtin by its name, anything else by
``module.QualName``, which is also how ``Task.to_dict`` writes them.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Mapping
from typing import Any

RetryOn = tuple[type[BaseException], ...]


def check_retry_on(value: Any, namespace: Mapping[str, Any] | None = None) -> RetryOn | None:
    """``value`` as a tuple of exception classes (or None: every failure is retried).

    Accepts one class, one name, or a list/tuple/set of them; names are looked
    up in ``namespace`` (the notebook's), then builtins, then as
    ``module.QualName``. Raises ``ValueError`` naming the bad entry.
    """
    if value is None:
        return None
    entries = (value,) if isinstance(value, str | type) else value
    if not isinstance(entries, list | tuple | set | frozenset):
        raise ValueError(f"retry_on must be exception classes (a tuple such as "
                         f"(ConnectionError, TimeoutError)), got {value!r}")
    classes: list[type[BaseException]] = []
    for entry in entries:
        kind = exception_named(entry, namespace) if isinstance(entry, str) else entry
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ValueError(f"retry_on entry {entry!r} is not an exception class: give classes "
                             "such as ConnectionError (or their names)")
        if kind not in classes:
            classes.append(kind)
    return tuple(classes)


def exception_named(name: str, namespace: Mapping[str, Any] | None = None) -> Any:
    """The class ``name`` stands for; ``ValueError`` if nothing by that name is known."""
    text = name.strip()
    head, _, rest = text.partition(".")
    if namespace is not None and head in namespace:  # a notebook name (``np.AxisError`` too)
        found = namespace[head]
        for attr in rest.split(".") if rest else ():
            found = getattr(found, attr, None)
        if found is not None:
            return found
    found = getattr(builtins, text, None)
    if found is None and "." in text:
        found = _import_dotted(text)
    if found is None:
        where = "the notebook, builtins" if namespace is not None else "builtins"
        raise ValueError(f"retry_on entry {name!r} is not a known exception class (looked in "
                         f"{where}; name others as module.ClassName)")
    return found


def _import_dotted(path: str) -> Any:
    """``pkg.mod.Class`` (or ``pkg.mod.Outer.Inner``): the longest importable module prefix."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            found = getattr(found, attr, None)
        return found
    return None


def retry_on_names(retry_on: RetryOn | None) -> list[str] | None:
    """Names that ``check_retry_on`` resolves back to the same classes (for ``to_dict``)."""
    if retry_on is None:
        return None
    return [kind.__name__ if getattr(builtins, kind.__name__, None) is kind
            else f"{kind.__module__}.{kind.__qualname__}" for kind in retry_on]


def not_retried(retry_on: RetryOn | None, error: BaseException | None, unbound: bool) -> str | None:
    """Why this failure must not be retried, or None if the retry rule applies."""
    if unbound:
        return "TypeError binding the call to the function (a definition error: fix the " \
               "task's parameters or the function's signature)"
    if retry_on is None or error is None or isinstance(error, retry_on):
        return None
    kind = type(error)
    wanted = {(c.__module__, c.__qualname__) for c in retry_on}
    if any((base.__module__, base.__qualname__) in wanted for base in kind.__mro__):
        return None  # the same class by name: redefined in a notebook, or a RemoteError
    names = ", ".join(c.__name__ for c in retry_on) or "nothing"
    return f"{kind.__name__} is not in retry_on ({names})"
