"""What sealing costs: seconds per (task, detector) evaluated sealed against in-process.

For each pair the script times ``evaluate_pair`` end to end (wall seconds, best of ``--repeats``)
in-process and sealed (bubblewrap sandbox when it works, else a plain worker process), and the
detector's own scoring seconds that each mode reports; the difference is the price of the seal:
worker start-up (Python, torch, the detector's imports), writing the view, loading the model and
rebuilding the training index in the worker. Tasks are built (or loaded from the cache) first and
not timed.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sealed_cost.py --tasks mmh-toy,syn10-dd \\
          --detectors random,flipd,nn-ratio [--repeats 3] [--out benchmarks/results/sealed_cost.json]
Quick try on the machinery task:  ... --tasks tests/data/tiny.toml --repeats 1
Quote it from a quiet machine: start-up time grows with the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from mmh_bench.evaluation import metrics
from mmh_bench.task.build import build_task
from mmh_bench.common.provenance import hardware, package_versions
from mmh_bench.registry import make_detector, resolve_tasks
from mmh_bench.evaluation.detection import DetectionTrack
from mmh_bench.evaluation.runner import evaluate_pair
from mmh_bench.evaluation.sealed import isolation_mode

OUT = Path(__file__).parent / "results" / "sealed_cost.json"


def time_pair(inst: Any, name: str, isolation: str, repeats: int) -> dict[str, Any]:
    best: dict[str, Any] = {"wall_s": float("inf")}
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = evaluate_pair(inst, make_detector(name), isolation=isolation)
        wall = time.perf_counter() - t0
        if res.status != "ok":
            return {"status": "failed", "error": res.error, "isolation": res.isolation}
        if wall < best["wall_s"]:
            best = {"wall_s": round(wall, 3), "scoring_s": res.cost.seconds,
                    "auroc": res.metrics.auroc if res.track == "memorization" else None, "isolation": res.isolation, "status": "ok"}
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", required=True, help="comma-separated task names or .toml paths")
    p.add_argument("--detectors", default="random,flipd,nn-ratio", help="comma-separated registered names")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    metrics.bootstrap_auroc_ci = lambda *a, **k: None  # the same in both modes; not what is measured
    rows, table = [], []
    for spec in resolve_tasks(args.tasks):
        inst = build_task(spec, progress=False)
        for name in [d.strip() for d in args.detectors.split(",") if d.strip()]:
            why = DetectionTrack().why_not(make_detector(name), inst)
            if why:
                print(f"skip {name} on {spec.name}: {why}")
                continue
            inside = time_pair(inst, name, "in-process", args.repeats)
            sealed = time_pair(inst, name, "sealed", args.repeats)
            row = {"task": spec.name, "detector": name, "n_samples": int(len(inst.samples)),
                   "in_process": inside, "sealed": sealed}
            if inside["status"] == sealed["status"] == "ok":
                row["overhead_s"] = round(sealed["wall_s"] - inside["wall_s"], 3)
                row["same_auroc"] = inside["auroc"] == sealed["auroc"]
            rows.append(row)
            table.append([spec.name, name, inside.get("wall_s"), sealed.get("wall_s"), row.get("overhead_s"),
                          sealed.get("isolation"), row.get("same_auroc")])
    print(tabulate(table, headers=["task", "detector", "in-process s", "sealed s", "overhead s", "isolation",
                                   "same AUROC"]))
    doc = {"what": "wall seconds per (task, detector), best of repeats: in-process vs sealed",
           "isolation": isolation_mode(), "repeats": args.repeats, "hardware": hardware(),
           "packages": package_versions(), "load_avg": os.getloadavg(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
