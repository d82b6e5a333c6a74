"""Hashing values for a fingerprint: the walk every part of a fingerprint goes through.

``_feed`` adds a value to a hash: primitives inline, composites as a digest memoised
per call (a value met twice is hashed once; met again while being hashed, a cycle).
Containers count by content (dicts and sets in a stable order; a long list or dict
of plain values in one ``marshal`` call), pandas objects by ``hash_pandas_object``
and numpy arrays by their bytes (only when those libraries are already imported),
``task.output`` placeholders as "the output of the task with this fingerprint" (task
ids differ between kernels), and any other object by its pickle reduction
(``__reduce_ex__``) hashed with the same rules; cloudpickle bytes are the last
resort. Functions, classes, code and user modules are hashed by their code
(``fingerprint_code``), which in turn feeds the values the code reads back here.
"""

from __future__ import annotations

import functools
import io
import marshal
import sys
import types
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from .code_origin import _is_library_module, _library_version
from .fingerprint_context import (
    _PREFIX,
    MAX_DEPTH,
    TooCostly,
    Unhashable,
    _charge,
    _clock,
    _Ctx,
    _name,
    _sha256,
    _str,
    _too_slow,
    _type_name,
)
from .model import OutputRef

_FAST_LEN = 256  # sequences and dicts at least this long try the marshal fast path


def value_digest(value: object, upstream: Mapping[str, str] | None = None) -> str:
    """Stable sha256 hex digest of ``value``; ``upstream`` maps task id -> fingerprint for
    ``task.output`` placeholders. Raises ``Unhashable`` naming the type and why."""
    h = _sha256(_PREFIX + b"value;")
    _feed(h, value, _Ctx(upstream))
    return h.hexdigest()


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
                raise _too_slow()
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


# Functions, classes, code and modules are code: hashed there, and what the code reads is
# fed back to ``_feed`` here. Imported last, as ``fingerprint_code`` imports ``_feed`` last:
# then either module can be imported first.
from .fingerprint_code import (  # noqa: E402
    _code_digest,
    _feed_class,
    _feed_function,
    _feed_module,
)
