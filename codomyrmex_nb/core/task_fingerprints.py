"""How a task is fingerprinted for the journal (a mixin of ``Recorder``): from its code,
parameters, upstream fingerprints and what it ``watch``es, once, as its attempt starts
(what its body changes must not change what it is recorded as). The usual task (a plain
function whose code this run knows, plain parameters) takes one call
(``_plain_fingerprint``); every other takes the general path (``fingerprint``), which
gives the same digest. Code fingerprints are kept per run unless the code read data.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from .fingerprint import (
    Unhashable,
    code_fingerprint_reads,
    task_fingerprint,
    value_digest,
)
from .model import Task
from .trigger_rules import DEFAULT as DEFAULT_RULE
from .watch import watch_digest

_SCALARS = frozenset({int, float, str, bool, type(None), bytes, complex})
_NO_UPS: Mapping[str, str] = MappingProxyType({})


def _plain_digest(code: str, items: str, upstream: str) -> str:
    """A plain task's fingerprint from its code fingerprint and the reprs of its sorted
    parameter items and upstream fingerprints: one place for both ways to it."""
    return hashlib.sha256(f"codo-fast-1;{code};{items};{upstream}".encode(
        "utf-8", "surrogatepass")).hexdigest()


class TaskFingerprints:
    """Mixed into ``Recorder``: the fingerprints of its tasks (its ``_code`` cache, ``_lock``,
    ``unhashable`` and journal are the recorder's)."""

    # -- fingerprints (outside the engine lock) ----------------------------------------------
    def fingerprint(self, task: Task, upstream: list[str], ups: Mapping[str, str],
                    upstream_names: frozenset[str] = frozenset(), memo: object = None,
                    records: Sequence[Any] = ()) -> str:
        """The task's fingerprint from its definition and its upstream fingerprints.

        Raises ``Unhashable`` (with the reason) when a parameter or the code's
        closure cannot be hashed. A callable with ``__codo_fingerprint__`` (a
        notebook cell) says itself what it computes; it is never cached, since
        it reads notebook names whose values may change between cells. A trigger
        rule other than the default counts too (so no existing fingerprint changes).
        ``records``: the upstream records, from which ``ups`` and ``upstream_names``
        are made only when needed (the usual plain-parameter path needs neither).
        """
        func = task.func
        if func is None and task.module and task.action:  # by its code, not kept per run
            code = self._code_for(self._action(task.module, task.action), task.module,
                                  task.action, True, memo)
        elif func is None or task.cache:  # _known_code, written out: once a task
            code = None
        else:
            try:
                code = self._code.get(func)  # plain functions only: no custom hook
            except TypeError:  # an unhashable callable
                code = None
        if code is None:
            custom = getattr(func, "__codo_fingerprint__", None)
            if callable(custom):
                if records:
                    ups, upstream_names = _upstream_of(records)
                return task_fingerprint(_with_inputs(custom(upstream_names), task),
                                        task.parameters, upstream, upstream=ups)
            code = self._code_for(func, task.module, task.action, task.cache, memo)
        if task._watch or task.trigger_rule is not DEFAULT_RULE:  # else nothing to add
            code = _with_inputs(code, task)
        params = task.parameters
        if not params or all(map(_SCALARS.__contains__, map(type, params.values()))):
            # The common case, plain values: one hash of their exact reprs (no generic walk).
            items = sorted(zip(map(str, params), map(repr, params.values()), strict=True)) \
                if params else []
            return _plain_digest(code, repr(items),
                                 repr(sorted(upstream) if len(upstream) > 1 else upstream))
        return task_fingerprint(code, params, upstream,
                                upstream=_upstream_of(records)[0] if records else ups)

    def _action(self, module: str, action: str) -> Any:
        """The function a ``module``/``action`` task runs (None if it does not resolve:
        the task will fail, and its names alone are its code)."""
        resolve = self.resolve
        if resolve is None:
            return None
        try:
            return resolve(module, action)
        except Exception:  # noqa: BLE001 - the attempt reports it
            return None

    def _code_for(self, func: Any, module: str, action: str, cache: bool,
                  memo: object = None) -> str:
        """A ``functools.partial`` (a common way to make one task per input) is its
        function's code fingerprint, computed once, plus its bound arguments: a partial
        made per task never hit the cache and cost about 0.1 ms a task. A function's code
        fingerprint is kept for the run unless it read data (a global list, a module's
        value): that one is made again at each attempt's start (``memo``: shared by the
        tasks of one definition batch)."""
        if type(func) is functools.partial:  # the same value, cached or not
            inner = self._code_for(func.func, module, action, cache, memo)
            return hashlib.sha256(
                f"codo-partial-1;{inner};{value_digest(func.args)};"
                f"{value_digest(func.keywords)}".encode()).hexdigest()
        code = self._known_code(func, cache)
        if code is None:
            code, reads_data = code_fingerprint_reads(func, module, action, memo=memo)
            if func is not None and not cache and not reads_data:
                try:
                    with self._lock:
                        self._code[func] = code
                except TypeError:
                    pass
        return code

    def _known_code(self, func: Any, cache: bool) -> str | None:
        """The code fingerprint already computed for ``func`` in this run, if any."""
        if func is None or cache:
            return None
        try:
            return self._code.get(func)
        except TypeError:  # an unhashable callable
            return None

    def fingerprint_of(self, rec: Any) -> str | None:
        """The record's fingerprint, computed once (upstream first); None if unhashable, or
        not known yet: a mapped task's is known once it ended, an item's as it starts."""
        if rec.parent is not None or rec.mapping is not None:
            return rec.fingerprint or None
        if rec.fingerprint is None and all(u.fingerprint for u in rec.ups):
            self._fingerprint_one(rec)  # the usual case: its upstream tasks ran before it
        if rec.fingerprint is None:
            stack, order = [rec], []
            while stack:  # upstream records without a fingerprint yet, depth first
                node = stack.pop()
                if node.fingerprint is None and node.mapping is not None:
                    return None  # a map upstream has not ended: not known yet (not sticky)
                if node.fingerprint is None and node not in order:
                    order.append(node)
                    stack.extend(u for u in node.ups if u.fingerprint is None)
            for node in reversed(order):
                if all(u.fingerprint for u in node.ups):
                    self._fingerprint_one(node)
                else:
                    node.fingerprint = ""  # an upstream task is unhashable: so is this one
        return rec.fingerprint or None

    def _fingerprint_one(self, rec: Any) -> None:
        """Fingerprint one record whose upstream fingerprints are all known."""
        ups = rec.ups
        try:
            if ups:  # their ids and names are gathered only where needed (records=)
                rec.fingerprint = self.fingerprint(rec.task, [u.fingerprint for u in ups],
                                                   _NO_UPS, records=ups)
            else:
                rec.fingerprint = self.fingerprint(rec.task, [], _NO_UPS)
        except Unhashable as exc:
            rec.fingerprint = ""
            with self._lock:
                self.unhashable[rec.name] = str(exc)
        run_id, journal = self.run_id, self._journal  # _define_row written out (once a task)
        if run_id is not None and journal is not None and journal.enabled:
            journal._defs_q.append((run_id, rec.id, rec.name, rec.fingerprint or None))
            if journal._idle:
                journal._rouse()

    def _define_row(self, rec: Any) -> None:
        """The task's definition fingerprint in the open run (None: it can never be restored)."""
        run_id, journal = self.run_id, self._journal
        if run_id is not None and journal is not None and journal.enabled:
            journal._defs_q.append((run_id, rec.id, rec.name, rec.fingerprint or None))
            if journal._idle:  # Journal.queue_definition written out (once a task)
                journal._rouse()

    def before_attempt(self, rec: Any) -> None:
        """Fingerprint the task as it starts: what its body may change (a global it
        appends to) must not change what it is recorded as."""
        try:
            fp = None
            task = rec.task
            func = task.func
            if rec.fingerprint is None and func is not None and not task.cache \
                    and not task._watch and task.trigger_rule is DEFAULT_RULE:
                fp = self._plain_fingerprint(rec, task, func)
            if fp is None:
                self.fingerprint_of(rec)
                return
            rec.fingerprint = fp
            journal = self._journal
            if self.run_id is not None and journal is not None and journal.enabled:
                # defined with the record's next move the journal reads (``collect``): no
                # row per task waits for the commit (each made the collector run sooner)
                rec.jdef = fp
        except Exception:  # noqa: BLE001 - the journal must never fail a task
            rec.fingerprint = ""

    def _plain_fingerprint(self, rec: Any, task: Task, func: Any) -> str | None:
        """``fingerprint`` in one call for the usual task as it starts (``before_attempt``
        checked its function, cache, watch and rule): a function whose code fingerprint this
        run knows, plain parameters, every upstream fingerprint known. None for any other
        (the general path decides; both give the same fingerprint)."""
        try:
            code = self._code.get(func)
        except TypeError:  # an unhashable callable
            return None
        if code is None or rec.parent is not None or rec.mapping is not None:
            return None
        ups = rec.ups
        if not ups:
            upstream = "[]"
        elif len(ups) == 1:  # repr([fp]) written out: a fingerprint is a hex digest, which
            up = ups[0].fingerprint  # repr quotes as it is (isascii: O(1), isalnum per char)
            if not up or not up.isascii():
                return None
            upstream = f"['{up}']"
        else:  # repr(sorted(fps)) written out the same way (at a third of its cost)
            fps = [u.fingerprint for u in ups]
            if not all(fps):
                return None
            fps.sort()
            upstream = "', '".join(fps)
            if not upstream.isascii():
                return None
            upstream = f"['{upstream}']"
        params = task.parameters
        if len(params) == 1:  # the usual one parameter: the same repr, written out (a
            ((key, value),) = params.items()  # quarter of the cost of sorting a zip)
            if type(value) not in _SCALARS or type(key) is not str:
                return None
            items = f"[({key!r}, {repr(value)!r})]"
        elif params:
            if not all(map(_SCALARS.__contains__, map(type, params.values()))):
                return None
            items = repr(sorted(zip(map(str, params), map(repr, params.values()), strict=True)))
        else:
            items = "[]"
        return _plain_digest(code, items, upstream)


def _upstream_of(records: Sequence[Any]) -> tuple[dict[str, str], frozenset[str]]:
    """(upstream id -> fingerprint, upstream names) of upstream records."""
    return {u.id: u.fingerprint for u in records}, frozenset(u.name for u in records)


def _with_inputs(code: str, task: Task) -> str:
    """``code`` plus what else defines the task: a trigger rule other than the default (so
    no existing fingerprint changes) and the files and variables it ``watch``es, read now."""
    rule = task.trigger_rule
    if rule is not DEFAULT_RULE:
        code = f"{code};trigger_rule={rule}"
    if task._watch:
        code = f"{code};watch:{watch_digest(task._watch)}"
    return code
