"""A throwaway Dask cluster started from Dask's own command line, as a user would start one.

``dask scheduler`` (port chosen by the OS, address read from its scheduler file)
and ``dask worker ADDRESS --nthreads 1`` processes from this interpreter's bin
directory. Each is started in its own session so that its whole process group
(a worker's nanny and the worker it spawns) can be signalled by the leader's id;
everything is killed when the ``with`` block ends, whatever happened inside.
Belt and braces: the scheduler also exits on its own after 15 idle minutes and
the workers a minute after losing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cluster:
    address: str
    start_seconds: float
    pids: list[int] = field(default_factory=list)  # every process of the cluster, children too


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL whatever is left of it after a grace period."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # our own child's group: pgid == pid (new session)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)


def _wait_for_address(path: Path, proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with code {proc.returncode}")
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError):
            return json.loads(path.read_text())["address"]
        time.sleep(0.05)  # a one-off wait for another program's file
    raise TimeoutError(f"dask scheduler wrote no address in {timeout:.0f} s")


def _family(pid: int) -> list[int]:
    import psutil  # a dependency of distributed

    with contextlib.suppress(psutil.NoSuchProcess):
        return [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]
    return [pid]


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    import psutil

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [pid for pid in pids if running(pid)]


@contextlib.contextmanager
def dask_cli_cluster(workers: int = 2, timeout: float = 90.0) -> Iterator[Cluster]:
    from distributed import Client

    dask_cli = str(Path(sys.executable).parent / "dask")
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="codo-bench-dask-") as tmp:
        logs = Path(tmp)
        cluster = Cluster("", 0.0)
        try:
            began = time.perf_counter()
            file = logs / "scheduler.json"
            procs.append(_spawn([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                 "--no-dashboard", "--scheduler-file", str(file),
                                 "--idle-timeout", "900s"], logs / "scheduler.log"))
            cluster.address = _wait_for_address(file, procs[0], timeout)
            for k in range(workers):
                procs.append(_spawn([dask_cli, "worker", cluster.address, "--nthreads", "1",
                                     "--no-dashboard", "--death-timeout", "60",
                                     "--name", f"bench-{k}"], logs / f"worker-{k}.log"))
            with Client(cluster.address, timeout=timeout, set_as_default=False) as client:
                client.wait_for_workers(workers, timeout=timeout)
            cluster.start_seconds = time.perf_counter() - began
            cluster.pids = [pid for p in procs for pid in _family(p.pid)]
            yield cluster
        except BaseException:
            for log in sorted(logs.glob("*.log")):
                sys.stderr.write(f"--- {log.name}\n{log.read_text()[-2000:]}\n")
            raise
        finally:
            for proc in reversed(procs):
                _stop(proc)
