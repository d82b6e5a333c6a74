"""What a function reaches beyond its own code, for its fingerprint.

``attribute_paths``: the attribute chains its bytecode loads on each global name
(``helper.g`` -> ``{"helper": {("g",)}}``; a bare use of the name is the empty
chain), cached per code object like the code digest. ``distribution`` names the
installed distribution (and its version) that provides a module, so an installed
package counts by what is installed rather than by its code; ``is_editable`` tells
a package installed in editable mode (its code is the user's own, being worked on).
Both read ``importlib.metadata`` once per process and top-level package.
"""

from __future__ import annotations

import dis
import functools
import importlib.metadata as metadata
import json
import types
import weakref

__all__ = ["attribute_paths", "distribution", "is_editable", "warm"]

_LOADS_NAME = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_LOADS_ATTR = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_paths_cache: weakref.WeakKeyDictionary[types.CodeType, dict[str, frozenset[tuple[str, ...]]]] = \
    weakref.WeakKeyDictionary()


def attribute_paths(code: types.CodeType) -> dict[str, frozenset[tuple[str, ...]]]:
    """Global name -> the attribute chains loaded on it, in ``code`` and the code nested in it."""
    try:
        return _paths_cache[code]
    except KeyError:
        pass
    found: dict[str, set[tuple[str, ...]]] = {}
    stack = [code]
    while stack:
        co = stack.pop()
        stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
        ops = [(i.opname, i.argval) for i in dis.get_instructions(co)]
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


def warm() -> None:
    """Read the installed distributions now (about 0.1 s, once per process), so that this
    one-time cost never counts against the hashing budget of a value."""
    _packages()


@functools.cache
def _packages() -> dict[str, list[str]]:
    try:
        return metadata.packages_distributions()
    except Exception:  # noqa: BLE001 - broken metadata: modules then count by name only
        return {}


@functools.cache
def distribution(top_level: str) -> str | None:
    """``name==version`` of the distribution providing the top-level package, else None."""
    names = _packages().get(top_level)
    if not names:
        return None
    try:
        return f"{names[0]}=={metadata.version(names[0])}"
    except Exception:  # noqa: BLE001 - metadata without a version
        return names[0]


@functools.cache
def is_editable(top_level: str) -> bool:
    """True when the package's distribution is installed editable (``pip install -e``)."""
    names = _packages().get(top_level)
    if not names:
        return False
    try:
        text = metadata.distribution(names[0]).read_text("direct_url.json")
        return bool(text and json.loads(text).get("dir_info", {}).get("editable"))
    except Exception:  # noqa: BLE001 - no or unreadable direct_url.json: not editable
        return False
