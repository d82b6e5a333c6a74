"""``TaskOrchestrator``: the guide's API, a facade over one engine.

It holds an engine (it is not one) and sits above ``core`` and ``analysis``,
so ``core`` never imports a layer above it. Every method that changes
definitions or state takes the engine's lock and asks the scheduler, the one
writer of task state; nothing here writes a task's state by hand.

Definitions are validated whole before anything changes (unknown or ambiguous
dependencies, cycles, resource capacities), so a bad batch leaves no trace.
Re-adding a known task that has ended re-queues it together with everything
downstream of it (their inputs are about to change); a task still ready or
running is left alone. Tasks may be added while the engine runs. Fields a user
changes on a Task take effect, validated, when that task is next queued by
``add_task``, ``rerun`` or ``redefine``.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .core.engine import Engine
from .core.events import Event
from .core.executors import Executor, make_executor
from .core.item_views import ItemView, copy_items, item_costs, item_state
from .core.journal_upkeep import JournalInfo, Removal
from .core.map_steps import never_ran
from .core.mapping import DONE_ELAPSED, MAP_OPTIONS, check_index, item_id, respec
from .core.memory_budget import DEFAULT as DEFAULT_LIMIT
from .core.memory_budget import parse_limit
from .core.model import DEFINITION_FIELDS, Task, TaskPriority, TaskResource, TaskResult, TaskStatus
from .core.peek import TAIL, OutputSoFar, output_so_far
from .core.recorder import Recorder, journal_setting
from .core.records import Record
from .core.snapshot import Snapshot, paused_gc
from .core.trigger_rules import DEFAULT as DEFAULT_RULE

S = TaskStatus


def default_workers() -> int:
    return max(4, os.cpu_count() or 1)


class TaskOrchestrator:
    """Runs tasks by dependency, priority and resources on a pool of workers."""

    def __init__(self, max_workers: int | None = None, executor: str | Executor = "threads",
                 client: Any = None, address: str | None = None, *,
                 journal: bool | str | os.PathLike | None = None,
                 resume: bool | None = None, memory_limit: int | str | None = DEFAULT_LIMIT) -> None:
        """``journal``: None (``$CODOMYRMEX_JOURNAL``, else ``./.codomyrmex/``, one file
        per script or notebook), False or "off", True, or a file path. ``resume``: None
        or True restore, at definition, tasks that completed in any run of the last
        process (kernel or script) that died with its last run unfinished; never from a
        process that still runs. False recomputes everything. ``memory_limit``: how much
        RAM finished results may hold before the least recently used ones the journal
        holds are dropped and read back when asked for (bytes, "4GB", a share of RAM
        such as "25%", the default; None or 0: no budget); see ``core/memory_budget.py``."""
        workers = default_workers() if max_workers is None else max_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"max_workers must be a whole number >= 1, got {max_workers!r}")
        # every setting is checked before anything starts (an executor, the journal's
        # writer thread): a refused constructor leaves no thread nor open file behind
        limit = parse_limit(memory_limit)
        path = journal_setting(journal)
        built = make_executor(executor, client=client, address=address) \
            if isinstance(executor, str) else executor
        recorder = Recorder(path, resume) if path is not None else None
        self._engine = Engine(workers, built, executor if isinstance(executor, str) else None,
                              recorder)
        self._engine.use_budget(limit)

    @property
    def memory_limit(self) -> int | None:
        """Bytes finished results may hold in RAM (None: no budget); settable as in
        the constructor ("4GB", "25%", None)."""
        budget = self._engine.budget
        return None if budget is None else budget.limit

    @memory_limit.setter
    def memory_limit(self, value: int | str | None) -> None:
        self._engine.use_budget(parse_limit(value))

    def memory_stats(self) -> dict[str, Any]:
        """The memory budget: its limit, bytes held, results held and dropped, read backs."""
        budget = self._engine.budget
        if budget is None:
            return {"limit": None, "held": 0, "results": 0, "dropped": 0, "drops": 0,
                    "read_backs": 0}
        return budget.stats()

    def __repr__(self) -> str:
        engine = self._engine
        with engine.lock:
            c = engine.sched.counts
            return (f"<TaskOrchestrator {engine.executor_name} x{engine.max_workers} "
                    f"{'running' if engine.running else 'stopped'}: {len(engine.sched.records)} "
                    f"tasks, {c[S.COMPLETED]} completed, {c[S.FAILED]} failed>")

    # -- settings ------------------------------------------------------------------------
    @property
    def max_workers(self) -> int:
        return self._engine.max_workers

    @max_workers.setter
    def max_workers(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"max_workers must be a whole number >= 1, got {value!r}")
        self._engine.max_workers = value

    @property
    def executor_name(self) -> str:
        return self._engine.executor_name

    @property
    def executor(self) -> Executor:
        """The executor object in use (for example ``.client`` of the Dask one)."""
        return self._engine.executor

    def use_executor(self, executor: Executor, name: str | None = None) -> None:
        """Switch executors while stopped."""
        if self._engine.running:
            raise RuntimeError("stop_execution() before switching executors")
        self._engine.use_executor(executor, name)

    @property
    def structure_version(self) -> int:
        """Changes whenever tasks are added, re-queued with new edges, or removed."""
        return self._engine.sched.structure_version

    # -- defining tasks -----------------------------------------------------------------
    def add_task(self, task: Task) -> str:
        """Add (or re-queue) one task; returns its id."""
        if not isinstance(task, Task):
            hint = ("; for several tasks use add_tasks([...])" if isinstance(task, list | tuple)
                    else "; build one with Task(...) or use create_task(...)")
            raise ValueError(f"add_task expects a Task, got {task!r}{hint}")
        return self.add_tasks([task])[0]

    def add_tasks(self, tasks: Iterable[Task]) -> list[str]:
        """Add a batch in any order; all or nothing."""
        if isinstance(tasks, Task | str | bytes | dict) or not isinstance(tasks, Iterable):
            one = "; for one task use add_task(task)" if isinstance(tasks, Task) else ""
            raise ValueError(f"add_tasks expects a list of Task objects, got {tasks!r}{one}")
        batch = list(tasks)
        for t in batch:
            if not isinstance(t, Task):
                raise ValueError(f"add_tasks expects Task objects, got {t!r}; build one with Task(...)")
        if len(batch) > 1:
            if len({id(t) for t in batch}) != len({t.id for t in batch}):
                raise ValueError("two different Task objects in the batch share an id")
            batch = list({t.id: t for t in batch}.values())
        restored = self._restorations(batch)
        with paused_gc(), self._engine.changing() as sched:  # a big batch: no full collections
            sched.define(batch, restored)
            self._record_restored(restored)
        return [t.id for t in batch]

    def _record_restored(self, restored: dict[str, Any] | None) -> None:
        """Under the lock: restored results count in the open run too (a second crash keeps them)."""
        if restored:
            engine = self._engine
            for task_id in restored:
                rec = engine.sched.records.get(task_id)
                if rec is not None and rec.restored is not None:
                    engine.hold_restored(rec)  # before its row is queued
                    engine.recorder.record_restored(rec)

    def _restorations(self, batch: list[Task]) -> dict[str, Any] | None:
        """Results the journal gives back for new tasks of ``batch`` (outside the lock)."""
        recorder = self._engine.recorder
        if recorder is None or (recorder.resume_from is None and not any(t.cache for t in batch)):
            return None
        fresh = [t for t in batch if t._record is None]
        return recorder.restorations(fresh, self._engine.sched.lookup) if fresh else None

    def create_task(self, name: str, module: str = "", action: str = "",
                    parameters: dict[str, Any] | None = None,
                    dependencies: list[str | Task] | None = None,
                    priority: TaskPriority | str = TaskPriority.NORMAL,
                    resources: list[TaskResource] | None = None, timeout: float | None = None,
                    max_retries: int = 0, retry_delay: float = 0.0, retry_backoff: float = 1.0,
                    retry_jitter: float = 0.0, tags: list[str] | None = None,
                    metadata: dict[str, Any] | None = None,
                    func: Callable[..., Any] | None = None, cache: bool = False, *,
                    retry_on: Any = None, description: str = "",
                    trigger_rule: str = DEFAULT_RULE,
                    watch: list[str] | None = None, map: Any = None,  # noqa: A002
                    map_mode: str = "zip", tolerate: int | str = 0,
                    max_parallel: int | None = None) -> Task:
        """Build a task and add it; returns the Task (its ``id`` names it later).

        ``cache=True``: when the journal holds a completed result for the same
        fingerprint (code, parameters, upstream), it is restored instead of run.
        ``retry_on``: the exception classes worth retrying (others fail at once).
        ``trigger_rule``: when it runs given how its upstream tasks ended, by Airflow's
        names (``all_success`` default, ``all_done`` for a cleanup, ``one_failed`` for
        an alert...; see ``core.trigger_rules``). An upstream task without a result is
        passed as a ``NoResult`` saying why.
        ``watch``: files (by content) and ``"env:NAME"`` variables (by value) the
        task reads that its code cannot show; they count in its fingerprint.
        ``map``: run once per item of an upstream task's result (``map="numbers"``, the item
        passed as ``item``), of a literal list, or of several zipped (``map={"x": "xs",
        "y": [1, 2]}``; ``map_mode="product"`` crosses them; zipped literal lists of
        unequal lengths are a ``ValueError`` here, an upstream result's length is checked
        when the task runs). Each item has its own
        attempts, retries, timeout and logs; ``tolerate`` failed items (a count or
        ``"10%"``) and run at most ``max_parallel`` at once. Tasks downstream receive a
        ``MapResult`` (see ``core.mapping``).
        """
        task = Task(name, module, action, parameters, dependencies, priority, resources, timeout,
                    max_retries, retry_delay, retry_backoff, retry_jitter, tags, metadata, func,
                    cache, retry_on=retry_on, description=description,
                    trigger_rule=trigger_rule, watch=watch, map=map, map_mode=map_mode,
                    tolerate=tolerate, max_parallel=max_parallel)
        if name in self._engine.sched.by_name:
            self._warn_same_name(task)
        recorder = self._engine.recorder  # _restorations' first test, for one task
        restored = None if recorder is None or (recorder.resume_from is None and not task.cache) \
            else self._restorations([task])
        if not restored:
            self._engine.define_new(task)  # validated just now by Task(...)
            return task
        with self._engine.changing() as sched:
            sched.define([task], restored)
            self._record_restored(restored)
        return task

    def _warn_same_name(self, task: Task) -> None:
        """A second task of a name already held: most often a notebook cell that calls
        ``create_task`` run a second time, which would run every task of it again."""
        with self._engine.lock:
            held = self._engine.sched.by_name.last(task.name)
            if held is None:
                return
            what = f"id {held.id}, {getattr(held.status, 'value', 'defined')}"
        warnings.warn(
            f"create_task: a task named {task.name!r} is already defined ({what}); this adds a "
            f"second one of that name (a notebook cell run twice does this). To run it again: "
            f"rerun({task.name!r}); to change it: redefine({task.name!r}, ...); reset() "
            f"forgets every task.", UserWarning, stacklevel=3)

    def redefine(self, task: str | Task, **changes: Any) -> Task:
        """Change a known task's definition and re-run it and everything downstream.

        ``changes`` are Task fields (``func``, ``dependencies``, ``timeout``...)
        and a map's options (``map_mode``, ``tolerate``, ``max_parallel``; a new
        ``map`` keeps those it is not given). Everything is validated first
        (values, dependencies, cycles); on error nothing changes. A running
        attempt of the task or of a downstream task (a running map's items too)
        is interrupted. The notebook layer changes cells' tasks only this way.
        """
        unknown = sorted(set(changes) - set(DEFINITION_FIELDS) - set(MAP_OPTIONS))
        if unknown:
            raise ValueError(f"redefine() cannot change {', '.join(unknown)}; it changes only "
                             f"{', '.join(DEFINITION_FIELDS + MAP_OPTIONS)}")
        with self._engine.changing() as sched:
            rec = self._record(task)
            current = {f: getattr(rec.task, f) for f in DEFINITION_FIELDS}
            if "dependencies" not in changes:
                current["dependencies"] = [u.id for u in rec.ups]
            if "map" in changes or any(k in changes for k in MAP_OPTIONS):
                changes["map"] = respec(current["map"], changes)
                for k in MAP_OPTIONS:
                    changes.pop(k, None)
            probe = Task(**{**current, **changes}, id=rec.id)  # validates
            sched.redefine(rec, probe)
        return rec.task

    def register_action(self, module: str, action: str,
                        func: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """Register ``module.action`` for this orchestrator only; usable as a decorator."""
        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._engine.actions.register(module, action, fn)
            return fn
        return decorate(func) if func is not None else decorate

    def rerun(self, task: str | Task, only: str | None = None) -> bool:
        """Re-queue a task and everything downstream, interrupting any of them that runs.

        The task gets a fresh retry budget; fields changed on its Task take
        effect now (validated first). False if the task is unknown.
        ``only="failed"``: of an ended mapped task, run again just the items that failed
        or were cancelled (and everything downstream); the others keep their results.
        """
        if only not in (None, "failed"):
            raise ValueError(f"rerun(only=...) takes 'failed' (or nothing), got {only!r}")
        with self._engine.changing() as sched:
            rec = sched.lookup(task)
            if rec is None:
                return False
            if only is None:
                sched.requeue(rec, fresh_budget=True)
                return True
            m = rec.mapping
            if m is None or not rec.status.is_terminal or not m.expanded:
                raise ValueError(f"rerun({rec.name!r}, only='failed') needs a mapped task that "
                                 "ended; rerun the task whole instead")
            sched.rerun_items(rec, sched.unsuccessful_items(rec))
        return True

    # -- the journal ---------------------------------------------------------------------
    @property
    def journal_path(self) -> str | None:
        """The journal file, or None when this orchestrator keeps none."""
        recorder = self._engine.recorder
        return None if recorder is None else str(recorder.path)

    @property
    def journal_run(self) -> int | None:
        """The journal's number of the open run, else of this orchestrator's last one (as
        ``history()`` and ``%codo_history`` number runs); None before any or without."""
        recorder = self._engine.recorder
        return None if recorder is None else recorder.last_run_id

    def use_journal(self, journal: bool | str | os.PathLike | None = True,
                    resume: bool | None = None) -> str | None:
        """Switch this orchestrator's journal (a path, True for the default, False for none)."""
        path = journal_setting(journal)
        self._engine.use_recorder(Recorder(path, resume) if path is not None else None)
        return self.journal_path

    def resume(self) -> str | None:
        """Restore tasks that completed in the runs of the last process that died with
        its last run unfinished (never a live process's).

        Applies to tasks defined from now on (re-run the notebook's cells) and to
        tasks defined already that have not started. Returns one line saying what
        was restored and from when (None if nothing).
        """
        engine = self._engine
        recorder = engine.recorder
        if recorder is None or recorder.look_for_resume() is None:
            return None
        with engine.lock:
            waiting = [r.task for r in engine.sched.records.values()
                       if r.status in (S.PENDING, S.READY) and r.retry_token is None
                       and not r.attempts]
        found = recorder.restorations(waiting, engine.sched.lookup) if waiting else {}
        with engine.changing() as sched:
            for task_id, hit in found.items():
                rec = sched.records.get(task_id)
                if rec is not None and not rec.attempts:
                    sched.restore(rec, *hit)
            self._record_restored(found)
        return self.restored_summary()

    def restored_summary(self) -> str | None:
        """One line on the tasks restored from the journal since the last call, or None."""
        recorder = self._engine.recorder
        return None if recorder is None else recorder.take_summary()

    def fresh(self) -> list[str]:
        """Stop restoring from the journal and re-run every task restored so far."""
        engine = self._engine
        recorder = engine.recorder
        if recorder is not None:
            recorder.resume_from = None
            recorder.take_summary()
        with engine.changing() as sched:
            restored = [r for r in sched.records.values() if r.restored is not None]
            for rec in restored:
                if rec.restored is not None:  # not re-queued already as another's downstream
                    sched.requeue(rec, fresh_budget=True)
        return [r.name for r in restored]

    def history(self):  # noqa: ANN201 - pandas is imported lazily
        """Past runs in the journal, newest first: when, tasks, outcomes, makespan."""
        from .analysis.history import history_frame

        recorder = self._engine.recorder
        if recorder is None:
            return history_frame([])
        with self._journal_open(recorder) as journal:
            journal.flush(5.0)  # the run that just ended reads as ended
            return history_frame(journal.history())

    @contextlib.contextmanager
    def _journal_open(self, recorder: Recorder) -> Iterator[Any]:
        """The journal for a read or a clear; closed again after it if the engine is
        stopped and it was closed before (no writer thread outlives stop_execution)."""
        was_open = recorder.is_open
        try:
            yield recorder.journal
        finally:
            if not was_open and not self._engine.running:
                recorder.close()
            else:
                with self._engine.lock:  # between runs (open_run holds this lock)
                    recorder.close_if_room_made()

    def clear_journal(self) -> Removal | None:
        """Forget every run the journal recorded (``%codo_reset --journal``) but those a
        prune keeps: the current run, runs of another process that still runs, and runs
        holding a result dropped from memory (``Removal.kept`` says which). None when
        this orchestrator keeps no journal."""
        recorder = self._engine.recorder
        if recorder is None:
            return None
        with self._journal_open(recorder) as journal:
            removal = journal.clear()
        recorder.resume_from = None
        return removal

    def journal_info(self) -> JournalInfo | None:
        """What the journal holds (``%codo_journal``): the file, its size on disk (db +
        wal), its runs and the space each takes; ``.frame()`` one row per run. None when
        this orchestrator keeps no journal."""
        recorder = self._engine.recorder
        if recorder is None:
            return None
        with self._journal_open(recorder) as journal:
            journal.flush(5.0)
            return journal.info()

    def prune_journal(self, keep_runs: int | None = None, older_than: str | float | None = None,
                      dry_run: bool = False) -> Removal | None:
        """Remove old runs and shrink the file (``%codo_journal --prune``): those outside
        the ``keep_runs`` newest and older than ``older_than`` (``"30d"``); see
        ``Journal.prune``. Allowed while tasks run: the current run stays. None when
        this orchestrator keeps no journal; bad options: ``ValueError``."""
        recorder = self._engine.recorder
        if recorder is None:
            return None
        with self._journal_open(recorder) as journal:
            return journal.prune(keep_runs, older_than, dry_run)

    def clear_journal_cache(self, name: str | None = None,
                            dry_run: bool = False) -> Removal | None:
        """Remove the journal's cached results (of tasks named ``name``, else all) and
        shrink the file (``%codo_journal --clear-cache``); runs and history stay."""
        recorder = self._engine.recorder
        if recorder is None:
            return None
        with self._journal_open(recorder) as journal:
            return journal.clear_cache(name, dry_run)

    # -- looking up -----------------------------------------------------------------------
    def _record(self, ref: str | Task) -> Record:
        rec = self._engine.sched.lookup(ref)
        if rec is None:
            name = ref.name if isinstance(ref, Task) else ref
            raise KeyError(f"no task {name!r} in this orchestrator")
        return rec

    def get_task(self, task_id: str | Task) -> Task | None:
        """The task with this id (or name), or None."""
        with self._engine.lock:
            rec = self._engine.sched.lookup(task_id)
            return None if rec is None else rec.task

    def get_task_result(self, task_id: str | Task, map_index: int | None = None
                        ) -> TaskResult | None:
        """The task's result (None until it ended); ``map_index``: one item's, of a mapped task
        (None until that item ended, or its map read its sources); a ``ValueError`` for a task
        that is not mapped or an index out of range or not a whole number."""
        if map_index is not None:
            map_index = check_index(map_index)
        with self._engine.lock:
            rec = self._engine.sched.lookup(task_id)
            if rec is None or map_index is None:
                return None if rec is None else rec.result
            if rec.mapping is not None and not rec.mapping.expanded:
                return None  # its items are not known yet
            item = self._item(rec, map_index)
            if item is None and rec.status.is_terminal:  # never dispatched: its map ended
                return _unrun_item_result(rec, map_index)
            return None if item is None else item.result

    def _item(self, rec: Record, map_index: int) -> Any:
        try:
            return self._engine.sched.item(rec, map_index)
        except LookupError as exc:
            raise ValueError(str(exc)) from None

    def map_items(self, task: str | Task) -> list[dict[str, Any]]:
        """One dict per item of a mapped task (``map_index``, ``state``, ``attempts``, ``error``,
        ``execution_time``), failures first: what the live view lists on a click."""
        with self._engine.lock:
            rec = self._record(task)
            m = rec.mapping
            if m is None:
                raise ValueError(f"task {rec.name!r} is not mapped")
            rows = []
            for i in range(m.known_n):
                item = m.items[i] if i < len(m.items) else None
                if item.__class__ is tuple:  # completed in one attempt, kept compactly
                    attempts, error, took = 1, None, item[DONE_ELAPSED]
                else:
                    result = None if item is None else item.result
                    attempts = 0 if item is None else len(item.attempts)
                    error = None if result is None else result.error_message
                    took = None if result is None else result.execution_time
                state = m.state_of(i) if item is None or item.__class__ is tuple \
                    else item_state(item)  # as tasks_frame(items=True) names it
                rows.append({"map_index": i, "name": f"{rec.name}[{i}]", "state": state,
                             "attempts": attempts, "error": error, "execution_time": took})
        bad = ("failed", "cancelled")
        return sorted(rows, key=lambda r: (r["state"] not in bad, r["map_index"]))

    def item_views(self, task: str | Task | None = None,
                   map_index: int | None = None) -> list[ItemView]:
        """Frozen copies of the items of ``task`` (every mapped task when None), in
        ``map_index`` order; only item ``map_index`` when given (see ``core.item_views``)."""
        if map_index is not None:
            map_index = check_index(map_index)
        with self._engine.lock:
            recs = (self._engine.sched.records.values() if task is None else
                    [self._record(task)])
            if task is not None and recs[0].mapping is None:
                raise ValueError(f"task {recs[0].name!r} is not mapped")
            if task is not None and map_index is not None:
                self._item(recs[0], map_index)  # out of range, not expanded: ValueError
            return copy_items(recs, map_index)

    def item_costs(self) -> dict[str, tuple[float | None, int | None]]:
        """Per mapped task id: its items' CPU seconds (summed) and largest peak memory, None
        where not measured (what the frames add to a mapped task's own cost)."""
        with self._engine.lock:
            return item_costs(self._engine.sched.records.values())

    def output_so_far(self, task_id: str, limit: int = TAIL) -> OutputSoFar | None:
        """What the running attempt of task ``task_id`` (an id) has printed so far, or None
        if it is not running. Never takes the engine lock (see ``core.peek``)."""
        return output_so_far(self._engine, task_id, limit)

    def list_tasks(self, status: TaskStatus | str | None = None) -> list[Task]:
        """Tasks in the order they were added, optionally only those in ``status``."""
        if isinstance(status, str):
            status = TaskStatus(status.lower())
        with self._engine.lock:
            recs = self._engine.sched.records.values()
            return [r.task for r in recs if status is None or r.status is status]

    def dependencies_of(self, task: str | Task) -> list[Task]:
        with self._engine.lock:
            rec = self._engine.sched.lookup(task)
            return [] if rec is None else [u.task for u in rec.ups]

    def dependents_of(self, task: str | Task) -> list[Task]:
        """Every task downstream of ``task``, upstream first."""
        with self._engine.lock:
            rec = self._engine.sched.lookup(task)
            return [] if rec is None else [r.task for r in self._engine.sched.descendants(rec)]

    # -- cancelling and forgetting ----------------------------------------------------------
    def cancel_task(self, task_id: str | Task, map_index: int | None = None) -> bool:
        """Cancel a pending, ready or running task; False if it ended already or is unknown.
        ``map_index``: cancel only that item of a mapped task (it counts as failed for the
        task's ``tolerate``); a ``ValueError`` when it is not a whole number (a bool is not)."""
        if map_index is not None:
            map_index = check_index(map_index)
        with self._engine.changing() as sched:
            rec = sched.lookup(task_id)
            if rec is not None and map_index is not None:
                try:
                    return sched.cancel_item(rec, map_index)
                except LookupError as exc:
                    raise ValueError(str(exc)) from None
            done = rec is not None and sched.cancel(rec)
        return done

    def remove_task(self, task: str | Task) -> Task:
        """Forget one task (cancelling it first if it has not ended); returns it.

        Refused with a ``ValueError`` naming them while other tasks depend on
        it: remove (or redefine) those first. The Task object keeps its last
        state and can be added again.
        """
        with self._engine.changing() as sched:
            rec = self._record(task)
            sched.remove(rec)
        return rec.task

    def reset(self) -> int:
        """Forget every task (cancelling unfinished ones first); returns how many were forgotten."""
        with self._engine.changing() as sched:
            count = sched.reset()
        return count

    # -- running --------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._engine.running

    def start_execution(self) -> None:
        """Start the workers (idempotent); queued tasks start at once.

        The executor starts outside the engine lock (a Dask cluster can take
        seconds); if it fails to start, the orchestrator stays stopped and
        startable, and a ``RuntimeError`` says why.
        """
        self._engine.start()

    def stop_execution(self, timeout: float = 5.0) -> None:
        """Stop the workers (idempotent); running attempts are interrupted and re-queued.

        Waits up to ``timeout`` seconds for the worker threads; a thread blocked
        inside C code (a long ``time.sleep``) ends as soon as that call returns.
        """
        self._engine.stop(timeout)

    def wait_for_completion(self, timeout: float | None = None) -> bool:
        """Wait until every task has ended; True if none failed or was skipped.

        A task skipped as *not needed* (its trigger rule did not fire: an alert
        with nothing to report) is not a failure and does not make it False.

        Returns False when ``timeout`` passes first. A notebook interrupt
        (KeyboardInterrupt) ends the wait at once; the tasks keep running.
        """
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                    or math.isnan(timeout)):
            raise ValueError(f"wait_for_completion(timeout=...) takes a number of seconds or None "
                             f"(no limit), got {timeout!r}")
        try:
            return self._engine.wait(timeout)
        except KeyboardInterrupt as exc:
            exc.add_note(self._interrupted_note())
            raise

    def _interrupted_note(self) -> str:
        """What an interrupted ``wait_for_completion`` adds to its ``KeyboardInterrupt``."""
        stats = self.get_execution_stats()
        left = stats["pending"] + stats["running"]
        tasks = "1 task" if left == 1 else f"{left} tasks"
        if self._engine.executor_name == "sync":
            return ("wait_for_completion: interrupted; the sync executor runs tasks in the "
                    "waiting thread, so the task it ran goes back to ready" +
                    (f": the next wait_for_completion() runs the {tasks} not ended yet"
                     if left else ""))
        if not left:
            return "wait_for_completion: stopped waiting (interrupted); every task has ended"
        return (f"wait_for_completion: stopped waiting (interrupted); the {tasks} not ended yet "
                f"{'keeps' if left == 1 else 'keep'} running: wait_for_completion() waits "
                "again, stop_execution() stops them")

    # -- observing ----------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``callback(event)`` on every later change (on a dispatcher thread); returns unsubscribe."""
        return self._engine.subscribe(callback)

    def snapshot(self) -> Snapshot:
        """A frozen copy of every task's state, for views and frames (see core.snapshot)."""
        return self._engine.snapshot()

    def flush_events(self, timeout: float | None = None) -> bool:
        """Wait until every event published so far reached the subscribers; False on timeout.

        ``wait_for_completion`` returns when the tasks end, which can be just
        before subscribers have heard of the last change.
        """
        return self._engine.events.flush(timeout)

    def get_execution_stats(self) -> dict[str, Any]:
        """One consistent snapshot of counts and timings.

        ``pending`` counts every task not started yet: waiting for dependencies,
        ready (queued for resources or a worker) and waiting to retry; ``ready``
        is the subset queued for a worker. So ``pending == running == 0`` means
        all work has ended. Times are in seconds; ``makespan`` runs from the
        first attempt's start to the last task's end (or now, while work
        remains). Kept incrementally: O(attempts in flight) per call.
        """
        return self._engine.stats()

    # -- DataFrames and pictures (pandas / matplotlib imported on first use) -----------------
    def tasks_frame(self, items: bool = False):  # noqa: ANN201 - pandas is imported lazily
        """One row per task; ``items=True``: one row per item of the mapped tasks."""
        from .analysis.frames import tasks_frame
        return tasks_frame(self, items=items)

    def results_frame(self):  # noqa: ANN201
        from .analysis.frames import results_frame
        return results_frame(self)

    def stats_frame(self):  # noqa: ANN201
        from .analysis.frames import stats_frame
        return stats_frame(self)

    def bottlenecks(self, top: int = 5, min_seconds: float = 0.01,
                    executor: str | None = None):  # noqa: ANN201
        """What slowed the run and the cure for each (see ``analysis.bottlenecks``)."""
        from .analysis.frames import bottlenecks
        return bottlenecks(self, top=top, min_seconds=min_seconds, executor=executor)

    def timeline(self, ax: Any = None):  # noqa: ANN201
        from .analysis.timeline import timeline
        return timeline(self, ax=ax)


def _unrun_item_result(rec: Record, index: int) -> TaskResult | None:
    """The result of an item of an ended map that never ran: cancelled with its map, or
    skipped because its source item (a chained map's) did not complete."""
    why = never_ran(rec, index)
    if why is None:
        return None
    return TaskResult(False, None, str(why[0]), why[1], task_id=item_id(rec.id, index),
                      metadata={"attempts": 0, "retries": 0})
