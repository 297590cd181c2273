"""Public beside held-out for every detector of a task, from two results folders.

``--public`` holds results on the published test instances (the board's store), ``--heldout`` the
results of ``mmh-bench run --instances fresh`` on the same task; for each detector the script
prints the headline metric's public mean, held-out mean ± sd and the gap, flagged by the board's
own rule (:func:`mmh_bench.leaderboard.heldout.compare`), and writes them as JSON.

Run:  .venv/bin/python benchmarks/heldout_gap.py --task syn10-dd --heldout /tmp/fresh-results \\
          [--public leaderboard/results] [--out benchmarks/results/heldout_gap_syn10-dd.json]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from tabulate import tabulate

from mmh_bench.files import write_json
from mmh_bench.leaderboard.heldout import HEADLINE, HIGHER_IS_BETTER, compare, headline


def values(folder: Path, task: str, kind: str) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = defaultdict(list)
    for path in sorted((folder / task).rglob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("instance", {}).get("kind") == kind:
            out[doc["detector"]].append(headline(doc))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True)
    p.add_argument("--heldout", required=True, help="results of `mmh-bench run --instances fresh`")
    p.add_argument("--public", default="leaderboard/results")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    pub, held = values(Path(args.public), args.task, "test"), values(Path(args.heldout), args.task, "fresh")
    track = "lid" if args.task.startswith("lid-") else "memorization"
    higher = HIGHER_IS_BETTER[HEADLINE[track]]
    rows = {d: compare(pub.get(d, []), held[d], higher_is_better=higher) for d in sorted(held)}
    print(tabulate([[d, c["public_mean"], c["heldout_mean"], c["heldout_sd"], c["gap"], c["tolerance"],
                     "FLAGGED" if c["flagged"] else ""] for d, c in rows.items()],
                   headers=["detector", "public", "held out", "sd", "gap", "tolerance", ""]))
    if args.out:
        write_json(Path(args.out), {"task": args.task, "metric": HEADLINE[track], "detectors": rows})


if __name__ == "__main__":
    main()
