"""The built-in actions: called directly on small files, and through the engine."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from codomyrmex_nb import Task, TaskOrchestrator, TaskStatus
from codomyrmex_nb.actions import data_visualization, environment_setup, static_analysis
from codomyrmex_nb.actions.data_visualization import create_bar_chart, process_large_dataset
from codomyrmex_nb.actions.environment_setup import check_environment
from codomyrmex_nb.actions.static_analysis import analyze_code_quality, comprehensive_analysis

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SAMPLE = '''\
"""A module."""
import os
import os.path
from collections import Counter  # TODO: drop


# a comment line
def decide(a, b):
    if a and b:
        return 1
    if a:
        return 2
    return 3


class Shape:
    def area(self):
        return 0
'''


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def is_png(path: str) -> bool:
    return Path(path).read_bytes()[:8] == PNG_MAGIC


def run(orchestrator: TaskOrchestrator, timeout: float = 30) -> bool:
    orchestrator.start_execution()
    try:
        return orchestrator.wait_for_completion(timeout)
    finally:
        orchestrator.stop_execution()


# -- environment_setup ---------------------------------------------------------------------
def test_check_environment_reports_this_interpreter() -> None:
    env = check_environment()
    json.dumps(env)  # plain data all the way down
    assert env["python_version"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert env["python_implementation"] == "CPython"
    assert env["cpu_count"] >= 1 and env["cpu_count_usable"] >= 1
    assert env["packages"]["pandas"] == metadata.version("pandas")
    assert set(env["packages"]) == set(environment_setup.KEY_PACKAGES)
    assert env["ok"] is True and isinstance(env["warnings"], list)
    if sys.platform.startswith("linux"):
        assert 0 < env["memory_available_bytes"] <= env["memory_total_bytes"]


def test_missing_dot_and_packages_become_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment_setup.shutil, "which", lambda name: None)
    monkeypatch.setattr(environment_setup, "KEY_PACKAGES",
                        ("pandas", "dask", "surely-not-installed-pkg"))
    env = check_environment()
    assert env["dot_path"] is None and env["dot_version"] is None
    assert env["packages"] == {"pandas": metadata.version("pandas"),
                               "dask": metadata.version("dask"),
                               "surely-not-installed-pkg": None}
    assert env["ok"] is False  # an unknown name is treated as required
    assert any("dot not found" in w and "apt install graphviz" in w for w in env["warnings"])
    assert any("surely-not-installed-pkg not installed (required)" in w for w in env["warnings"])


def test_missing_optional_package_keeps_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    real = environment_setup.metadata.version

    def version(name: str) -> str:
        if name == "distributed":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(environment_setup.metadata, "version", version)
    env = check_environment()
    assert env["packages"]["distributed"] is None
    assert env["ok"] is True
    assert any(w.startswith("distributed not installed (optional)") for w in env["warnings"])


@pytest.mark.needs_dot
def test_dot_version_is_read() -> None:
    env = check_environment()
    if env["dot_path"] is None:
        pytest.skip("the graphviz `dot` program is not installed")
    assert env["dot_version"] and env["dot_version"][0].isdigit()


# -- static_analysis -----------------------------------------------------------------------
def test_file_metrics_are_exact(tmp_path: Path) -> None:
    write(tmp_path, "sample.py", SAMPLE)
    result = analyze_code_quality(tmp_path)
    json.dumps(result)
    [f] = result["files"]
    assert f == {
        "file": "sample.py", "lines": 18, "code_lines": 13, "comment_lines": 1,
        "blank_lines": 4, "functions": 2, "classes": 1,
        "average_complexity": 2.5, "max_complexity": 4,  # decide: 1 + 2 ifs + 1 `and`
        "longest_function": "decide", "longest_function_lines": 6,
    }
    assert result["totals"] == {
        "files": 1, "lines": 18, "code_lines": 13, "comment_lines": 1, "blank_lines": 4,
        "functions": 2, "classes": 1, "average_complexity": 2.5, "max_complexity": 4,
        "syntax_errors": 0,
    }
    assert result["path"] == str(tmp_path.resolve())
    assert result["syntax_errors"] == [] and result["unreadable"] == []


@pytest.mark.parametrize(("body", "expected"), [
    ("return x", 1),
    ("if x:\n    pass\nelif y:\n    pass\nelse:\n    pass", 3),
    ("for i in x:\n    pass", 2),
    ("async for i in x:\n    pass", 2),
    ("while x:\n    pass", 2),
    ("try:\n    pass\nexcept ValueError:\n    pass\nexcept KeyError:\n    pass", 3),
    ("with x:\n    pass", 1),
    ("assert x", 2),
    ("return a if x else b", 2),
    ("return x or y or z", 3),
    ("return (x and y) or z", 3),
    ("return [i for i in x if i if i > 1]", 3),
    ("match x:\n    case 1:\n        pass\n    case 2:\n        pass\n"
     "    case _:\n        pass", 4),
    ("def inner():\n    if x:\n        pass\nreturn inner", 1),  # measured on its own
    ("f = lambda: a if x else b", 2),  # lambdas belong to their function
])
def test_mccabe_complexity(tmp_path: Path, body: str, expected: int) -> None:
    header = "async def target(x, y=None, z=None, a=None, b=None):\n"
    source = header + textwrap.indent(body, "    ")
    write(tmp_path, "m.py", source + "\n")
    result = comprehensive_analysis(tmp_path / "m.py")
    assert result["files"][0]["file"] == "m.py"
    ranked = {f["name"]: f["complexity"] for f in result["most_complex_functions"]}
    assert ranked["target"] == expected


def test_nested_functions_and_methods_are_named_and_measured_apart(tmp_path: Path) -> None:
    write(tmp_path, "n.py", """\
        def outer(x):
            def inner(y):
                if y:
                    if y > 1:
                        return 2
                return 1
            return inner(x)

        class A:
            class B:
                def m(self, x):
                    return [i for i in x if i]
        """)
    result = comprehensive_analysis(tmp_path)
    ranked = {f["name"]: f["complexity"] for f in result["most_complex_functions"]}
    assert ranked == {"outer": 1, "outer.inner": 3, "A.B.m": 2}
    assert result["totals"]["classes"] == 2 and result["totals"]["functions"] == 3


def test_syntax_error_is_reported_not_fatal(tmp_path: Path) -> None:
    write(tmp_path, "good.py", "def f():\n    return 1\n")
    write(tmp_path, "pkg/bad.py", "x = 1\ndef broken(:\n    pass\n")
    write(tmp_path, "pkg/latin.py", "s = '\xe9'\n").write_bytes(b"s = '\xe9'\n")  # not UTF-8
    result = analyze_code_quality(tmp_path)
    assert [f["file"] for f in result["files"]] == ["good.py"]
    errors = {e["file"]: e for e in result["syntax_errors"]}
    assert set(errors) == {"pkg/bad.py", "pkg/latin.py"}
    assert errors["pkg/bad.py"]["line"] == 2 and errors["pkg/bad.py"]["message"]
    assert result["totals"]["syntax_errors"] == 2 and result["totals"]["files"] == 1


def test_directory_walk_skips_hidden_and_tool_directories(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "x = 1\n")
    write(tmp_path, "sub/b.py", "y = 2\n")
    write(tmp_path, "sub/notes.txt", "not python\n")
    for skipped in (".venv/lib/c.py", ".git/d.py", "__pycache__/e.py", "node_modules/f.py",
                    ".hidden/g.py", "sub/.secret.py"):
        write(tmp_path, skipped, "def f(:\n")  # would be a syntax error if scanned
    result = analyze_code_quality(str(tmp_path))
    assert [f["file"] for f in result["files"]] == ["a.py", "sub/b.py"]
    assert result["syntax_errors"] == []


def test_empty_directory_gives_zero_totals(tmp_path: Path) -> None:
    result = analyze_code_quality(tmp_path)
    assert result["files"] == []
    assert result["totals"]["files"] == 0 and result["totals"]["average_complexity"] == 0.0


def test_missing_path_says_what_to_pass(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope") as info:
        analyze_code_quality(missing)
    assert "pass path=" in str(info.value)
    with pytest.raises(FileNotFoundError, match="comprehensive_analysis"):
        comprehensive_analysis(missing)


def test_comprehensive_analysis_adds_imports_markers_and_ranking(tmp_path: Path) -> None:
    write(tmp_path, "sample.py", SAMPLE)
    funcs = "\n".join(f"def f{i}(x):\n" + "    if x:\n        pass\n" * i + "    return x\n"
                      for i in range(12))
    write(tmp_path, "many.py", "import os, json\nfrom . import sibling  # FIXME XXX\n"
          "from .pkg.mod import thing  # todo is lower case: not counted\n"
          "s = '# TODO inside a string is not a comment'\n" + funcs)
    result = comprehensive_analysis(tmp_path)
    json.dumps(result)
    assert result["syntax_errors"] == []
    assert result["imports"] == {"os": 3, "collections": 1, "json": 1, ".": 1, ".pkg": 1}
    assert result["markers"] == {"TODO": 1, "FIXME": 1, "XXX": 1}
    top = result["most_complex_functions"]
    assert len(top) == static_analysis.TOP_FUNCTIONS
    assert [(f["name"], f["complexity"]) for f in top[:3]] == [("f11", 12), ("f10", 11),
                                                                ("f9", 10)]
    assert top[0] == {"file": "many.py", "name": "f11", "line": top[0]["line"], "complexity": 12}
    totals = result["totals"]
    assert totals["imports"] == 7 and totals["distinct_imports"] == 5
    assert (totals["todo"], totals["fixme"], totals["xxx"]) == (1, 1, 1)
    assert all(isinstance(v, int | float) for v in totals.values())
    assert totals["functions"] == 14


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(),
                                reason="needs os.mkfifo and /dev/zero (POSIX)")


def skipped_by_file(result: dict) -> dict[str, str]:
    return {item["file"]: item["reason"] for item in result["skipped"]}


@needs_fifo
@pytest.mark.timeout(20)
@pytest.mark.parametrize("analyse", [analyze_code_quality, comprehensive_analysis])
def test_analysis_reads_only_regular_files_inside_the_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, analyse) -> None:
    """Regression: a file symlink leading out of the tree was read, a symlink to /dev/zero was
    read without limit, a FIFO named *.py blocked for ever and a huge file took minutes."""
    outside = write(tmp_path, "outside/secret.py", "def leaked_secret():\n    return 1\n")
    tree = tmp_path / "tree"
    write(tree, "good.py", "def f():\n    return 1\n")
    (tree / "link.py").symlink_to(outside)
    (tree / "x.py").symlink_to("/dev/zero")
    os.mkfifo(tree / "y.py")
    (tree / "big.py").write_bytes(b"x = 1\n" * (5 * 1024 * 1024 // 6 + 1))  # 5 MB, valid
    opened: list[str] = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        opened.append(os.path.realpath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    started = time.monotonic()
    result = analyse(tree)
    assert time.monotonic() - started < 10
    json.dumps(result)
    assert [f["file"] for f in result["files"]] == ["good.py"]
    assert skipped_by_file(result) == {"big.py": "too_large", "link.py": "outside_tree",
                                       "x.py": "outside_tree", "y.py": "not_regular_file"}
    messages = {item["file"]: item["message"] for item in result["skipped"]}
    assert "FIFO" in messages["y.py"] and "/dev/zero" in messages["x.py"]
    assert str(static_analysis.MAX_FILE_BYTES) in messages["big.py"]
    assert result["max_file_bytes"] == static_analysis.MAX_FILE_BYTES == 1 << 20
    assert opened == [str((tree / "good.py").resolve())]  # nothing else, nothing outside
    assert result["unreadable"] == [] and result["syntax_errors"] == []
    assert "leaked_secret" not in json.dumps(result)
    assert result["totals"]["files"] == 1  # totals keep their keys: no count of skipped


def test_directory_symlinks_are_not_followed_in_tree_file_links_are(tmp_path: Path) -> None:
    write(tmp_path, "outside/pkg/secret.py", "def leaked_secret():\n    return 1\n")
    tree = tmp_path / "tree"
    write(tree, "sub/real.py", "def g():\n    return 2\n")
    (tree / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    (tree / "sub" / "loop").symlink_to(tree, target_is_directory=True)
    (tree / "alias.py").symlink_to(tree / "sub" / "real.py")  # inside: read like the file
    (tree / "dangling.py").symlink_to(tree / "gone.py")
    result = analyze_code_quality(tree)
    assert [f["file"] for f in result["files"]] == ["alias.py", "sub/real.py"]
    assert skipped_by_file(result) == {"escape": "directory_symlink",
                                       "sub/loop": "directory_symlink"}
    assert [u["file"] for u in result["unreadable"]] == ["dangling.py"]
    assert "leaked_secret" not in json.dumps(result)


@needs_fifo
@pytest.mark.timeout(20)
def test_a_named_fifo_is_skipped_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    result = analyze_code_quality(fifo)
    assert result["files"] == []
    assert skipped_by_file(result) == {"pipe.py": "not_regular_file"}


def test_size_cap_is_a_parameter_and_checked(tmp_path: Path) -> None:
    write(tmp_path, "fits.py", "x = 1\n")  # 6 bytes: exactly the cap
    write(tmp_path, "over.py", "x = 12\n")
    result = comprehensive_analysis(tmp_path, max_file_bytes=6)
    assert [f["file"] for f in result["files"]] == ["fits.py"]
    assert skipped_by_file(result) == {"over.py": "too_large"}
    assert result["max_file_bytes"] == 6
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="max_file_bytes"):
            analyze_code_quality(tmp_path, max_file_bytes=bad)


def test_a_file_swapped_or_grown_after_the_check_is_not_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lstat check and the read are separate steps; the read must re-check what it got."""
    swapped = write(tmp_path, "swapped.py", "x = 1\n")
    grown = write(tmp_path, "grown.py", "x = 1\n" * 100)
    other = write(tmp_path, "other.txt", "")
    swapped_real, grown_real = str(swapped.resolve()), str(grown.resolve())
    real_lstat = os.lstat

    def lstat(path, *args, **kwargs):
        info = real_lstat(path, *args, **kwargs)
        if os.fspath(path) == swapped_real:
            return real_lstat(other)  # as if swapped.py was replaced after the check
        if os.fspath(path) == grown_real:  # as if it was small when checked
            return os.stat_result((*info[:6], 6, *info[7:]))
        return info

    monkeypatch.setattr(os, "lstat", lstat)
    result = analyze_code_quality(tmp_path, max_file_bytes=60)
    assert result["files"] == []
    assert skipped_by_file(result) == {"grown.py": "too_large", "swapped.py": "changed"}
    assert stat.S_ISREG(real_lstat(swapped).st_mode)


