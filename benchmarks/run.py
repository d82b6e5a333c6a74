"""The benchmark suite: one command, every part, results.json and the README tables.

    python benchmarks/run.py                  # everything (what `make bench` runs)
    python benchmarks/run.py --quick          # small sizes only, a few minutes
    python benchmarks/run.py --only quality   # one part (comma-separated for several)

Parts: overhead (per-task cost against dask and a bare floor), quality
(makespan against a lower bound), memory (bytes per task; peak RSS of a
pipeline of large results with and without a memory budget), view (throughput
with the live view), executors (CPU-bound work on each executor), journal
(throughput with the run journal on against off), fingerprint (cache=True tasks
whose fingerprints hash module attributes and a big global list), map (100,000
no-op items of one mapped task against dask; bytes per pending item). Each part
is a module with ``run(settings, log) -> dict`` and ``table(result) -> str``.
Progress goes to stderr, the tables to stdout at the end. A part that fails
is reported and left out of the files; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
import traceback
from pathlib import Path

import cpu_executors
import fingerprint_cost
import journal_cost
import map_cost
import memory
import overhead
import quality
import report
import view_cost
from common import Settings, environment

PARTS = {"overhead": overhead, "quality": quality, "memory": memory, "view": view_cost,
         "executors": cpu_executors, "journal": journal_cost, "fingerprint": fingerprint_cost,
         "map": map_cost}
HERE = Path(__file__).resolve().parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes only")
    p.add_argument("--only", help=f"comma-separated parts: {', '.join(PARTS)}")
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    p.add_argument("--readme", default=str(HERE / "README.md"),
                   help="README whose tables are rewritten ('none' to skip)")
    p.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")),
                   help="overhead sizes, e.g. 1000,10000")
    for name, kind in (("repeat", int), ("budget", float), ("seeds", int),
                       ("memory-tasks", int), ("pipeline-tasks", int), ("pipeline-mb", int),
                       ("pipeline-budget-mb", int), ("view-tasks", int), ("view-rounds", int),
                       ("cpu-seconds", float), ("cpu-rounds", int), ("journal-tasks", int),
                       ("journal-rounds", int), ("fingerprint-tasks", int),
                       ("fingerprint-rounds", int), ("map-items", int), ("map-rounds", int)):
        p.add_argument(f"--{name}", type=kind)
    args = p.parse_args(argv)
    parts = args.only.split(",") if args.only else list(PARTS)
    unknown = [name for name in parts if name not in PARTS]
    if unknown:
        p.error(f"unknown part {', '.join(unknown)}: use {', '.join(PARTS)}")
    args.parts = parts
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.quick() if args.quick else Settings()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
                 if getattr(args, f.name, None) is not None}
    return dataclasses.replace(settings, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings = settings_from(args)
    log = functools.partial(print, file=sys.stderr, flush=True)
    results, failed = report.load(args.out), []
    for name in args.parts:
        log(f"== {name}")
        meta, began = environment(), time.perf_counter()  # engine commit as the part starts
        try:
            result = PARTS[name].run(settings, log)
        except Exception:  # noqa: BLE001 - report it, run the other parts
            traceback.print_exc()
            failed.append(name)
            continue
        meta |= {"seconds": time.perf_counter() - began, "settings": dataclasses.asdict(settings)}
        results[name] = {"meta": meta, **result}
        report.save(args.out, results)  # after every part: a crash later loses nothing
    blocks = report.render(results, {name: module.table for name, module in PARTS.items()})
    if args.readme != "none":
        report.update_readme(Path(args.readme), blocks)
    for name in args.parts:
        if name in blocks and name not in failed:
            print(f"\n## {name}\n\n{blocks[name]}")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
