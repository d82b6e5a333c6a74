"""Map items in the journal: the items of one map that moved in a commit, as one group of
columns.

Journaled one row each, like tasks, a map of 100,000 items cost the journal a tuple, an id
and a name per item per commit, and kept each item's record alive until the commit read
it: long enough for the garbage collector to promote the record and walk it again and
again. Instead the scheduler appends a moved item's index to its map's list
(``MapState.jmoved``), and the journal's writer reads, under the engine's lock, each such
item's latest state from the map's items (a compact entry or a record) into columns:

    collected: (run id, map id, map name, indices, seqs, times, status codes, details,
                definition fingerprints, small-result indices, fingerprints, values, times)

A map's expansion is one such group with only its item fingerprints. In a ``"tasks"`` blob
of layout 2 (``journal_tables.pack_tasks``) each group is packed as

    (map id, map name, index column, seq column, time column, previous codes, status
     codes, details or None, fingerprints or None, small indices, small fingerprints,
     small values, small times)

(the small fingerprints None when each is its item's in the run's expansion group: a
reader takes them from there, having read the run's blobs in order) and ``group_rows``
gives its items back as the rows they had before (an item's id is
``mapping.item_id``, its name ``map[i]``): history, resume and upkeep read items as they
read tasks. The run's summary follows each map's items in one byte per item
(``RunSummary.follow_items``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from itertools import compress, repeat
from operator import is_, not_
from typing import Any

from .journal_tables import (
    _CODE,
    _COMPLETED,
    SMALL_MAX,
    STATUSES,
    TRIVIAL_TYPES,
    _little,
    _numbers,
    is_small,
)
from .mapping import DONE_FP, DONE_JSEQ, DONE_JTIME, DONE_VALUE, item_id
from .model import TaskStatus

_TAKE = operator.itemgetter
_STATUS = STATUSES.__getitem__


def expansion_group(run_id: int, map_id: str, name: str, fps: list[str]) -> tuple[Any, ...]:
    """A map's expansion: its items' fingerprints ("" for one that cannot be made)."""
    return (run_id, map_id, name, [], [], [], b"", None, fps, [], [], [], [])


def item_group(run_id: int, rec: Any, items: list[Any] | dict[int, Any],
               indices: list[int], expanded: list[str] | None = None) -> tuple[Any, ...] | None:
    """The latest moves (and small results) of the items at ``indices`` (repeats read once)
    of mapped record ``rec``, read from ``items`` (its map's, or those a rerun replaced)
    under the engine's lock; None if none moved journaled. The compact entries (most of a
    big map's) are read into columns at C speed, the records one by one. ``expanded``: the
    item fingerprints this run's expansion group holds; when every small result's is that
    one, the group's fingerprint column is None (read back from the expansion)."""
    unique = list(set(indices))  # each item once (the rows are read back in seq order)
    if isinstance(items, dict):
        entries = list(map(items.get, unique))
    else:
        if unique and max(unique) >= len(items):  # not expected (a reset hands its items
            unique = [i for i in unique if i < len(items)]  # to ``jold``): left out
        entries = list(map(items.__getitem__, unique))
    compact = bytes(map(is_, map(type, entries), repeat(tuple)))  # 1: a compact entry
    done = list(compress(entries, compact))
    seqs = list(map(_SEQ_OF, done))  # never None: the item moved while journaled
    idx = list(compress(unique, compact))
    times = list(map(_TIME_OF, done))
    codes = bytearray(bytes((_COMPLETED,)) * len(done))
    details: list[Any] = [None] * len(done)
    r_idx, r_fps, r_values, r_times = _small_of_done(idx, done, times)
    code = _CODE
    for i, entry in zip(compress(unique, map(not_, compact)),
                        compress(entries, map(not_, compact)), strict=True):
        if entry is None or entry.jseq is None:  # not made, or it never moved journaled
            continue
        idx.append(i)
        seqs.append(entry.jseq)
        times.append(entry.jtime)
        codes.append(code[entry.status])
        details.append(entry.jdetail)
        small = _small_of_record(entry)
        if small is not None:
            r_idx.append(i)
            r_fps.append(small[0])
            r_values.append(small[1])
            r_times.append(entry.jtime)
    if not idx and not r_idx:
        return None
    if expanded is not None and r_idx and max(r_idx) < len(expanded) \
            and all(map(is_, r_fps, map(expanded.__getitem__, r_idx))):
        r_fps = None  # type: ignore[assignment] - each is its expansion's: not stored twice
    return (run_id, rec.id, rec.name, idx, seqs, times, bytes(codes),
            None if details.count(None) == len(details) else details, None,
            r_idx, r_fps, r_values, r_times)


def _small_of_record(entry: Any) -> tuple[str, Any] | None:
    """(fingerprint, value) of an item record's small result not journaled yet: prepared by
    its worker (taken once), or trivially small (``TRIVIAL_TYPES``, never prepared) and
    read from its result."""
    fp = entry.jsfp
    if fp is not None:
        value, entry.jsmall, entry.jsfp = entry.jsmall, None, None
        return fp, value
    result = entry.result
    if entry.status is _DONE and entry.fingerprint and result is not None \
            and result._entry is None and result._data.__class__ in TRIVIAL_TYPES:
        return entry.fingerprint, result._data
    return None


def _small_of_done(idx: list[int], done: list[Any], times: list[float]
                   ) -> tuple[list[int], list[str], list[Any], list[float]]:
    """The small results of compact entries (a fingerprint and a small value), as columns:
    at C speed when their values are all of one kind whose smallness a bound shows."""
    values, fps = list(map(_VALUE_OF, done)), list(map(_FP_OF, done))
    kinds = set(map(type, values))
    if kinds <= TRIVIAL_TYPES:
        small = True
    elif kinds == {int}:
        small = max(map(int.bit_length, values)) <= SMALL_MAX * 8
    elif kinds == {str} or kinds == {bytes}:
        small = max(map(len, values)) <= SMALL_MAX
    else:
        small = None  # mixed: item by item
    if small and all(fps):
        return list(idx), fps, values, list(times)
    flags = [bool(fp) and (small if small is not None else is_small(value))
             for fp, value in zip(fps, values, strict=True)]
    return (list(compress(idx, flags)), list(compress(fps, flags)),
            list(compress(values, flags)), list(compress(times, flags)))


_SEQ_OF, _TIME_OF = _TAKE(DONE_JSEQ), _TAKE(DONE_JTIME)
_VALUE_OF, _FP_OF = _TAKE(DONE_VALUE), _TAKE(DONE_FP)
_DONE = TaskStatus.COMPLETED


def pack_group(group: tuple[Any, ...], previous: bytes) -> tuple[Any, ...]:
    """A collected group as packed in a ``"tasks"`` blob (``previous``: its items' codes at
    the last commit, ``RunSummary.follow_items``)."""
    (_, map_id, name, idx, seqs, times, codes, details, d_fps,
     r_idx, r_fps, r_values, r_times) = group
    same = r_idx == idx and r_times == times  # every item moved completed a small result
    return (map_id, name, _little("q", idx), _little("q", seqs), _little("d", times), previous,
            codes, None if details is None else tuple(details),
            None if d_fps is None else _digests(d_fps), None if same else _little("q", r_idx),
            None if r_fps is None else tuple(r_fps),
            tuple(r_values), None if same else _little("d", r_times))


_NO_FP = "0" * 64  # an item that cannot be fingerprinted, among packed digests


def _digests(fps: list[str]) -> bytes | tuple[str, ...]:
    """An expansion's fingerprints as one string of 32-byte digests (half the bytes, and
    one object for marshal, not one per item); as a tuple if any is not a SHA-256 digest."""
    joined = "".join(fps) if all(fps) else "".join(fp or _NO_FP for fp in fps)
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return tuple(fps)
    return raw if len(raw) == 32 * len(fps) else tuple(fps)


def expansion_fps(d_fps: bytes | Sequence[str]) -> list[str]:
    """An expansion group's fingerprints as they were made ("" for none)."""
    if not isinstance(d_fps, bytes):
        return list(d_fps)
    return [fp if fp != _NO_FP else "" for fp in
            map(bytes.hex, (d_fps[at:at + 32] for at in range(0, len(d_fps), 32)))]


def _fp_count(d_fps: bytes | Sequence[str]) -> int:
    return len(d_fps) // 32 if isinstance(d_fps, bytes) else len(d_fps)


def fold_group(summary: Any, group: tuple[Any, ...]) -> bytes:
    """Fold a collected group into its run's ``RunSummary``; the codes its items had."""
    (_, map_id, _, idx, _, times, codes, _, d_fps, _, _, _, r_times) = group
    if d_fps is not None:
        summary.define_items(map_id, len(d_fps))
    previous = summary.follow_items(map_id, idx, codes, max(times) if times else None)
    if r_times:
        summary.saw(max(r_times))
    return previous


def refold_group(summary: Any, group: Sequence[Any]) -> None:
    """``fold_group`` for a group read back from the file (a summary rebuilt)."""
    map_id, d_fps = group[0], group[8]
    if d_fps is not None:
        summary.define_items(map_id, _fp_count(d_fps))
    times = _numbers("d", group[4])
    summary.follow_items(map_id, _numbers("q", group[2]).tolist(), group[6],
                         max(times) if times else None)


def group_rows(run_id: int, group: Sequence[Any], kind: str,
               expansions: dict[tuple[int, str], Sequence[str]] | None = None,
               ) -> Iterator[tuple[Any, ...]]:
    """A packed group's items as the rows ``journal_tables.unpack`` gives (``kind``:
    "transitions", "definitions" or "results"). ``expansions``: (run, map id) -> the item
    fingerprints of the run's expansion groups read so far (the groups of a run are read
    in the order they were written, so an expansion comes before its items' results):
    a group that stored no fingerprints of its own takes them from there (its rows are
    left out if the expansion is not there)."""
    numbers, status = _numbers, _STATUS
    (map_id, name, idx, seqs, times, previous, codes, details, d_fps,
     r_idx, r_fps, r_values, r_times) = group
    if d_fps:
        d_fps = expansion_fps(d_fps)
        if expansions is not None:
            expansions[(run_id, map_id)] = d_fps
    if kind == "transitions":
        indices = numbers("q", idx)
        for n, (i, seq, when, old, new) in enumerate(zip(indices, numbers("q", seqs),
                                                         numbers("d", times), previous, codes,
                                                         strict=True)):
            yield (run_id, seq, when, item_id(map_id, i), f"{name}[{i}]", status(old),
                   status(new), None if details is None else details[n])
    elif kind == "definitions" and d_fps:
        for i, fp in enumerate(d_fps):
            yield run_id, item_id(map_id, i), f"{name}[{i}]", fp or None
    elif kind == "results":
        r_idx, _, _, r_times = small_of(group)
        indices = numbers("q", r_idx)
        if r_fps is None:  # each item's fingerprint is its expansion's
            expanded = None if expansions is None else expansions.get((run_id, map_id))
            if expanded is None or (indices and max(indices) >= len(expanded)):
                return
            r_fps = list(map(expanded.__getitem__, indices))
        for i, fp, value, when in zip(indices, r_fps, r_values, numbers("d", r_times),
                                      strict=True):
            yield run_id, item_id(map_id, i), f"{name}[{i}]", fp, value, when


def small_of(group: Sequence[Any]) -> tuple[Any, ...]:
    """A packed group's small-result columns (indices, fingerprints, values, times); the
    indices and times are the group's moves' where it stored None (the same)."""
    r_idx, r_fps, r_values, r_times = group[9:13]
    if r_idx is None:
        r_idx, r_times = group[2], group[4]
    return r_idx, r_fps, r_values, r_times


def without_small_items(group: tuple[Any, ...], name: str | None, keep: Callable[[Any], bool]
                        ) -> tuple[tuple[Any, ...], int]:
    """A packed group without the small results of the item named ``name`` (None: all of
    them), unless ``keep(fingerprint)``; (the group, how many went)."""
    numbers, little = _numbers, _little
    r_idx, r_fps, r_values, r_times = small_of(group)
    indices, times = numbers("q", r_idx), numbers("d", r_times)
    map_name = group[1]
    fps = [None] * len(indices) if r_fps is None else r_fps  # None: its expansion's
    stay = [n for n, (i, fp) in enumerate(zip(indices, fps, strict=True))
            if (name is not None and f"{map_name}[{i}]" != name) or keep(fp)]
    if len(stay) == len(indices):
        return group, 0
    pick = _TAKE(*stay) if len(stay) > 1 else (lambda column: (column[stay[0]],)) if stay \
        else (lambda column: ())
    kept = (little("q", tuple(pick(indices))), None if r_fps is None else tuple(pick(r_fps)),
            tuple(pick(r_values)), little("d", tuple(pick(times))))
    return (*group[:9], *kept), len(indices) - len(stay)
