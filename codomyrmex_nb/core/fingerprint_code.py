"""Hashing code for a fingerprint: a function by value, with what it reads.

``code_fingerprint`` hashes a function by value: its qualified name and module, its
code object (bytecode, constants including nested code, names, argument counts;
cached per code object, no file I/O), its defaults, its closure values and, for
functions of user code (``code_origin``), what the code reads: its globals, the
modules it imports in its body and, on a user module it names, the attributes its
bytecode loads (``helper.g``, ``helper.K``; ``reach``). What is read counts by value:
functions and classes by their code (recursively, each once: a visited set), data by
content (``fingerprint_values``) within the budget of ``fingerprint_context``: a value
over it raises ``TooCostly`` naming it, so the task is never restored on a partial
view. A global that cannot be hashed at all (a lock, a connection) counts by its
type, as the outside world. Library functions, classes and modules count by name and
distribution version.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
import weakref
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from .code_origin import _by_reference, _is_library_module, _library_file, _library_version
from .fingerprint_context import (
    _PLAIN,
    _PREFIX,
    TooCostly,
    Unhashable,
    _budget_note,
    _check_size,
    _clock,
    _Ctx,
    _deadline,
    _name,
    _sha256,
    _str,
    _too_slow,
    _type_name,
)
from .reach import STDLIB, attribute_paths, local_imports


def code_fingerprint(func: Callable[..., Any] | None, module: str | None = None,
                     action: str | None = None, *, include_globals: bool = True) -> str:
    """The code part of a fingerprint: ``module``/``action`` names and, when given,
    ``func`` by value (name, code, defaults, closure values and, for user code, what it
    reads: globals, the attributes it loads on user modules, recursively, unless
    ``include_globals`` is False). Raises ``Unhashable`` (``TooCostly`` for a value
    over the budget)."""
    return code_fingerprint_reads(func, module, action, include_globals=include_globals)[0]


def new_memo() -> object:
    """A memo for ``code_fingerprint_reads`` calls made at one moment (a batch of
    definitions): a value several functions read is hashed once for them all."""
    return _Ctx(None)


def code_fingerprint_reads(func: Callable[..., Any] | None, module: str | None = None,
                           action: str | None = None, *, include_globals: bool = True,
                           memo: object = None) -> tuple[str, bool]:
    """``code_fingerprint`` and whether it read data (a value, not code): such a
    fingerprint holds at the moment it was made only, never for a whole run."""
    h = _sha256(_PREFIX + b"code;")
    _str(h, module or "")
    _str(h, action or "")
    if func is None:
        return h.hexdigest(), False
    ctx = memo if isinstance(memo, _Ctx) and include_globals else _Ctx(None, include_globals)
    ctx.active.clear()
    if type(func) is types.FunctionType:
        ctx.active.add(id(func))  # a recursive function names itself: a cycle
        try:
            _feed_function(h, func, ctx, root=True)
        finally:
            ctx.active.discard(id(func))
    else:
        _feed(h, func, ctx)
    return h.hexdigest(), ctx.reads_data


# -- code objects ---------------------------------------------------------------------

_code_cache: weakref.WeakKeyDictionary[types.CodeType, bytes] = weakref.WeakKeyDictionary()
_names_cache: weakref.WeakKeyDictionary[types.CodeType, tuple[str, ...]] = \
    weakref.WeakKeyDictionary()


def _code_digest(code: types.CodeType) -> bytes:
    """Bytecode, constants (nested code recursively), names and signature; no line
    numbers or file names. Cached per code object."""
    try:
        return _code_cache[code]
    except KeyError:
        pass
    h = _sha256(b"code;")
    h.update(code.co_code)
    h.update(getattr(code, "co_exceptiontable", b""))
    h.update(b"%d,%d,%d,%d;" % (code.co_argcount, code.co_posonlyargcount,
                                code.co_kwonlyargcount, code.co_flags))
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
                  (code.co_name,)):
        _str(h, "\0".join(names))
    ctx = _Ctx(None, include_globals=False)
    h.update(b"consts%d;" % len(code.co_consts))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            h.update(b"code:")
            h.update(_code_digest(const))
        else:
            _feed(h, const, ctx)
    digest = h.digest()
    _code_cache[code] = digest
    return digest


def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name the code (and the code nested in it) looks up outside its locals."""
    try:
        return _names_cache[code]
    except KeyError:
        pass
    names: set[str] = set()
    stack = [code]
    while stack:
        co = stack.pop()
        names.update(co.co_names)
        stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
    result = tuple(sorted(names))
    _names_cache[code] = result
    return result


