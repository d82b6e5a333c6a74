"""Declared inputs the code cannot show: files a task reads and environment variables.

``watch=["data.csv", "env:API_URL"]`` on a task puts, into its fingerprint, the
content hash of each file (sha256, cached per path, size and ``mtime_ns``: an
unchanged file is never read twice) and the value of each variable. A missing
file hashes as "missing" and an unset variable as "unset": the task stays
restorable, and a result computed while the file was missing is not given back
once it exists (nor the other way round). A relative path is taken from the
current folder when the fingerprint is made; the spec as written, not the
absolute path, enters the fingerprint, so a moved project keeps its cache. A
directory cannot be watched (watch its files): such a task is not restorable.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable

from .fingerprint import Unhashable

__all__ = ["watch_digest"]

ENV_PREFIX = "env:"  # (Task validation, model.check_watch, spells it too)
_CHUNK = 1 << 20
_files: dict[tuple[str, int, int], str] = {}  # (real path, size, mtime_ns) -> sha256 hex
_files_lock = threading.Lock()


def _file_digest(path: str) -> str:
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:
        raise Unhashable(f"watched file {path!r} cannot be read ({exc})") from None
    if not os.path.isfile(real):
        raise Unhashable(f"watched path {path!r} is not a file: watch the files in it")
    key = (real, st.st_size, st.st_mtime_ns)
    digest = _files.get(key)
    if digest is None:
        h = hashlib.sha256()
        try:
            with open(real, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    h.update(chunk)
        except OSError as exc:
            raise Unhashable(f"watched file {path!r} cannot be read ({exc})") from None
        digest = h.hexdigest()
        with _files_lock:
            if len(_files) > 10_000:
                _files.clear()
            _files[key] = digest
    return digest


def watch_digest(specs: Iterable[str]) -> str:
    """One sha256 hex over every watched file's content and variable's value (sorted).
    Raises ``Unhashable`` for a directory or an unreadable file."""
    h = hashlib.sha256(b"codomyrmex-watch-1;")
    for spec in sorted(set(specs)):
        if spec.startswith(ENV_PREFIX):
            value = os.environ.get(spec[len(ENV_PREFIX):])
            part = "unset" if value is None else "=" + value
        else:
            part = _file_digest(spec)
        h.update(f"{len(spec)}:{spec};{len(part)}:{part};".encode("utf-8", "surrogatepass"))
    return h.hexdigest()
