"""cache=True sees what the code uses: each kind of change below runs the task again.

Each case writes a helper module and a flow module into the test's folder, puts the
folder on ``sys.path``, runs a ``cache=True`` task, changes one thing, and defines the
task again in a new orchestrator on the same journal: it must run (not be restored),
and return the new value. The control case, nothing changed, is restored.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import os
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from codomyrmex_nb import TaskOrchestrator, TaskStatus
from codomyrmex_nb.core.actions import _global, register_action
from codomyrmex_nb.core.fingerprint import BUDGET_SECONDS, code_fingerprint
from codomyrmex_nb.core.journal import JournalWarning

S = TaskStatus
_ids = itertools.count()

HELPER = """
import enum
import functools

K = [1, 2, 3]


class Scaler:
    _SCALE = 1

    class Inner:
        def size(self):
            return 1

    @functools.lru_cache(maxsize=None)
    def cached(self):
        return 1

    @functools.cached_property
    def lazy(self):
        return 1


class Mode(enum.Enum):
    FAST = 1

def g(x):
    return x + 1

def work_action(x=1):
    return g(x) * 10
"""

FLOW = """
import types
import {helper} as helper

BIG = list(range(100_000))
BIGD = {{i: i for i in range(10_000)}}
NESTED = {{"a": {{"b": {{"c": {{"d": 1}}}}}}}}
NS = types.SimpleNamespace(lr=0.1)

class Config:
    def __init__(self):
        self.lr = 0.1

CFG = Config()

def via_module(x=1):
    return helper.g(x)

def via_value(x=1):
    return sum(helper.K)

def big_list(x=1):
    return sum(BIG)

def big_dict(x=1):
    return sum(BIGD.values())

def nested(x=1):
    return NESTED["a"]["b"]["c"]["d"]

def namespace(x=1):
    return NS.lr

def config(x=1):
    return CFG.lr

def local_import(x=1):
    import {helper} as h
    return h.g(x)

def local_from_import(x=1):
    from {helper} import g
    return g(x)

def dynamic_import(x=1):
    import importlib
    return importlib.import_module("{helper}").g(x)

def dunder_import(x=1):
    return __import__("{helper}").g(x)

def private_attribute(x=1):
    return helper.Scaler()._SCALE

def nested_class(x=1):
    return helper.Scaler.Inner().size()

def lru_cache_method(x=1):
    return helper.Scaler().cached()

def cached_property(x=1):
    return helper.Scaler().lazy

def enum_value(x=1):
    return helper.Mode.FAST.value
