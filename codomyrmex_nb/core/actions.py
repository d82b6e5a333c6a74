"""Where ``module`` + ``action`` lead: registered actions, then built-ins, then imports.

Resolution order for ``Task(module=m, action=a)``:
1. an action registered on the orchestrator (``orchestrator.register_action``),
2. one registered process-wide with ``@register_action(m, a)``,
3. a built-in action (``codomyrmex_nb.actions.<m>``),
4. ``importlib.import_module(m).a``.
Failing all four, the task fails with ``ImportError`` (no such module) or
``AttributeError`` (no such action), and the message lists what exists.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable
from typing import Any

BUILTIN_MODULES = ("environment_setup", "static_analysis", "data_visualization")

_global: dict[tuple[str, str], Callable[..., Any]] = {}
_global_lock = threading.Lock()


def register_action(module: str, action: str | None = None,
                    func: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """Register ``func`` as ``module.action`` for every orchestrator; usable as a decorator.

    ``@register_action("etl", "load")`` or ``@register_action("etl")`` (the
    function's name becomes the action).
    """
    if not isinstance(module, str) or not module:
        raise ValueError(f"register_action needs a module name, got {module!r}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise ValueError(f"register_action: {fn!r} is not callable")
        with _global_lock:
            _global[(module, action or fn.__name__)] = fn
        return fn

    return decorate(func) if func is not None else decorate


def _public_callables(mod: Any) -> list[str]:
    names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    return sorted(n for n in names if callable(getattr(mod, n, None))
                  and not inspect.isclass(getattr(mod, n, None)))


class ActionRegistry:
    """Actions registered on one orchestrator, resolved with the order above."""

    def __init__(self) -> None:
        self._local: dict[tuple[str, str], Callable[..., Any]] = {}

    def register(self, module: str, action: str, func: Callable[..., Any]) -> None:
        if not callable(func):
            raise ValueError(f"register_action: {func!r} is not callable")
        self._local[(module, action)] = func

    def resolve(self, module: str, action: str) -> Callable[..., Any]:
        key = (module, action)
        fn = self._local.get(key) or _global.get(key)
        if fn is not None:
            return fn
        if not module or not action:
            raise ImportError(
                "task has no action: give it func=..., or module= and action= naming a "
                f"registered or built-in action ({self._catalogue()})")
        target = f"codomyrmex_nb.actions.{module}" if module in BUILTIN_MODULES else module
        try:
            mod = importlib.import_module(target)
        except ImportError as exc:
            if exc.name not in (target, module.split(".")[0]):
                raise  # the module exists but one of its own imports failed
            raise ImportError(
                f"no action module {module!r}: not registered, not built in, not importable. "
                f"Available: {self._catalogue()}", name=module) from None
        fn = getattr(mod, action, None)
        if callable(fn):
            return fn
        registered = sorted(a for (m, a) in {**_global, **self._local} if m == module)
        available = sorted(set(registered) | set(_public_callables(mod)))
        raise AttributeError(
            f"module {module!r} has no action {action!r}; available: {', '.join(available) or 'none'}")

    def _catalogue(self) -> str:
        registered = sorted(f"{m}.{a}" for (m, a) in {**_global, **self._local})
        parts = [f"built-in modules {', '.join(BUILTIN_MODULES)}"]
        if registered:
            parts.insert(0, f"registered {', '.join(registered)}")
        return "; ".join(parts)
