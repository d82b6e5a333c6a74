"""Which characters a task name may hold.

A name is drawn in the live view (Graphviz, then SVG, which is XML), printed in
one-line messages and used as a table index. A NUL stops ``dot`` (the whole
drawing goes blank), other control characters make the SVG invalid XML, and
line or paragraph separators split one-line messages; a lone surrogate cannot
be encoded at all. Those are refused when the task is defined, as is a name of
only whitespace or invisible characters (zero-width spaces, a byte-order mark:
nothing to see, nothing to tell apart) and a name with whitespace at either end
(" load" prints and draws as "load" yet is another task). Everything else is
allowed: accents, CJK, emoji joined by a zero-width joiner, right-to-left marks
(format characters, category Cf) and private-use icons.
"""

from __future__ import annotations

import unicodedata

#: Unicode categories refused: controls (C0, DEL, C1), surrogates, line and paragraph separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_NONCHARACTERS = frozenset("\ufffe\uffff")  # not allowed in XML either

#: Code points drawn as nothing: Unicode's Default_Ignorable_Code_Point (zero-width space
#: and joiners, bidi controls, the byte-order mark, variation selectors, Hangul fillers,
#: tags), plus the Braille blank, a favourite "invisible name". Whitespace is counted apart.
_INVISIBLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))
#: What a printable name cannot start with if ``check_task_name`` is to accept it surely:
#: a space (the only whitespace ``str.isprintable`` lets through) or one of the invisible
#: characters it lets through (the rest are not printable). A printable name starting with
#: none of them has a visible character.
_NOT_FIRST = frozenset(
    char for lo, hi in _INVISIBLE_RANGES for char in map(chr, range(lo, hi + 1))
    if char.isprintable()) | {" "}


def plain_name(name: str) -> bool:
    """True for a non-empty name ``check_task_name`` surely accepts, in a few C calls (the
    fast path of ``Task.is_plain``); False says only: call ``check_task_name``."""
    return name.isprintable() and name[0] not in _NOT_FIRST and name[-1] != " "


def _invisible(char: str) -> bool:
    """Whether ``char`` is drawn as nothing: whitespace, or in ``_INVISIBLE_RANGES``."""
    code = ord(char)
    return char.isspace() or any(lo <= code <= hi for lo, hi in _INVISIBLE_RANGES)


def bad_name_char(name: str) -> tuple[int, str] | None:
    """The position and character of the first refused character in ``name``, or None."""
    if name.isprintable():  # the common case, in C: no control or separator at all
        return None
    for i, char in enumerate(name):
        if char in _NONCHARACTERS or unicodedata.category(char) in REFUSED_CATEGORIES:
            return i, char
    return None


def check_task_name(name: str) -> None:
    """Raise a one-line ``ValueError`` naming the problem and the fix: a blank name (only
    whitespace or invisible characters: nothing to see in a drawing or a message),
    whitespace at either end, or the first refused character."""
    if name.isspace():
        raise ValueError(
            f"task name {name!r} is only whitespace: task names are drawn and printed, so a "
            "blank one cannot be seen or told apart; give the task a name with at least one "
            "visible character")
    if name and all(map(_invisible, name)):
        raise ValueError(
            f"task name {name!r} has no visible character (only zero-width or invisible ones): "
            "task names are drawn and printed, so an invisible one cannot be seen or told "
            "apart; give the task a name with at least one visible character")
    stripped = name.strip()
    if stripped != name:
        raise ValueError(
            f"task name {name!r} has leading/trailing whitespace; use {stripped!r} (it prints "
            "and draws the same, so the spaces would only make it another task)")
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
