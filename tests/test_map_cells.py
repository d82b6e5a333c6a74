"""``%%codo_task NAME --map SOURCE``: mapped cells in an in-process IPython shell.

Tasks are synchronised with ``%codo_wait`` (``run_all``), never with sleeps.
"""

from __future__ import annotations

import pickle
import sqlite3

import nbformat
import pandas as pd
import pytest
from conftest import fresh_ip
from IPython.core.error import UsageError
from nbclient import NotebookClient

from codomyrmex_nb import TaskStatus
from codomyrmex_nb.core.invoke import takes_map_index
from codomyrmex_nb.core.mapping import MapResult
from codomyrmex_nb.default import reset_default
from codomyrmex_nb.notebook.magics import current_orchestrator

S = TaskStatus
OUR_NAMES = ("numbers", "letters", "grid", "squares", "best", "files", "item", "df", "factor",
             "word", "gen")


@pytest.fixture
def ip(shell):
    yield from fresh_ip(shell, OUR_NAMES)


@pytest.fixture
def journal(monkeypatch, tmp_path):
    """The journal on, in this test's own file (conftest turns it off for the others)."""
    path = tmp_path / "j.sqlite"
    monkeypatch.setenv("CODOMYRMEX_JOURNAL", str(path))
    monkeypatch.chdir(tmp_path)
    return path


def task(ip, line: str, cell: str) -> None:
    ip.run_cell_magic("codo_task", line, cell)


def said(ip, capsys, line: str, cell: str) -> str:
    capsys.readouterr()
    task(ip, line, cell)
    return capsys.readouterr().out.strip()


def orch():
    return current_orchestrator()


def run_all(ip, timeout: float = 20) -> None:
    ip.run_line_magic("codo_run", f"--wait --timeout {timeout}")


def result(name: str):
    return orch().get_task(name).result.data


def ran(name: str) -> list[int]:
    """The map_index of every item that ran or runs (its result not restored from the journal)."""
    o = orch()
    out = []
    for row in o.map_items(name):
        got = o.get_task_result(name, map_index=row["map_index"])
        if row["attempts"] and (got is None or not got.metadata.get("restored")):
            out.append(row["map_index"])
    return sorted(out)


def flush_journal() -> None:
    assert orch()._engine.recorder.journal.flush(10)


def test_a_notebook_dict_is_named_as_a_dict_and_its_items_are_its_pairs(ip, capsys):
    ip.user_ns["prices"] = {"tea": 3, "cake": 4}
    out = said(ip, capsys, "priced --map prices", "f'{item[0]}={item[1]}'")
    assert "runs once per item of the dict 'prices' (2 items)" in out
    run_all(ip)
    assert list(result("priced")) == ["tea=3", "cake=4"]


# -- sources: an upstream task, a notebook list, several -------------------------------------
def test_a_cell_maps_over_an_upstream_task_and_a_later_cell_collects_a_map_result(ip, capsys):
    task(ip, "numbers", "[1, 2, 3]")
    out = said(ip, capsys, "square --map numbers --out squares", "item * item")
    assert out.startswith("codo_task 'square': defined, runs once per item of task 'numbers', "
                          "waits for 'numbers'")
    task(ip, "total --after square", "(type(square).__name__, sum(square), list(square))")
    run_all(ip)
    assert result("total") == ("MapResult", 14, [1, 4, 9])
    assert isinstance(ip.user_ns["squares"], MapResult) and list(ip.user_ns["squares"]) == [1, 4, 9]
    assert [r["state"] for r in orch().map_items("square")] == ["completed"] * 3


def test_a_notebook_list_is_a_source_and_map_index_is_bound(ip, capsys):
    ip.user_ns["letters"] = ["a", "b", "c"]
    out = said(ip, capsys, "tagged --map letters", "f'{map_index}:{item}'")
    assert "runs once per item of the list 'letters' (3 items), no dependencies" in out
    run_all(ip)
    assert list(result("tagged")) == ["0:a", "1:b", "2:c"]


def test_several_sources_zip_or_cross(ip):
    task(ip, "numbers", "[1, 2]")
    ip.user_ns["letters"] = ["a", "b"]
    task(ip, "zipped --map n=numbers --map s=letters", "s * n")
    task(ip, "crossed --map n=numbers --map s=letters --map-mode product", "s * n")
    run_all(ip)
    assert list(result("zipped")) == ["a", "bb"]
    assert list(result("crossed")) == ["a", "b", "aa", "bb"]


def test_a_task_of_the_name_wins_over_a_notebook_variable(ip):
    ip.user_ns["numbers"] = [100, 200]
    task(ip, "numbers", "[1, 2, 3]")
    task(ip, "plus --map numbers", "item + 1")
    run_all(ip)
    assert list(result("plus")) == [2, 3, 4]


