"""``mmh-bench tasks``: list the task specs the registry finds."""
from __future__ import annotations

import argparse
from typing import Any

from .options import add_options, print_listing


def _cmd_tasks(args: argparse.Namespace) -> int:
    from mmh_bench.registry import all_tasks
    rows = []
    for spec in all_tasks().values():
        rows.append({"name": spec.name, "family": spec.family, "track": spec.track,
                     "version": spec.version, "dim": getattr(spec.model.data, "dim", None),
                     "conditional": spec.conditional,
                     "suites": list(spec.suites), "hash": spec.hash, "description": spec.description})
    return print_listing(rows, args.json, [[r["name"], r["family"], r["track"], r["version"], r["dim"],
                                             "yes" if r["conditional"] else "", ",".join(r["suites"])] for r in rows],
                         ["task", "family", "track", "version", "dim", "conditional", "suites"])


def register(sub: Any) -> None:
    s = sub.add_parser("tasks", help="list the available tasks",
                       description="List every task spec the registry finds (shipped tasks/ and MMH_BENCH_TASKS_PATH).")
    add_options(s, "json")
    s.set_defaults(func=_cmd_tasks)
