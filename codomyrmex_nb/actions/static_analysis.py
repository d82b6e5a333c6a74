"""Code metrics of Python files from the standard ``ast`` and ``tokenize`` modules.

No third-party analyser, so the built-in pipeline runs anywhere. Per file:
line counts (code / comment / blank, which add up to ``lines``), functions,
classes, cyclomatic complexity and the longest function. Complexity follows the
McCabe rule: 1 per function, plus 1 for each ``if``/``elif``, ``for``, ``while``,
``except``, ``assert``, ternary, comprehension ``if`` and ``match`` case, plus
one per extra operand of ``and``/``or``. A nested function is measured on its
own, not inside its parent. A file that does not parse is listed in
``syntax_errors`` and the rest of the analysis goes on.

Only regular files inside the analysed tree are read, and only up to a size cap,
because a scan must neither leak nor hang: a symlink leading out of the tree is
skipped (its content is not ours to report, and it may be ``/dev/zero``), a
directory symlink is not followed (no cycles, no escape), a FIFO, socket or device
named ``*.py`` is never opened (opening a FIFO blocks until a writer appears), and
a file over ``max_file_bytes`` (default ``MAX_FILE_BYTES``, 1 MiB) is skipped whole
rather than half-read (a truncated file would only give a bogus syntax error, and
parsing a huge one takes minutes and gigabytes). Each of these is listed in the
result's ``skipped`` with its ``reason``; the cap is reported as ``max_file_bytes``.
A symlink to a file elsewhere in the tree is read like the file itself.

Results are plain JSON-able dicts whose ``totals`` is a flat dict of numbers,
which is what ``data_visualization.create_bar_chart`` charts from upstream.
"""

from __future__ import annotations

import ast
import io
import os
import re
import stat
import tokenize
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["analyze_code_quality", "comprehensive_analysis"]

SKIP_DIRS = frozenset({".venv", "__pycache__", "node_modules"})
MAX_FILE_BYTES = 1 << 20  # 1 MiB: far above any hand-written module, far below a hang
MARKERS = ("TODO", "FIXME", "XXX")
TOP_FUNCTIONS = 10

_MARKER_RE = re.compile(r"\b(" + "|".join(MARKERS) + r")\b")
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.Assert,
             ast.IfExp, ast.match_case)
_NOT_CODE = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                       tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER})


