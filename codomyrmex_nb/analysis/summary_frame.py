"""The one pattern behind the frames that display a summary of themselves.

``tasks_frame()`` (``TasksFrame``) and the magics' results, statistics and
bottlenecks (``notebook.display``) hold their data whole but show, in a
notebook, a shorter table with a caption saying so. What they share lives
here: anything derived from them (``frame[...]``, ``copy()``, ``set_index``)
is a plain DataFrame again, ``to_pandas()`` gives the whole frame, and the
caption sits under the table in the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd


class SummaryFrame(pd.DataFrame):
    """A DataFrame displayed as a summary of itself; derived frames are plain DataFrames."""

    @property
    def _constructor(self) -> Callable[..., pd.DataFrame]:
        return pd.DataFrame  # a derived frame shows every column it has, as pandas does

    def to_pandas(self) -> pd.DataFrame:
        """This frame as a plain DataFrame (displayed in full, as pandas does)."""
        return pd.DataFrame(self)


def captioned_html(table: str, caption: str) -> str:
    """``table`` with ``caption`` under it, small and muted."""
    return f"{table}<p style='font-size:smaller;opacity:.7'>{caption}</p>"


def captioned_text(table: str, caption: str) -> str:
    """``table`` with ``(caption)`` on the line under it."""
    return f"{table}\n({caption})"


__all__ = ["SummaryFrame", "captioned_html", "captioned_text"]
