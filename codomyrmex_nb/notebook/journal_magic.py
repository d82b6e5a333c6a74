"""``%codo_journal``'s work once its line is parsed: check the options together, remove what was
asked (or say what would go), then show the journal's runs and sizes. The magic itself (its
options and help) stays in ``look_magics`` with the others that look at a run."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from ..core.journal_upkeep import parse_age
from ..orchestrator import TaskOrchestrator

_USAGE = (" (usage: %codo_journal [--prune [--keep-runs N] [--older-than AGE] | "
          "--clear-cache [NAME]] [--dry-run])")


def run(orchestrator: Callable[[], TaskOrchestrator], args: argparse.Namespace) -> Any:
    """Checks ``args`` (a clear UsageError, nothing removed, when they do not go together),
    prunes or clears if asked, prints the totals and returns one row per run (None while
    the journal is off). ``orchestrator`` is asked for only once ``args`` are good."""
    clearing = args.clear_cache is not None
    if (args.keep_runs is not None or args.older_than is not None) and not args.prune:
        raise UsageError("%codo_journal: --keep-runs and --older-than go with --prune" + _USAGE)
    if args.prune and clearing:
        raise UsageError("%codo_journal: give --prune or --clear-cache, not both" + _USAGE)
    if args.prune and args.keep_runs is None and args.older_than is None:
        raise UsageError("%codo_journal: --prune needs --keep-runs N and/or --older-than "
                         "AGE" + _USAGE)
    if args.dry_run and not (args.prune or clearing):
        raise UsageError("%codo_journal: --dry-run goes with --prune or --clear-cache" + _USAGE)
    if args.keep_runs is not None and args.keep_runs < 0:
        raise UsageError(f"%codo_journal: --keep-runs must be >= 0, got {args.keep_runs}")
    if args.older_than is not None:
        try:
            parse_age(args.older_than)
        except ValueError as exc:
            raise UsageError(f"%codo_journal: --older-than: {exc}") from None
    orch = orchestrator()
    if orch.journal_path is None:
        print("codo_journal: the run journal is off (%codo_run --journal on turns it on)")
        return None
    removal = None
    if args.prune:
        removal = orch.prune_journal(args.keep_runs, args.older_than, args.dry_run)
    elif clearing:
        removal = orch.clear_journal_cache(args.clear_cache or None, args.dry_run)
    if removal is not None:  # --clear-cache: removed ... (or: nothing to clear)
        print(f"codo_journal --{removal.summary()}")
    info = orch.journal_info()
    if info is None:
        return None
    print(f"codo_journal: {info.summary()}")
    return info.frame()