def analyze_code_quality(path: str | os.PathLike[str] = ".",
                         max_file_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """Per-file metrics and totals for every ``.py`` file under ``path`` (a file or a directory);
    files that are not regular, lie outside the tree or exceed ``max_file_bytes`` are listed in
    ``skipped`` instead of being read."""
    return _build(_scan(path, "analyze_code_quality", max_file_bytes), deep=False)


def comprehensive_analysis(path: str | os.PathLike[str] = ".",
                           max_file_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """``analyze_code_quality`` plus imports, TODO/FIXME/XXX counts and the most complex ones."""
    return _build(_scan(path, "comprehensive_analysis", max_file_bytes), deep=True)


# -- walking ------------------------------------------------------------------------------
@dataclass
class _Scan:
    root: Path
    max_file_bytes: int
    reports: list[_FileReport] = field(default_factory=list)
    syntax_errors: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


class _Skip(Exception):
    """A file deliberately not read: ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _scan(path: str | os.PathLike[str], caller: str, max_file_bytes: int) -> _Scan:
    if isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int) \
            or max_file_bytes < 1:
        raise ValueError(f"{caller}: max_file_bytes must be a whole number of bytes >= 1, "
                         f"got {max_file_bytes!r}; e.g. max_file_bytes={MAX_FILE_BYTES}")
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"{caller}: path {os.fspath(path)!r} does not exist (looked in {root.absolute()}); "
            "pass path= a Python file or a directory to scan, e.g. path='.' or path='./src'")
    scan = _Scan(root.resolve(), max_file_bytes)
    is_dir = root.is_dir()
    base = root if is_dir else root.parent
    # The tree files must stay inside; a file named explicitly is its own tree (None).
    tree = os.path.realpath(root) if is_dir else None
    for file in _python_files(root, scan, base):
        rel = file.relative_to(base).as_posix()
        try:
            source = _read_source(file, tree, max_file_bytes)
        except _Skip as skip:
            scan.skipped.append({"file": rel, "reason": skip.reason, "message": str(skip)})
            continue
        except OSError as exc:
            scan.unreadable.append({"file": rel, "message": str(exc)})
            continue
        try:
            scan.reports.append(_analyze_source(source, rel))
        except (SyntaxError, ValueError, tokenize.TokenError, RecursionError) as exc:
            scan.syntax_errors.append(_syntax_error(rel, exc))
    return scan


def _python_files(root: Path, scan: _Scan, base: Path) -> Iterator[Path]:
    """``root`` itself if it is a file, else its ``.py`` files in a stable order, skipping
    hidden directories, virtualenvs, caches and ``node_modules``. Directory symlinks are not
    followed (they could loop or lead out of the tree) and are listed in ``scan.skipped``."""
    if not root.is_dir():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        kept = []
        for d in sorted(dirnames):
            if d in SKIP_DIRS or d.startswith("."):
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                scan.skipped.append({
                    "file": Path(dirpath, d).relative_to(base).as_posix(),
                    "reason": "directory_symlink",
                    "message": "symbolic link to a directory; not followed"})
                continue
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith("."):
                yield Path(dirpath, name)


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link that does not resolve"))
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_BINARY", 0))


def _inside(real: str, tree: str) -> bool:
    try:
        return os.path.commonpath([tree, real]) == tree
    except ValueError:  # different drives on Windows
        return False


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _read_source(file: Path, tree: str | None, cap: int) -> bytes:
    """The bytes of ``file`` if it is a regular file of at most ``cap`` bytes whose real path
    lies inside ``tree`` (``None``: no tree check, the caller named the file); else ``_Skip``.

    The type and size come from ``lstat`` of the fully resolved path before anything is
    opened, so a FIFO or a device is never opened. The open itself is non-blocking and does
    not follow a final symlink, and the opened file must be the one just checked (same
    device and inode) and is read to at most ``cap + 1`` bytes, so a file swapped or grown
    in between cannot make the scan hang or read without limit either.
    """
    real = os.path.realpath(file)
    if tree is not None and not _inside(real, tree):
        raise _Skip("outside_tree", f"resolves to {real}, outside the analysed tree; not read")
    info = os.lstat(real)
    if not stat.S_ISREG(info.st_mode):
        raise _Skip("not_regular_file", f"{_kind(info.st_mode)}, not a regular file; not opened")
    if info.st_size > cap:
        raise _Skip("too_large", f"{info.st_size} bytes, over the {cap}-byte cap "
                                 "(max_file_bytes); not read")
    fd = os.open(real, _OPEN_FLAGS)
    with os.fdopen(fd, "rb") as handle:
        opened = os.fstat(handle.fileno())
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
                info.st_dev, info.st_ino):
            raise _Skip("changed", "replaced while being scanned; not read")
        source = handle.read(cap + 1)
    if len(source) > cap:
        raise _Skip("too_large", f"grew over the {cap}-byte cap (max_file_bytes) while being "
                                 "scanned; not read")
    return source


def _syntax_error(rel: str, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, SyntaxError):
        return {"file": rel, "line": exc.lineno, "message": exc.msg}
    if isinstance(exc, tokenize.TokenError):
        return {"file": rel, "line": exc.args[1][0] if len(exc.args) > 1 else None,
                "message": str(exc.args[0])}
    if isinstance(exc, RecursionError):
        return {"file": rel, "line": None, "message": "nested too deeply to analyse"}
    return {"file": rel, "line": None, "message": str(exc)}


# -- one file -----------------------------------------------------------------------------
@dataclass
class _FileReport:
    metrics: dict[str, Any]
    functions: list[dict[str, Any]]
    imports: Counter[str]
    markers: Counter[str]


def _analyze_source(source: bytes, rel: str) -> _FileReport:
    tree = ast.parse(source, filename=rel)
    tokens = list(tokenize.tokenize(io.BytesIO(source).readline))
    code, comments = _line_kinds(tokens)
    n_lines = len(source.splitlines())
    functions = _functions(tree)
    complexities = [f["complexity"] for f in functions]
    longest = max(functions, key=lambda f: f["lines"], default=None)
    metrics = {
        "file": rel,
        "lines": n_lines,
        "code_lines": len(code),
        "comment_lines": len(comments),
        "blank_lines": max(0, n_lines - len(code) - len(comments)),
        "functions": len(functions),
        "classes": sum(isinstance(node, ast.ClassDef) for node in ast.walk(tree)),
        "average_complexity": _mean(complexities),
        "max_complexity": max(complexities, default=0),
        "longest_function": longest["name"] if longest else None,
        "longest_function_lines": longest["lines"] if longest else 0,
    }
    markers = Counter(m for tok in tokens if tok.type == tokenize.COMMENT
                      for m in _MARKER_RE.findall(tok.string))
    return _FileReport(metrics, functions, _imports(tree), markers)


def _line_kinds(tokens: list[tokenize.TokenInfo]) -> tuple[set[int], set[int]]:
    """Lines holding code (a multi-line string covers all its lines) and comment-only lines."""
    code: set[int] = set()
    comments: set[int] = set()
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            comments.add(tok.start[0])
        elif tok.type not in _NOT_CODE:
            code.update(range(tok.start[0], tok.end[0] + 1))
    return code, comments - code


def _functions(tree: ast.AST) -> list[dict[str, Any]]:
    """Every function and method, with a dotted qualified name, line, length and complexity."""
    found: list[dict[str, Any]] = []
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                found.append({"name": name, "line": child.lineno,
                              "lines": (child.end_lineno or child.lineno) - child.lineno + 1,
                              "complexity": _cyclomatic_complexity(child)})
                stack.append((child, name + "."))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, prefix + child.name + "."))
            else:
                stack.append((child, prefix))
    found.sort(key=lambda f: f["line"])
    return found


def _cyclomatic_complexity(func: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """McCabe complexity of one function's own body (nested functions and classes excluded)."""
    score = 1
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        if isinstance(node, _NESTED):
            continue
        if isinstance(node, _BRANCHES):
            score += 1
        elif isinstance(node, ast.BoolOp):
            score += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            score += len(node.ifs)
        stack.extend(ast.iter_child_nodes(node))
    return score


def _imports(tree: ast.AST) -> Counter[str]:
    """Top-level names of imported modules (``os.path`` counts as ``os``; ``.x`` stays relative)."""
    counts: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            counts.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            counts["." * node.level + (node.module or "").partition(".")[0]] += 1
    return counts


# -- aggregating --------------------------------------------------------------------------
def _build(scan: _Scan, deep: bool) -> dict[str, Any]:
    files = [r.metrics for r in scan.reports]
    complexities = [f["complexity"] for r in scan.reports for f in r.functions]
    totals: dict[str, int | float] = {
        "files": len(files),
        **{key: sum(f[key] for f in files)
           for key in ("lines", "code_lines", "comment_lines", "blank_lines", "functions",
                       "classes")},
        "average_complexity": _mean(complexities),
        "max_complexity": max(complexities, default=0),
        "syntax_errors": len(scan.syntax_errors),
    }
    result: dict[str, Any] = {"path": str(scan.root), "totals": totals, "files": files,
                              "syntax_errors": scan.syntax_errors, "unreadable": scan.unreadable,
                              "skipped": scan.skipped, "max_file_bytes": scan.max_file_bytes}
    if not deep:
        return result
    imports: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    for report in scan.reports:
        imports.update(report.imports)
        markers.update(report.markers)
    ranked = sorted(({"file": r.metrics["file"], "name": f["name"], "line": f["line"],
                      "complexity": f["complexity"]} for r in scan.reports for f in r.functions),
                    key=lambda f: (-f["complexity"], f["file"], f["line"]))
    totals.update({"imports": sum(imports.values()), "distinct_imports": len(imports),
                   **{m.lower(): markers[m] for m in MARKERS}})
    result.update({"imports": dict(sorted(imports.items(), key=lambda kv: (-kv[1], kv[0]))),
                   "markers": {m: markers[m] for m in MARKERS},
                   "most_complex_functions": ranked[:TOP_FUNCTIONS]})
    return result


def _mean(values: list[int]) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0