"""


def _reload(mod, path: Path, old: str, new: str):
    source = path.read_text()
    assert old in source
    path.write_text(source.replace(old, new))
    sys.modules.pop(mod.__name__, None)  # the cached bytecode: new code, even within a second
    importlib.invalidate_caches()
    reloaded = importlib.import_module(mod.__name__)
    return reloaded


class Project:
    """A helper module and a flow module importing it, on sys.path, and a journal."""

    def __init__(self, folder: Path) -> None:
        n = next(_ids)
        self.folder = folder
        self.helper_name, self.flow_name = f"reach_helper_{n}", f"reach_flow_{n}"
        self.helper_path = folder / f"{self.helper_name}.py"
        self.helper_path.write_text(textwrap.dedent(HELPER))
        (folder / f"{self.flow_name}.py").write_text(FLOW.format(helper=self.helper_name))
        sys.path.insert(0, str(folder))
        self.helper = importlib.import_module(self.helper_name)
        self.flow = importlib.import_module(self.flow_name)
        self.journal = folder / "j.sqlite"

    def close(self) -> None:
        sys.path.remove(str(self.folder))
        for name in (self.helper_name, self.flow_name):
            sys.modules.pop(name, None)

    def change_helper(self, old: str, new: str) -> None:
        self.helper = _reload(self.helper, self.helper_path, old, new)
        self.flow.helper = self.helper  # as a reload of the helper in place would leave it

    def run(self, **task) -> tuple[bool, object]:
        """(restored?, value) for the task defined in a new orchestrator on the journal."""
        orch = TaskOrchestrator(2, journal=self.journal)
        register = task.pop("register", None)
        if register is not None:
            orch.register_action(*register)
        try:
            t = orch.create_task("t", cache=True, **task)
            restored = t.status is S.COMPLETED
            orch.start_execution()
            assert orch.wait_for_completion(30)
            assert t.status is S.COMPLETED, t.result
            return restored, t.result.data
        finally:
            orch.stop_execution()


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    yield p
    p.close()


def _module_action(p: Project):
    task = {"module": p.helper_name, "action": "work_action"}
    return task, lambda: p.change_helper("return g(x) * 10", "return g(x) * 20"), 40


def _registered_action(p: Project):
    def first(x=1):
        return "first"

    def fixed(x=1):
        return "fixed"

    task = {"module": "etl_reach", "action": "load", "register": ("etl_reach", "load", first)}

    def change():
        task["register"] = ("etl_reach", "load", fixed)
    return task, change, "fixed"


def _global_registered_action(p: Project):
    def first(x=1):
        return "first"

    def fixed(x=1):
        return "fixed!"

    register_action("etl_reach_global", "load", first)
    task = {"module": "etl_reach_global", "action": "load"}
    return task, lambda: register_action("etl_reach_global", "load", fixed), "fixed!"


def _big_list_append(p: Project):
    return {"func": p.flow.big_list}, lambda: p.flow.BIG.append(10**6), sum(range(100_000)) + 10**6


def _big_list_item(p: Project):
    def change():
        p.flow.BIG[50_000] = -1
    return {"func": p.flow.big_list}, change, sum(range(100_000)) - 50_001


def _big_dict(p: Project):
    def change():
        p.flow.BIGD[10_000] = 5
    return {"func": p.flow.big_dict}, change, sum(range(10_000)) + 5


def _nested(p: Project):
    def change():
        p.flow.NESTED["a"]["b"]["c"]["d"] = 2
    return {"func": p.flow.nested}, change, 2


def _namespace(p: Project):
    def change():
        p.flow.NS.lr = 0.2
    return {"func": p.flow.namespace}, change, 0.2


def _config(p: Project):
    def change():
        p.flow.CFG.lr = 0.3
    return {"func": p.flow.config}, change, 0.3


def _helper_change(func: str, old: str, new: str, expected: object):
    """A kind: the flow's ``func``, the helper module edited from ``old`` to ``new``."""
    def kind(p: Project):
        return {"func": getattr(p.flow, func)}, lambda: p.change_helper(old, new), expected
    return kind


KINDS = {"import inside the function": _helper_change("local_import", "return x + 1",
                                                      "return x + 2", 3),
         "from-import inside the function": _helper_change("local_from_import", "return x + 1",
                                                           "return x + 3", 4),
         "importlib.import_module('helper')": _helper_change("dynamic_import", "return x + 1",
                                                             "return x + 4", 5),
         "__import__('helper')": _helper_change("dunder_import", "return x + 1",
                                                "return x + 5", 6),
         "class attribute named _X": _helper_change("private_attribute", "_SCALE = 1",
                                                   "_SCALE = 5", 5),
         "nested class's method": _helper_change("nested_class", "def size(self):\n            "
                                                "return 1", "def size(self):\n            "
                                                "return 6", 6),
         "method under lru_cache": _helper_change("lru_cache_method", "def cached(self):\n"
                                                 "        return 1", "def cached(self):\n"
                                                 "        return 7", 7),
         "cached_property": _helper_change("cached_property", "def lazy(self):\n        return 1",
                                          "def lazy(self):\n        return 8", 8),
         "enum member's value": _helper_change("enum_value", "FAST = 1", "FAST = 9", 9),
         "module= action= code": _module_action, "orchestrator.register_action": _registered_action,
         "@register_action": _global_registered_action, "helper.g()": _helper_change("via_module", "return x + 1", "return x + 2", 3),
         "helper.K": _helper_change("via_value", "K = [1, 2, 3]", "K = [1, 2, 4]", 7), "big list, appended": _big_list_append,
         "big list, item set": _big_list_item, "big dict, key added": _big_dict,
         "dict nested 4 deep": _nested, "SimpleNamespace attribute": _namespace,
         "plain config object attribute": _config}


@pytest.fixture
def clean_registry():
    before = dict(_global)
    yield
    _global.clear()
    _global.update(before)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_change_to_what_the_code_uses_runs_the_task_again(project, kind, clean_registry):
    task, change, expected = KINDS[kind](project)
    restored, first = project.run(**dict(task))
    assert not restored
    restored, again = project.run(**dict(task))
    assert restored and again == first  # nothing changed: the cache serves it
    change()
    restored, value = project.run(**dict(task))
    assert not restored, f"{kind}: the old result came back"
    assert value == expected != first


