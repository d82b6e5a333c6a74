"""The journal's signing key and MACs: never unpickle or unmarshal what we did not write.

A journal file can come from anywhere (committed to a repository by mistake, part of
a downloaded project), and restoring a result unpickles it, which can run arbitrary
code; fingerprints are deterministic, so a crafted file can always match one. Every
blob the journal stores therefore carries a MAC under a per-user secret key kept
outside the project, and nothing is unpickled or unmarshalled before its MAC verifies.

**The key** is 32 random bytes (``secrets``) in ``$XDG_CONFIG_HOME/codomyrmex-nb/
journal.key`` (``~/.config/...`` without XDG; ``%APPDATA%`` on Windows), or the file
named by ``CODOMYRMEX_JOURNAL_KEY_FILE``. It is created on first use, the folder 0700
and the file 0600, atomically (written aside, then hard-linked into place): two
processes racing both end up with the one key that won. A key file that cannot be
read or made raises ``KeyUnavailable`` with a one-line reason.

**The MAC** is keyed BLAKE2b (32 bytes) on a blob under 4 KB and HMAC-SHA256 on a
longer one, each the faster where it is used: on a small result BLAKE2b costs about
0.5 µs against 1-2.6 µs for HMAC-SHA256 (the journal's cost per task is counted in
microseconds), while on long blobs SHA-256 in hardware runs about twice as fast as
BLAKE2b (a packed commit of thousands of rows, a 100 MB DataFrame). Long blobs are
hashed in a worker thread or the writer thread, without the GIL. Each MAC is bound
to what the blob is (``person`` and a prefix separate the kinds): a result to its
task's fingerprint, a packed row to its run and kind, so a valid blob moved to
another row does not verify. The key's id (``Signer.key_id``, a keyed hash of
nothing: it reveals nothing of the key) is stored with each run, so that "written
with another key" is told apart from "damaged".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["KEY_ENV", "KeyUnavailable", "Signer", "key_path", "load_key", "process_key"]

KEY_ENV = "CODOMYRMEX_JOURNAL_KEY_FILE"
KEY_BYTES = 32
MAC_BYTES = 32
SHORT = 4096  # blobs shorter than this: keyed BLAKE2b; longer: HMAC-SHA256


class KeyUnavailable(OSError):
    """The journal key can be neither read nor created (the message says why)."""


def key_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the key lives: ``$CODOMYRMEX_JOURNAL_KEY_FILE``, else the user's config folder
    (``KeyUnavailable`` when there is no home folder to find it in)."""
    chosen = (environ.get(KEY_ENV) or "").strip()
    if chosen:
        return Path(chosen).expanduser()
    base = (environ.get("XDG_CONFIG_HOME") or "").strip()
    if not base or not os.path.isabs(base):
        appdata = environ.get("APPDATA") if os.name == "nt" else None
        base = appdata or os.path.join(os.path.expanduser("~"), ".config")
    if not os.path.isabs(base):  # no home folder: never a key inside the project
        raise KeyUnavailable(f"no home folder to keep the journal key in; set {KEY_ENV}")
    return Path(base) / "codomyrmex-nb" / "journal.key"


def load_key(path: Path | None = None) -> bytes:
    """The key in ``path`` (default ``key_path()``), created there on first use."""
    path = key_path() if path is None else path
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    except KeyUnavailable:
        raise
    except OSError as exc:
        raise KeyUnavailable(f"cannot read the journal key {path} ({exc.strerror or exc})") \
            from exc
    try:
        return _create(path)
    except KeyUnavailable:
        raise
    except OSError as exc:
        raise KeyUnavailable(f"cannot create the journal key {path} ({exc.strerror or exc})") \
            from exc


def _read(path: Path) -> bytes:
    for _ in range(100):
        with open(path, "rb") as file:
            key = file.read(KEY_BYTES + 1)
            info = os.fstat(file.fileno())
        if len(key) == KEY_BYTES:
            if info.st_mode & 0o077:  # a secret: owner-only, whatever it was given
                try:
                    os.chmod(path, 0o600)
                except OSError:
                    pass
            return key
        if len(key) > KEY_BYTES or time.time() - info.st_mtime > 2:
            break
        time.sleep(0.01)  # ok-sleep: another process is writing it (no hard links); no event
    raise KeyUnavailable(f"the journal key {path} is damaged ({len(key)} bytes, not "
                         f"{KEY_BYTES}); move it away to make a new one")


