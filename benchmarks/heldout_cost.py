"""What a held-out verification costs: building fresh instances (cold) against evaluating on a kept pool.

For each task the script builds ``--replicates`` fresh instances into a private pool (timed: the cold
cost a verification without a pool pays), then evaluates one detector on them sealed, as ``verify``
does, from the now-kept pool (timed: what each verification pays once a maintainer keeps a pool).
The pool lives in a private temporary folder and is removed at the end; the secret is never written.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/heldout_cost.py --tasks syn10-dd,syn100-dd,image-digits \\
          [--detector benchmarks/heldout_cost.py:Crowding] [--replicates 1] [--out benchmarks/results/heldout_cost.json]
Timings are indicative on a shared machine; quote them with the load noted.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import mmh_bench as mb
from mmh_bench.common.provenance import hardware, package_versions
from mmh_bench.evaluation.runner import evaluate
from mmh_bench.files import write_json
from mmh_bench.registry import resolve_tasks
from mmh_bench.task.fresh import fill_pool, fresh_pool

OUT = Path(__file__).parent / "results" / "heldout_cost.json"


class Crowding(mb.Detector):
    """The detector of docs/SUBMITTING.md: a stand-in submission (samples only, one k-d tree)."""

    name = "crowding"
    access = mb.Access.SAMPLES

    def fit(self, ctx: mb.Context) -> None:
        from scipy.spatial import cKDTree
        self.tree_ = cKDTree(ctx.samples.x.reshape(len(ctx.samples), -1))

    def score(self, batch: mb.Batch, ctx: mb.Context) -> np.ndarray:
        d, _ = self.tree_.query(batch.x.reshape(len(batch), -1), k=2)
        return -d[:, 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="syn10-dd,syn100-dd,image-digits")
    p.add_argument("--detector", default=f"{Path(__file__).resolve()}:Crowding")
    p.add_argument("--replicates", type=int, default=1)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    with fresh_pool(None, args.replicates) as pool, tempfile.TemporaryDirectory(prefix="mmh-heldout-cost-") as tmp:
        for spec in resolve_tasks(args.tasks):
            t0 = time.perf_counter()
            fill_pool([spec], pool, progress=False)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            rep = evaluate([spec], args.detector, Path(tmp) / spec.name, isolation="sealed", instances=pool,
                           progress=False, force=True)
            evaluate_s = time.perf_counter() - t0
            rows.append({"task": spec.name, "replicates": args.replicates, "build_s": round(build, 1),
                         "evaluate_s": round(evaluate_s, 1), "results": len(rep.ran), "failed": len(rep.failed)})
            print(json.dumps(rows[-1]), flush=True)
    write_json(Path(args.out), {"what": "fresh (held-out) instances: build once (cold) vs evaluate from a kept pool",
                                "threads": os.environ.get("OMP_NUM_THREADS"), "detector": args.detector.rsplit(":", 1)[-1],
                                "hardware": hardware(), "packages": package_versions(), "rows": rows,
                                "load_note": "shared 2-core machine, two other engineers' jobs running: indicative"})


if __name__ == "__main__":
    main()
