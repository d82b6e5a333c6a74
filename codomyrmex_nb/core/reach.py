"""What a function reaches beyond its own code, for its fingerprint.

``attribute_paths``: the attribute chains its bytecode loads on each global name
(``helper.g`` -> ``{"helper": {("g",)}}``; a bare use of the name is the empty
chain), cached per code object like the code digest. ``distribution`` names the
installed distribution (and its version) that provides a top-level package, so an
installed package counts by what is installed rather than by its code;
``is_editable`` tells a package installed in editable mode (its code is the user's
own, being worked on). Both ask ``importlib.metadata`` once per process and package:
first under the package's own name (well under a millisecond), and only when no
distribution has that name (``yaml`` is PyYAML's) through the full table of
installed packages (``packages_distributions``, about 0.1 s, read once).
``metadata_seconds`` is the CPU time those one-time look-ups took, which the
fingerprint's hashing budget does not count.
"""

from __future__ import annotations

import dis
import functools
import importlib.metadata as metadata
import json
import sys
import time
import types
import weakref
from collections.abc import Iterator
from typing import Any

__all__ = ["attribute_paths", "distribution", "is_editable", "local_imports",
           "metadata_seconds"]

_LOADS_NAME = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_LOADS_ATTR = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_paths_cache: weakref.WeakKeyDictionary[types.CodeType, dict[str, frozenset[tuple[str, ...]]]] = \
    weakref.WeakKeyDictionary()
_imports_cache: weakref.WeakKeyDictionary[types.CodeType, tuple[Any, ...]] = \
    weakref.WeakKeyDictionary()
STDLIB = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)
_spent = [0.0]  # CPU seconds spent reading metadata (one-time costs)


def _each_code(code: types.CodeType) -> Iterator[list[tuple[str, Any]]]:
    """(opname, argval) of each instruction, per code object: ``code`` and those nested in it."""
    stack = [code]
    while stack:
        co = stack.pop()
        stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
        yield [(i.opname, i.argval) for i in dis.get_instructions(co)]


def attribute_paths(code: types.CodeType) -> dict[str, frozenset[tuple[str, ...]]]:
    """Global name -> the attribute chains loaded on it, in ``code`` and the code nested in it."""
    try:
        return _paths_cache[code]
    except KeyError:
        pass
    found: dict[str, set[tuple[str, ...]]] = {}
    for ops in _each_code(code):
        for at, (op, name) in enumerate(ops):
            if op not in _LOADS_NAME:
                continue
            chain = []
            for next_op, attr in ops[at + 1:]:
                if next_op not in _LOADS_ATTR:
                    break
                chain.append(attr)
            found.setdefault(name, set()).add(tuple(chain))
    result = {name: frozenset(chains) for name, chains in found.items()}
    _paths_cache[code] = result
    return result


def local_imports(code: types.CodeType) -> tuple[tuple[str, int, tuple[str, ...] | None], ...]:
    """The imports written inside ``code`` and the code nested in it (``import helper``,
    ``from helper import f`` in a function's body, and ``importlib.import_module("helper")``
    or ``__import__("helper")`` with the name written as a constant): (module, level, the
    names taken from it, or None for the module whole), cached per code object."""
    try:
        return _imports_cache[code]
    except KeyError:
        pass
    found: set[tuple[str, int, tuple[str, ...] | None]] = set()
    for ops in _each_code(code):
        for at, (op, name) in enumerate(ops):
            if op == "LOAD_CONST" and at and ops[at - 1][1] in _DYNAMIC and \
                    ops[at - 1][0] in _LOADS_CALLABLE and _module_name(name):
                found.add((name, 0, None))  # importlib.import_module("helper"), __import__
                continue
            if op != "IMPORT_NAME":
                continue
            level = ops[at - 2][1] if at >= 2 and ops[at - 2][0] == "LOAD_CONST" else 0
            names = ops[at - 1][1] if at >= 1 and ops[at - 1][0] == "LOAD_CONST" else None
            if not isinstance(names, tuple) or "*" in names:
                names = None  # the module bound whole (or all of it taken)
            found.add((name, level if isinstance(level, int) else 0, names))
    result = tuple(sorted(found, key=repr))
    _imports_cache[code] = result
    return result


_DYNAMIC = frozenset({"import_module", "__import__"})  # a module imported by a name given
_LOADS_CALLABLE = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_ATTR", "LOAD_METHOD", "LOAD_FAST",
                             "LOAD_DEREF"})


def _module_name(value: Any) -> bool:
    """A constant that reads as an absolute module name (``"helper"``, ``"pkg.mod"``)."""
    return isinstance(value, str) and all(part.isidentifier() for part in value.split("."))


def metadata_seconds() -> float:
    """CPU seconds this process spent in the look-ups below (each is made once)."""
    return _spent[0]


def _timed(func: Any) -> Any:
    @functools.wraps(func)
    def wrapper(top_level: str) -> Any:
        began = time.thread_time()
        try:
            return func(top_level)
        finally:
            _spent[0] += time.thread_time() - began
    return functools.cache(wrapper)


@functools.cache
def _packages() -> dict[str, list[str]]:
    try:
        return metadata.packages_distributions()
    except Exception:  # noqa: BLE001 - broken metadata: modules then count by name only
        return {}


def _find(top_level: str) -> metadata.Distribution | None:
    if top_level in STDLIB:
        return None
    try:
        return metadata.distribution(top_level)
    except Exception:  # noqa: BLE001 - not a distribution's name: look it up in the table
        pass
    names = _packages().get(top_level)
    try:
        return metadata.distribution(names[0]) if names else None
    except Exception:  # noqa: BLE001
        return None


@_timed
def distribution(top_level: str) -> str | None:
    """``name==version`` of the distribution providing the top-level package, else None
    (the standard library, or a module no installed distribution claims)."""
    dist = _find(top_level)
    if dist is None:
        return None
    try:
        return f"{dist.metadata['Name']}=={dist.version}"
    except Exception:  # noqa: BLE001 - metadata without a name or version
        return None


@_timed
def is_editable(top_level: str) -> bool:
    """True when the package's distribution is installed editable (``pip install -e``)."""
    dist = _find(top_level)
    if dist is None:
        return False
    try:
        text = dist.read_text("direct_url.json")
        return bool(text and json.loads(text).get("dir_info", {}).get("editable"))
    except Exception:  # noqa: BLE001 - no or unreadable direct_url.json: not editable
        return False