def _create(path: Path) -> bytes:
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.name == "codomyrmex-nb":
            os.chmod(folder, 0o700)
    elif folder.name == "codomyrmex-nb" and folder.stat().st_mode & 0o077:
        os.chmod(folder, 0o700)
    key = secrets.token_bytes(KEY_BYTES)
    temp = folder / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_durably(fd, key)
        try:
            os.link(temp, path)  # atomic, and never replaces a key another process made
        except FileExistsError:
            return _read(path)
        except OSError:  # no hard links on this file system: exclusive create instead
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return _read(path)
            _write_durably(fd, key)
        return key
    finally:
        try:
            os.unlink(temp)
        except OSError:
            pass


def _write_durably(fd: int, data: bytes) -> None:
    """Write ``data`` to the open file ``fd``, on disk before it is closed."""
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


class Signer:
    """MACs under one key, bound to what each blob is. Thread-safe: each MAC starts from
    a copy of a keyed state (cheaper than keying again). A blob under ``SHORT`` bytes
    gets keyed BLAKE2b, a longer one HMAC-SHA256 (see the module docstring)."""

    __slots__ = ("key_id", "_result", "_packed", "_result_long", "_packed_long")

    def __init__(self, key: bytes) -> None:
        self.key_id = hashlib.blake2b(key=key, digest_size=8, person=b"codo-key-id").hexdigest()
        self._result = hashlib.blake2b(key=key, digest_size=MAC_BYTES, person=b"codo-result-1")
        self._packed = hashlib.blake2b(key=key, digest_size=MAC_BYTES, person=b"codo-packed-1")
        self._result_long = hmac.new(key, b"codo-result-1\0", "sha256")
        self._packed_long = hmac.new(key, b"codo-packed-1\0", "sha256")

    def result(self, fingerprint: str, blob: bytes | memoryview) -> bytes:
        """The MAC of a result's bytes, bound to its task's fingerprint (a hex digest,
        so it ends at the NUL that follows it)."""
        mac = (self._result if len(blob) < SHORT else self._result_long).copy()
        mac.update((fingerprint + "\0").encode())
        mac.update(blob)
        return mac.digest()

    def result_file(self, fingerprint: str, file: BinaryIO, chunk: int = 2**20) -> bytes:
        """``result`` of a file's bytes from its current position, read in chunks (a
        result spilled to a file of its own is never whole in memory twice)."""
        size = os.fstat(file.fileno()).st_size - file.tell()
        mac = (self._result if size < SHORT else self._result_long).copy()
        mac.update((fingerprint + "\0").encode())
        while block := file.read(chunk):
            mac.update(block)
        return mac.digest()

    def packed(self, run_id: int, kind: str, blob: bytes | memoryview) -> bytes:
        """The MAC of a packed row, bound to its run and kind."""
        mac = (self._packed if len(blob) < SHORT else self._packed_long).copy()
        mac.update(f"{run_id}:{len(kind)}:{kind}".encode())
        mac.update(blob)
        return mac.digest()

    def result_ok(self, fingerprint: str, blob: bytes, mac: bytes | None) -> bool:
        """Does ``mac`` sign ``blob`` for ``fingerprint``? A blob or MAC of another kind (a
        row edited into text or a number) does not."""
        return _both_bytes(blob, mac) and isinstance(fingerprint, str) and \
            hmac.compare_digest(self.result(fingerprint, blob), mac)

    def packed_ok(self, run_id: int, kind: str, blob: bytes, mac: bytes | None) -> bool:
        """Does ``mac`` sign the packed row ``blob`` of run ``run_id`` and ``kind``?"""
        return _both_bytes(blob, mac) and hmac.compare_digest(self.packed(run_id, kind, blob),
                                                              mac)


def _both_bytes(blob: Any, mac: Any) -> bool:
    return isinstance(blob, bytes | memoryview) and isinstance(mac, bytes)


_process_keys: list[bytes] = []


def process_key() -> bytes:
    """A key of this process only, for when the user's key cannot be kept: what is
    written with it can be restored by this process alone."""
    if not _process_keys:
        _process_keys.append(secrets.token_bytes(KEY_BYTES))
    return _process_keys[0]
