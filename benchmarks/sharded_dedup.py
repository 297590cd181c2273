"""Duplicate groups of the planted 1M-row set, one machine against the cell search sharded on a
local Dask cluster (``mmh_bench.retrieval.sharded``): the groups must be identical.

    .venv/bin/python benchmarks/sharded_dedup.py                  # 1M clustered rows, d=512 (quiet machine)
    .venv/bin/python benchmarks/sharded_dedup.py --n 20000 --dim 64 --workers 2   # a smoke test

The data and planted groups are ``bench_retrieval.py``'s dedup set (same generator, threshold
0.1 x the median nearest-neighbour distance, groups of 2..1000 rows). The rows are written to a
``.npy`` file that the workers memory-map, as ``mmh-bench dedup --cluster`` does. Each side runs
with one BLAS thread per process (the driver and every worker). Writes
``benchmarks/results/sharded_dedup.json`` and ``.md``; exits 1 when the groups differ.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> int:
    from bench_retrieval import make_data, median_nn, peak_bytes, reset_peak
    from engine_speedup import write_results
    from mmh_bench.evaluation.engine import cluster_client
    from mmh_bench.retrieval.neardup import find_duplicates
    from mmh_bench.retrieval.sharded import NpySource, find_duplicates_on_cluster
    from mmh_bench.retrieval.synthetic_vectors import plant_groups, score_groups
    from mmh_bench.retrieval.vector_index import VectorIndex
    from mmh_bench.threads import cores_given
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--data", choices=["clustered", "random"], default="clustered")
    p.add_argument("--workers", type=int, default=cores_given(), help="local workers (default: one per core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args()

    x, _ = make_data(a.data, a.n, a.dim, 0, a.seed + 5)
    threshold = 0.1 * median_nn(VectorIndex.build(x, kind="flat"), x, seed=a.seed)
    sizes = [2] * 200 + [3] * 100 + [5] * 60 + [10] * 40 + [20] * 20 + [50] * 10 + [100] * 6 + \
        [200] * 4 + [500] * 2 + [1000] * 2
    if a.n < 100_000:
        sizes = sizes[:len(sizes) // 4] + [300]
    planted = plant_groups(x, sizes, threshold, seed=a.seed)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="sharded-dedup-") as tmp:
        path = Path(tmp) / "rows.npy"
        np.save(path, x)
        del x
        rows = np.load(path, mmap_mode="r")
        reset_peak()
        t0 = time.perf_counter()
        single = find_duplicates(rows, threshold, seed=a.seed)
        runs["single"] = {"seconds": time.perf_counter() - t0, "driver_peak_gb": peak_bytes() / 1024 ** 3,
                          "score": score_groups(single.group_of_row, planted), "stats": single.stats}
        t0 = time.perf_counter()
        with cluster_client(None, a.workers) as client:
            client.run(__import__, "mmh_bench.retrieval.sharded")  # imports are start-up, not search
            runs["cluster_start_seconds"] = time.perf_counter() - t0
            reset_peak()
            t0 = time.perf_counter()
            sharded = find_duplicates_on_cluster(rows, threshold, client, source=NpySource(str(path)), seed=a.seed)
            runs["sharded"] = {"seconds": time.perf_counter() - t0, "driver_peak_gb": peak_bytes() / 1024 ** 3,
                               "workers": a.workers, "score": score_groups(sharded.group_of_row, planted),
                               "stats": sharded.stats}
    identical = bool(np.array_equal(single.group_of_row, sharded.group_of_row))
    doc = {"date": time.strftime("%Y-%m-%d %H:%M"), "n": a.n, "dim": a.dim, "data": a.data,
           "threshold": threshold, "cores": cores_given(), "identical_groups": identical,
           "speedup": runs["single"]["seconds"] / runs["sharded"]["seconds"], "runs": runs}
    lines = [f"# Sharded dedup ({a.data}, n={a.n:,}, d={a.dim}, {a.workers} workers, {doc['date']})", "",
             "| run | seconds | driver peak GB | planted groups found | false merges |", "|---|---|---|---|---|"]
    for name in ("single", "sharded"):
        r, s = runs[name], runs[name]["score"]
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['driver_peak_gb']:.2f} | {s['found']}/{s['planted']} "
                     f"| {s['false_merges']} |")
    lines += ["", f"identical groups: {identical}; speed-up {doc['speedup']:.2f}x (cluster start-up, "
                  f"{runs['cluster_start_seconds']:.1f} s, not counted)"]
    write_results(Path(a.out), "sharded_dedup", doc, lines)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
