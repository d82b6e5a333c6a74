"""A task's outcome: ``TaskResult`` (the original orchestrator's shape, kept light: most
fields are made on first read), and what goes with it: the marker of a result the memory
budget dropped from RAM, the lazy view a snapshot holds of one, and a failing message
said safely. ``model`` re-exports these names (pickles made before this module name them
there)."""

from __future__ import annotations

from typing import Any

from .preview import safe_preview as _preview


class TaskResult:
    """The outcome of a task's last attempt; ``exception`` keeps the error whole.

    Built as the original orchestrator's dataclass was: ``TaskResult(success,
    data, error_message, error_type, execution_time, memory_usage, metadata)``
    in that order; ``task_id`` and this project's extras are keyword-only.
    ``metadata`` (attempts, retries, worker) is built on first read: a dict per
    result was a tenth of what a finished task held, and most are never read.
    """

    __slots__ = ("task_id", "success", "_data", "error_message", "error_type", "traceback",
                 "execution_time", "memory_usage", "_metadata", "_attempts", "_retries",
                 "_worker", "exception", "logs", "displays", "_entry")
    _FIELDS = ("task_id", "success", "data", "error_message", "error_type", "traceback",
               "execution_time", "memory_usage", "metadata", "exception", "logs", "displays")
    #: ``to_dict``: the original's keys, always, in its order; then ours, where they are set.
    _ORIGINAL_KEYS = ("success", "data", "error_message", "error_type", "execution_time",
                      "memory_usage", "metadata")
    _EXTRA_KEYS = ("task_id", "traceback", "logs")

    def __init__(self, success: bool, data: Any = None, error_message: str | None = None,
                 error_type: str | None = None, execution_time: float = 0.0,
                 memory_usage: float = 0.0, metadata: dict[str, Any] | None = None, *,
                 task_id: str | None = None, traceback: str | None = None,
                 exception: BaseException | None = None, logs: str | None = None,
                 displays: list[Any] | None = None) -> None:
        if success.__class__ is str:  # TaskResult(task_id, success, ...): this class before
            raise TypeError(f"TaskResult takes success first (TaskResult(success, data, ...)), "
                            f"got {success!r}; pass the id as TaskResult(..., task_id={success!r})")
        self.task_id, self.success, self._data = task_id, success, data
        self._entry: Any = None  # the memory budget's entry (core/memory_budget.py), if any
        self.error_message, self.error_type, self.traceback = error_message, error_type, traceback
        self.execution_time, self.memory_usage = execution_time, memory_usage
        self._metadata = metadata
        # the metadata's counts until it is built (three fields, not a tuple: one container
        # less per task kept, so the collector runs less often)
        self._attempts: int | None = None
        self._retries, self._worker = 0, None
        self.exception = exception  # not compared, not shown
        self.logs = logs  # the last attempt's captured output (not shown)
        self.displays = displays  # its display() bundles (not shown)

    @classmethod
    def of_attempts(cls, task_id: str, success: bool, attempts: int, retries: int,
                    worker: str | None, data: Any = None, error: BaseException | None = None,
                    error_type: str | None = None, execution_time: float = 0.0,
                    traceback: str | None = None) -> TaskResult:
        """The engine's results, one per task and item: the metadata dict is made only if
        someone reads it, and the fields are passed on by position (keywords packed into
        ``**fields`` and unpacked again cost three times the construction itself)."""
        if error is None:
            result = cls(success, data, None, error_type, execution_time, task_id=task_id,
                         traceback=traceback)
        else:
            result = cls(success, data, safe_str(error) or type(error).__name__,
                         error_type or type(error).__name__, execution_time, task_id=task_id,
                         traceback=traceback, exception=error)
        result._attempts, result._retries, result._worker = attempts, retries, worker
        return result

    def __setstate__(self, state: Any) -> None:
        """Unpickle, results pickled before ``memory_usage`` existed, or with their counts as
        one ``_counts`` tuple, included."""
        self.memory_usage, self._entry = 0.0, None
        self._attempts, self._retries, self._worker = None, 0, None
        if isinstance(state, tuple):
            state = {**(state[0] or {}), **(state[1] or {})}
        counts = state.pop("_counts", None) if state else None
        _set_slots(self, state)
        if counts is not None:
            self._attempts, self._retries, self._worker = counts

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        """Pickled (and copied) with its data read back if dropped, never with the budget."""
        state = {k: getattr(self, k) for k in self.__slots__
                 if k not in ("_data", "_entry") and hasattr(self, k)}
        state["data"] = self.read_data()
        return None, state

    @property
    def data(self) -> Any:
        """The task's return value. Under a memory budget (``core/memory_budget.py``) a
        large one may have been dropped from RAM: it is read back from the journal here,
        and counts as handed to user code (kept while user code holds it)."""
        entry = self._entry
        return self._data if entry is None else entry.read(True)

    @data.setter
    def data(self, value: Any) -> None:
        entry = self._entry
        if entry is not None:
            self._entry = None
            entry.forget()
        self._data = value

    def read_data(self) -> Any:
        """``data`` for the engine's own readers (a downstream task's upstream value): read
        back if dropped, but not counted as handed to user code."""
        entry = self._entry
        return self._data if entry is None else entry.read(False)

    def snapshot_data(self) -> Any:
        """Under the engine lock: the value, or a ``LazyData`` for a budgeted result (a
        snapshot must neither read back under the lock nor keep a dropped value alive)."""
        return self._data if self._entry is None else LazyData(self)

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self._metadata
        if meta is None:
            meta = self._metadata = {}
            if self._attempts is not None:
                meta["attempts"], meta["retries"] = self._attempts, self._retries
                if self._worker is not None:
                    meta["worker"] = self._worker
                self._attempts = self._worker = None
        return meta

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._metadata, self._attempts, self._worker = value, None, None

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS
                   if f != "exception")

    __hash__ = None  # type: ignore[assignment] - mutable, as the dataclass it replaces

    def __repr__(self) -> str:
        """Cheap and bounded: the data is shown as ``core.preview`` shows it (one line, at
        most 1,000 characters, within about 0.2 s), so a result whose ``__repr__`` hangs
        or raises cannot hang ``print(result)`` or a notebook displaying it."""
        data = self._data  # a result dropped by the memory budget is not read back for it
        data = "<dropped from memory: read back on access>" if data is DROPPED else \
            _preview(data, _REPR_LIMIT)
        shown = ", ".join(f"{f}={data}" if f == "data" else f"{f}={getattr(self, f)!r}"
                          for f in _RESULT_SHOWN)
        return f"TaskResult({shown})"

    def to_dict(self) -> dict[str, Any]:
        """The original's seven keys, then ``task_id``, ``traceback`` and ``logs`` when set.

        So a result built as the original's users build it gives exactly the
        original's dict, and ``from_dict(to_dict(r)) == r`` (``exception`` and
        ``displays``, live objects, are not carried).
        """
        data = {k: getattr(self, k) for k in self._ORIGINAL_KEYS}
        data["metadata"] = dict(data["metadata"])  # a copy, as the dataclass's asdict made
        for key in self._EXTRA_KEYS:
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        """Ours or the original's ``to_dict()``; an unknown key is a ``TypeError``."""
        return cls(**data)


