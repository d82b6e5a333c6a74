"""Fingerprints: a stable hash of what a task computes, to match it across kernels.

A task's fingerprint (``task_fingerprint``) hashes its code, its parameters, its
upstream tasks' fingerprints and anything extra the caller adds (a cell's text and
options, the values of the notebook names it reads). Equal inputs give the same hex
digest in any interpreter of the same Python version: nothing depends on ``id()``,
``hash()`` (randomised for strings), memory addresses, file names or line numbers.

``code_fingerprint`` hashes a function by value: its qualified name and module, its
code object (bytecode, constants including nested code, names, argument counts;
cached per code object, no file I/O), its defaults, its closure values and, for
functions of user code, what the code reads: its globals and, on a user module it
names, the attributes its bytecode loads (``helper.g``, ``helper.K``; ``reach.py``).
User code is ``__main__``, a notebook, and any module outside the standard library
and site-packages, or installed editable. What is read counts by value: functions
and classes by their code (recursively, each once: a visited set), data by content
(a long list or dict of plain values through ``marshal``, pandas and numpy through
their own hashes). Reading a value that would take over ``BUDGET_SECONDS`` or
``BUDGET_BYTES`` to hash raises ``TooCostly`` naming it: the task is then not
restorable, never restored on a partial view. A global that cannot be hashed at all
(a lock, a connection) counts by its type, as the outside world. Installed packages
(their modules, functions and classes) count by name and distribution version; the
standard library by name (the interpreter's version is in every fingerprint). A
parameter, closure value or ``extra`` value that cannot be hashed raises
``Unhashable``: that task is never restorable. Parameters are hashed whole, without
a budget: they were given on purpose.

``value_digest`` handles primitives, containers (dicts and sets in a stable order),
pandas objects (``hash_pandas_object``, only when pandas is already imported),
numpy arrays, functions, classes, user modules (their namespace), ``task.output``
placeholders (as "the output of the task with this fingerprint", since task ids
differ between kernels), and any other object through its pickle reduction
(``__reduce_ex__``), hashed with the same stable rules; cloudpickle bytes are the
last resort.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import importlib.util
import io
import marshal
import os
import sys
import sysconfig
import threading
import time
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any

from .model import OutputRef
from .reach import (
    STDLIB,
    attribute_paths,
    distribution,
    is_editable,
    local_imports,
    metadata_seconds,
)
from .sizes import MB, size_text

__all__ = ["TooCostly", "Unhashable", "code_fingerprint", "code_fingerprint_reads",
           "new_memo", "task_fingerprint", "value_digest"]

_PREFIX = b"codomyrmex-fingerprint-1;py%d.%d;" % sys.version_info[:2]
MAX_DEPTH = 200  # nesting levels before a value is declared unhashable
#: What hashing one value the code reads (a global, a module attribute) may cost; beyond
#: either, the task is not restorable (``TooCostly``) rather than cached on a partial view.
BUDGET_SECONDS = 0.05
BUDGET_BYTES = 64 * MB
_FAST_LEN = 256  # sequences and dicts at least this long try the marshal fast path


def _clock() -> float:
    """The budget's clock: the hashing thread's CPU time, so that a busy machine (another
    process, the task's own threads) never makes a value "too slow" that is not, less the
    one-time reads of package metadata (``reach``) and the garbage collections this thread
    ran (a full one in a big process takes 100 ms), which belong to no value."""
    return time.thread_time() - metadata_seconds() - _gc_spent.get(_get_ident(), 0.0)


_get_ident = threading.get_ident
_gc_began: dict[int, float] = {}  # thread -> CPU time when its running collection began
_gc_spent: dict[int, float] = {}  # thread -> CPU seconds it spent collecting garbage


def _gc_clock(phase: str, info: dict) -> None:
    """``gc.callbacks`` hook: count each thread's collection time (runs in that thread)."""
    ident = _get_ident()
    if phase == "start":
        _gc_began[ident] = time.thread_time()
    else:
        began = _gc_began.pop(ident, None)
        if began is not None:
            _gc_spent[ident] = _gc_spent.get(ident, 0.0) + time.thread_time() - began


gc.callbacks.append(_gc_clock)


_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})

_sha256 = hashlib.sha256


class Unhashable(Exception):
    """A value the fingerprint cannot take (the message names it and why); the task
    is then never restorable."""


class TooCostly(Unhashable):
    """A value the code reads is too big or too slow to hash (over ``BUDGET_SECONDS`` or
    ``BUDGET_BYTES``), or changed while it was hashed: never counted by type, the task
    is not restorable."""


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


