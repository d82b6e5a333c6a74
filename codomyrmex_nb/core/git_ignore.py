"""Keep a journal at a custom path out of git: it holds pickled results.

The default folder (``.codomyrmex/``) carries a ``.gitignore`` of ``*``. A journal
given its own path inside a git work tree gets its own rule instead, in the
repository's local exclude file (``.git/info/exclude``: never committed, so the
project's ``.gitignore`` is left alone). No ``git`` program is needed: the work tree
is found by its ``.git`` entry (a folder, or a file pointing to one, as in a linked
worktree or a submodule), and the rule is added once. When it cannot be added,
``ignore_in_git`` returns one line saying the journal is not ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["ignore_in_git"]

HEADER = "# codomyrmex-nb run journal (pickled results): never commit it"


def ignore_in_git(path: Path) -> str | None:
    """Make git ignore the journal at ``path`` (and its ``-wal``/``-shm`` and moved-aside
    copies) if it lies in a work tree; a warning line when that could not be done."""
    try:
        path = path.resolve()
    except OSError:
        return None
    tree = _work_tree(path.parent)
    if tree is None:
        return None
    rel = path.relative_to(tree).as_posix()
    rule = f"/{_escape(rel)}"
    rules = [rule, f"{rule}-*", f"{rule}.corrupt-*"]
    try:
        exclude = _git_dir(tree) / "info" / "exclude"
        text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        missing = [rule for rule in rules if rule not in text.splitlines()]
        if missing:
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with open(exclude, "a", encoding="utf-8") as file:
                if text and not text.endswith("\n"):
                    file.write("\n")
                file.write("\n".join([HEADER, *missing]) + "\n")
    except (OSError, UnicodeError, ValueError) as exc:
        return (f"run journal {path} is inside the git work tree {tree} and is not ignored: "
                f"could not add a rule to .git/info/exclude ({exc}); add '{rel}*' to a "
                ".gitignore, the journal holds pickled results")
    return None


def _work_tree(folder: Path) -> Path | None:
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _git_dir(tree: Path) -> Path:
    """The repository folder holding ``info/exclude`` (a linked worktree's common dir)."""
    dot_git = tree / ".git"
    if dot_git.is_dir():
        return dot_git
    line = dot_git.read_text(encoding="utf-8").strip()
    if not line.startswith("gitdir:"):
        raise ValueError(f"{dot_git} does not name a git folder")
    git_dir = (tree / line[len("gitdir:"):].strip()).resolve()
    common = git_dir / "commondir"
    if common.exists():
        git_dir = (git_dir / common.read_text(encoding="utf-8").strip()).resolve()
    return git_dir


def _escape(rel: str) -> str:
    """A path as a literal gitignore pattern (glob characters, a trailing space)."""
    rel = re.sub(r"([\\*?\[])", r"\\\1", rel)
    return re.sub(r" $", r"\\ ", rel)
