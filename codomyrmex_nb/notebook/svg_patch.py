"""Recolour a laid-out SVG without running ``dot`` again.

``Template.parse`` cuts the SVG that ``dot`` produced into literal text and
holes (a node's fill, border, font colour, glyph, suffix or second line,
hover text; an edge's colour). ``render`` fills the holes from the current
looks: a plain join, about a millisecond at 500 nodes, against ``dot``'s
tenth of a second. Hover texts come from the looks, never graphviz's ids:
the ``<title>`` of every other element (edges, lock nodes, grids, the graph)
is replaced from the drawing's titles, or emptied.

A browser never needs the whole SVG again for a state change either:
``render(css=True)`` writes every glyph a node can show as hidden ``<tspan>``s
(only the current one visible) and the suffix in its own ``<tspan>``, and
``style_frame`` writes a small ``<style>`` block, keyed by node id, that
recolours and re-glyphs just the nodes whose state changed since that SVG
was sent (colours as theme variables, see ``palette.theme_css``); the view's
front end sets changed suffixes and hover texts by id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape

from ..palette import CRITICAL, EDGE, HOLDING, NODE_STROKE, STATES, WAITING, fill_var, font_var
from ..palette import theme_css as _theme_css
from . import map_node
from .drawing import FIGURE_SPACE, RESERVE, Look

_GROUP = re.compile(r'<g id="([^"]+)" class="(node|edge)">(.*?)</g>', re.S)
_COMMENT = re.compile(r"<!--.*?-->\n?", re.S)
_TITLE = re.compile(r"<title>([^<]*)</title>")
_SHAPE = re.compile(r'(<(?:path|polygon|ellipse) fill=")([^"]*)(") (stroke="[^"]*"(?: stroke-width="[^"]*")?)')
_TEXT = re.compile(r'<text ([^>]*?)(?: fill="[^"]*")?>([^<]*)</text>')
_EDGE_PAINT = re.compile(r'(fill="(?!none)[^"]*")|(stroke="[^"]*"(?: stroke-width="[^"]*")?)')

GLYPHS: tuple[str, ...] = tuple(dict.fromkeys(g for _, g, _ in STATES.values()))
LOCK_PAINT = {"": (EDGE[0], "1"), "waiting": (WAITING[0], "2.5"), "holding": (HOLDING[0], "2")}
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
    def parse(cls, svg: str, titles: Mapping[str, str] | None = None) -> Template:
        """Cut ``dot``'s SVG output into parts and holes (ids from ``drawing``).

        ``titles``: hover text by graphviz name or element id for what is not a
        node (edges, lock nodes, clusters); any other ``<title>`` is emptied.
        """
        titles = titles or {}
        svg = _COMMENT.sub("", svg[svg.index("<svg"):])
        parts: list[str] = []
        holes: list[Hole] = []
        nodes, edges = [], []
        pos = 0
        for m in _GROUP.finditer(svg):
            gid, kind, body = m.group(1), m.group(2), m.group(3)
            parts.append(_retitle(svg[pos:m.start(3)], titles))
            if kind == "node":
                nodes.append(gid)
                _cut_node(gid, body, parts, holes)
            else:
                edges.append(gid)
                _cut_edge(gid, _TITLE.sub(_title_of(titles.get(gid, "")), body, count=1),
                          parts, holes)
            pos = m.end(3)
        parts.append(_retitle(svg[pos:], titles))
        return cls(parts, holes, nodes, edges)

    def render(self, looks: Mapping[str, Look], hot_edges: frozenset[str] | set[str] = frozenset(),
               css: bool = False, provisional: bool = False,
               lock_states: Mapping[str, str] | None = None) -> str:
        """The SVG with every hole filled from ``looks`` (node id -> Look).

        ``hot_edges`` are on the critical path (dashed while ``provisional``);
        ``lock_states`` paints lock edges: ``"waiting"``, ``"holding"`` or ``""``.
        """
        out = self.parts.copy()
        default = Look("#d3d3d3", "#000000", GLYPHS[0], "")
        locks = lock_states or {}
        for index, key, field in self.holes:
            if field in ("stroke", "afill"):
                out[index] = _edge_paint(field, key in hot_edges, provisional, locks.get(key))
                continue
            look = looks.get(key, default)
            if field == "fill":
                out[index] = look.fill
            elif field == "border":
                out[index] = _border(look.critical, provisional)
            elif field == "font":
                out[index] = f' fill="{look.font}"'
            elif field == "glyph":
                out[index] = glyph_tspans(look.glyph) if css else look.glyph
            elif field == "tip":
                out[index] = escape(look.tip, quote=False)
            elif field == "bar":
                out[index] = map_node.bar_svg(look.bar)
            elif field == "suffix":
                text = escape(look.line2, quote=False) or RESERVE
                out[index] = f'<tspan class="s">{text}</tspan>' if css else text
            else:  # line2 (a group's counts)
                out[index] = escape(look.line2, quote=False) or RESERVE
        return "".join(out)


def _title_of(text: str) -> str:
    return f"<title>{escape(text, quote=False)}</title>"


def _retitle(chunk: str, titles: Mapping[str, str]) -> str:
    """Replace graphviz's names in the ``<title>``s of clusters, lock nodes and the graph."""
    if "<title>" not in chunk:
        return chunk
    return _TITLE.sub(lambda m: _title_of(titles.get(m.group(1), "")), chunk)