#: ``TaskResult._data`` of a result dropped from RAM by the memory budget.
def safe_str(error: BaseException) -> str:
    """``str(error)``, or what can be said when its ``__str__`` itself raises (a task's own
    exception class with a bug): a failing message must never keep its task from ending."""
    try:
        return str(error)
    except Exception as exc:  # noqa: BLE001 - whatever the user's __str__ raised
        return f"<{type(error).__name__}: its message could not be made: {type(exc).__name__}>"


DROPPED: Any = type("Dropped", (), {"__repr__": lambda self: "<dropped>", "__slots__": ()})()


class LazyData:
    """A snapshot's ``data`` of a budgeted result: read (back) when the view is read."""

    __slots__ = ("result",)

    def __init__(self, result: TaskResult) -> None:
        self.result = result

    def get(self) -> Any:
        return self.result.data

    def __reduce__(self) -> tuple[Any, ...]:
        return _same, (self.get(),)


def _same(value: Any) -> Any:
    return value


_REPR_LIMIT = 1000  # characters of a result's data in its repr
_RESULT_SHOWN = ("task_id", "success", "data", "error_message", "error_type", "traceback",
                 "execution_time", "metadata")


def _set_slots(obj: Any, state: Any) -> None:
    """Restore pickled slot values (``(None, slots)`` or a plain dict)."""
    if isinstance(state, tuple):
        state = {**(state[0] or {}), **(state[1] or {})}
    for key, value in (state or {}).items():
        setattr(obj, key, value)
