"""Maintainers: make every published instance's C_T recomputable from its published arrays.

    python benchmarks/restamp_ct.py [--instances leaderboard/instances] [--results leaderboard/results]

Instances published before C_T's k-means cells were seeded from the published rows had them seeded
from the (secret) instance seed, so nobody could recompute the board's C_T from what is published
(issue 26). This recomputes each published instance's C_T from its own published arrays
(``mmh_bench.task.publish.restamp_copying``), reseals its record, and writes the new value into the
``task_stats`` of every result measured on that instance (same data hash). Samples, labels and every
detector metric are untouched. Prints one line per instance: old and new C_T.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmh_bench.files import write_json
from mmh_bench.leaderboard.schema import validate_result
from mmh_bench.task.publish import INSTANCE_FILE, restamp_copying


def restamp_results(results: Path, task: str, data_hash: str, copying: dict) -> int:
    """Write the instance's C_T into the task_stats of its results; return how many changed."""
    changed = 0
    for path in sorted((results / task).glob(f"*/*-{data_hash[:12]}/*.json")):
        doc = json.loads(path.read_text())
        stats = doc.get("task_stats") or {}
        new = {**stats, "data_copying_ct": copying["ct"], "ct_cells_used": copying["n_cells_used"],
               "n_heldout": copying["n_heldout"]}
        if doc.get("instance", {}).get("data_hash") != data_hash or new == stats:
            continue
        doc["task_stats"] = new
        validate_result(doc)
        write_json(path, doc)
        changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--instances", type=Path, default=Path("leaderboard/instances"))
    p.add_argument("--results", type=Path, default=Path("leaderboard/results"))
    args = p.parse_args(argv)
    for folder in sorted(f for f in args.instances.glob("*/*") if (f / INSTANCE_FILE).is_file()):
        old, new = restamp_copying(folder)
        if new is None:
            continue
        body = json.loads((folder / INSTANCE_FILE).read_text())
        n = restamp_results(args.results, body["task"], body["data_hash"], new)
        print(f"{folder}: C_T {old['ct'] if old else None} -> {new['ct']} ({n} results updated)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
