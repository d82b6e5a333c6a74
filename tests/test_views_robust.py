"""Bad names and bad values never break a view (issue 17, item 7).

- a task name with a control character or a line break is refused when defined,
  in one line naming the character (a NUL blanked the whole drawing); so is a
  name with whitespace at either end (it prints as another name) or of only
  invisible characters (it prints as nothing), saying what to write instead;
- a result whose ``__repr__`` hangs, raises or returns 50 MB shows as a short
  note in the inspector, the result frames and ``%codo_results``, within a
  couple of seconds;
- removing a pool's last user frees its capacity to be declared anew.

The hanging reprs wait on an event the fixture sets at teardown, so no helper
thread outlives its test.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

import pytest
from IPython.core.error import UsageError

from codomyrmex_nb import ResourceType, Task, TaskResource
from codomyrmex_nb.core.names import check_task_name, plain_name
from codomyrmex_nb.core.preview import safe_preview, safe_previews
from codomyrmex_nb.notebook.drawing import build_drawing, layout
from codomyrmex_nb.notebook.inspector import detail_html
from codomyrmex_nb.notebook.live_view import LiveView
from codomyrmex_nb.notebook.magics import current_orchestrator

QUICK = 2.0  # seconds any view may take with a broken result in it

BAD_NAMES = {
    "NUL": "load\x00data", "bell": "a\x07b", "tab": "a\tb", "newline": "two\nlines",
    "escape": "colour\x1b[31m", "DEL": "a\x7fb", "C1 NEL": "a\x85b",
    "line separator": "a\u2028b", "paragraph separator": "a\u2029b", "lone surrogate": "a\ud800b",
}
GOOD_NAMES = ["naïve café", "数据加载", "dev \U0001f469\u200d\U0001f4bb", "no\u00a0break",
              "\u05e9\u05dc\u05d5\u05dd \u200fRTL"]

PADDED_NAMES = {"leading space": " load", "trailing newline": "load\n", "trailing space": "load ",
                "tab": "\tload", "ideographic space": "load\u3000", "both ends": "  load \r\n"}
INVISIBLE_NAMES = {"zero-width space": "\u200b", "ZWSP and ZWJ": "\u200b\u200d",
                   "byte-order mark": "\ufeff", "word joiner and space": "\u2060 ",
                   "Hangul filler": "\u3164", "Braille blank": "\u2800\u2800",
                   "variation selector": "\ufe0f"}


def _bad_char(name: str) -> str:
    return next(c for c in name if not c.isprintable())


def preview_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("codomyrmex-preview")]


@pytest.fixture
def broken():
    """Classes whose repr hangs (blocked in C, or a Python loop), raises, or is 50 MB."""
    release = threading.Event()

    class Hangs:
        def __repr__(self) -> str:
            release.wait(60)  # as time.sleep(60): an exception cannot interrupt it
            return "finally"

    class Loops:
        def __repr__(self) -> str:
            while not release.is_set():
                pass
            return "finally"

    class Raises:
        def __repr__(self) -> str:
            raise ValueError("no repr for you")

    class Huge:
        def __repr__(self) -> str:
            return "x" * 50_000_000

    yield {"hangs": Hangs, "loops": Loops, "raises": Raises, "huge": Huge}
    release.set()
    for thread in preview_threads():
        thread.join(10)
    assert preview_threads() == []


def timed(fn, *args):
    start = time.monotonic()
    value = fn(*args)
    return value, time.monotonic() - start


# == names ======================================================================================
@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_create_task_refuses_a_name_with_a_control_character(orch, name):
    with pytest.raises(ValueError) as info:
        orch.create_task(name, func=lambda: 1)
    message = str(info.value)
    assert "\n" not in message and repr(_bad_char(name)) in message
    assert "remove it or replace it with a space" in message
    assert orch.list_tasks() == []


def _refused_in_one_line(orch, name: str, *phrases: str, redefined: str | None = None) -> None:
    """``create_task`` and ``Task`` refuse ``name`` in one line that names it and says each
    of ``phrases``; so does ``redefine`` (matching ``redefined``), and nothing is left."""
    for define in (lambda: orch.create_task(name, func=lambda: 1),
                   lambda: Task(name=name, func=lambda: 1)):
        with pytest.raises(ValueError) as info:
            define()
        message = str(info.value)
        assert "\n" not in message and repr(name) in message
        assert all(phrase in message for phrase in phrases), message
    if redefined is None:
        assert orch.list_tasks() == []
        return
    task = orch.create_task("fine", func=lambda: 1)
    with pytest.raises(ValueError, match=redefined):
        orch.redefine(task, name=name)
    assert [t.name for t in orch.list_tasks()] == ["fine"]


@pytest.mark.parametrize("name", [" ", "   ", "\u00a0", " \u3000 "])
def test_a_name_of_only_spaces_is_refused_in_one_line_saying_the_fix(orch, name):
    _refused_in_one_line(orch, name, "only whitespace", "at least one visible character",
                         redefined="only whitespace")


@pytest.mark.parametrize("name", PADDED_NAMES.values(), ids=PADDED_NAMES.keys())
def test_a_name_with_whitespace_at_either_end_is_refused_saying_the_name_to_use(orch, name):
    _refused_in_one_line(orch, name, f"leading/trailing whitespace; use {name.strip()!r}",
                         redefined="leading/trailing whitespace")


@pytest.mark.parametrize("name", INVISIBLE_NAMES.values(), ids=INVISIBLE_NAMES.keys())
def test_a_name_of_only_invisible_characters_is_refused(orch, name):
    _refused_in_one_line(orch, name, "no visible character", "at least one visible character")


def test_invisible_characters_between_visible_ones_are_kept(orch):
    names = ["a\u200bb", "\u200fRTL", "x\ufe0f", "\U0001f469\u200d\U0001f4bb"]
    for name in names:
        orch.create_task(name, func=lambda: 1)
    assert [t.name for t in orch.list_tasks()] == names


def test_the_fast_path_accepts_only_names_the_full_check_accepts():
    """``Task.is_plain`` skips ``check_task_name`` for names ``plain_name`` accepts."""
    for code in range(0x110000):
        char = chr(code)
        for name in (char, char + "x", "x" + char):
            if plain_name(name):
                check_task_name(name)  # raises if the fast path let a bad name through


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_task_objects_with_a_bad_name_are_refused(orch, name):
    with pytest.raises(ValueError, match="task name"):
        Task(name=name, func=lambda: 1)
    renamed = Task(name="fine", func=lambda: 1)
    renamed.name = name  # changed after it was built: add_task checks it again
    with pytest.raises(ValueError, match="task name"):
        orch.add_task(renamed)
    assert orch.list_tasks() == []


def test_a_batch_with_one_bad_name_adds_nothing(orch):
    good = Task(name="good", func=lambda: 1)
    bad = Task(name="bad", func=lambda: 2, dependencies=[good])
    bad.name = "bad\x00"
    with pytest.raises(ValueError, match=r"'\\x00'"):
        orch.add_tasks([good, bad])
    assert orch.list_tasks() == []


def test_renaming_a_known_task_to_a_bad_name_is_refused(orch):
    task = orch.create_task("fine", func=lambda: 1)
    with pytest.raises(ValueError, match="line separator"):
        orch.redefine(task, name="a\u2028b")
    task.name = "two\nlines"
    with pytest.raises(ValueError, match="control character"):
        orch.rerun(task)
    assert [v.name for v in orch.snapshot().tasks] == ["fine"]  # what views draw
    assert orch.get_task("fine") is task


@pytest.mark.needs_dot
def test_unusual_but_printable_names_are_kept_and_drawn(orch):
    for name in GOOD_NAMES:
        orch.create_task(name, func=lambda: 1)
    assert [t.name for t in orch.list_tasks()] == GOOD_NAMES
    svg = layout(build_drawing(orch.snapshot()).graph)
    root = ET.fromstring(svg.encode("utf-8"))  # well-formed XML: the browser can show it
    assert len([g for g in root.iter("{http://www.w3.org/2000/svg}g")
                if g.get("class") == "node"]) == len(GOOD_NAMES)


def test_the_magic_refuses_a_bad_name_in_one_line(ipython):
    with pytest.raises(UsageError) as info:
        ipython.run_cell_magic("codo_task", "'load\x1bdata'", "1")
    message = str(info.value)
    assert message.startswith("%%codo_task: task name") and "\n" not in message
    assert "'\\x1b'" in message
    assert current_orchestrator().list_tasks() == []


def test_the_magic_refuses_a_name_of_only_spaces_in_one_line(ipython):
    with pytest.raises(UsageError) as info:
        ipython.run_cell_magic("codo_task", "'   '", "1")
    message = str(info.value)
    assert message.startswith("%%codo_task: ") and "\n" not in message and "name" in message
    assert current_orchestrator().list_tasks() == []


@pytest.mark.parametrize("line, problem", [
    ("' load'", "leading/trailing whitespace; use 'load'"),
    ("'load\u3000'", "leading/trailing whitespace; use 'load'"),
    ("\u200b", "no visible character"), ("\ufeff\u200d", "no visible character")])
def test_the_magic_refuses_padded_or_invisible_names_in_one_line(ipython, line, problem):
    with pytest.raises(UsageError) as info:
        ipython.run_cell_magic("codo_task", line, "1")
    message = str(info.value)
    assert message.startswith("%%codo_task: task name") and "\n" not in message
    assert problem in message
    assert current_orchestrator().list_tasks() == []


# == previews ===================================================================================
def test_safe_preview_bounds_time_size_and_failures(broken):
    text, took = timed(safe_preview, broken["hangs"]())
    assert text == "<repr of Hangs took too long>" and took < QUICK
    text, took = timed(safe_preview, broken["loops"]())
    assert text == "<repr of Loops took too long>" and took < QUICK
    text, took = timed(safe_preview, broken["raises"]())
    assert text == "<repr of Raises failed: ValueError: no repr for you>" and took < QUICK
    text, took = timed(safe_preview, broken["huge"](), 100)
    assert took < QUICK and len(text) <= 100 and text.startswith("xxx")
    assert safe_preview("y" * 10_000_000, 50).endswith("\u2026")
    assert safe_preview([1, "two", {3: (4.0, None)}]) == "[1, 'two', {3: (4.0, None)}]"


def test_a_python_loop_in_repr_is_stopped_not_left_running(broken):
    safe_preview(broken["loops"]())
    for thread in preview_threads():
        thread.join(QUICK)  # it was sent an exception: it ends without the release
    assert preview_threads() == []


def test_many_broken_values_take_about_a_second_in_all(broken):
    values = [broken["hangs"](), 1, broken["raises"](), broken["loops"](), "text"] * 10
    texts, took = timed(safe_previews, values)
    assert took < QUICK
    assert texts[1] == "1" and texts[4] == "'text'"
    assert texts[0] == "<repr of Hangs took too long>"
    assert texts.count("<repr of Raises failed: ValueError: no repr for you>") == 10
    assert texts.count("<repr of Hangs not tried: an earlier one still hangs>") == 9
    assert safe_preview(broken["hangs"]()).endswith("not tried: an earlier one still hangs>")


def _maker(cls):
    return lambda: cls()


def _run_with(orch, broken):
    names = {}
    for kind, cls in broken.items():
        names[kind] = orch.create_task(kind, func=_maker(cls)).id
    orch.create_task("fine", func=lambda: {"rows": 3})
    orch.start_execution()
    assert orch.wait_for_completion(30)
    return names


def test_the_inspector_shows_broken_results_quickly(orch, broken):
    ids = _run_with(orch, broken)
    snapshot = orch.snapshot()
    expected = {"hangs": "took too long", "loops": "took too long",
                "raises": "failed: ValueError: no repr for you", "huge": "xxxx"}
    for kind, task_id in ids.items():
        html, took = timed(detail_html, snapshot, task_id, orch.get_task_result(task_id))
        assert took < QUICK and expected[kind] in html
        assert len(html) < 20_000


def test_the_results_frame_displays_broken_results_quickly_and_keeps_them(orch, broken):
    _run_with(orch, broken)
    frame = orch.results_frame()
    data = dict(zip(frame["name"], frame["data"], strict=True))
    assert isinstance(data["hangs"], broken["hangs"])  # the object itself, not a text
    assert data["fine"] == {"rows": 3}
    shown, took = timed(lambda: frame[["name", "data"]].to_string())
    assert took < QUICK
    assert "<repr of Hangs took too long>" in shown
    assert "<repr of Raises failed: ValueError: no repr for you>" in shown
    assert "{'rows': 3}" in shown
    for show in (repr, lambda f: f._repr_html_(), lambda f: f.to_string(),
                 lambda f: f.to_html(), lambda f: f[["name", "data"]].to_string(),
                 lambda f: repr(f.set_index("name")[["data"]])):
        text, took = timed(show, frame)
        assert took < QUICK and len(text) < 50_000
        assert "repr of Hangs not tried: an earlier one still hangs" in text or "..." in text


def test_codo_results_shows_broken_results_quickly(ipython, broken):
    orch = current_orchestrator()
    _run_with(orch, broken)
    orch.stop_execution()
    results, took = timed(ipython.run_line_magic, "codo_results", "")
    assert took < QUICK
    (data, _), took = timed(ipython.display_formatter.format, results)
    assert took < QUICK and "<repr of Hangs took too long>" in data["text/plain"]
    html, took = timed(results._repr_html_)
    assert took < QUICK and "no repr for you" in html
    part, took = timed(lambda: repr(results[["name", "data"]]))
    # a slice renders again: the hung repr's thread may still live ("not tried", at once)
    assert took < QUICK and ("took too long" in part or "an earlier one still hangs" in part)


@pytest.mark.needs_dot
def test_the_live_view_draws_and_inspects_broken_results_quickly(orch, broken):
    ids = _run_with(orch, broken)
    view = LiveView(orch)
    try:
        assert view.flush(30)
        svg, took = timed(lambda: view.svg)
        assert took < QUICK and svg.count('class="node"') == len(ids) + 1
        for kind in ("hangs", "loops", "raises"):
            _, took = timed(view.select, ids[kind])
            assert took < QUICK and "<code>&lt;repr of" in view.detail
    finally:
        view.close()


# == pools ======================================================================================
def pool(capacity: int | None = None) -> list[TaskResource]:
    return [TaskResource(ResourceType.CUSTOM, "gpu", "write", capacity=capacity)]


def test_removing_a_pools_last_user_lets_it_be_declared_again(make_orch):
    orch = make_orch(3)
    first = orch.create_task("first", func=lambda: 1, resources=pool(2))
    orch.remove_task(first)
    together = threading.Barrier(3, timeout=10)  # three hold the pool at once: capacity 3
    for i in range(3):
        orch.create_task(f"gpu{i}", func=lambda: together.wait(),
                         resources=pool(3 if i == 0 else None))
    orch.start_execution()
    assert orch.wait_for_completion(30)
    assert [t.status.value for t in orch.list_tasks()] == ["completed"] * 3


def test_a_pool_still_in_use_keeps_its_capacity(orch):
    first = orch.create_task("first", func=lambda: 1, resources=pool(2))
    orch.create_task("second", func=lambda: 1, resources=pool())
    orch.remove_task(first)
    with pytest.raises(ValueError, match="already has capacity 2, but a task declares capacity 3"):
        orch.create_task("third", func=lambda: 1, resources=pool(3))
    assert [t.name for t in orch.list_tasks()] == ["second"]


def test_a_pools_only_user_may_resize_it_or_drop_it(orch):
    only = orch.create_task("only", func=lambda: 1, resources=pool(2))
    orch.redefine(only, resources=pool(4))
    other = orch.create_task("other", func=lambda: 1, resources=pool(4))
    with pytest.raises(ValueError, match="already has capacity 4"):
        orch.redefine(only, resources=pool(5))  # "other" uses it too
    orch.redefine(only, resources=[])
    orch.remove_task(other)
    orch.create_task("anew", func=lambda: 1, resources=pool(1))  # nobody used it: accepted


@pytest.mark.parametrize("kind", ["hangs", "loops", "raises", "huge"])
def test_printing_a_task_result_is_bounded_in_time_and_size(broken, kind):
    """``print(task.result)`` / a notebook showing it: the data's repr is a bounded preview."""
    from codomyrmex_nb import TaskResult

    text, took = timed(repr, TaskResult(True, broken[kind]()))
    assert took < 2.0 and len(text) < 2_000, (took, len(text))
    assert text.startswith("TaskResult(task_id=None, success=True, data=")
    if kind != "huge":
        assert f"<repr of {broken[kind].__name__}" in text