def _border(critical: bool, provisional: bool) -> str:
    """A node's outline: a task (or group) on the critical path is outlined in its blue, so
    the path shows even where no edge leads to it (a grid member, a one-task path)."""
    if not critical:
        return f'stroke="{NODE_STROKE[0]}"'
    dash = ' stroke-dasharray="5,2"' if provisional else ""
    return f'stroke="{CRITICAL[0]}" stroke-width="2.5"{dash}'


def _cut_node(gid: str, body: str, parts: list[str], holes: list[Hole]) -> None:
    pos = 0
    title = _TITLE.search(body)
    if title is not None:
        parts.append(body[:title.start()] + "<title>")
        holes.append((len(parts), gid, "tip"))
        parts.append("")
        parts.append("</title>")
        pos = title.end()
    shape = _SHAPE.search(body, pos)
    if shape is not None:
        parts.append(body[pos:shape.start(2)])
        holes.append((len(parts), gid, "fill"))
        parts.append("")
        parts.append(shape.group(3) + " ")
        holes.append((len(parts), gid, "border"))
        parts.append("")
        pos = shape.end()
    task = False  # a task's node: lines after the first (its trigger rule) never change
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
            if rest.endswith(FIGURE_SPACE) and " " in rest:  # a task: name, then its suffix
                task = True
                name, _ = rest.rsplit(" ", 1)
                parts.append(f" {name} ")
                holes.append((len(parts), gid, "suffix"))
                parts.append("")
                parts.append("</text>")
            else:
                parts.append(f" {rest}</text>")
        elif line == 1 and not task:
            parts.append(">")
            holes.append((len(parts), gid, "line2"))
            parts.append(content)
            parts.append("</text>")
        elif task and content == map_node.BAR_TEXT:  # a mapped task's bar
            parts.append(">")
            holes.append((len(parts), gid, "bar"))
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


def _edge_paint(field: str, hot: bool, provisional: bool = False,
                lock: str | None = None) -> str:
    if lock is not None:
        colour, width = LOCK_PAINT.get(lock, LOCK_PAINT[""])
        return f'fill="{colour}"' if field == "afill" else (
            f'stroke="{colour}"' + (f' stroke-width="{width}"' if width != "1" else ""))
    colour = CRITICAL[0] if hot else EDGE[0]
    if field == "afill":
        return f'fill="{colour}"'
    if not hot:
        return f'stroke="{colour}"'
    return f'stroke="{colour}" stroke-width="2"' + (' stroke-dasharray="5,2"' if provisional
                                                     else "")


def glyph_tspans(current: str) -> str:
    """Every glyph as a ``<tspan>``; CSS shows the ``on`` one (or the one a frame picks)."""
    inner = "".join(f'<tspan class="on">{g}</tspan>' if g == current else f"<tspan>{g}</tspan>"
                    for g in GLYPHS)
    return f'<tspan class="g">{inner}</tspan>'


def base_style(scope: str) -> str:
    """CSS sent with each full SVG: the ``on`` glyph of each node visible, colours by theme."""
    return (f".{scope} .g tspan{{display:none}}.{scope} .g .on{{display:inline}}\n"
            + _theme_css(scope))


def theme_css(scope: str, standalone: bool = False) -> str:
    return _theme_css(scope, standalone)


def style_frame(changed: Mapping[str, Look]) -> str:
    """CSS rules that repaint the nodes in ``changed`` (node id -> Look); empty if none."""
    if not changed:
        return ""
    by_look: dict[tuple[str, str], list[str]] = {}
    for nid, look in changed.items():
        by_look.setdefault((look.state, look.glyph), []).append(nid)
    rules = [",".join(f"#{n} .g .on" for n in changed) + "{display:none}"]
    for (state, glyph), ids in by_look.items():
        k = GLYPHS.index(glyph) + 1 if glyph in GLYPHS else 1
        rules.append(",".join(f"#{n} path" for n in ids) + f"{{fill:{fill_var(state)}}}")
        rules.append(",".join(f"#{n} text" for n in ids) + f"{{fill:{font_var(state)}}}")
        rules.append(",".join(f"#{n} .g :nth-child({k})" for n in ids) + "{display:inline}")
    return "\n".join(rules)


def lock_frame(changed: Mapping[str, str]) -> str:
    """CSS rules that repaint lock edges (edge id -> ``"waiting"``, ``"holding"`` or ``""``)."""
    rules = []
    for eid, state in changed.items():
        width = LOCK_PAINT.get(state, LOCK_PAINT[""])[1]
        var = f"var(--codo-{state})" if state else "var(--codo-edge)"
        rules.append(f"#{eid} path{{stroke:{var};stroke-width:{width}}}")
    return "\n".join(rules)