@pytest.mark.parametrize("how", ["import", "importlib"])
def test_a_module_a_function_imports_before_it_is_loaded_counts_by_its_source_file(project, how):
    """In a new process the module a body imports is not loaded when the task is looked up:
    its source file is what the body will load, so that is what counts (imported by a
    statement, or by ``importlib.import_module`` with its name written out)."""
    name = f"lazy_helper_{next(_ids)}"
    path = project.folder / f"{name}.py"
    path.write_text("def v():\n    return 1\n")
    namespace: dict = {"__name__": "lazy_flow"}
    body = f"import {name}\n    return {name}.v()" if how == "import" else \
        f"import importlib\n    return importlib.import_module({name!r}).v()"
    exec(f"def lazy(x=1):\n    {body}\n", namespace)

    def run_as_a_new_process():
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        return project.run(func=namespace["lazy"])

    assert run_as_a_new_process() == (False, 1)
    assert run_as_a_new_process() == (True, 1)
    path.write_text("def v():\n    return 22\n")  # another size: no stale bytecode
    assert run_as_a_new_process() == (False, 22)
    sys.modules.pop(name, None)


# -- declared inputs: watch= ------------------------------------------------------------------


def test_watched_files_and_variables_count_by_content(project, monkeypatch):
    data = project.folder / "data.csv"
    data.write_text("a,b\n1,2\n")
    monkeypatch.chdir(project.folder)
    monkeypatch.setenv("REACH_API_URL", "http://one")

    def read(x=1):
        return Path("data.csv").read_text() + os.environ.get("REACH_API_URL", "")

    task = {"func": read, "watch": ["data.csv", "env:REACH_API_URL"]}
    assert project.run(**task) == (False, "a,b\n1,2\nhttp://one")
    assert project.run(**task)[0]  # unchanged: restored
    data.write_text("a,b\n1,3\n")
    assert project.run(**task) == (False, "a,b\n1,3\nhttp://one")
    os.utime(data, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same content
    assert project.run(**task)[0]
    monkeypatch.setenv("REACH_API_URL", "http://two")
    assert project.run(**task) == (False, "a,b\n1,3\nhttp://two")
    monkeypatch.delenv("REACH_API_URL")
    assert project.run(**task) == (False, "a,b\n1,3\n")
    data.unlink()  # a missing file is "missing": the task still caches, and reruns once back
    task["func"] = lambda x=1: "no data"
    assert project.run(**task) == (False, "no data")
    assert project.run(**task)[0]
    data.write_text("a,b\n1,3\n")
    assert project.run(**task) == (False, "no data")


def test_watch_is_checked_where_it_is_written(tmp_path):
    orch = TaskOrchestrator(journal=False)
    with pytest.raises(ValueError, match="watch"):
        orch.create_task("a", func=lambda: 1, watch=[3])
    with pytest.raises(ValueError, match="watch"):
        orch.create_task("b", func=lambda: 1, watch=["env:"])
    t = orch.create_task("c", func=lambda: 1, watch=tmp_path / "x.csv")  # one path: a list
    assert t.watch == [str(tmp_path / "x.csv")]


def test_a_watched_directory_is_not_restorable_and_says_why(project):
    task = {"func": lambda x=1: 1, "watch": [str(project.folder)]}
    with pytest.warns(JournalWarning, match="not a file"):
        assert project.run(**task) == (False, 1)


# -- too costly to hash: never a silent stale hit ---------------------------------------------------


def test_a_value_over_the_budget_makes_the_task_not_restorable_in_one_line(project, monkeypatch):
    from codomyrmex_nb.core import fingerprint_context  # (where the budget is read)

    monkeypatch.setattr(fingerprint_context, "BUDGET_BYTES", 100_000)  # BIG is 100,000 ints
    func = project.flow.big_list
    with pytest.warns(JournalWarning) as caught:
        assert project.run(func=func) == (False, sum(range(100_000)))
        project.flow.BIG.append(1)
        assert project.run(func=func)[0] is False
    lines = [str(w.message) for w in caught if issubclass(w.category, JournalWarning)]
    assert len(lines) == 1  # one line per reason, not one per definition
    assert "'BIG'" in lines[0] and "big_list" in lines[0] and "over 100 KB to hash" in lines[0]
    assert "\n" not in lines[0]


def test_a_slow_value_is_refused_by_time(project):
    class Slow:
        def __init__(self, n):
            self.n = n

        def __reduce_ex__(self, protocol):
            began = time.thread_time()  # busy: the budget counts CPU time, not waiting
            while time.thread_time() - began < BUDGET_SECONDS / 5:
                pass
            return (Slow, (self.n,))

    project.flow.SLOW = [Slow(i) for i in range(20)]  # about 4x the time budget

    exec("def reads_slow(x=1):\n    return len(SLOW)\n", vars(project.flow))
    with pytest.warns(JournalWarning, match=r"'SLOW'.* ms"):
        assert project.run(func=project.flow.reads_slow) == (False, 20)


def test_an_unhashable_global_still_counts_by_type_and_caches(project):
    import threading

    project.flow.LOCK = threading.Lock()
    exec("def locked(x=1):\n    with LOCK:\n        return 5\n", vars(project.flow))
    with warnings.catch_warnings():
        warnings.simplefilter("error", JournalWarning)
        assert project.run(func=project.flow.locked) == (False, 5)
        assert project.run(func=project.flow.locked) == (True, 5)


# -- installed packages by version, user code by location ----------------------------------------------


def test_installed_packages_count_by_distribution_and_version(monkeypatch):
    from codomyrmex_nb.core import code_origin

    pd = pytest.importorskip("pandas")
    ns = {"__name__": "__main__", "pd": pd}
    exec("def frame():\n    return pd.DataFrame()\n", ns)
    before = code_fingerprint(ns["frame"])
    assert code_origin._library_version("pandas").startswith("pandas==")
    monkeypatch.setattr(code_origin, "distribution",  # (every module's _library_version)
                        lambda top: "pandas==0.0" if top == "pandas" else None)
    assert code_fingerprint(ns["frame"]) != before


def test_a_module_outside_site_packages_is_user_code(project):
    from codomyrmex_nb.core.code_origin import _is_library_module

    assert not _is_library_module(project.helper_name)
    assert _is_library_module("json") and _is_library_module("pytest")


def test_the_same_fingerprint_for_the_same_reached_values(project):
    """Stable: a value reached twice, or through two helpers, hashes the same each time."""
    one = code_fingerprint(project.flow.via_module)
    assert code_fingerprint(project.flow.via_module) == one
    project.flow.BIG.append(1)
    assert code_fingerprint(project.flow.via_module) == one  # it does not read BIG


# -- the same fingerprints guard resume after a crash -------------------------------------------------

CRASHING = r'''
import os, signal, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from codomyrmex_nb import TaskOrchestrator, TaskStatus


def hang():
    time.sleep(600)


orch = TaskOrchestrator(2)  # the journal from $CODOMYRMEX_JOURNAL
task = orch.create_task("compute", module="{module}", action="compute")
orch.create_task("hang", func=hang)  # keeps the run open: it never finishes
orch.start_execution()
deadline = time.monotonic() + 60
while task.status is not TaskStatus.COMPLETED and time.monotonic() < deadline:
    time.sleep(0.01)
orch._engine.recorder.journal.flush()
os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize("fixed", [False, True])
def test_a_result_of_a_buggy_action_is_not_resumed_once_the_action_is_fixed(tmp_path, fixed):
    import signal
    import subprocess

    module = f"buggy_action_{next(_ids)}"
    action = tmp_path / f"{module}.py"
    action.write_text("def compute():\n    return 2 + 2 + 1  # the bug\n")
    script = tmp_path / "crash.py"
    script.write_text(CRASHING.replace("{module}", module))
    journal = tmp_path / "j.sqlite"
    env = {**os.environ, "CODOMYRMEX_JOURNAL": str(journal),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if fixed:
        action.write_text("def compute():\n    return 2 + 2  # fixed\n")
    sys.path.insert(0, str(tmp_path))
    try:
        orch = TaskOrchestrator(2, journal=journal)
        assert orch._engine.recorder.resume_from is not None  # the crashed run
        task = orch.create_task("compute", module=module, action="compute")
        restored = task.status is S.COMPLETED
        orch.start_execution()
        assert orch.wait_for_completion(30)
        orch.stop_execution()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)
    assert restored is not fixed
    assert task.result.data == (4 if fixed else 5)


def test_garbage_collection_does_not_count_against_the_hashing_budget():
    """A full collection in a big process takes ~100 ms of this thread's CPU: it belongs to
    no value, so a 10,000-key dict stays restorable even when one runs mid-hash."""
    from codomyrmex_nb.core import fingerprint_context

    junk = [[i] for i in range(300_000)]  # many tracked objects: a full collection is slow
    before_clock, before_cpu = fingerprint_context._clock(), time.thread_time()
    for _ in range(3):
        gc.collect()
    spent_cpu = time.thread_time() - before_cpu
    spent_clock = fingerprint_context._clock() - before_clock
    del junk
    assert spent_cpu > 0.005  # the collections did take time ...
    assert spent_clock < spent_cpu / 4  # ... which the budget's clock leaves out
