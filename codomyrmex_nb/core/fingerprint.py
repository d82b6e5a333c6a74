"""Fingerprints: a stable hash of what a task computes, to match it across kernels.

A task's fingerprint (``task_fingerprint``) hashes its code, its parameters, its
upstream tasks' fingerprints and anything extra the caller adds (a cell's text and
options, the values of the notebook names it reads). Equal inputs give the same hex
digest in any interpreter of the same Python version: nothing depends on ``id()``,
``hash()`` (randomised for strings), memory addresses, file names or line numbers.

The parts, one idea each: ``fingerprint_code`` hashes a function by value with what it
reads (``code_fingerprint``); ``fingerprint_values`` hashes data (``value_digest``);
``code_origin`` tells user code (by value) from installed libraries (by name and
version); ``fingerprint_context`` holds the state of one walk, its budget and the two
refusals. A parameter, closure value or ``extra`` value that cannot be hashed raises
``Unhashable``: that task is never restorable. Parameters are hashed whole, without
a budget: they were given on purpose. This module re-exports the public names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .fingerprint_code import code_fingerprint, code_fingerprint_reads, new_memo
from .fingerprint_context import (
    _PREFIX,
    BUDGET_BYTES,
    BUDGET_SECONDS,
    MAX_DEPTH,
    TooCostly,
    Unhashable,
    _Ctx,
    _sha256,
    _str,
)
from .fingerprint_values import _feed, value_digest

__all__ = ["BUDGET_BYTES", "BUDGET_SECONDS", "MAX_DEPTH", "TooCostly", "Unhashable",
           "code_fingerprint", "code_fingerprint_reads", "new_memo", "task_fingerprint",
           "value_digest"]


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