def test_per_item_options_tolerate_and_max_parallel(ip):
    ip.user_ns["numbers"] = [1, 0, 2, 4]
    task(ip, "inverse --map numbers --tolerate 1 --max-parallel 2 --retries 1", "1 / item")
    run_all(ip)
    t = orch().get_task("inverse")
    assert t.status is S.COMPLETED and t.map.max_parallel == 2
    r = t.result.data
    assert list(r) == [1.0, 0.5, 0.25] and r.by_index == {0: 1.0, 2: 0.5, 3: 0.25}
    assert isinstance(r.failed[1], ZeroDivisionError)
    bad = orch().map_items("inverse")[0]  # failures first
    assert (bad["map_index"], bad["state"], bad["attempts"]) == (1, "failed", 2)  # retried


def test_above_tolerate_the_mapped_cell_fails_and_keeps_its_partial_result(ip):
    ip.user_ns["numbers"] = [1, 0, 0, 4]
    task(ip, "inverse --map numbers --tolerate 25%", "1 / item")
    run_all(ip)
    t = orch().get_task("inverse")
    assert t.status is S.FAILED
    assert list(t.result.data) == [1.0, 0.25]  # the partial MapResult


def test_an_empty_list_gives_an_empty_map_result(ip):
    ip.user_ns["numbers"] = []
    task(ip, "square --map numbers", "item * item")
    task(ip, "count --after square", "len(square)")
    run_all(ip)
    assert result("count") == 0 and isinstance(result("square"), MapResult)


# -- bad input: one line, nothing defined ------------------------------------------------------
@pytest.mark.parametrize(("line", "message"), [
    ("sq --map nowhere", "task 'sq': --map 'nowhere' is neither a task nor a notebook variable: "
                         "run the cell of task 'nowhere' first, or set nowhere = [...] in the "
                         "notebook"),
    ("sq --map word", "task 'sq': --map 'word': the notebook variable is a str, one value, not "
                      "a list of items: wrap it as [value]"),
    ("sq --map df", "task 'sq': --map 'df': the notebook variable is a DataFrame: map over "
                    "df.itertuples()"),
    ("sq --map factor", "task 'sq': --map 'factor': the notebook variable is an int, not a list"),
    ("sq --map x=numbers --map x=numbers", "--map binds 'x' twice"),
    ("sq --map map_index=numbers", "the parameter must be a name other than 'upstream' and "
                                   "'map_index'"),
    ("sq --tolerate 1", "task 'sq': --tolerate applies to mapped cells only: add --map SOURCE "
                        "or drop it"),
    ("sq --tolerate 1 --map-mode product", "task 'sq': --tolerate, --map-mode apply to mapped "
                                           "cells only: add --map SOURCE or drop them"),
    ("sq --map numbers --tolerate lots", "task 'sq': bad --tolerate 'lots': give a count"),
    ("sq --map numbers --max-parallel 0", "--max-parallel must be a whole number >= 1, got 0"),
    ("sq --map numbers --map-mode diagonal", "argument --map-mode: invalid choice"),
])
def test_bad_map_options_are_one_line_errors_and_define_nothing(ip, line, message):
    ip.user_ns.update(numbers=[1, 2], word="abc", df=pd.DataFrame({"a": [1]}), factor=3)
    with pytest.raises(UsageError) as err:
        task(ip, line, "item")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert orch().get_task("sq") is None


def test_an_iterator_notebook_variable_is_refused_and_left_unread(ip):
    """A generator read at definition would be used up: the cell's next run would map over
    nothing and complete with an empty MapResult, without a word."""
    ip.user_ns["gen"] = gen = (i for i in range(3))
    for _ in range(2):  # the same refusal on a re-run: nothing was read behind the user's back
        with pytest.raises(UsageError) as err:
            task(ip, "m --map gen", "item * 10")
        assert str(err.value) == ("%%codo_task: task 'm': --map 'gen': the notebook variable "
                                  "is a generator, an iterator a run would use up: make it a "
                                  "list, e.g. gen = list(...)")
        assert orch().get_task("m") is None
    assert list(gen) == [0, 1, 2]
    ip.user_ns["gen"] = iter([1, 2])  # any iterator, not just a generator
    with pytest.raises(UsageError, match="the notebook variable is a list_iterator, an iterator"):
        task(ip, "m --map gen", "item * 10")