# -- functions and what they read ------------------------------------------------------


def _feed_function(h: Any, func: types.FunctionType, ctx: _Ctx, root: bool = False) -> None:
    h.update(b"function:")
    _str(h, _name(func))
    if not root and _by_reference(func):
        _str(h, _library_version(func.__module__))
        return
    code = func.__code__
    h.update(_code_digest(code))
    try:
        _feed(h, func.__defaults__, ctx)
        _feed(h, func.__kwdefaults__, ctx)
    except Unhashable as exc:
        raise type(exc)(f"a default of {func.__qualname__}: {exc}") from None
    for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
        _str(h, name)
        try:
            contents = cell.cell_contents
        except ValueError:  # a cell not filled yet
            h.update(b"empty-cell;")
            continue
        try:
            _feed(h, contents, ctx)
        except Unhashable as exc:
            raise type(exc)(f"{func.__qualname__} closes over {name!r}: {exc}") from None
    if ctx.include_globals and not _is_library_module(func.__module__):
        namespace = func.__globals__
        paths = attribute_paths(code)
        for name in _global_names(code):
            if name not in namespace:
                continue  # a builtin, an attribute name, or not defined yet
            value = namespace[name]
            _str(h, name)
            chains = paths.get(name)
            if (type(value) is types.ModuleType and chains and () not in chains
                    and not _is_library_module(value.__name__)):
                _feed_module(h, value, ctx, chains, f"{func.__qualname__} reads {name}")
            else:  # a module used whole goes through _feed: memoised, cycles seen
                _feed_reached(h, value, ctx, f"global {name!r} read by {func.__qualname__}")
        for module, level, names in local_imports(code):
            _feed_local_import(h, module, level, names, func, ctx)


def _feed_local_import(h: Any, module: str, level: int, names: tuple[str, ...] | None,
                       func: types.FunctionType, ctx: _Ctx) -> None:
    """A module ``func`` imports in its own body: a library by its version; a user module
    already imported by what the code takes from it (``names``, else all of it), as a
    global module is; one not imported yet by its source file, which the body will load."""
    h.update(b"imports:")
    try:
        full = importlib.util.resolve_name("." * level + module, func.__globals__.get(
            "__package__")) if level else module
    except (ImportError, ValueError):
        _str(h, f"{level}:{module}")  # unresolvable: the body's import will fail
        return
    _str(h, full)
    if full.partition(".")[0] in STDLIB:
        return  # the interpreter's version is in every fingerprint
    loaded = sys.modules.get(full)
    if loaded is not None:
        if _is_library_module(full):
            _str(h, _library_version(full))
        elif names is None:
            _feed_reached(h, loaded, ctx, f"{func.__qualname__} imports {full}")
        else:
            _feed_module(h, loaded, ctx, [(n,) for n in names],
                         f"{func.__qualname__} imports from {full}")
        return
    try:
        spec = importlib.util.find_spec(full)
    except (ImportError, ValueError, AttributeError):
        spec = None
    origin = spec.origin if spec is not None and spec.has_location else None
    if origin is None:
        h.update(b"not-found;")
        return
    if _library_file(origin, full):
        _str(h, _library_version(full))
        return
    ctx.reads_data = True  # the file may change before the body imports it
    try:
        with open(origin, "rb") as source:
            h.update(_sha256(source.read()).digest())
    except OSError:
        h.update(b"unreadable;")


def _feed_reached(h: Any, value: Any, ctx: _Ctx, what: str) -> None:
    """A value user code reads (a global, a module's attribute): code by its code, data by
    its content within the budget. One that cannot be hashed at all (a lock, a connection)
    counts by its type, as the outside world; one over the budget raises ``TooCostly``."""
    wrapped = getattr(value, "__wrapped__", None)  # functools.wraps, lru_cache
    if callable(wrapped) and callable(value):
        value = wrapped
    code = _is_code(value)
    if not code:
        ctx.reads_data = True
    outer = ctx.deadline
    timed = not code and outer is None and type(value) not in _PLAIN
    if timed:  # (a number or a string cannot be slow: its size is charged instead)
        ctx.deadline, ctx.spent = _deadline(), 0
    sub = _sha256()
    try:
        if type(value) in (str, bytes):
            _check_size(len(value))
        _feed(sub, value, ctx)
        if timed and _clock() > ctx.deadline:
            raise _too_slow()
        h.update(sub.digest())
    except TooCostly as exc:
        if outer is not None or code:
            raise
        raise TooCostly(f"{what}: {exc} ({_budget_note()}); pass it as a parameter or watch= "
                        "its source") from None
    except Unhashable:  # a lock, a connection: by its type (the outside world)
        h.update(b"opaque-global:")
        _str(h, _type_name(value))
    except RuntimeError as exc:  # another thread changed it under the walk (or too deep)
        why = "it is nested too deep" if isinstance(exc, RecursionError) else \
            f"it changed while it was hashed ({exc})"
        raise TooCostly(f"{what}: {why}") from None
    finally:
        ctx.deadline = outer


