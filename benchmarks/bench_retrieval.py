"""Duplicate retrieval at training-set scale: FAISS exact / IVF vs scikit-learn brute force, and dedup.

    .venv/bin/python benchmarks/bench_retrieval.py            # the full run (100k and 1M, ~15 min)
    .venv/bin/python benchmarks/bench_retrieval.py --quick    # 20k rows, a smoke test

Writes benchmarks/results/retrieval.json, retrieval.md (the printed table) and
retrieval_recall_qps.png. Each configuration runs in its own subprocess so peak memory (VmHWM,
reset per phase through /proc/self/clear_refs) belongs to that configuration alone; the peak is
the whole process's resident memory, the data matrix included.

Queries: "copy" queries are training rows moved in a random direction by a distance drawn
uniformly up to half the median nearest-neighbour distance. Those whose exact d1/d2 < 1/3 are the
copy-detection regime (about two thirds of them); the rest sit just past the ratio test's boundary
and check that approximate d2 does not flip labels. "generic" queries are fresh draws from the
same distribution. Recall is measured against exact search.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _threads_from_argv() -> str:
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


_T = _threads_from_argv()
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _T

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
GB = 1024 ** 3


# -- memory ---------------------------------------------------------------------------------------
def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); silently a no-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Phase:
    """Time and peak RSS of a block."""

    def __enter__(self) -> "Phase":
        reset_peak()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.peak = peak_bytes()


# -- data -----------------------------------------------------------------------------------------
def make_data(kind: str, n: int, dim: int, extra: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` training rows and ``extra`` fresh rows from the same distribution (one allocation)."""
    from mmh_bench.retrieval.synthetic_vectors import clustered_vectors, random_vectors
    allx = random_vectors(n + extra, dim, seed) if kind == "random" else \
        clustered_vectors(n + extra, dim, n_clusters=1000, spread=0.5, seed=seed)
    return allx[:n], allx[n:]


