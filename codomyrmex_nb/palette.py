"""State colours and glyphs shared by the live view and the timeline.

Colours follow Airflow's convention; each state also has a glyph so that
colour is never the only cue.
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
    "skipped": ("#ffc0cb", "\u2298", "skipped"),          # pink, circled slash
    "upstream_failed": ("#ffa500", "\u26a0", "upstream failed"),  # orange, warning sign
}

# Text colour that stays readable on each fill.
TEXT_ON = {"completed": "#ffffff", "failed": "#ffffff"}


def fill(state: str) -> str:
    return STATES.get(state, STATES["pending"])[0]


def glyph(state: str) -> str:
    return STATES.get(state, STATES["pending"])[1]


def font_colour(state: str) -> str:
    return TEXT_ON.get(state, "#000000")