def _feed_module(h: Any, module: types.ModuleType, ctx: _Ctx,
                 chains: Iterable[tuple[str, ...]] | None = None, what: str = "") -> None:
    """A user module (not installed: the user's own code): what the code reaches in it.

    ``chains`` are the attribute chains the code loads on it (``helper.g``,
    ``pkg.sub.K``): each is followed through user modules and its value hashed like a
    global. Without chains (the module itself is passed around), its whole namespace
    counts; the modules it imports count by name there (never the whole world)."""
    h.update(b"user-module:")
    ctx.reads_data = True  # its attributes may be rebound at any time: not kept for a run
    name = module.__name__
    _str(h, name)
    label = what or name
    if chains:
        for chain in sorted(chains):
            target: Any = module
            followed = 0
            for attr in chain:
                if type(target) is not types.ModuleType or _is_library_module(target.__name__):
                    break
                _str(h, attr)
                target = getattr(target, attr, _MISSING)
                followed += 1
            if target is _MISSING:
                h.update(b"missing;")
            elif type(target) is types.ModuleType:
                _feed(h, target, ctx)  # a library module, or a user module used whole
            else:
                _feed_reached(h, target, ctx, f"{label}.{'.'.join(chain[:followed])}")
        return
    if not ctx.include_globals:
        return
    for attr, value in sorted(vars(module).items()):
        if attr.startswith("__") and attr.endswith("__"):
            continue
        _str(h, attr)
        if type(value) is types.ModuleType:
            h.update(b"M")
            _str(h, value.__name__)
            if _is_library_module(value.__name__):
                _str(h, _library_version(value.__name__))
        else:
            _feed_reached(h, value, ctx, f"{label}.{attr}")


_MISSING = object()  # an attribute the code loads that the module lacks (``_feed_module``)
_CODE_TYPES = (types.FunctionType, types.MethodType, types.BuiltinFunctionType,
               types.ModuleType, functools.partial, type)


def _is_code(value: object) -> bool:
    return isinstance(value, _CODE_TYPES)


def _feed_class(h: Any, cls: type, ctx: _Ctx) -> None:
    h.update(b"class:")
    _str(h, _name(cls))
    if _by_reference(cls):
        _str(h, _library_version(cls.__module__))
        return
    for base in cls.__bases__:
        if base is not object:
            _feed(h, base, ctx)
    for name, attr in sorted(vars(cls).items()):
        if isinstance(attr, staticmethod | classmethod):
            attr = attr.__func__
        if isinstance(attr, functools.cached_property):
            attr = attr.func  # (its lock would make it count by type only)
        wrapped = getattr(attr, "__wrapped__", None)  # a method under lru_cache or wraps
        if type(wrapped) is types.FunctionType and callable(attr):
            attr = wrapped
        if isinstance(attr, property):
            _str(h, name)
            for part in (attr.fget, attr.fset, attr.fdel):
                _feed(h, part, ctx)
        elif type(attr) is types.FunctionType:
            _str(h, name)
            _feed(h, attr, ctx)
        elif name.startswith("_") and name.endswith("_"):
            continue  # Python's and Enum's own (__module__, _member_map_), not the user's
        elif isinstance(attr, Enum) and isinstance(attr, cls):
            _str(h, name)  # a member of this enum: by its value (the member feeds its class)
            _feed_enum_value(h, attr, ctx)
        elif not isinstance(attr, cls):  # a constant (_SCALE too), a nested class
            _str(h, name)  # a class attribute such as a version or a threshold
            sub = _sha256()
            try:
                _feed(sub, attr, ctx)
                h.update(sub.digest())
            except TooCostly:
                raise
            except Unhashable:
                h.update(b"opaque:")
                _str(h, _type_name(attr))


# What the code reads is fed to the value walk, which gives functions, classes and modules
# back to this module. Imported last, as ``fingerprint_values`` imports this module last:
# then either module can be imported first.
from .fingerprint_values import _feed, _feed_enum_value  # noqa: E402
