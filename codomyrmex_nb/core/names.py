"""Which characters a task name may hold.

A name is drawn in the live view (Graphviz, then SVG, which is XML), printed in
one-line messages and used as a table index. A NUL stops ``dot`` (the whole
drawing goes blank), other control characters make the SVG invalid XML, and
line or paragraph separators split one-line messages; a lone surrogate cannot
be encoded at all. Those are refused when the task is defined, as is a name of
only whitespace (nothing to see, nothing to tell apart). Everything else
is allowed: accents, CJK, emoji joined by a zero-width joiner, right-to-left
marks (format characters, category Cf) and private-use icons.
"""

from __future__ import annotations

import unicodedata

#: Unicode categories refused: controls (C0, DEL, C1), surrogates, line and paragraph separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_NONCHARACTERS = frozenset("\ufffe\uffff")  # not allowed in XML either


def bad_name_char(name: str) -> tuple[int, str] | None:
    """The position and character of the first refused character in ``name``, or None."""
    if name.isprintable():  # the common case, in C: no control or separator at all
        return None
    for i, char in enumerate(name):
        if char in _NONCHARACTERS or unicodedata.category(char) in REFUSED_CATEGORIES:
            return i, char
    return None


def check_task_name(name: str) -> None:
    """Raise a one-line ``ValueError`` naming the first refused character and the fix, or
    saying that the name is blank (only spaces: nothing to see in a drawing or a message)."""
    if name.isspace():
        raise ValueError(
            f"task name {name!r} is only whitespace: task names are drawn and printed, so a "
            "blank one cannot be seen or told apart; give the task a name with at least one "
            "visible character")
    found = bad_name_char(name)
    if found is None:
        return
    i, char = found
    kind = "noncharacter" if char in _NONCHARACTERS else {
        "Cs": "lone surrogate", "Zl": "line separator", "Zp": "paragraph separator"}.get(
        unicodedata.category(char), "control character")
    shown = name if len(name) <= 60 else name[:59] + "\u2026"
    raise ValueError(
        f"task name {shown!r} contains the {kind} {char!r} (U+{ord(char):04X}) at position {i}: "
        "task names are drawn and printed, so they cannot hold control characters or line "
        "breaks; remove it or replace it with a space")