def copy_queries(x: np.ndarray, m: int, radius: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = np.sort(rng.choice(len(x), m, replace=False))
    u = rng.standard_normal((m, x.shape[1]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    r = rng.uniform(0.0, radius, m)
    return (x[src] + u * r[:, None]).astype(np.float32), src


def median_nn(index, x: np.ndarray, m: int = 200, seed: int = 0) -> float:
    rng = np.random.default_rng(seed + 99)
    ids = rng.choice(len(x), m, replace=False)
    d, i = index.search(x[ids], 2)
    return float(np.median(np.where(i[:, 0] == ids, d[:, 1], d[:, 0])))


def _labels(d: np.ndarray, abs_tol: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (d[:, 0] / d[:, 1] < 1 / 3) & (d[:, 0] < abs_tol)


# -- workers --------------------------------------------------------------------------------------
def work_search(kind: str, n: int, a: argparse.Namespace) -> dict:
    from sklearn.neighbors import NearestNeighbors

    from mmh_bench.retrieval._faiss import faiss
    from mmh_bench.retrieval.vector_index import VectorIndex
    faiss.omp_set_num_threads(int(a.threads))
    out: dict = {"task": "search", "data": kind, "n": n, "dim": a.dim, "raw_gb": n * a.dim * 4 / GB}
    with Phase() as ph:
        x, gen = make_data(kind, n, a.dim, a.queries, a.seed)
    out["gen_seconds"] = ph.seconds
    flat = VectorIndex.build(x, kind="flat")
    nn = median_nn(flat, x, seed=a.seed)
    radius = nn / 2.0
    qc, src = copy_queries(x, a.queries, radius, a.seed + 1)
    out.update(median_nn=nn, copy_query_radius=radius)
    queries = {"copy": qc, "generic": gen}

    # exact (flat, searching x in place): timed; its answers are the ground truth
    truth = {}
    with Phase() as ph:
        for name, q in queries.items():
            truth[name] = flat.search(q, 2)
    out["flat"] = {"build_seconds": 0.0, "qps": 2 * a.queries / ph.seconds,
                   "peak_gb": ph.peak / GB, "peak_over_raw": ph.peak / (n * a.dim * 4)}
    d_exact = truth["copy"][0]
    regime = (truth["copy"][1][:, 0] == src) & _labels(d_exact, np.inf)  # the copy regime
    out["copy_regime_queries"] = int(regime.sum())
    out["source_is_nn"] = float((truth["copy"][1][:, 0] == src).mean())

    # scikit-learn brute force, same data and copy queries
    mq = min(a.sk_queries, a.queries)
    with Phase() as ph:
        nnb = NearestNeighbors(n_neighbors=2, algorithm="brute").fit(x)
        t1 = time.perf_counter()
        _, sk_i = nnb.kneighbors(qc[:mq])
        sk_search = time.perf_counter() - t1
    out["sklearn"] = {"build_seconds": ph.seconds - sk_search, "qps": mq / sk_search,
                      "peak_gb": ph.peak / GB, "peak_over_raw": ph.peak / (n * a.dim * 4),
                      "agrees_with_flat": float((sk_i[:, 0] == truth["copy"][1][:mq, 0]).mean())}
    del nnb

    # IVF, nprobe measured at build time
    with Phase() as ph:
        ivf = VectorIndex.build(x, kind="ivf", seed=a.seed, target_recall=a.target_recall)
    out["ivf"] = {"build_seconds": ph.seconds, "train_seconds": ivf.extra["train_seconds"],
                  "peak_gb": ph.peak / GB, "nlist": ivf.nlist, "nprobe": ivf.probe,
                  "calibration": ivf.calibration}
    curve = []
    ladder = sorted({1, 2, 4, 8, 16, 32, 64, ivf.probe} & set(range(1, ivf.nlist + 1)))
    for p in ladder:
        row = {"nprobe": p}
        for name, q in queries.items():
            t0 = time.perf_counter()
            d, i = ivf.search(q, 2, probe=p)
            dt = time.perf_counter() - t0
            row[f"{name}_qps"] = len(q) / dt
            hit = i[:, 0] == truth[name][1][:, 0]
            row[f"{name}_recall1"] = float(hit.mean())
            if name == "copy":
                row["copy_recall1"] = float(hit[regime].mean())  # within the copy regime
                row["near_copy_recall1"] = float(hit.mean())  # all copy queries
                row["copy_recall2"] = float((np.sort(i, 1) == np.sort(truth[name][1], 1)).all(1).mean())
                row["copy_label_agreement"] = float((_labels(d, np.inf) == _labels(d_exact, np.inf)).mean())
        curve.append(row)
    out["ivf"]["curve"] = curve
    at = next(r for r in curve if r["nprobe"] == ivf.probe)
    out["ivf"].update({k: v for k, v in at.items() if k != "nprobe"})
    out["ivf"]["qps"] = at["copy_qps"]
    return out


def work_dedup(kind: str, n: int, a: argparse.Namespace) -> dict:
    from mmh_bench.retrieval._faiss import faiss
    from mmh_bench.retrieval.neardup import find_duplicates
    from mmh_bench.retrieval.synthetic_vectors import plant_groups, score_groups
    from mmh_bench.retrieval.vector_index import VectorIndex
    faiss.omp_set_num_threads(int(a.threads))
    x, _ = make_data(kind, n, a.dim, 0, a.seed + 5)
    nn = median_nn(VectorIndex.build(x, kind="flat"), x, seed=a.seed)
    threshold = 0.1 * nn
    sizes = [2] * 200 + [3] * 100 + [5] * 60 + [10] * 40 + [20] * 20 + [50] * 10 + [100] * 6 + \
        [200] * 4 + [500] * 2 + [1000] * 2
    if n < 100_000:
        sizes = sizes[:len(sizes) // 4] + [300]
    planted = plant_groups(x, sizes, threshold, seed=a.seed)
    with Phase() as ph:
        res = find_duplicates(x, threshold, seed=a.seed)
    score = score_groups(res.group_of_row, planted)
    return {"task": "dedup", "data": kind, "n": n, "dim": a.dim, "threshold": threshold,
            "median_nn": nn, "planted_rows": int(sum(sizes)), "decoys": len(sizes),
            "seconds": ph.seconds, "peak_gb": ph.peak / GB, "peak_over_raw": ph.peak / (n * a.dim * 4),
            "score": score, "stats": res.stats}


# -- report ---------------------------------------------------------------------------------------
def _fmt(v: float, nd: int = 2) -> str:
    return f"{v:,.{nd}f}"


def render(results: list[dict], meta: dict) -> str:
    from tabulate import tabulate
    rows = []
    for r in (r for r in results if r["task"] == "search"):
        sk = r["sklearn"]["qps"]
        base = [r["data"], f"{r['n']:,}"]
        rows.append(base + ["sklearn brute", _fmt(r["sklearn"]["build_seconds"]), _fmt(sk, 1), "1.0x",
                            "1 (exact)", "-", _fmt(r["sklearn"]["peak_gb"]), _fmt(r["sklearn"]["peak_over_raw"])])
        rows.append(base + ["faiss flat (exact)", "0", _fmt(r["flat"]["qps"], 1),
                            f"{r['flat']['qps'] / sk:.1f}x", "1 (exact)", "1 (exact)",
                            _fmt(r["flat"]["peak_gb"]), _fmt(r["flat"]["peak_over_raw"])])
        iv = r["ivf"]
        rows.append(base + [f"faiss IVF{iv['nlist']} nprobe={iv['nprobe']}", _fmt(iv["build_seconds"]),
                            _fmt(iv["qps"], 1), f"{iv['qps'] / sk:.1f}x", f"{iv['copy_recall1']:.4f}",
                            f"{iv['generic_recall1']:.4f}", _fmt(iv["peak_gb"]), "-"])
    table = tabulate(rows, headers=["data", "n", "index", "build s", "copy-query QPS", "vs sklearn",
                                    "recall@1 copy", "recall@1 generic", "peak GB", "peak/raw"],
                     tablefmt="github")
    drows = []
    for r in (r for r in results if r["task"] == "dedup"):
        s, st = r["score"], r["stats"]
        drows.append([r["data"], f"{r['n']:,}", _fmt(r["threshold"], 3), f"{s['found']}/{s['planted']}",
                      s["false_merges"], s["extra_groups"], st.get("max_probe"),
                      f"{st.get('certified_fraction', 1.0):.3f}", _fmt(r["seconds"], 1), _fmt(r["peak_gb"])])
    dtable = tabulate(drows, headers=["data", "n", "threshold", "planted groups found", "false merges",
                                      "extra groups", "max probe", "certified", "seconds", "peak GB"],
                      tablefmt="github")
    curves = []
    for r in (r for r in results if r["task"] == "search"):
        for c in r["ivf"]["curve"]:
            curves.append([r["data"], f"{r['n']:,}", c["nprobe"], f"{c['copy_recall1']:.4f}",
                           f"{c['copy_label_agreement']:.4f}", _fmt(c["copy_qps"], 0),
                           f"{c['generic_recall1']:.4f}", _fmt(c["generic_qps"], 0)])
    ctable = tabulate(curves, headers=["data", "n", "nprobe", "recall@1 copy regime", "copy-label agreement",
                                       "QPS copy", "recall@1 generic", "QPS generic"], tablefmt="github")
    head = (f"Retrieval benchmark, {meta['date']}, {meta['cpu']}, {meta['threads']} thread(s), "
            f"dim {meta['dim']}, {meta['queries']} queries per set ({meta['sk_queries']} for sklearn); "
            f"load average {meta['load_before']} before, {meta['load_after']} after (shared machine); "
            f"total {meta['total_seconds']:.0f} s.")
    return "\n\n".join([head, "## Search\n\n" + table, "## Deduplication\n\n" + dtable,
                        "## IVF recall vs speed\n\n" + ctable]) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    search = [r for r in results if r["task"] == "search"]
    fig, axes = plt.subplots(1, len({r["n"] for r in search}) or 1, figsize=(11, 4.5), squeeze=False)
    for ax, n in zip(axes[0], sorted({r["n"] for r in search})):
        for r in (r for r in search if r["n"] == n):
            c = r["ivf"]["curve"]
            for qname, style in (("copy", "-o"), ("generic", "--s")):
                ax.plot([p[f"{qname}_recall1"] for p in c], [p[f"{qname}_qps"] for p in c], style,
                        label=f"IVF, {r['data']} data, {qname} queries")
                if qname == "generic" and r["data"] == "clustered":
                    for p in c:
                        ax.annotate(str(p["nprobe"]), (p[f"{qname}_recall1"], p[f"{qname}_qps"]),
                                    fontsize=7, xytext=(2, 2), textcoords="offset points")
            ax.axhline(r["sklearn"]["qps"], color="grey", lw=0.8, ls=":")
            ax.axhline(r["flat"]["qps"], color="black", lw=0.8, ls="-.")
        ax.text(0.01, 0.02, "dotted: sklearn brute; dash-dot: faiss flat (exact)", transform=ax.transAxes,
                fontsize=7)
        ax.set_yscale("log")
        ax.set_xlabel("recall@1 vs exact search")
        ax.set_ylabel("queries per second (log)")
        ax.set_title(f"n = {n:,} x 512 (labels: nprobe)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# -- driver ---------------------------------------------------------------------------------------
def _load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return "unknown CPU"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated training-set sizes")
    p.add_argument("--data", default="random,clustered", help="random and/or clustered")
    p.add_argument("--dedup", default="random:100000,clustered:1000000",
                   help="comma-separated kind:n dedup runs (planted groups of 2..1000 rows)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=1000, help="copy and generic queries per set")
    p.add_argument("--sk-queries", type=int, default=1000, help="queries timed for scikit-learn")
    p.add_argument("--target-recall", type=float, default=0.995, help="IVF nprobe measurement target")
    p.add_argument("--threads", default=_T, help="BLAS/OpenMP threads for both sides (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--quick", action="store_true", help="20k rows, 300 queries: a smoke test")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.quick:
        a.sizes, a.dedup, a.queries, a.sk_queries = "20000", "clustered:20000", 300, 300
    if a.worker:
        task, kind, n = a.worker.split(":")
        res = (work_search if task == "search" else work_dedup)(kind, int(n), a)
        print("RESULT " + json.dumps(res))
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [f"search:{k}:{n}" for n in a.sizes.split(",") for k in a.data.split(",")]
    jobs += [f"dedup:{j}" for j in a.dedup.split(",") if j]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": _cpu(), "threads": a.threads, "dim": a.dim,
            "queries": a.queries, "sk_queries": a.sk_queries, "load_before": _load(),
            "openblas_coretype_for_faiss": None}
    results, t0 = [], time.perf_counter()
    for job in jobs:
        print(f"[{time.perf_counter() - t0:6.0f}s] {job} ...", flush=True)
        args = [sys.executable, __file__, "--worker", job, "--dim", str(a.dim), "--queries", str(a.queries),
                "--sk-queries", str(a.sk_queries), "--threads", str(a.threads), "--seed", str(a.seed),
                "--target-recall", str(a.target_recall)]
        proc = subprocess.run(args, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            results.append({"task": "failed", "job": job, "stderr": proc.stderr[-3000:]})
            continue
        results.append(json.loads(line[7:]))
    meta.update(load_after=_load(), total_seconds=time.perf_counter() - t0)
    from mmh_bench.retrieval._faiss import tune_openblas
    meta["openblas_coretype_for_faiss"] = tune_openblas()
    ok = [r for r in results if r["task"] != "failed"]
    (out / "retrieval.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    text = render(ok, meta)
    (out / "retrieval.md").write_text(text)
    if any(r["task"] == "search" for r in ok):
        plot(ok, out / "retrieval_recall_qps.png")
    print(text)
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
