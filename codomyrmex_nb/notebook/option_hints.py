"""A misspelt option of a magic line gets a "did you mean": ``--priorty`` names ``--priority``.

argparse says ``unrecognized arguments: --priorty high`` or, for a prefix of several
options, ``ambiguous option: --retry could match --retry-delay, --retry-on``, which
leaves out the one meant (``--retries``). ``hint`` finds, for the first option word
the parser does not know (nor takes as an abbreviation), the closest options it knows.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any

CUTOFF = 0.6  # similarity below which an option is not offered
NEAR = 0.1  # options within this of the closest one are offered with it
SYNONYMS = {  # the Python API's (and other tools') words for a cell's options
    "--dependencies": "--after", "--depends": "--after", "--depends-on": "--after",
    "--deps": "--after", "--upstream": "--after", "--max-retries": "--retries",
    "--trigger-rule": "--trigger", "--tags": "--tag", "--resources": "--resource",
}


def hint(parser: Any, argv: list[str], message: str) -> str:
    """`` (did you mean --priority?)`` for a misspelt option in ``argv``, else ``""``."""
    ambiguous = "ambiguous option" in message
    if not ambiguous and "unrecognized arguments" not in message:
        return ""
    known = sorted({flag for action in getattr(parser, "_actions", ())
                    for flag in action.option_strings if flag.startswith("--")})
    for word in argv:
        flag = word.split("=", 1)[0]
        if not flag.startswith("--") or flag == "--":
            continue
        prefixed = [k for k in known if k.startswith(flag)]
        if len(prefixed) == 1 or flag in known:  # known, or an abbreviation argparse takes
            continue
        close = [SYNONYMS[flag]] if SYNONYMS.get(flag) in known else \
            _closest(flag, [k for k in known if k not in prefixed])
        if close:
            said = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
            return f" (or did you mean {said}?)" if ambiguous else f" (did you mean {said}?)"
        if ambiguous or len(prefixed) > 1:
            return ""
    return ""


def _closest(flag: str, known: list[str]) -> list[str]:
    scores = sorted(((SequenceMatcher(None, flag[2:], k[2:]).ratio(), k) for k in known),
                    reverse=True)
    if not scores or scores[0][0] < CUTOFF:
        return []
    best = scores[0][0]
    return [k for score, k in scores[:3] if score >= max(CUTOFF, best - NEAR)]