# -- user code or library --------------------------------------------------------------


@functools.cache
def _library_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(standard library folders, site-packages folders), each ending with a separator."""
    stdlib: set[str] = set()
    site_dirs: set[str] = set()
    schemes = [sysconfig.get_paths(),
               sysconfig.get_paths(vars={"base": sys.base_prefix,
                                         "platbase": sys.base_exec_prefix})]
    for paths in schemes:
        for key, into in (("stdlib", stdlib), ("platstdlib", stdlib), ("purelib", site_dirs),
                          ("platlib", site_dirs)):
            if paths.get(key):
                into.add(os.path.realpath(paths[key]))
    try:
        import site
        site_dirs.update(os.path.realpath(p) for p in site.getsitepackages())
        site_dirs.add(os.path.realpath(site.getusersitepackages()))
    except (AttributeError, OSError):  # some embedded interpreters lack these
        pass
    return (tuple(d.rstrip(os.sep) + os.sep for d in stdlib),
            tuple(d.rstrip(os.sep) + os.sep for d in site_dirs))


_library_modules: dict[str, bool] = {}


def _is_library_module(name: str | None) -> bool:
    """True for the standard library, built-in modules and installed packages; False for
    user code: ``__main__``, a notebook, a module outside those folders, or one whose
    distribution is installed editable (decided by file location, then metadata)."""
    if not name or name == "__main__":
        return False
    known = _library_modules.get(name)
    if known is not None:
        return known
    module = sys.modules.get(name)
    if module is None:
        return False  # not imported (a dynamic module): user code, and not remembered
    file = getattr(module, "__file__", None)
    if file:
        answer = _library_file(file, name)
    else:
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        answer = name in sys.builtin_module_names or origin in ("built-in", "frozen")
    if len(_library_modules) < 10_000:
        _library_modules[name] = answer
    return answer


def _library_file(file: str, name: str) -> bool:
    """Is ``file`` (module ``name``'s) in the standard library or an installed package
    (one not installed editable: that is the user's own code, being worked on)?"""
    real = os.path.realpath(file)
    stdlib, site_dirs = _library_dirs()
    if real.startswith(site_dirs):  # (inside the standard library's folder, often)
        return not is_editable(name.partition(".")[0])
    return real.startswith(stdlib)


def _library_version(name: str | None) -> str:
    """``dist==version`` of an installed package's module ("" for the standard library,
    whose version is the interpreter's, already in every fingerprint)."""
    return distribution(name.partition(".")[0]) or "" if name else ""


def _by_reference(obj: Any) -> bool:
    """A library function or class that pickle would find by name: hash the name only."""
    qualname = getattr(obj, "__qualname__", "") or ""
    return "<" not in qualname and _is_library_module(getattr(obj, "__module__", None))


# -- the hashing walk ------------------------------------------------------------------


class _Ctx:
    __slots__ = ("upstream", "include_globals", "memo", "keep", "active", "depth", "deadline",
                 "spent", "reads_data", "ticks")

    def __init__(self, upstream: Mapping[str, str] | None, include_globals: bool = True) -> None:
        self.upstream = upstream
        self.include_globals = include_globals
        self.memo: dict[int, bytes] = {}  # id -> digest of composites hashed in this call
        self.keep: list[object] = []      # keeps those ids valid for the call
        self.active: set[int] = set()     # composites being hashed (a repeat is a cycle)
        self.depth = 0
        self.deadline: float | None = None  # while hashing a value the code reads: its budget
        self.spent = 0                      # bytes hashed of that value so far
        self.reads_data = False             # a value (not code) the code reads was hashed
        self.ticks = 0                      # composites hashed: the clock is read every 64


def _charge(ctx: _Ctx, nbytes: int) -> None:
    """Count ``nbytes`` against the budget of the value being read (if any)."""
    if ctx.deadline is not None:
        ctx.spent += nbytes
        if ctx.spent > BUDGET_BYTES:
            raise TooCostly(f"it is over {size_text(BUDGET_BYTES)} to hash")


def _str(h: Any, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    h.update(b"s%d:%b" % (len(data), data))


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _feed(h: Any, value: object, ctx: _Ctx) -> None:
    """Add ``value`` to the hash ``h``: primitives inline, composites as a memoised digest."""
    t = type(value)
    if value is None:
        h.update(b"N;")
    elif t is bool:
        h.update(b"T;" if value else b"F;")
    elif t is int:
        h.update(b"i%s;" % hex(value).encode())  # hex: no digit limit on huge ints
    elif t is str:
        _str(h, value)
    elif t is float:
        h.update(b"f%s;" % value.hex().encode())
    elif t is bytes:
        h.update(b"b%d:" % len(value))
        h.update(value)
    elif t is complex:
        h.update(b"c%s,%s;" % (value.real.hex().encode(), value.imag.hex().encode()))
    elif value is Ellipsis:
        h.update(b"...;")
    elif t is types.ModuleType and _is_library_module(value.__name__):
        h.update(b"M")
        _str(h, value.__name__)
        _str(h, _library_version(value.__name__))
    else:
        key = id(value)
        digest = ctx.memo.get(key)
        if digest is None:
            if key in ctx.active:
                h.update(b"@cycle;")
                return
            if ctx.depth >= MAX_DEPTH:
                raise Unhashable(f"a {_type_name(value)} nested more than {MAX_DEPTH} levels deep")
            ctx.ticks += 1
            if ctx.deadline is not None and not ctx.ticks & 63 and _clock() > ctx.deadline:
                raise TooCostly(f"it takes over {BUDGET_SECONDS * 1000:.0f} ms to hash")
            ctx.active.add(key)
            ctx.depth += 1
            try:
                sub = _sha256()
                _feed_composite(sub, value, t, ctx)
                digest = sub.digest()
            finally:
                ctx.active.discard(key)
                ctx.depth -= 1
            ctx.memo[key] = digest
            ctx.keep.append(value)
        h.update(b"#")
        h.update(digest)


def _type_name(value: object) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _sorted_digests(items: Iterable[object], ctx: _Ctx) -> list[bytes]:
    out = []
    for item in items:
        sub = _sha256()
        _feed(sub, item, ctx)
        out.append(sub.digest())
    out.sort()
    return out


def _feed_marshal(h: Any, value: Any, ctx: _Ctx) -> bool:
    """A long list, tuple or dict of plain data in one C call: ``marshal`` (format 2: no
    back-references and no interning flag, so the bytes depend on the values only) writes
    ints, floats, strings, bytes and containers of them exactly, at about 15 ns an item;
    it refuses anything else (an object, a subclass), which then takes the general walk.
    A dict is marshalled as its sorted keys and their values, so insertion order does not
    count (and no tuple per item is made: allocations trigger garbage collections). (A set
    nested in such a list is written in iteration order: across kernels that can only
    miss the cache, never match a different value: marshal's bytes decode to the value.)"""
    _charge(ctx, 8 * len(value))
    try:
        if type(value) is dict:
            keys = sorted(value)
            value = (keys, [value[k] for k in keys])
        data = marshal.dumps(value, 2)
    except (ValueError, TypeError):  # an object marshal cannot write, keys that do not sort
        return False
    _charge(ctx, len(data))
    h.update(b"marshal%d:" % len(data))
    h.update(data)
    return True


def _feed_composite(h: Any, value: Any, t: type, ctx: _Ctx) -> None:
    if t is tuple or t is list:
        if len(value) < _FAST_LEN or not _feed_marshal(h, value, ctx):
            h.update(b"(%d:" % len(value) if t is tuple else b"[%d:" % len(value))
            for item in value:
                _feed(h, item, ctx)
    elif t is dict:
        if not (len(value) >= _FAST_LEN and _feed_marshal(h, value, ctx)):
            _feed_items(h, b"{", value.items(), ctx, ordered=False)
    elif t is types.ModuleType:
        _feed_module(h, value, ctx)
    elif t is set or t is frozenset:
        h.update(b"<%d:" % len(value) if t is set else b"f<%d:" % len(value))
        for digest in _sorted_digests(value, ctx):
            h.update(digest)
    elif t is bytearray or t is memoryview:
        data = bytes(value)
        _charge(ctx, len(data))
        h.update(b"B%d:" % len(data))
        h.update(data)
    elif isinstance(value, OutputRef):
        fingerprint = (ctx.upstream or {}).get(value.task_id)
        if fingerprint is None:
            raise Unhashable(f"the output of task {value.task_name!r}: its fingerprint is "
                             "not known (pass upstream=)")
        h.update(b"output-of:")
        _str(h, fingerprint)
    elif isinstance(value, Enum):
        h.update(b"E")
        _str(h, _name(t))
        _str(h, value.name)
        _feed_enum_value(h, value, ctx)
    elif t is types.FunctionType:
        _feed_function(h, value, ctx)
    elif t is types.MethodType:
        h.update(b"method:")
        _feed(h, value.__func__, ctx)
        _feed(h, value.__self__, ctx)
    elif t is functools.partial:
        h.update(b"partial:")
        _feed(h, value.func, ctx)
        _feed(h, value.args, ctx)
        _feed(h, value.keywords, ctx)
    elif isinstance(value, type):
        _feed_class(h, value, ctx)
    elif t is types.CodeType:
        h.update(b"code:")
        h.update(_code_digest(value))
    elif isinstance(value, (types.BuiltinFunctionType, types.MethodWrapperType,
                            types.WrapperDescriptorType, types.MethodDescriptorType,
                            types.ClassMethodDescriptorType)):
        h.update(b"builtin:")
        _str(h, _name(value))
        owner = getattr(value, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType | type):
            _feed(h, owner, ctx)
    elif not _feed_arrays(h, value, ctx):
        _feed_reduced(h, value, ctx)


def _feed_items(h: Any, tag: bytes, items: Iterable[tuple[object, object]], ctx: _Ctx,
                ordered: bool) -> None:
    pairs = []
    for key, item in items:
        sub = _sha256()
        _feed(sub, key, ctx)
        pairs.append((sub.digest(), item))
    if not ordered:
        pairs.sort(key=lambda pair: pair[0])
    h.update(tag + b"%d:" % len(pairs))
    for key_digest, item in pairs:
        h.update(key_digest)
        _feed(h, item, ctx)


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
        ctx.deadline, ctx.spent = _clock() + BUDGET_SECONDS, 0
    sub = _sha256()
    try:
        if type(value) in (str, bytes) and len(value) > BUDGET_BYTES:
            raise TooCostly(f"it is over {size_text(BUDGET_BYTES)} to hash")
        _feed(sub, value, ctx)
        if timed and _clock() > ctx.deadline:
            raise TooCostly(f"it takes over {BUDGET_SECONDS * 1000:.0f} ms to hash")
        h.update(sub.digest())
    except TooCostly as exc:
        if outer is not None or code:
            raise
        raise TooCostly(f"{what}: {exc} (the budget is {BUDGET_SECONDS * 1000:.0f} ms and "
                        f"{size_text(BUDGET_BYTES)}); pass it as a parameter or watch= its "
                        "source") from None
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


def _feed_enum_value(h: Any, member: Enum, ctx: _Ctx) -> None:
    """An enum member's value (``Mode.FAST = 1`` changed to 2 is a change); one that cannot
    be hashed counts by its type."""
    sub = _sha256()
    try:
        _feed(sub, member.value, ctx)
        h.update(sub.digest())
    except TooCostly:
        raise
    except Unhashable:
        h.update(b"opaque:")
        _str(h, _type_name(member.value))


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


def _feed_arrays(h: Any, value: Any, ctx: _Ctx) -> bool:
    """pandas and numpy objects, when those libraries are already imported."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame | pd.Series | pd.Index):
        h.update(b"pandas:")
        _str(h, type(value).__name__)
        _feed(h, tuple(value.shape), ctx)
        if isinstance(value, pd.DataFrame):
            _feed(h, list(value.columns), ctx)
            _feed(h, list(value.columns.names), ctx)
            _feed(h, [str(d) for d in value.dtypes], ctx)
        else:
            _feed(h, value.name, ctx)
            _feed(h, str(value.dtype), ctx)
        if not isinstance(value, pd.Index):
            _feed(h, list(value.index.names), ctx)
            _feed(h, str(value.index.dtype), ctx)
        if ctx.deadline is not None:
            _pandas_budget(pd, value, ctx)
        try:
            hashed = pd.util.hash_pandas_object(value, index=True)
            h.update(memoryview(hashed.to_numpy() if hasattr(hashed, "to_numpy") else hashed))
        except (TypeError, ValueError):  # unhashable cells (lists, dicts): pickle them
            _feed_pickled(h, value)
        return True
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(value, np.ndarray):
            h.update(b"ndarray:")
            _str(h, str(value.dtype) + value.dtype.str)
            _feed(h, tuple(value.shape), ctx)
            if value.dtype.hasobject:
                _feed(h, value.ravel().tolist(), ctx)
            else:
                _charge(ctx, value.nbytes)  # refused before the work, by its size
                h.update(memoryview(np.ascontiguousarray(value)).cast("B"))
            return True
        if isinstance(value, np.generic):
            h.update(b"npscalar:")
            _str(h, str(value.dtype) + value.dtype.str)
            if value.dtype.hasobject:
                _feed(h, value.item(), ctx)
            else:
                h.update(value.tobytes())
            return True
    return False


_SAMPLE_ROWS = 10_000


def _pandas_budget(pd: Any, value: Any, ctx: _Ctx) -> None:
    """Refuse, before the work, a frame over the byte budget or whose hashing would take
    longer than the time left: the time of a sample of its rows, scaled."""
    usage = value.memory_usage(deep=False) if isinstance(value, pd.Index) else \
        value.memory_usage(index=True, deep=False)
    _charge(ctx, int(getattr(usage, "sum", lambda: usage)()))
    rows = len(value)
    if rows > 5 * _SAMPLE_ROWS and ctx.deadline is not None:
        began = _clock()
        try:
            pd.util.hash_pandas_object(value[:_SAMPLE_ROWS], index=True)
        except (TypeError, ValueError):
            return  # cells hash_pandas_object refuses: the general walk, under its checks
        expected = (_clock() - began) * rows / _SAMPLE_ROWS
        if began + expected > ctx.deadline:
            raise TooCostly(f"it would take about {expected * 1000:.0f} ms to hash")


def _feed_reduced(h: Any, value: Any, ctx: _Ctx) -> None:
    """Any other object: its pickle reduction, hashed with the stable rules above."""
    if isinstance(value, io.IOBase):  # cloudpickle would snapshot a file: not its identity
        raise Unhashable(f"a {_type_name(value)} (an open file or stream) cannot be "
                         "fingerprinted: what it reads is outside the fingerprint")
    try:
        reduced = value.__reduce_ex__(4)
    except Exception as exc:
        _feed_pickled(h, value, exc)
        return
    h.update(b"reduce:")
    if isinstance(reduced, str):  # a global found by name
        _str(h, f"{getattr(value, '__module__', None)}.{reduced}")
        return
    if not isinstance(reduced, tuple) or len(reduced) < 2:
        _feed_pickled(h, value)
        return
    parts = list(reduced) + [None] * (5 - len(reduced))
    func, args, state, listitems, dictitems = parts[:5]
    _feed(h, func, ctx)
    _feed(h, args, ctx)
    _feed(h, state, ctx)
    if listitems is not None:
        _feed(h, list(listitems), ctx)
    if dictitems is not None:
        _feed_items(h, b"items", list(dictitems), ctx, ordered=isinstance(value, OrderedDict))


def _feed_pickled(h: Any, value: Any, first_error: BaseException | None = None) -> None:
    try:
        import cloudpickle

        data = cloudpickle.dumps(value, protocol=5)
    except Exception as exc:
        why = first_error or exc
        raise Unhashable(f"a {_type_name(value)} cannot be fingerprinted ({why})") from None
    h.update(b"pickle%d:" % len(data))
    h.update(data)


# -- public ------------------------------------------------------------------------------


def value_digest(value: object, upstream: Mapping[str, str] | None = None) -> str:
    """Stable sha256 hex digest of ``value``; ``upstream`` maps task id -> fingerprint for
    ``task.output`` placeholders. Raises ``Unhashable`` naming the type and why."""
    h = _sha256(_PREFIX + b"value;")
    _feed(h, value, _Ctx(upstream))
    return h.hexdigest()


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


def task_fingerprint(code: str, parameters: Mapping[str, object],
                     upstream_fingerprints: Iterable[str], extra: object = None, *,
                     upstream: Mapping[str, str] | None = None) -> str:
    """sha256 hex of ``code`` (e.g. from ``code_fingerprint``), the parameters (each by
    ``value_digest``, sorted by name), the upstream fingerprints (sorted) and ``extra``.
    ``upstream`` maps task id -> fingerprint for ``task.output`` placeholders among the
    parameters. Raises ``Unhashable`` naming the parameter and why."""
    h = _sha256(_PREFIX + b"task;")
    _str(h, code)
    ctx = _Ctx(upstream)
    items = sorted(parameters.items(), key=lambda item: str(item[0]))
    h.update(b"parameters%d;" % len(items))
    for name, value in items:
        _str(h, str(name))
        try:
            _feed(h, value, ctx)
        except Unhashable as exc:
            raise Unhashable(f"parameter {name!r}: {exc}") from None
    ups = sorted(upstream_fingerprints)
    h.update(b"upstream%d;" % len(ups))
    for fingerprint in ups:
        _str(h, fingerprint)
    h.update(b"extra;")
    _feed(h, extra, ctx)
    return h.hexdigest()