# -- data_visualization: bar chart ---------------------------------------------------------
@pytest.mark.parametrize("data", [
    {"a": 1, "b": 2.5},
    [("a", 1), ("b", 2.5)],
    pd.Series({"a": 1.0, "b": 2.5}),
])
def test_bar_chart_accepts_dict_pairs_and_series(tmp_path: Path, data: object) -> None:
    chart = create_bar_chart(data, title="My Chart!", output_dir=tmp_path / "charts")
    assert chart["labels"] == ["a", "b"] and chart["values"] == [1, 2.5]
    assert chart["title"] == "My Chart!" and chart["source"] == "data"
    path = Path(chart["path"])
    assert path.is_absolute() and path.parent == (tmp_path / "charts").resolve()
    assert path.name.startswith("my-chart-") and path.suffix == ".png"
    assert is_png(chart["path"])
    json.dumps(chart)


def test_bar_chart_default_output_dir_and_unique_names(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = create_bar_chart({"x": 1})
    second = create_bar_chart({"x": 1})
    assert first["path"] != second["path"]
    for chart in (first, second):
        assert Path(chart["path"]).parent == tmp_path.resolve() / "codo_outputs"
        assert Path(chart["path"]).name.startswith("bar-chart-") and is_png(chart["path"])


def test_placeholder_charts_upstream_numeric_metrics(tmp_path: Path) -> None:
    upstream = {
        "analyze": {"totals": {"files": 3, "average_complexity": 1.5}, "files": []},
        "env": {"cpu_count": 4, "ok": True, "python_version": "3.11"},  # bool/str skipped
        "note": "not a dict",
    }
    chart = create_bar_chart("placeholder", title="Q", output_dir=tmp_path, upstream=upstream)
    assert chart["labels"] == ["analyze.files", "analyze.average_complexity", "env.cpu_count"]
    assert chart["values"] == [3, 1.5, 4] and chart["source"] == "upstream"
    assert is_png(chart["path"])


def test_a_result_dict_as_data_charts_its_totals(tmp_path: Path) -> None:
    chart = create_bar_chart({"totals": {"lines": 10}, "files": []}, output_dir=tmp_path)
    assert chart["labels"] == ["lines"] and chart["values"] == [10]


@pytest.mark.parametrize("upstream", [None, {}, {"t": "text"}, {"t": {"ok": True}}])
def test_nothing_to_chart_says_what_is_accepted(tmp_path: Path, upstream: object) -> None:
    with pytest.raises(ValueError, match="placeholder") as info:
        create_bar_chart("placeholder", output_dir=tmp_path, upstream=upstream)
    assert "dict of label -> number" in str(info.value)
    assert not list(tmp_path.glob("*.png"))


RACE_SCRIPT = """
import sys, threading, time, traceback
from pathlib import Path
from codomyrmex_nb.actions.data_visualization import create_bar_chart, process_large_dataset

out, charts = Path(sys.argv[1]), 8
csv = out / "d.csv"
csv.write_text("a,b\\n1,2\\n3,4\\n", encoding="utf-8")
barrier = threading.Barrier(charts + 1)
errors = []

def guarded(call):
    try:
        call()
    except BaseException as exc:
        errors.append("".join(traceback.format_exception_only(exc)).strip())

def chart(i):
    barrier.wait()
    deadline = time.monotonic() + 5
    while "pandas" not in sys.modules and time.monotonic() < deadline:
        time.sleep(0)  # wait until the other thread's import of pandas has begun
    time.sleep(i * 0.01)  # then land at several points of that import
    guarded(lambda: create_bar_chart({"a": 1, "b": 2}, title=f"t{i}", output_dir=out))

def dataset():
    barrier.wait()
    guarded(lambda: process_large_dataset(csv))

assert "pandas" not in sys.modules
threads = [threading.Thread(target=dataset)]
threads += [threading.Thread(target=chart, args=(i,)) for i in range(charts)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""


@pytest.mark.timeout(120)
def test_bar_chart_while_another_thread_imports_pandas(tmp_path: Path) -> None:
    """Regression: create_bar_chart looked pandas up in sys.modules and so could get the
    half-imported module of a concurrent process_large_dataset ("partially initialized
    module 'pandas' has no attribute 'Series'"). Fresh interpreters, so pandas is not loaded."""
    for round_ in range(3):
        out = tmp_path / f"round{round_}"
        out.mkdir()
        done = subprocess.run([sys.executable, "-c", RACE_SCRIPT, str(out)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]", done.stdout
        assert len(list(out.glob("*.png"))) == 8


# -- data_visualization: chunked CSV ---------------------------------------------------------
def test_process_large_dataset_matches_a_single_pass(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "n": range(23),
        "v": [float(i) * 1.5 if i % 4 else None for i in range(23)],
        "mixed": [str(i) for i in range(20)] + ["a", "b", "c"],  # text only in the last chunk
        "flag": [i % 2 == 0 for i in range(23)],
    })
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    summary = process_large_dataset(str(csv), chunksize=5)
    json.dumps(summary)
    assert summary["rows"] == 23 and summary["chunks"] == 5
    assert summary["columns"] == ["n", "v", "mixed", "flag"]
    assert summary["nulls"] == {"n": 0, "v": 6, "mixed": 0, "flag": 0}
    assert set(summary["numeric"]) == {"n", "v"}
    for col in ("n", "v"):
        got, want = summary["numeric"][col], frame[col].dropna()
        assert got["count"] == len(want)
        assert got["mean"] == pytest.approx(want.mean())
        assert got["std"] == pytest.approx(want.std())
        assert (got["min"], got["max"]) == (want.min(), want.max())
    assert summary["numeric"]["n"]["min"] == 0 and isinstance(summary["numeric"]["n"]["max"], int)
    assert summary["totals"] == {"rows": 23, "columns": 4, "numeric_columns": 2,
                                 "null_cells": 6, "chunks": 5}
    assert summary["summary_path"] is None


def test_process_large_dataset_writes_summary_when_asked(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,x\n2,\n", encoding="utf-8")
    summary = process_large_dataset(csv, output_dir=tmp_path / "out")
    written = json.loads(Path(summary["summary_path"]).read_text(encoding="utf-8"))
    assert written == summary
    assert summary["numeric"] == {"a": {"count": 2, "mean": 1.5, "std": pytest.approx(0.7071, 1e-3),
                                        "min": 1, "max": 2}}


def test_process_large_dataset_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.csv") as info:
        process_large_dataset(tmp_path / "missing.csv")
    assert "pass file=" in str(info.value)
    with pytest.raises(IsADirectoryError):
        process_large_dataset(tmp_path)
    (tmp_path / "ok.csv").write_text("a\n1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="chunksize"):
        process_large_dataset(tmp_path / "ok.csv", chunksize=0)


# -- through the engine ------------------------------------------------------------------------
def test_guide_chain_environment_analysis_chart(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "src/sample.py", SAMPLE)
    write(tmp_path, "src/broken.py", "def (:\n")
    o = TaskOrchestrator(max_workers=2)
    setup = o.create_task(name="setup", module="environment_setup", action="check_environment",
                          priority="high")
    analysis = o.create_task(name="analyze", module="static_analysis",
                             action="analyze_code_quality", parameters={"path": "./src"},
                             dependencies=[setup.id], timeout=60)
    chart = o.create_task(name="visualize", module="data_visualization",
                          action="create_bar_chart",
                          parameters={"data": "placeholder", "title": "Code Quality"},
                          dependencies=[analysis.id])
    assert run(o)
    assert o.get_task_result(setup.id).data["ok"] is True
    totals = o.get_task_result(analysis.id).data["totals"]
    assert totals["files"] == 1 and totals["syntax_errors"] == 1 and totals["max_complexity"] == 4
    drawn = o.get_task_result(chart.id).data
    assert drawn["labels"] == [f"analyze.{k}" for k in totals]
    assert drawn["values"] == list(totals.values())
    assert drawn["title"] == "Code Quality"
    assert Path(drawn["path"]).parent == tmp_path.resolve() / "codo_outputs"
    assert is_png(drawn["path"])


def test_engine_runs_comprehensive_analysis_and_output_refs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "pkg/sample.py", SAMPLE)
    pd.DataFrame({"x": range(10)}).to_csv(tmp_path / "data.csv", index=False)
    o = TaskOrchestrator(max_workers=2)
    deep = Task(name="deep", module="static_analysis", action="comprehensive_analysis",
                parameters={"path": "pkg"})
    csv = Task(name="csv", module="data_visualization", action="process_large_dataset",
               parameters={"file": "data.csv", "chunksize": 3})
    chart = Task(name="chart", module="data_visualization", action="create_bar_chart",
                 parameters={"data": deep.output, "title": "deep"}, dependencies=[deep])
    both = Task(name="both", module="data_visualization", action="create_bar_chart",
                parameters={"data": "placeholder"}, dependencies=[deep, csv])
    o.add_tasks([both, chart, csv, deep])
    assert run(o)
    assert o.get_task_result(deep.id).data["markers"]["TODO"] == 1
    assert o.get_task_result(csv.id).data["numeric"]["x"]["mean"] == 4.5
    assert o.get_task_result(chart.id).data["labels"][0] == "files"
    labels = o.get_task_result(both.id).data["labels"]
    assert "deep.todo" in labels and "csv.rows" in labels


def test_failures_through_the_engine(tmp_path: Path) -> None:
    o = TaskOrchestrator(max_workers=2)
    unknown = o.create_task(name="unknown", module="static_analysis", action="lint_everything")
    missing = o.create_task(name="missing", module="static_analysis",
                            action="analyze_code_quality",
                            parameters={"path": str(tmp_path / "absent")})
    after = o.create_task(name="after", module="data_visualization", action="create_bar_chart",
                          parameters={"data": "placeholder"}, dependencies=[missing])
    assert run(o) is False
    result = o.get_task_result(unknown.id)
    assert not result.success and result.error_type == "AttributeError"
    assert "lint_everything" in result.error_message
    assert "analyze_code_quality" in result.error_message
    assert "comprehensive_analysis" in result.error_message
    assert "_cyclomatic_complexity" not in result.error_message
    assert o.get_task_result(missing.id).error_type == "FileNotFoundError"
    assert o.get_task(after.id).status is TaskStatus.SKIPPED


def test_actions_package_import_is_lazy() -> None:
    import subprocess

    code = ("import sys, codomyrmex_nb.actions.data_visualization, "
            "codomyrmex_nb.actions.static_analysis, codomyrmex_nb.actions.environment_setup; "
            "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert data_visualization.__all__ == ["create_bar_chart", "process_large_dataset"]
