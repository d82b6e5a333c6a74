"""How the live view draws a mapped task: one node, whatever the number of items.

A map of 100,000 items is one node that reads ``◷ square ×100 ✓97 ✗2 ▶1``
(the task's own state glyph, its name, the item count, then the non-zero counts
of ended and running items) over a bar of ``CELLS`` cells split by the items'
states, ended first (completed, failed, cancelled, skipped), then running,
ready and pending, each state with at least one cell while it has an item. The
counts sit in the node's suffix (patched as text like a run time); the bar's
cells are ``<tspan>``s recoloured by CSS (``bar_css``), so neither needs ``dot``
again. Before its sources ended a map's size is unknown: ``×?``.

Room for the counts is reserved at layout for a map of the size known then
(4 digits when unknown): a bigger map's counts may reach past the node's edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..palette import STATES, fill, fill_var, glyph
from .grouping import counts_line

CELLS = 16
CELL = "\u2588"  # full block: one cell of the bar
BAR_TEXT = CELL * CELLS  # the placeholder line ``svg_patch`` cuts into a hole
ORDER = ("completed", "failed", "cancelled", "skipped", "upstream_failed", "running",
         "up_for_retry", "ready", "pending")
IN_SUFFIX = ("completed", "failed", "cancelled", "skipped", "running")
CELL_STROKE = 'stroke="#ffffff" stroke-width="0.9"'  # cells seen on a node of their colour


def total(tally: Mapping[str, int] | None) -> int:
    return sum(tally.values()) if tally else 0


def suffix(tally: Mapping[str, int] | None) -> str:
    """``×100 ✓97 ✗2 ▶1``; ``×?`` before the map expanded (no items known)."""
    n = total(tally)
    if not n:
        return "\u00d7?" if tally is None else "\u00d70"
    counts = " ".join(f"{glyph(s)}{tally[s]}" for s in IN_SUFFIX if tally.get(s))  # type: ignore[union-attr]
    return f"\u00d7{n} {counts}".rstrip()


def reserve(n: int) -> int:
    """Figure spaces to keep for the suffix of a map of ``n`` items (0: unknown)."""
    digits = len(str(n)) if n else 4
    return max(6, 1 + digits + 3 * (2 + digits))


def cells(tally: Mapping[str, int] | None) -> tuple[str, ...]:
    """The state of each of the bar's ``CELLS`` cells (all ``pending`` with no items)."""
    n = total(tally)
    if not n:
        return ("pending",) * CELLS
    present = [s for s in ORDER if tally.get(s)] + sorted(  # type: ignore[union-attr]
        s for s in tally if s not in ORDER and tally[s])  # type: ignore[union-attr]
    share = {s: tally[s] * CELLS / n for s in present}  # type: ignore[index]
    width = {s: max(1, math.floor(share[s])) for s in present}
    while sum(width.values()) > CELLS:  # more states than cells can show: trim the widest
        widest = max(width, key=lambda s: (width[s], -share[s]))
        width[widest] -= 1
        if width[widest] == 0:
            del width[widest]
    for s in sorted(present, key=lambda s: share[s] - math.floor(share[s]), reverse=True):
        if sum(width.values()) >= CELLS:
            break
        if s in width:
            width[s] += 1
    while sum(width.values()) < CELLS:  # rounding left room: the largest state takes it
        width[max(width, key=lambda s: share[s])] += 1
    return tuple(s for s in present if s in width for _ in range(width[s]))


def bar_svg(states: tuple[str, ...]) -> str:
    """The bar's cells as ``<tspan>``s, coloured by attribute (a static copy needs no CSS)."""
    states = states or ("pending",) * CELLS
    inner = "".join(f'<tspan fill="{fill(s)}" {CELL_STROKE}>{CELL}</tspan>' for s in states)
    return f'<tspan class="b">{inner}</tspan>'


def bar_css(bars: Mapping[str, tuple[str, ...]]) -> str:
    """CSS that recolours the bars of these nodes (node id -> cell states), theme-aware."""
    by_state: dict[str, list[str]] = {}
    for node, states in bars.items():
        for k, state in enumerate(states, 1):
            by_state.setdefault(state, []).append(f"#{node} .b :nth-child({k})")
    return "\n".join(",".join(sel) + f"{{fill:{fill_var(state)}}}"
                     for state, sel in by_state.items())


def tip(tally: Mapping[str, int] | None) -> str:
    """The hover text's lines about the items."""
    n = total(tally)
    if not n:
        return ("items: known once its sources completed" if tally is None else "no items")
    names = ", ".join(f"{tally[s]} {STATES.get(s, STATES['pending'])[2]}"  # type: ignore[index]
                      for s in ORDER if tally.get(s))  # type: ignore[union-attr]
    return f"{n} items ({counts_line(tally)}): {names}\nclick: its items, failures first"
