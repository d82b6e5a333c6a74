"""User code or library: what a fingerprint hashes by its code, and what by its name.

User code is ``__main__``, a notebook, and any module outside the standard library
and site-packages, or installed editable (the user's own code, being worked on): its
functions, classes and module attributes count by value. Installed packages count by
name and distribution version; the standard library by name (the interpreter's
version is in every fingerprint). Decided by file location, then metadata, once per
module.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from typing import Any

from .reach import distribution, is_editable


@functools.cache
def _library_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(standard library folders, site-packages folders), each ending with a separator."""
    stdlib: set[str] = set()
    site_dirs: set[str] = set()
    schemes = [sysconfig.get_paths(),
               sysconfig.get_paths(vars={"base": sys.base_prefix,
                                         "platbase": sys.base_exec_prefix})]
    for paths in schemes:
        for key, into in (("stdlib", stdlib), ("platstdlib", stdlib), ("purelib", site_dirs),
                          ("platlib", site_dirs)):
            if paths.get(key):
                into.add(os.path.realpath(paths[key]))
    try:
        import site
        site_dirs.update(os.path.realpath(p) for p in site.getsitepackages())
        site_dirs.add(os.path.realpath(site.getusersitepackages()))
    except (AttributeError, OSError):  # some embedded interpreters lack these
        pass
    return (tuple(d.rstrip(os.sep) + os.sep for d in stdlib),
            tuple(d.rstrip(os.sep) + os.sep for d in site_dirs))


_library_modules: dict[str, bool] = {}


def _is_library_module(name: str | None) -> bool:
    """True for the standard library, built-in modules and installed packages; False for
    user code: ``__main__``, a notebook, a module outside those folders, or one whose
    distribution is installed editable (decided by file location, then metadata)."""
    if not name or name == "__main__":
        return False
    known = _library_modules.get(name)
    if known is not None:
        return known
    module = sys.modules.get(name)
    if module is None:
        return False  # not imported (a dynamic module): user code, and not remembered
    file = getattr(module, "__file__", None)
    if file:
        answer = _library_file(file, name)
    else:
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        answer = name in sys.builtin_module_names or origin in ("built-in", "frozen")
    if len(_library_modules) < 10_000:
        _library_modules[name] = answer
    return answer


def _library_file(file: str, name: str) -> bool:
    """Is ``file`` (module ``name``'s) in the standard library or an installed package
    (one not installed editable: that is the user's own code, being worked on)?"""
    real = os.path.realpath(file)
    stdlib, site_dirs = _library_dirs()
    if real.startswith(site_dirs):  # (inside the standard library's folder, often)
        return not is_editable(name.partition(".")[0])
    return real.startswith(stdlib)


def _library_version(name: str | None) -> str:
    """``dist==version`` of an installed package's module ("" for the standard library,
    whose version is the interpreter's, already in every fingerprint)."""
    return distribution(name.partition(".")[0]) or "" if name else ""


def _by_reference(obj: Any) -> bool:
    """A library function or class that pickle would find by name: hash the name only."""
    qualname = getattr(obj, "__qualname__", "") or ""
    return "<" not in qualname and _is_library_module(getattr(obj, "__module__", None))