def test_zipped_notebook_lists_of_unequal_lengths_are_refused_and_define_nothing(ip, capsys):
    ip.user_ns.update(numbers=[1, 2, 3, 4], letters=["a", "b", "c"])
    with pytest.raises(UsageError) as err:
        task(ip, "z --map n=numbers --map s=letters", "s * n")
    assert str(err.value) == ("%%codo_task: task 'z': --map zips lists of equal length: "
                              "'numbers' has 4, 'letters' has 3; shorten one, or cross them "
                              "with --map-mode product")
    assert orch().get_task("z") is None and "defined" not in capsys.readouterr().out
    task(ip, "z --map n=numbers --map s=letters --map-mode product", "s * n")  # crossed: fine
    task(ip, "three", "[1, 2, 3]")  # a task's result: its length is checked when z runs
    task(ip, "w --map n=three --map s=numbers", "s * n")
    run_all(ip)
    assert len(result("z")) == 12
    assert "'three' has 3, 's' has 4" in orch().get_task_result("w").error_message


def test_a_cell_cannot_map_over_itself(ip):
    task(ip, "sq", "[1]")
    with pytest.raises(UsageError, match="cannot map over itself"):
        task(ip, "sq --map sq", "item")
    assert orch().get_task("sq").map is None


# -- identity: the list's content, item fingerprints, re-runs ---------------------------------
def test_rerunning_an_unchanged_cell_keeps_it_and_a_changed_list_redefines_it(ip, capsys):
    ip.user_ns["numbers"] = [1, 2, 3]
    task(ip, "square --map numbers", "item * item")
    run_all(ip)
    assert "unchanged, keeping its result" in said(ip, capsys, "square --map numbers",
                                                     "item * item")
    ip.user_ns["numbers"].append(4)  # mutated in place: the cell took a copy when it ran
    run_all(ip)
    assert list(result("square")) == [1, 4, 9]
    out = said(ip, capsys, "square --map numbers", "item * item")
    assert out.startswith("codo_task 'square': changed; re-running it")
    run_all(ip)
    assert list(result("square")) == [1, 4, 9, 16]


def test_only_a_body_that_reads_map_index_takes_it():
    """The core puts the index into an item's fingerprint only when the function takes it."""
    from codomyrmex_nb.notebook.cell_map import MappedCellFunction
    from codomyrmex_nb.notebook.cell_tasks import compile_cell

    plain = MappedCellFunction(compile_cell("a", "item * 2"), {}, ("item",))
    indexed = MappedCellFunction(compile_cell("b", "(map_index, item)"), {}, ("item",))
    assert not takes_map_index(plain) and takes_map_index(indexed)
    assert plain(upstream={}, item=3) == 6
    assert indexed(upstream={}, item="x", map_index=2) == (2, "x")
    again = pickle.loads(pickle.dumps(indexed))  # the processes / Dask executors
    assert again(upstream={}, item="y", map_index=0) == (0, "y") and takes_map_index(again)


def test_a_notebook_item_name_does_not_reach_the_fingerprint(ip, journal):
    """``item`` bound by the map is not the notebook's ``item``: changing that re-runs nothing."""
    ip.user_ns.update(numbers=[1, 2, 3], item="a loop variable")
    task(ip, "square --map numbers --cache", "item * item")
    run_all(ip)
    flush_journal()
    reset_default()
    ip.user_ns["item"] = "another value"
    task(ip, "square --map numbers --cache", "item * item")
    run_all(ip)
    assert ran("square") == [] and list(result("square")) == [1, 4, 9]


def test_with_cache_changing_one_item_reruns_that_item_and_the_collect_step(ip, journal, capsys):
    ip.user_ns["numbers"] = [1, 2, 3, 4]
    task(ip, "square --map numbers --cache", "item * item")
    task(ip, "total --after square", "sum(square)")
    run_all(ip)
    assert ran("square") == [0, 1, 2, 3] and result("total") == 30
    flush_journal()
    ip.user_ns["numbers"] = [1, 2, 5, 4]
    assert "changed; re-running it and 1 downstream" in said(
        ip, capsys, "square --map numbers --cache", "item * item")
    run_all(ip)
    assert ran("square") == [2]
    assert list(result("square")) == [1, 4, 25, 16] and result("total") == 46
    assert len(orch().get_task("total").attempts) == 2


