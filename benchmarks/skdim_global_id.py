"""Global ID of the k-NN estimators on scikit-dimension's 24 BenchmarkManifolds, beside the published MPE.

    OMP_NUM_THREADS=1 python benchmarks/skdim_global_id.py --n 2500 --replicates 20
    python benchmarks/skdim_global_id.py --methods ess --replicates 5   # ESS is the slow one

Replicate r draws ``BenchmarkManifolds(random_state=r).generate("all", n=N)``; every estimator is
scikit-dimension's default global fit (``mmh_bench.evaluation.global_id``). Writes
``OUT/<method>.json`` (every estimate, per-replicate MPE, seconds) and ``OUT/summary.md``: the
measured MPE per estimator next to the reported rows shipped in
``mmh_bench/leaderboard/reported/lid_benchmarks.toml`` (read from there, never typed here), plus the
per-manifold mean estimates. ``--summarize`` only re-reads OUT.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from mmh_bench.evaluation.global_id import GLOBAL_METHODS, percentage_error, run_benchmark
from mmh_bench.leaderboard.reported import load_reported

OUT = Path(__file__).parent / "results" / "skdim_global_id"
NAMES = {"twonn": "TwoNN", "mle": "MLE", "ess": "ESS", "lpca": "lPCA"}
PARAMS = {"twonn": "all points, discard_fraction 0.1", "mle": "k = 20, harmonic mean (comb='mle')",
          "ess": "k = 100, version 'a', mean", "lpca": "whole cloud, Fukunaga-Olsen alpha 0.05"}


def summarize(out: Path) -> str:
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    reported = {r.detector: r for r in load_reported() if r.metrics.mpe is not None}
    lines = ["# Global ID on scikit-dimension's 24 BenchmarkManifolds", "",
             "Measured by `benchmarks/skdim_global_id.py` (single-threaded, on a shared 2-core CPU). "
             "MPE = mean over manifolds and replicates of 100 |d_hat - d| / d; the spread is the standard "
             "deviation of the per-replicate MPE. Reported rows are quoted from the source named below, "
             "under its own protocol, and are not ranked with the measured ones.", "",
             "| estimator | parameters (scikit-dimension defaults) | N | replicates | measured MPE (%) | "
             "spread | seconds (all fits) |", "|---|---|---|---|---|---|---|"]
    for m in GLOBAL_METHODS:
        if m not in runs:
            continue
        r = runs[m]
        per = r["mpe_per_replicate"][m]
        lines.append(f"| {NAMES[m]} | {PARAMS[m]} | {r['n']} | {len(r['seeds'])} | {r['mpe'][m]:.2f} | "
                     f"{np.std(per):.2f} | {r['seconds'][m]:.0f} |")
    lines += ["", "Reported, not re-measured:", "", "| estimator | reported MPE (%) | setting |", "|---|---|---|"]
    for m in GLOBAL_METHODS:
        if m in reported:
            lines.append(f"| {reported[m].method} | {reported[m].metrics.mpe:.2f} | {reported[m].setting} |")
    srcs = {r.source: r.protocol for r in reported.values()}
    for src, proto in srcs.items():
        lines += ["", f"Source: {src}.", "", f"How the protocols differ: {proto}"]
    if runs:
        names = list(next(iter(runs.values()))["truth"])
        lines += ["", "Mean estimate per manifold (over replicates):", "",
                  "| manifold | true ID | " + " | ".join(NAMES[m] for m in GLOBAL_METHODS if m in runs) + " |",
                  "|---|---|" + "---|" * sum(m in runs for m in GLOBAL_METHODS)]
        for name in names:
            d = next(iter(runs.values()))["truth"][name]
            cells = []
            for m in GLOBAL_METHODS:
                if m in runs:
                    v = float(np.mean(runs[m]["estimates"][m][name]))
                    cells.append(f"{v:.2f} ({percentage_error(v, d):.0f}%)")
            lines.append(f"| {name} | {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(GLOBAL_METHODS))
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--summarize", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        for m in methods:  # one file per method, so a slow estimator can run with fewer replicates
            run = run_benchmark([m], n=args.n, seeds=list(range(args.replicates)),
                                progress=lambda s: print(s, file=sys.stderr, flush=True))
            doc = run.to_dict()
            doc["machine"] = f"{platform.processor() or platform.machine()}, 1 thread (shared 2-core host)"
            (args.out / f"{m}.json").write_text(json.dumps(doc, indent=1))
    text = summarize(args.out)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
