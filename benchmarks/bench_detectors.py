"""Detector cost benchmark, measured in one run on this machine.

1. FLIPD against the normal bundle: seconds and network evaluations per sample, on
   - a small MLP trained here on a mixture of Gaussians on affine planes (d = 0, 2, 5, 8 in
     D = 10; a few thousand steps), where the true LID of each sample is known, so the table
     also gives each estimator's mean absolute error;
   - the same architecture at D = 100, untrained (cost only): Hutchinson FLIPD against NB with
     its K capped at 256.
2. The kNN LID estimators of ``mmh_bench.evaluation.data_lid`` against scikit-dimension's pointwise versions on
   ``skdim.datasets.BenchmarkManifolds``, at equal estimates (the script reports the agreement).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_detectors.py [--quick]
Writes benchmarks/results/bench_detectors.json. Everything runs on one thread (torch, FAISS,
scikit-learn), so the numbers compare methods, not parallelism; detector timings are the best of
three runs. A rule-chosen t0 (plateau / knee) includes its sweep in ``fit`` (64 samples x 18
times), amortised over the samples scored. The development machine had 2
CPU cores shared with other processes: absolute seconds vary with its load (recorded), ratios
measured in the same run are the figures to quote.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import faiss
import numpy as np
import torch
from tabulate import tabulate

import mmh_bench as mb
from mmh_bench.evaluation import data_lid as lid
from mmh_bench.task.models.analytic import FlatGaussianMixture
from mmh_bench.task.models.mlp import MLPDenoiser, MLPScoreModel, train_denoiser
from mmh_bench_baselines.flipd import FLIPD
from mmh_bench_baselines.normal_bundle import NormalBundle

OUT = Path(__file__).parent / "results" / "bench_detectors.json"


def run_detector(det: mb.Detector, model: mb.ScoreModel, x: np.ndarray, batch: int = 256,
                 repeats: int = 3) -> dict:
    """Fit + estimate over x as the evaluator does; seconds (best of ``repeats``, the machine is
    shared) and evaluations per sample."""
    info = mb.TaskInfo("bench", "synthetic", tuple(x.shape[1:]), False, len(x))
    best = np.inf
    for _ in range(repeats):
        ctx = mb.Context(det.name, det.access, info, seed=0, model=model, samples=mb.Batch(x))
        model.reset_counters()
        t0 = time.perf_counter()
        det.fit(ctx)
        est = np.concatenate([det.estimate(mb.Batch(x[s:s + batch], index=np.arange(len(x))[s:s + batch]), ctx)
                              for s in range(0, len(x), batch)])
        best = min(best, time.perf_counter() - t0)
    sec = best
    n = len(x)
    return {"est": est, "sec_per_sample": sec / n, "forwards_per_sample": model.nfe / n,
            "jvps_per_sample": model.njvp / n, "nfe_per_sample": (model.nfe + model.njvp) / n}


def flipd_vs_nb(quick: bool) -> dict:
    torch.manual_seed(0)
    truth = FlatGaussianMixture.random_planes([0, 2, 5, 8], 10, seed=0, spacing=3.0)
    xtr, _ = truth.sample(4000, seed=1)
    steps = 800 if quick else 3000
    t0 = time.perf_counter()
    net = train_denoiser(xtr, hidden=128, depth=3, steps=steps, progress=False)
    train_sec = time.perf_counter() - t0
    model = MLPScoreModel(net)
    x, comp = truth.sample(256 if quick else 512, seed=2)
    d_true = np.asarray(truth.dims)[comp]
    model.eps_jvp(x[:4], 0.05, np.ones_like(x[:4]))  # first JVP pays a one-off torch.func set-up
    rows = []
    dets = {"flipd (t0=plateau, exact trace)": FLIPD(),
            "flipd (t0=knee, exact trace)": FLIPD(t0="knee"),
            "flipd (t0=0.05, exact trace)": FLIPD(t0=0.05),
            "flipd (t0=0.05, Hutchinson K=16)": FLIPD(t0=0.05, exact_max_dim=0, probes=16),
            "normal-bundle (t=0.05, K=4D=40)": NormalBundle()}
    for label, det in dets.items():
        r = run_detector(det, model, x)
        r["mae_vs_true_lid"] = float(np.abs(r["est"] - d_true).mean())
        r["label"] = label
        if isinstance(det, FLIPD):
            r["t0_used"] = round(det.chosen_t0, 4)
        r["mae_exact_score"] = float(np.abs(run_detector(det, truth, x, repeats=1)["est"] - d_true).mean())
        if isinstance(det, FLIPD):
            r["t0_used_exact_score"] = round(det.chosen_t0, 4)
        rows.append(r)
    # D = 100, untrained network of the same architecture: cost only
    big = MLPScoreModel(MLPDenoiser(100, 128, 3))
    xb = np.random.default_rng(0).standard_normal((256 if quick else 512, 100)).astype(np.float32)
    big.eps_jvp(xb[:4], 0.05, np.ones_like(xb[:4]))
    for label, det in {"D=100 flipd (t0=0.05, Hutchinson K=16)": FLIPD(t0=0.05, probes=16),
                       "D=100 flipd (t0=0.05, exact trace, 100 JVPs)": FLIPD(t0=0.05, exact_max_dim=100),
                       "D=100 normal-bundle (K=256, capped)": NormalBundle()}.items():
        r = run_detector(det, big, xb)
        r["label"] = label
        rows.append(r)
    for r in rows:
        r.pop("est")
    by = {r["label"]: r for r in rows}
    nb10, nb100 = by["normal-bundle (t=0.05, K=4D=40)"], by["D=100 normal-bundle (K=256, capped)"]
    ratios = {}
    for r in rows:
        nb = nb100 if r["label"].startswith("D=100") else nb10
        r["sec_ratio_vs_nb"] = r["sec_per_sample"] / nb["sec_per_sample"]
        r["nfe_ratio_vs_nb"] = r["nfe_per_sample"] / nb["nfe_per_sample"]
        ratios[r["label"]] = {"seconds": round(r["sec_ratio_vs_nb"], 3), "nfe": round(r["nfe_ratio_vs_nb"], 3)}
    return {"train_steps": steps, "train_seconds": round(train_sec, 1), "n_samples": len(x),
            "rows": rows, "ratio_vs_normal_bundle": ratios}


def knn_vs_skdim(quick: bool) -> dict:
    import skdim
    warnings.filterwarnings("ignore")
    bm = skdim.datasets.BenchmarkManifolds(random_state=0)
    names = ["M1_Sphere", "M7_Roll"] if quick else ["M1_Sphere", "M2_Affine_3to5", "M7_Roll", "M9_Affine"]
    n, k = (500 if quick else 1000), 20
    ref = {
        "lpca": lambda X: skdim.id.lPCA().fit_pw(X, n_neighbors=k).dimension_pw_,
        "mle": lambda X: skdim.id.MLE().fit(X, n_neighbors=k).dimension_pw_,
        "twonn": lambda X: skdim.id.TwoNN().fit_pw(X, n_neighbors=k).dimension_pw_,
        "ess": lambda X: skdim.id.ESS().fit(X, n_neighbors=k).dimension_pw_,
    }
    rows = []
    for name in names:
        d, dim = int(bm.truth.loc[name].iloc[0]), int(bm.truth.loc[name].iloc[1])
        X = bm.generate(name, n=n, dim=dim, d=d)
        for method, fn in ref.items():
            t0 = time.perf_counter()
            ours = lid.estimate(method, X, k=k)
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            theirs = fn(X)
            t_ref = time.perf_counter() - t0
            diff = np.abs(ours - theirs)
            rows.append({"dataset": name, "d": d, "D": dim, "n": n, "k": k, "method": method,
                         "ours_s": t_ours, "skdim_s": t_ref, "speedup": t_ref / t_ours,
                         "max_abs_diff": float(diff.max()), "frac_equal_1e-6": float((diff <= 1e-6).mean()),
                         "mean_ours": float(ours.mean()), "mean_skdim": float(theirs.mean())})
    return {"rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "load_average_start": [round(v, 2) for v in os.getloadavg()],
               "note": "2 CPU cores shared with other processes during the run; all work on 1 thread"}
    t_start = time.perf_counter()
    a = flipd_vs_nb(args.quick)
    b = knn_vs_skdim(args.quick)
    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    out = {"machine": machine, "quick": args.quick, "seconds_total": round(time.perf_counter() - t_start, 1),
           "flipd_vs_normal_bundle": a, "knn_lid_vs_skdim": b}
    print(f"\nFLIPD vs normal bundle (MLP trained {a['train_steps']} steps in {a['train_seconds']} s; "
          f"{a['n_samples']} samples; per sample)")
    print(tabulate([[r["label"], f"{1e3 * r['sec_per_sample']:.3f}", f"{r['forwards_per_sample']:.1f}",
                     f"{r['jvps_per_sample']:.1f}", f"{r['sec_ratio_vs_nb']:.2f}", f"{r['nfe_ratio_vs_nb']:.2f}",
                     f"{r['mae_vs_true_lid']:.2f}" if "mae_vs_true_lid" in r else "-",
                     f"{r['mae_exact_score']:.2f}" if "mae_exact_score" in r else "-",
                     f"{r['t0_used']} / {r['t0_used_exact_score']}" if "t0_used" in r else ""]
                    for r in a["rows"]],
                   headers=["detector", "ms", "forwards", "JVPs", "sec / NB", "NFE / NB", "MAE (MLP)",
                            "MAE (exact)", "t0 (MLP / exact)"]))
    print("\nkNN LID estimators vs scikit-dimension (pointwise, same k)")
    print(tabulate([[r["dataset"], r["d"], r["D"], r["method"], f"{r['ours_s']:.3f}", f"{r['skdim_s']:.3f}",
                     f"{r['speedup']:.1f}x", f"{r['max_abs_diff']:.1e}", f"{r['frac_equal_1e-6']:.3f}",
                     f"{r['mean_ours']:.2f}"] for r in b["rows"]],
                   headers=["dataset", "d", "D", "method", "ours s", "skdim s", "speed-up", "max |diff|",
                            "equal", "mean LID"]))
    print(f"\nmachine: {machine}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
