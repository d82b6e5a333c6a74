"""Sizes as users read and write them: decimal units everywhere (1 MB is 10**6 bytes).

``memory_limit="4GB"`` is 4 * 10**9 bytes, as disks and most tools count, so every
size the package prints (journal sizes, the size bound, spill files, peak memory in
the inspector, frames and logs) is written in the same units by ``size_text``: a
budget, a file and a peak then compare at a glance. ``UNITS`` is what a size given as
text may end with (the binary ``KiB``/``MiB``/``GiB`` too, for who wants them).
"""

from __future__ import annotations

__all__ = ["GB", "KB", "MB", "UNITS", "size_text"]

KB, MB, GB, TB = 1000, 1000**2, 1000**3, 1000**4

# suffix (upper case) -> bytes, for sizes given as text ("500MB", "2GiB")
UNITS = {"": 1, "B": 1, "K": KB, "KB": KB, "M": MB, "MB": MB, "G": GB, "GB": GB,
         "T": TB, "TB": TB, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}

_SCALES = (("TB", TB), ("GB", GB), ("MB", MB), ("KB", KB))


def size_text(count: float) -> str:
    """``count`` bytes in decimal units, as ``memory_limit`` reads them: ``"30 MB"``,
    ``"4.2 GB"``, ``"300 KB"``, ``"512 bytes"`` (one decimal, none when it is 0)."""
    if abs(count) < KB:
        return f"{count:,.0f} bytes"
    for unit, scale in _SCALES:  # the largest unit it is at least one of, once rounded
        if round(abs(count) / scale, 1) >= 1:  # (999,990 bytes: "1 MB", not "1,000 KB")
            return f"{count / scale:,.1f}".removesuffix(".0") + f" {unit}"
    return f"{count:,.0f} bytes"  # unreachable: KB rounds to at least 1
