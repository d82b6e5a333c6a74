"""Recolour a laid-out SVG without running ``dot`` again.

``Template.parse`` cuts the SVG that ``dot`` produced into literal text and
holes (a node's fill, border, font colour, glyph, second line; an edge's
colour). ``render`` fills the holes from the current looks: a plain join,
about a millisecond at 500 nodes, against ``dot``'s tenth of a second.

A browser never needs the whole SVG again for a state change either:
``render(css=True)`` writes every glyph a node can show as hidden ``<tspan>``s
(only the current one visible), and ``style_frame`` writes a small
``<style>`` block, keyed by node id, that recolours and re-glyphs just the
nodes whose state changed since that SVG was sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape

from ..palette import STATES
from .drawing import CRITICAL_COLOUR, EDGE_COLOUR, FIGURE_SPACE, Look

_GROUP = re.compile(r'<g id="([^"]+)" class="(node|edge)">(.*?)</g>', re.S)
_COMMENT = re.compile(r"<!--.*?-->\n?", re.S)
_SHAPE = re.compile(r'(<(?:path|polygon|ellipse) fill=")([^"]*)(") (stroke="[^"]*"(?: stroke-width="[^"]*")?)')
_TEXT = re.compile(r'<text ([^>]*?)(?: fill="[^"]*")?>([^<]*)</text>')
_EDGE_PAINT = re.compile(r'(fill="(?!none)[^"]*")|(stroke="[^"]*"(?: stroke-width="[^"]*")?)')

GLYPHS: tuple[str, ...] = tuple(dict.fromkeys(g for _, g, _ in STATES.values()))
NODE_STROKE = "#505050"
RESERVE = FIGURE_SPACE * 6
Hole = tuple[int, str, str]  # (index in parts, node or edge id, field)


class Template:
    """A laid-out SVG with holes for everything a state change may alter."""

    __slots__ = ("parts", "holes", "node_ids", "edge_ids", "size")

    def __init__(self, parts: list[str], holes: list[Hole], node_ids: list[str],
                 edge_ids: list[str]) -> None:
        self.parts, self.holes = parts, holes
        self.node_ids, self.edge_ids = node_ids, edge_ids
        self.size = sum(map(len, parts))

    @classmethod
    def parse(cls, svg: str) -> Template:
        """Cut ``dot``'s SVG output into parts and holes (ids from ``drawing``)."""
        svg = _COMMENT.sub("", svg[svg.index("<svg"):])
        parts: list[str] = []
        holes: list[Hole] = []
        nodes, edges = [], []
        pos = 0
        for m in _GROUP.finditer(svg):
            gid, kind, body = m.group(1), m.group(2), m.group(3)
            parts.append(svg[pos:m.start(3)])
            if kind == "node":
                nodes.append(gid)
                _cut_node(gid, body, parts, holes)
            else:
                edges.append(gid)
                _cut_edge(gid, body, parts, holes)
            pos = m.end(3)
        parts.append(svg[pos:])
        return cls(parts, holes, nodes, edges)

    def render(self, looks: Mapping[str, Look], hot_edges: frozenset[str] | set[str] = frozenset(),
               css: bool = False) -> str:
        """The SVG with every hole filled from ``looks`` (node id -> Look)."""
        out = self.parts.copy()
        default = Look("#d3d3d3", "#000000", GLYPHS[0], "")
        for index, key, field in self.holes:
            if field in ("stroke", "afill"):
                out[index] = _edge_paint(field, key in hot_edges)
                continue
            look = looks.get(key, default)
            if field == "fill":
                out[index] = look.fill
            elif field == "border":
                out[index] = (f'stroke="{NODE_STROKE}" stroke-width="2.5"' if look.critical
                              else f'stroke="{NODE_STROKE}"')
            elif field == "font":
                out[index] = f' fill="{look.font}"'
            elif field == "glyph":
                out[index] = glyph_tspans(look.glyph) if css else look.glyph
            else:  # line2
                out[index] = escape(look.line2, quote=False) or RESERVE
        return "".join(out)


def _cut_node(gid: str, body: str, parts: list[str], holes: list[Hole]) -> None:
    pos = 0
    shape = _SHAPE.search(body)
    if shape is not None:
        parts.append(body[:shape.start(2)])
        holes.append((len(parts), gid, "fill"))
        parts.append("")
        parts.append(shape.group(3) + " ")
        holes.append((len(parts), gid, "border"))
        parts.append("")
        pos = shape.end()
    for line, text in enumerate(_TEXT.finditer(body, pos)):
        parts.append(body[pos:text.start()] + f"<text {text.group(1)}")
        holes.append((len(parts), gid, "font"))
        parts.append("")
        content = text.group(2)
        if line == 0 and " " in content:
            head, rest = content.split(" ", 1)
            parts.append(">")
            holes.append((len(parts), gid, "glyph"))
            parts.append(head)
            parts.append(f" {rest}</text>")
        elif line == 1:
            parts.append(">")
            holes.append((len(parts), gid, "line2"))
            parts.append(content)
            parts.append("</text>")
        else:
            parts.append(f">{content}</text>")
        pos = text.end()
    parts.append(body[pos:])


def _cut_edge(gid: str, body: str, parts: list[str], holes: list[Hole]) -> None:
    pos = 0
    for paint in _EDGE_PAINT.finditer(body):
        parts.append(body[pos:paint.start()])
        holes.append((len(parts), gid, "afill" if paint.group(1) else "stroke"))
        parts.append(paint.group(0))
        pos = paint.end()
    parts.append(body[pos:])


def _edge_paint(field: str, hot: bool) -> str:
    colour = CRITICAL_COLOUR if hot else EDGE_COLOUR
    if field == "afill":
        return f'fill="{colour}"'
    return f'stroke="{colour}" stroke-width="2"' if hot else f'stroke="{colour}"'


def glyph_tspans(current: str) -> str:
    """Every glyph as a ``<tspan>``; CSS shows the ``on`` one (or the one a frame picks)."""
    inner = "".join(f'<tspan class="on">{g}</tspan>' if g == current else f"<tspan>{g}</tspan>"
                    for g in GLYPHS)
    return f'<tspan class="g">{inner}</tspan>'


def base_style(scope: str) -> str:
    """CSS sent with each full SVG: only the ``on`` glyph of each node is visible."""
    return f".{scope} .g tspan{{display:none}}.{scope} .g .on{{display:inline}}"


def style_frame(changed: Mapping[str, Look]) -> str:
    """CSS rules that repaint the nodes in ``changed`` (node id -> Look); empty if none."""
    if not changed:
        return ""
    by_look: dict[tuple[str, str, str], list[str]] = {}
    for nid, look in changed.items():
        by_look.setdefault((look.fill, look.font, look.glyph), []).append(nid)
    rules = [",".join(f"#{n} .g .on" for n in changed) + "{display:none}"]
    for (fill, font, glyph), ids in by_look.items():
        k = GLYPHS.index(glyph) + 1 if glyph in GLYPHS else 1
        rules.append(",".join(f"#{n} path" for n in ids) + f"{{fill:{fill}}}")
        rules.append(",".join(f"#{n} text" for n in ids) + f"{{fill:{font}}}")
        rules.append(",".join(f"#{n} .g :nth-child({k})" for n in ids) + "{display:inline}")
    return "\n".join(rules)
