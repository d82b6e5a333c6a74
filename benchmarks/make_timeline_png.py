"""Regenerate ``notebooks/img/timeline.png``, the README's timeline picture.

A small ETL-like workflow on 2 workers, so the picture shows every feature:
dependencies (and the critical path through them), a task that fails once and
is retried, two tasks queuing for one exclusive database connection, and a
task that waits for a free worker.

    python benchmarks/make_timeline_png.py [--out notebooks/img/timeline.png]
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from codomyrmex_nb import ResourceType, TaskOrchestrator, TaskResource

ROOT = Path(__file__).resolve().parent.parent


def work(seconds: float, fail_first: int = 0):  # noqa: ANN201 - a task body
    """A task body that takes ``seconds`` and fails its first ``fail_first`` attempts."""
    calls = {"n": 0}

    def run() -> str:
        calls["n"] += 1
        threading.Event().wait(seconds)
        if calls["n"] <= fail_first:
            raise ConnectionError("upstream API returned 503")
        return f"done in {seconds:.2f}s"

    return run


def build(orch: TaskOrchestrator) -> None:
    db = [TaskResource(ResourceType.DATABASE, "warehouse", mode="exclusive")]
    extract_a = orch.create_task("extract_orders", func=work(0.6), priority="high")
    extract_b = orch.create_task("extract_users", func=work(0.35, fail_first=1), max_retries=2,
                                 retry_delay=0.15)
    clean = orch.create_task("clean", func=work(0.5), dependencies=[extract_a, extract_b])
    orch.create_task("load_orders", func=work(0.45), dependencies=[clean], resources=db)
    orch.create_task("load_users", func=work(0.6), dependencies=[extract_b], resources=db)
    orch.create_task("fetch_logs", func=work(0.4), priority="low")
    orch.create_task("profile", func=work(0.25), dependencies=[extract_a])
    features = orch.create_task("features", func=work(0.4), dependencies=[clean])
    orch.create_task("report", func=work(0.3), dependencies=[features, "load_orders"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "notebooks" / "img" / "timeline.png")
    args = parser.parse_args()
    orch = TaskOrchestrator(max_workers=2)
    build(orch)
    orch.start_execution()
    try:
        if not orch.wait_for_completion(60):
            raise SystemExit("the workflow did not finish cleanly:\n" + repr(orch))
    finally:
        orch.stop_execution()
    fig = orch.timeline()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")
    print(orch.bottlenecks().to_string())


if __name__ == "__main__":
    main()
