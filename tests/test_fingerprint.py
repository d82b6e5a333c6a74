"""Fingerprints: stable across interpreters, sensitive to what a task computes."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from codomyrmex_nb.core.fingerprint import (
    Unhashable,
    code_fingerprint,
    task_fingerprint,
    value_digest,
)
from codomyrmex_nb.core.model import OutputRef

ROOT = Path(__file__).resolve().parents[1]


def define(source: str, filename: str = "/tmp/ipykernel_1/cell1.py") -> dict:
    """Run ``source`` the way a notebook cell runs: a ``__main__`` namespace, a throwaway
    file name that changes from kernel to kernel."""
    namespace = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), filename, "exec"), namespace)
    return namespace


def fp(func) -> str:
    return code_fingerprint(func, "", "")


# -- stable across interpreters ------------------------------------------------------------

SCRIPT = """
import json, sys, uuid
import numpy as np
import pandas as pd
from dataclasses import dataclass
from codomyrmex_nb.core.fingerprint import code_fingerprint, task_fingerprint, value_digest
from codomyrmex_nb.core.model import OutputRef

SCALE = 3

def helper(x):
    return x * SCALE

def work(a, b=2, *, c={"k": 3}):
    return helper(a) + b + c["k"]

square = lambda x: x * x

def make(k):
    def inner(x):
        return x + k
    return inner

closure = make({"offset", "scale", "shift"})

@dataclass
class Point:
    x: int
    tags: frozenset