def test_inserting_an_item_reruns_only_it_unless_the_body_reads_map_index(ip, journal):
    ip.user_ns["numbers"] = [1, 2, 3]
    task(ip, "square --map numbers --cache", "item * item")
    task(ip, "placed --map numbers --cache", "(map_index, item)")
    run_all(ip)
    flush_journal()
    ip.user_ns["numbers"] = [0, 1, 2, 3]
    task(ip, "square --map numbers --cache", "item * item")
    task(ip, "placed --map numbers --cache", "(map_index, item)")
    run_all(ip)
    assert ran("square") == [0] and list(result("square")) == [0, 1, 4, 9]
    assert ran("placed") == [0, 1, 2, 3]
    assert list(result("placed")) == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_a_new_kernel_resumes_an_unfinished_map_per_item(ip, journal, tmp_path):
    """On resume (no --cache) the items the unfinished run completed come back; the rest run."""
    ip.user_ns["numbers"] = [1, 2, 3]
    gate = tmp_path / "go"  # a file, not a notebook name: the cell stays fingerprintable
    body = ("import pathlib, time\n"
            "while item == 3 and not pathlib.Path('go').exists():\n"
            "    time.sleep(0.005)\n"
            "item * 10")
    task(ip, "tens --map numbers", body)
    ip.run_line_magic("codo_run", "")
    assert orch().wait_for_completion(0.5) is False  # item 2 waits for the gate
    assert ran("tens") == [0, 1, 2]
    flush_journal()
    path = orch()._engine.recorder.path
    reset_default()  # the kernel goes away mid-run
    gate.touch()
    conn = sqlite3.connect(path)
    with conn:  # its run looks written by another process, gone
        conn.execute("UPDATE runs SET pstarted = pstarted - 3600")
    conn.close()
    task(ip, "tens --map numbers", body)
    run_all(ip)
    assert list(result("tens")) == [10, 20, 30]
    assert ran("tens") == [2]


def test_a_plain_cell_becomes_mapped_and_back(ip, capsys):
    ip.user_ns["numbers"] = [1, 2]
    task(ip, "square", "[n * n for n in numbers]")
    task(ip, "total --after square", "sum(square)")
    run_all(ip)
    assert result("total") == 5
    out = said(ip, capsys, "square --map numbers", "item * item")
    assert out.startswith("codo_task 'square': changed; re-running it and 1 downstream")
    run_all(ip)
    assert isinstance(result("square"), MapResult) and result("total") == 5
    task(ip, "square", "[n * n for n in numbers] + [0]")
    run_all(ip)
    assert result("square") == [1, 4, 0] and orch().get_task("square").map is None


# -- a real kernel -----------------------------------------------------------------------------
@pytest.mark.kernel
def test_mapped_cells_in_a_real_kernel(kernel_name, tmp_path):
    """What a notebook user sees: the defined line, the MapResult downstream and in --out, an
    async mapped cell that reads map_index, and a changed notebook list re-running the map."""
    show = ("from codomyrmex_nb.notebook.magics import current_orchestrator as o\n"
            "print(list(squares), o().get_task('total').result.data, "
            "list(o().get_task('shifted').result.data))")
    cells = ["%load_ext codomyrmex_nb",
             "numbers = [1, 2, 3]",
             "%%codo_task square --map numbers --out squares\nitem * item",
             "%%codo_task total --after square\n(sum(square), type(square).__name__)",
             "%%codo_task shifted --map numbers\nimport asyncio\nawait asyncio.sleep(0)\n"
             "item + map_index",
             "%codo_run --wait --timeout 60\n" + show,
             "numbers[1] = 5",
             "%%codo_task square --map numbers --out squares\nitem * item",
             "%codo_wait 60\n" + show]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name=kernel_name, timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    def out(i: int) -> str:
        return "".join(o.get("text", "") for o in nb.cells[i].outputs if o.output_type == "stream")

    assert out(2).startswith("codo_task 'square': defined, runs once per item of the list "
                             "'numbers' (3 items), no dependencies")
    assert out(5).rstrip().endswith("[1, 4, 9] (14, 'MapResult') [1, 3, 5]")
    assert out(7).startswith("codo_task 'square': changed; re-running it and 1 downstream")
    assert out(8).rstrip().endswith("[1, 25, 9] (35, 'MapResult') [1, 3, 5]")


def test_without_cache_a_changed_list_reruns_only_its_changed_items_in_the_same_kernel(
        ip, journal, capsys):
    ip.user_ns["numbers"] = [1, 2, 3, 4]
    task(ip, "square --map numbers", "item * item")
    task(ip, "total --after square", "sum(square)")
    run_all(ip)
    assert ran("square") == [0, 1, 2, 3] and result("total") == 30
    ip.user_ns["numbers"] = [1, 2, 5, 4]
    assert "changed; re-running it" in said(ip, capsys, "square --map numbers", "item * item")
    run_all(ip)
    assert ran("square") == [2]  # the others kept their results from the definition before
    assert list(result("square")) == [1, 4, 25, 16] and result("total") == 46
    kept = orch().get_task_result("square", map_index=0).metadata
    assert kept["restored"] and kept["restored_from"] == "its definition before this one"
    task(ip, "square --map numbers", "item * item + 1")  # the code changed: every item runs
    run_all(ip)
    assert ran("square") == [0, 1, 2, 3] and list(result("square")) == [2, 5, 26, 17]
