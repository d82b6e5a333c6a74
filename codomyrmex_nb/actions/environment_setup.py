"""``check_environment``: can this machine run the orchestrator, and what is missing?

A first task in a pipeline, so that a broken setup shows up as one readable
report instead of as odd failures later. ``ok`` is False only when something the
engine needs is missing (a supported Python, a required package); the ``dot``
program and the Dask extra are optional and only produce ``warnings``, because
the engine keeps working without them.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Any

__all__ = ["check_environment"]

MIN_PYTHON = (3, 11)
REQUIRED_PACKAGES = ("pandas", "matplotlib", "graphviz", "ipywidgets", "cloudpickle",
                     "nest_asyncio")
_DASK_HINT = "pip install 'codomyrmex-nb[dask]' (needed for executor='dask')"
OPTIONAL_PACKAGES = {"dask": _DASK_HINT, "distributed": _DASK_HINT}
KEY_PACKAGES = REQUIRED_PACKAGES + tuple(OPTIONAL_PACKAGES)
DOT_HINT = "apt install graphviz (or conda install graphviz, brew install graphviz)"


def check_environment() -> dict[str, Any]:
    """Report Python, platform, CPUs, memory, ``dot`` and package versions; ``ok``, ``warnings``."""
    warnings: list[str] = []
    ok = sys.version_info[:2] >= MIN_PYTHON
    if not ok:
        warnings.append(f"Python {platform.python_version()} is too old: "
                        f"codomyrmex-nb needs {'.'.join(map(str, MIN_PYTHON))} or newer")

    packages = _package_versions(KEY_PACKAGES)
    for name, version in packages.items():
        if version is not None:
            continue
        if name in OPTIONAL_PACKAGES:
            warnings.append(f"{name} not installed (optional): {OPTIONAL_PACKAGES[name]}")
        else:
            ok = False
            warnings.append(f"{name} not installed (required): pip install {name}")

    dot_path, dot_version = _dot()
    if dot_path is None:
        warnings.append(f"dot not found: {DOT_HINT}; the DAG view falls back to text")

    total, available = _memory()
    return {
        "ok": ok,
        "warnings": warnings,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": _usable_cpus(),
        "memory_total_bytes": total,
        "memory_available_bytes": available,
        "dot_path": dot_path,
        "dot_version": dot_version,
        "packages": packages,
    }


def _package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed distribution versions (``None`` when missing), without importing them."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _usable_cpus() -> int | None:
    """CPUs this process may run on (cgroup/affinity aware where the OS says so)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _memory() -> tuple[int | None, int | None]:
    """(total, available) bytes from /proc/meminfo, else ``os.sysconf``; ``None`` if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = dict(_meminfo_line(line) for line in f if ":" in line)
        total, available = info.get("MemTotal"), info.get("MemAvailable", info.get("MemFree"))
        if total is not None:
            return total, available
    except (OSError, ValueError):
        pass
    return _sysconf_bytes("SC_PHYS_PAGES"), _sysconf_bytes("SC_AVPHYS_PAGES")


def _meminfo_line(line: str) -> tuple[str, int]:
    key, _, rest = line.partition(":")
    parts = rest.split()
    scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
    return key.strip(), int(parts[0]) * scale


def _sysconf_bytes(pages_name: str) -> int | None:
    try:
        pages, size = os.sysconf(pages_name), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def _dot() -> tuple[str | None, str | None]:
    """Where the graphviz ``dot`` program is, and its version (``dot -V`` prints to stderr)."""
    path = shutil.which("dot")
    if path is None:
        return None, None
    try:
        proc = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return path, None
    match = re.search(r"version\s+(\S+)", proc.stderr + proc.stdout)
    return path, match.group(1) if match else None