up = OutputRef(uuid.uuid4().hex, "load")  # a fresh task id in every interpreter
print(json.dumps({
    "function": code_fingerprint(work, "", ""),
    "lambda": code_fingerprint(square, "", ""),
    "closure": code_fingerprint(closure, "", ""),
    "action": code_fingerprint(None, "etl", "load"),
    "task": task_fingerprint(code_fingerprint(square, "", ""),
                             {"x": 1, "names": {"ann", "bob", "cy"}, "f": square,
                              "d": {"k": [1.5, None, b"raw"], ("t", 1): frozenset("abc")}},
                             ["up2", "up1"], extra=("cell text", {"opt": True})),
    "output": task_fingerprint("c", {"x": up}, ["fp-load"], upstream={up.task_id: "fp-load"}),
    "frame": value_digest(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=["r1", "r2"])),
    "series": value_digest(pd.Series([1.5, 2.5], name="s")),
    "array": value_digest(np.arange(6).reshape(2, 3)),
    "object": value_digest(Point(1, frozenset({"p", "q", "r"}))),
}))
"""


def run_script(path: Path, seed: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED=seed)
    out = subprocess.run([sys.executable, str(path)], cwd=path.parent, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_stable_across_fresh_interpreters(tmp_path):
    first = tmp_path / "one" / "script.py"
    second = tmp_path / "two" / "renamed.py"  # another file name, lines moved down
    first.parent.mkdir()
    second.parent.mkdir()
    first.write_text(SCRIPT)
    second.write_text("\n\n\n# moved\n" + SCRIPT)
    a, b = run_script(first, "1"), run_script(second, "2")
    assert a == b
    assert len(set(a.values())) == len(a)  # and they are not all the same digest


def test_cell_functions_ignore_file_names_and_line_numbers():
    source = """
        LIMIT = 10
        def clip(x, top=LIMIT):
            return min(x, top)
        twice = lambda x: clip(x) * 2
    """
    one = define(source, "/tmp/ipykernel_111/2345.py")
    two = define("\n\n" + source, "/tmp/ipykernel_999/8765.py")
    assert fp(one["clip"]) == fp(two["clip"])
    assert fp(one["twice"]) == fp(two["twice"])
    assert one["clip"] is not two["clip"]


# -- sensitive to what the task computes ------------------------------------------------------


def test_changes_when_the_code_changes():
    a = define("def f(x):\n    return x + 1\n")["f"]
    b = define("def f(x):\n    return x + 2\n")["f"]
    c = define("def f(x):\n    return x - 1\n")["f"]
    same = define("def f(x):\n    return x + 1\n")["f"]
    assert len({fp(a), fp(b), fp(c)}) == 3
    assert fp(a) == fp(same)
    nested_a = define("def f(x):\n    return [y + 1 for y in x]\n")["f"]
    nested_b = define("def f(x):\n    return [y + 2 for y in x]\n")["f"]
    assert fp(nested_a) != fp(nested_b)  # the change is inside a nested code object


def test_changes_when_the_name_changes():
    assert fp(define("def f(x):\n    return x\n")["f"]) != \
        fp(define("def g(x):\n    return x\n")["g"])


def test_changes_when_a_default_changes():
    assert fp(define("def f(x, y=1):\n    return x + y\n")["f"]) != \
        fp(define("def f(x, y=2):\n    return x + y\n")["f"])
    assert fp(define("def f(x, *, y=1):\n    return x + y\n")["f"]) != \
        fp(define("def f(x, *, y=2):\n    return x + y\n")["f"])


def test_changes_when_a_closure_value_changes():
    def make(k):
        return lambda x: x + k

    assert fp(make(1)) == fp(make(1))
    assert fp(make(1)) != fp(make(2))
    assert fp(make([1, 2])) != fp(make([1, 3]))


def test_changes_when_a_global_it_reads_changes():
    namespace = define("""
        SCALE = 3
        def helper(x):
            return x * SCALE
        def work(x):
            return helper(x) + 1
    """)
    before = fp(namespace["work"])
    namespace["SCALE"] = 4  # a later cell changes a global the helper reads
    assert fp(namespace["work"]) != before
    namespace["SCALE"] = 3
    assert fp(namespace["work"]) == before
    exec("def helper(x):\n    return x * SCALE * 2\n", namespace)  # the helper is redefined
    assert fp(namespace["work"]) != before


def test_globals_count_by_content_helpers_by_code_and_the_unhashable_by_type():
    namespace = define("""
        import functools
        COLUMNS = ["a", "b"]

        class Exploding:
            def __reduce_ex__(self, protocol):
                raise AssertionError("cannot be hashed")

        BIG = list(range(1_000_000))
        MODEL = Exploding()

        @functools.lru_cache
        def lookup(key):
            return key * 2

        def work(x):
            return [lookup(c) for c in COLUMNS], len(BIG), MODEL
    """)
    before = fp(namespace["work"])
    namespace["BIG"].append(1)  # a big global counts by its content, in-place changes too
    changed = fp(namespace["work"])
    assert changed != before
    namespace["BIG"].pop()
    assert fp(namespace["work"]) == before
    namespace["COLUMNS"] = ["a", "c"]
    assert fp(namespace["work"]) != before
    namespace["COLUMNS"] = ["a", "b"]
    exec("@functools.lru_cache\ndef lookup(key):\n    return key * 3\n", namespace)
    current = fp(namespace["work"])
    assert current != before  # a redefined (wrapped) helper counts
    namespace["MODEL"] = namespace["Exploding"]()  # unhashable: by its type, as before
    assert fp(namespace["work"]) == current


def test_an_unhashable_global_counts_by_its_type_only():
    namespace = define("""
        import threading
        LOCK = threading.Lock()
        def work(x):
            with LOCK:
                return x
    """)
    before = fp(namespace["work"])
    namespace["LOCK"] = __import__("threading").Lock()
    assert fp(namespace["work"]) == before


def test_recursive_and_mutually_recursive_functions():
    namespace = define("""
        def fact(n):
            return 1 if n < 2 else n * fact(n - 1)
        def even(n):
            return n == 0 or odd(n - 1)
        def odd(n):
            return n != 0 and even(n - 1)
    """)
    assert fp(namespace["fact"]) == fp(namespace["fact"])
    assert fp(namespace["even"]) != fp(namespace["odd"])


def test_module_and_action():
    assert code_fingerprint(None, "etl", "load") == code_fingerprint(None, "etl", "load")
    assert code_fingerprint(None, "etl", "load") != code_fingerprint(None, "etl", "save")
    assert code_fingerprint(None, "etl", "load") != code_fingerprint(None, "etc", "load")

    def load():
        return 1

    resolved = code_fingerprint(load, "etl", "load")
    assert resolved != code_fingerprint(None, "etl", "load")
    assert resolved != code_fingerprint(load, "", "")
    # a library function as the action itself: hashed by its code, not just its name
    assert code_fingerprint(textwrap.dedent, "textwrap", "dedent") == \
        code_fingerprint(textwrap.dedent, "textwrap", "dedent")


def test_changes_when_a_parameter_changes():
    code = fp(lambda x: x)
    base = task_fingerprint(code, {"x": 1, "y": "a"}, [])
    assert task_fingerprint(code, {"y": "a", "x": 1}, []) == base  # order of names ignored
    for other in ({"x": 2, "y": "a"}, {"x": 1.0, "y": "a"}, {"x": True, "y": "a"},
                  {"x": 1, "y": "b"}, {"x": 1}, {"x": 1, "y": "a", "z": None},
                  {"x": [1], "y": "a"}, {"x": (1,), "y": "a"}):
        assert task_fingerprint(code, other, []) != base, other
    assert task_fingerprint("other code", {"x": 1, "y": "a"}, []) != base


def test_changes_when_an_upstream_fingerprint_changes():
    base = task_fingerprint("code", {}, ["a", "b"])
    assert task_fingerprint("code", {}, ["b", "a"]) == base
    assert task_fingerprint("code", {}, iter(["a", "b"])) == base
    assert task_fingerprint("code", {}, ["a", "c"]) != base
    assert task_fingerprint("code", {}, ["a"]) != base
    assert task_fingerprint("code", {}, ["a", "b"], extra="cell") != base


def test_extra_carries_cell_text_options_and_the_names_it_reads():
    base = task_fingerprint("cell", {}, [], extra={"text": "y = x + 1", "reads": {"x": 1}})
    assert task_fingerprint("cell", {}, [], extra={"reads": {"x": 1}, "text": "y = x + 1"}) \
        == base
    assert task_fingerprint("cell", {}, [], extra={"text": "y = x + 1", "reads": {"x": 2}}) \
        != base
    with pytest.raises(Unhashable, match="lock"):
        task_fingerprint("cell", {}, [], extra={"reads": {"x": threading.Lock()}})


def test_task_outputs_hash_as_the_output_of_their_upstream_fingerprint():
    one, two = OutputRef("id-in-kernel-1", "load"), OutputRef("id-in-kernel-2", "load")
    a = task_fingerprint("c", {"df": one}, ["fp-load"], upstream={one.task_id: "fp-load"})
    b = task_fingerprint("c", {"df": two}, ["fp-load"], upstream={two.task_id: "fp-load"})
    assert a == b
    c = task_fingerprint("c", {"df": two}, ["fp-load"], upstream={two.task_id: "fp-other"})
    assert c != a
    assert value_digest([one], {one.task_id: "f"}) == value_digest([two], {two.task_id: "f"})
    with pytest.raises(Unhashable, match="load"):
        task_fingerprint("c", {"df": one}, [])


# -- values ------------------------------------------------------------------------------


def test_containers_dicts_and_sets_in_a_stable_order():
    assert value_digest({"a": 1, "b": 2}) == value_digest({"b": 2, "a": 1})
    assert value_digest({3, 1, 2}) == value_digest({1, 2, 3})
    assert value_digest({1, 2}) != value_digest(frozenset({1, 2}))
    assert value_digest([1, 2]) != value_digest((1, 2)) != value_digest([2, 1])
    assert value_digest("1") != value_digest(1) != value_digest(1.0) != value_digest(True)
    assert value_digest(0.0) != value_digest(-0.0)
    assert value_digest(10**5000) != value_digest(10**5000 + 1)  # no digit limit
    assert value_digest(b"ab") != value_digest(bytearray(b"ab")) != value_digest("ab")
    cyclic: list = [1]
    cyclic.append(cyclic)
    assert value_digest(cyclic) == value_digest(cyclic)


def test_objects_hash_by_their_state():
    @dataclasses.dataclass
    class Config:
        rate: float
        tags: set

    assert value_digest(Config(0.5, {"a", "b"})) == value_digest(Config(0.5, {"b", "a"}))
    assert value_digest(Config(0.5, {"a"})) != value_digest(Config(0.6, {"a"}))
    assert value_digest(Path("/a/b")) == value_digest(Path("/a/b")) != value_digest(Path("/a"))
    assert value_digest(functools.partial(int, base=2)) != value_digest(functools.partial(int))


def test_a_class_defined_in_a_notebook_hashes_by_its_code():
    source = """
        class Model:
            def __init__(self, k):
                self.k = k
            def predict(self, x):
                return x * self.k{}
    """
    one = define(source.format(""))["Model"]
    same = define(source.format(""), "/tmp/other.py")["Model"]
    other = define(source.format(" + 1"))["Model"]
    assert value_digest(one(2)) == value_digest(same(2))
    assert value_digest(one(2)) != value_digest(one(3))
    assert value_digest(one(2)) != value_digest(other(2))


def test_enum_members_and_class_attributes():
    import enum

    class Mode(enum.Enum):
        FAST = 1
        SAFE = 2

    assert value_digest(Mode.FAST) == value_digest(Mode.FAST) != value_digest(Mode.SAFE)
    assert value_digest(Mode) == value_digest(Mode)

    class Settings:
        VERSION = 2

        def version(self):
            return self.VERSION

    before = value_digest(Settings())
    Settings.VERSION = 3  # a class attribute the methods read
    assert value_digest(Settings()) != before


def test_functions_as_parameters():
    def make(k):
        return lambda x: x + k

    assert value_digest(make(1)) == value_digest(make(1)) != value_digest(make(2))
    assert value_digest(len) == value_digest(len) != value_digest(abs)
    assert value_digest(os.path.join) == value_digest(os.path.join)


def test_dataframes_equal_when_equal_and_different_when_a_cell_changes():
    pd = pytest.importorskip("pandas")

    def frame():
        return pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}, index=["p", "q", "r"])

    base = value_digest(frame())
    assert value_digest(frame()) == base
    changed = frame()
    changed.loc["q", "b"] = "Y"
    assert value_digest(changed) != base
    assert value_digest(frame().rename(columns={"a": "A"})) != base
    assert value_digest(frame().astype({"a": "float64"})) != base
    assert value_digest(frame().reset_index(drop=True)) != base
    assert value_digest(frame()["a"]) == value_digest(frame()["a"]) != value_digest(frame()["b"])
    assert value_digest(frame().index) == value_digest(frame().index)
    listy = pd.DataFrame({"a": [[1], [2]]})  # cells hash_pandas_object refuses
    assert value_digest(listy) == value_digest(pd.DataFrame({"a": [[1], [2]]}))
    assert value_digest(listy) != value_digest(pd.DataFrame({"a": [[1], [3]]}))


def test_numpy_arrays_by_dtype_shape_and_bytes():
    np = pytest.importorskip("numpy")
    base = value_digest(np.arange(6))
    assert value_digest(np.arange(6)) == base
    assert value_digest(np.arange(6).reshape(2, 3)) != base
    assert value_digest(np.arange(6, dtype="int32")) != base
    assert value_digest(np.arange(6)[::-1].copy()) != base
    assert value_digest(np.arange(12)[::2]) == value_digest(np.arange(0, 12, 2))  # strides
    assert value_digest(np.array([{"a": 1}], dtype=object)) != \
        value_digest(np.array([{"a": 2}], dtype=object))
    assert value_digest(np.float64(1.5)) != value_digest(np.float32(1.5))


def test_core_does_not_import_pandas_or_numpy():
    code = ("import sys\nfrom codomyrmex_nb.core.fingerprint import task_fingerprint\n"
            "class C:\n    pass\n"
            "task_fingerprint('c', {'x': [1, {2}], 'c': C()}, [])\n"
            "print(sorted(m for m in ('pandas', 'numpy', 'IPython') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- unhashable -------------------------------------------------------------------------------


def test_a_lock_parameter_is_unhashable_and_says_which():
    with pytest.raises(Unhashable, match=r"parameter 'guard'.*lock"):
        task_fingerprint("code", {"x": 1, "guard": threading.Lock()}, [])
    with pytest.raises(Unhashable, match="RLock"):
        value_digest({"deep": [(1, threading.RLock())]})


def test_an_open_file_or_a_generator_is_unhashable(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with open(path) as handle, pytest.raises(Unhashable, match="open file"):
        value_digest(handle)
    with pytest.raises(Unhashable, match="generator"):
        value_digest(x for x in range(3))


def test_a_closure_over_a_lock_is_unhashable():
    lock = threading.Lock()

    def guarded(x):
        with lock:
            return x

    with pytest.raises(Unhashable, match="closes over 'lock'"):
        fp(guarded)


def _scaled(x, factor=2):
    return x * factor


def _echo(x):
    return x


def test_the_one_call_fingerprint_at_attempt_start_equals_the_general_one(tmp_path):
    """Tasks after the first of a function take ``Recorder._plain_fingerprint``; what it
    gives must be what the general path gives, or cache and resume would miss."""
    from codomyrmex_nb import TaskOrchestrator

    orch = TaskOrchestrator(1, journal=tmp_path / "j.sqlite")
    try:
        a = orch.create_task("a", func=_scaled, parameters={"x": 1})
        b = orch.create_task("b", func=_scaled, parameters={"x": "ab", "factor": 3},
                             dependencies=[a])
        c = orch.create_task("c", func=_scaled, parameters={"x": 3}, dependencies=[a, b])
        d = orch.create_task("d", func=_scaled, parameters={"x": True, "factor": 2.5})
        # one parameter, whose repr is written out: quotes, bytes, None, floats
        echoes = [orch.create_task(f"e{i}", func=_echo, parameters={"x": value})
                  for i, value in enumerate(["first", "it's \"q\"\n", b"\x00'", None, 1e300,
                                             -0.0, 2**70, "\u00e9\ud800"])]
        orch.start_execution()
        assert orch.wait_for_completion(30)
    finally:
        orch.stop_execution()
    recorder, records = orch._engine.recorder, orch._engine.sched.records
    for task in (b, c, d, *echoes[1:]):
        rec = records[task.id]
        assert recorder._plain_fingerprint(rec, task, task.func) == rec.fingerprint  # one call
        ups = [u.fingerprint for u in rec.ups]
        general = recorder.fingerprint(task, ups, {u.id: u.fingerprint for u in rec.ups},
                                       frozenset(u.name for u in rec.ups))
        assert rec.fingerprint == general and len(general) == 64
