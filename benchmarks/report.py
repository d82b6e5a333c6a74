"""Results file and README tables: each part's latest result, wherever it was measured.

``results.json`` maps part name -> that part's result (with the machine and
settings it ran with), so ``--only PART`` replaces one part and keeps the rest.
The README keeps its prose; only the text between a part's markers
(``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``) is rewritten, and a
missing pair is appended at the end.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def save(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")


def heading(result: dict) -> str:
    meta = result["meta"]
    engine = meta["engine"]
    source = f"engine at {engine['commit'] or 'an unknown commit'}" + (
        " with local edits" if engine["edited"] else "")
    return (f"_Measured {meta['date']} in {meta['seconds']:.1f} s ({source}): "
            f"Python {meta['python']}, dask {meta['dask']}, {meta['cpus']} CPUs"
            + (f", load {meta['load_1min']:.1f} at the start" if "load_1min" in meta else "")
            + "._")


def render(results: dict, tables: dict[str, Callable[[dict], str]]) -> dict[str, str]:
    """Markdown per part present in ``results``; a part saved by an older suite is skipped."""
    blocks = {}
    for name in tables:
        if name in results:
            try:
                blocks[name] = heading(results[name]) + "\n\n" + tables[name](results[name])
            except (KeyError, TypeError) as exc:
                print(f"{name}: results from an older suite ({exc!r}), table kept as it was; "
                      f"run --only {name}", file=sys.stderr)
    return blocks


def update_readme(path: Path, blocks: dict[str, str]) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    for name, block in blocks.items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        fresh = f"{start}\n{block}\n{end}"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _m, fresh=fresh: fresh, text, count=1)
        else:
            text = text.rstrip("\n") + f"\n\n{fresh}\n"
    path.write_text(text)
