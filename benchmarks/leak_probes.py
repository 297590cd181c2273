"""The hostile leak probes of tests/test_sealed.py, sealed, on every default memorization task.

Each probe tries one route to the labels other than detecting (row order, condition values, the
garbage collector, private attributes, files under the build cache and leaderboard, rebuilding the
task through the library). Sealed, each must score at chance or fail; the table says which.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/leak_probes.py [--tasks suite:default]

Writes benchmarks/results/leak_probes.json (AUROC with its 95% interval, or the failure).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tabulate import tabulate

from mmh_bench.evaluation.runner import evaluate

PROBES = ["IndexLeak", "CondLeak", "GcLeak", "PrivateLeak", "FileLeak", "RebuildLeak(spec='mmh-toy')"]
HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="suite:default")
    p.add_argument("--out", type=Path, default=HERE / "results" / "leak_probes.json")
    args = p.parse_args()
    source = HERE.parent / "tests" / "test_sealed.py"
    refs = [f"{source}:{probe}" for probe in PROBES]
    with tempfile.TemporaryDirectory() as results:
        evaluate(args.tasks, refs, results, isolation="sealed", progress=False)
        rows = []
        for path in sorted(Path(results).rglob("*.json")):
            doc = json.loads(path.read_text())
            m = doc.get("metrics") or {}
            rows.append({"task": doc["task"], "instance": doc["instance"]["id"], "probe": doc["detector"],
                         "status": doc["status"], "auroc": m.get("auroc"), "auroc_ci": m.get("auroc_ci"),
                         "isolation": doc.get("isolation"), "error": (doc.get("error") or "")[:120]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(tabulate([[r["task"], r["probe"], r["status"],
                     "" if r["auroc"] is None else f"{r['auroc']:.3f} [{r['auroc_ci'][0]:.3f}, {r['auroc_ci'][1]:.3f}]"
                     if r["auroc_ci"] else r["auroc"], r["error"][:60]] for r in rows],
                   headers=["task", "probe", "status", "AUROC [95% CI]", "error"]))


if __name__ == "__main__":
    main()
