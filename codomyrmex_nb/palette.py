"""State colours and glyphs shared by the live view and the timeline.

Colours follow Airflow's convention; each state also has a glyph so that
colour is never the only cue. Drawings carry the light colours as plain
attributes (what an image viewer, nbconvert or GitHub shows); ``theme_css``
turns them into CSS variables with darker variants for JupyterLab's dark
theme (``body[data-jp-theme-light="false"]``) and, for standalone SVGs, for
``prefers-color-scheme: dark``.
"""

from __future__ import annotations

# display state -> (fill colour, glyph, label)
STATES: dict[str, tuple[str, str, str]] = {
    "pending": ("#d3d3d3", "\u25f7", "queued"),          # lightgrey, clock face (text glyph)
    "ready": ("#bdbdbd", "\u2022", "ready"),              # grey, bullet
    "running": ("#90ee90", "\u25b6", "running"),          # lightgreen, play
    "completed": ("#008000", "\u2713", "success"),        # green, check
    "failed": ("#ff0000", "\u2717", "failed"),            # red, cross
    "up_for_retry": ("#ffd700", "\u21bb", "up for retry"),  # gold, clockwise arrow
    "cancelled": ("#ffc0cb", "\u2298", "cancelled"),      # pink, circled slash
    "skipped": ("#ffc0cb", "\u2298", "not needed"),       # pink, circled slash (a rule did not fire)
    "upstream_failed": ("#ffa500", "\u26a0", "upstream failed"),  # orange, warning sign
}

# Text colour that stays readable on each fill.
TEXT_ON = {"completed": "#ffffff", "failed": "#ffffff"}

# The same states on a dark page: the hues kept, the light greys and pastels toned down so that
# a queued DAG is not a block of glare. (fill, text)
DARK: dict[str, tuple[str, str]] = {
    "pending": ("#4a4d52", "#e8e8e8"),
    "ready": ("#5d6066", "#f0f0f0"),
    "running": ("#5cb85c", "#0b1a0b"),
    "completed": ("#1e7b1e", "#ffffff"),
    "failed": ("#d92626", "#ffffff"),
    "up_for_retry": ("#c9a400", "#111111"),
    "cancelled": ("#b9848f", "#111111"),
    "skipped": ("#b9848f", "#111111"),
    "upstream_failed": ("#d98900", "#111111"),
}

# Lines: (light, dark).
EDGE = ("#707070", "#9aa0a6")
CRITICAL = ("#1f3a93", "#8fb0ff")
NODE_STROKE = ("#505050", "#a0a4aa")
WAITING = ("#d97706", "#f5a524")   # a task waiting for a resource lock
HOLDING = ("#303030", "#e0e0e0")   # the task that holds it
PAGE_TEXT = ("#222222", "#dddddd")  # labels outside nodes (clusters, locks), where no theme says


def fill(state: str) -> str:
    return STATES.get(state, STATES["pending"])[0]


def glyph(state: str) -> str:
    return STATES.get(state, STATES["pending"])[1]


def font_colour(state: str) -> str:
    return TEXT_ON.get(state, "#000000")


def css_name(state: str) -> str:
    """``up_for_retry`` -> ``up-for-retry``: the state's part of a CSS variable name."""
    return (state if state in STATES else "pending").replace("_", "-")


def fill_var(state: str) -> str:
    """The fill as a CSS value that follows the theme: ``var(--codo-running,#90ee90)``."""
    return f"var(--codo-{css_name(state)},{fill(state)})"


def font_var(state: str) -> str:
    return f"var(--codo-{css_name(state)}-text,{font_colour(state)})"


def _variables(dark: bool) -> str:
    pick = 1 if dark else 0
    out = []
    for state in STATES:
        f, t = DARK[state] if dark else (fill(state), font_colour(state))
        out.append(f"--codo-{css_name(state)}:{f};--codo-{css_name(state)}-text:{t}")
    for name, pair in (("edge", EDGE), ("critical", CRITICAL), ("stroke", NODE_STROKE),
                       ("waiting", WAITING), ("holding", HOLDING), ("page", PAGE_TEXT)):
        out.append(f"--codo-{name}:{pair[pick]}")
    return ";".join(out)


def theme_css(scope: str, standalone: bool = False) -> str:
    """CSS for the drawings under ``.scope``: variables per theme, and baked colours mapped to them.

    A drawing carries light colours as attributes (``fill="#d3d3d3"``); the rules
    here repaint those through variables, so on a dark page every node, edge and
    label takes its dark variant while the file itself stays plain SVG.
    ``standalone`` also follows ``prefers-color-scheme`` (an image has no page theme).
    """
    sel = f".{scope}"
    rules = [f"{sel}{{{_variables(False)}}}",
             f'body[data-jp-theme-light="false"] {sel}{{{_variables(True)}}}']
    if standalone:
        rules.append(f"@media (prefers-color-scheme: dark){{{sel}{{{_variables(True)}}}}}")
    seen: set[str] = set()
    for state in STATES:
        colour = fill(state)
        if colour in seen:
            continue
        seen.add(colour)
        shape = f'{sel} g.node > [fill="{colour}"]'
        rules.append(f"{shape}{{fill:{fill_var(state)}}}")
        # the label follows its node's fill (a patched node gets its own rules, by id)
        rules.append(f'{sel} g.node:has(> [fill="{colour}"]) text{{fill:{font_var(state)}}}')
    rules.append(f'{sel} g.node > [stroke="{NODE_STROKE[0]}"]{{stroke:var(--codo-stroke)}}')
    rules.append(f'{sel} g.node > [stroke="{CRITICAL[0]}"]{{stroke:var(--codo-critical)}}')
    for name, pair in (("edge", EDGE), ("critical", CRITICAL), ("waiting", WAITING),
                       ("holding", HOLDING)):
        rules.append(f'{sel} g.edge [stroke="{pair[0]}"]{{stroke:var(--codo-{name})}}')
        rules.append(f'{sel} g.edge [fill="{pair[0]}"]{{fill:var(--codo-{name})}}')
    page_text = "var(--jp-ui-font-color1,var(--codo-page))"
    rules.append(f"{sel} g.graph > text,{sel} g.cluster text,{sel} g.lock text"
                 f"{{fill:{page_text}}}")
    rules.append(f"{sel} g.cluster > path,{sel} g.cluster > polygon,{sel} g.lock > path,"
                 f"{sel} g.lock > polygon{{stroke:var(--codo-edge)}}")
    return "\n".join(rules)
