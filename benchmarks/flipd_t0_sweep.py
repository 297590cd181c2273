"""Sweep FLIPD's t0 on built tasks: per-t AUROC (memorization tasks) or MAE (LID tasks), and the t0
each rule picks. Use it to check a t0 rule against the labels it never sees.

    python benchmarks/flipd_t0_sweep.py --tasks suite:default --out benchmarks/results/flipd_t0
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mmh_bench.build import build_task
from mmh_bench.registry import resolve_tasks
from mmh_bench_baselines.flipd import flipd_curve


def sweep(name: str, grid: np.ndarray, n_per_class: int, seed: int) -> dict:
    from mmh_bench.registry import get_task
    inst = build_task(get_task(name))
    model = inst.score_model()
    if model is None:
        return {}
    rng = np.random.default_rng(seed)
    n = len(inst.samples)
    if inst.labels is not None:
        pick = np.concatenate([rng.choice(np.where(inst.labels == c)[0],
                                          min(n_per_class, int((inst.labels == c).sum())), replace=False)
                               for c in (0, 1)])
    else:
        pick = rng.choice(n, min(2 * n_per_class, n), replace=False)
    x = inst.samples[pick]
    dim = int(np.prod(x.shape[1:]))
    probes = None
    if dim > 64:
        probes = torch.from_numpy(rng.choice([-1.0, 1.0], size=(16, len(pick), *x.shape[1:])).astype(np.float32))
    curves = flipd_curve(model, x, grid, probes=probes)
    out = {"task": name, "dim": dim, "grid": grid.tolist(), "index": pick.tolist(), "curves": curves.tolist()}
    # the mean over a label-blind random subset, as the detector's fit sees it
    if inst.labels is not None:
        y = inst.labels[pick]
        out["labels"] = y.tolist()
        out["auroc"] = [float(roc_auc_score(y, -c)) for c in curves]
        out["mean_mem"] = curves[:, y == 1].mean(1).tolist()
        out["mean_non"] = curves[:, y == 0].mean(1).tolist()
        frac = float(inst.labels.mean())
        out["mean_blind"] = (frac * np.array(out["mean_mem"]) + (1 - frac) * np.array(out["mean_non"])).tolist()
    if inst.lid_star is not None:
        ls = inst.lid_star[pick]
        out["mae"] = [float(np.abs(c - ls).mean()) for c in curves]
        if inst.labels is None:
            out["mean_blind"] = curves.mean(1).tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="suite:default")
    ap.add_argument("--n", type=int, default=150, help="samples per class (memorization tasks)")
    ap.add_argument("--t-min", type=float, default=1e-3)
    ap.add_argument("--t-max", type=float, default=0.9)
    ap.add_argument("--n-t", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/flipd_t0"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid = np.geomspace(args.t_min, args.t_max, args.n_t)
    for spec in resolve_tasks(args.tasks):
        if spec.family == "stable-diffusion":
            continue
        res = sweep(spec.name, grid, args.n, seed=0)
        if not res:
            continue
        (args.out / f"{spec.name}.json").write_text(json.dumps(res))
        line = [f"{spec.name} D={res['dim']}"]
        for k in ("auroc", "mae"):
            if k in res:
                line.append(f"best {k} {max(res[k]) if k == 'auroc' else min(res[k]):.3f}")
        print(" | ".join(line), flush=True)


if __name__ == "__main__":
    main()
